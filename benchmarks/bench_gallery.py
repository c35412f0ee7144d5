"""Gallery build time for a 1,000-generation project: cold, warm, and warm after 10 new ones.

    python benchmarks/bench_gallery.py [--generations 1000] [--keep DIR]

How the project is made (about a minute): two references drawn with Pillow, 4 generations
through the real engine with the offline provider (so the rows are exactly what the engine
writes), then the rest inserted in batches of 100 as Generation + Output + Asset rows copied from
those, each with its own distinct 1280x720 PNG output stored through the media store. Driving
all 1,000 through the offline provider would take ~12 minutes of simulated provider latency and
measure nothing the gallery does. A few outputs are promoted so lineage pages have chains.

Printed: seconds, pages, thumbnails made/reused for
  cold   an empty output folder: every thumbnail is made;
  warm   the same build again: nothing new, every thumbnail reused;
  +10    after 10 more generations: only their 10 thumbnails made.
Asserts nothing about timing. Thumbnails are made on min(8, cpus) threads: Pillow releases
the GIL while decoding, resizing and encoding.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw


def _output_png(base: Image.Image, number: int) -> bytes:
    """A distinct 1280x720 image per generation: the base picture plus numbered shapes."""
    rng = random.Random(number)
    img = base.copy()
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = rng.randrange(1100), rng.randrange(560)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle((x, y, x + 60 + rng.randrange(120), y + 40 + rng.randrange(100)), colour)
    draw.text((20, 680), f"generation {number}", fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def insert_generations(studio: object, template_id: int, count: int, start: int) -> None:
    """Copy generation ``template_id`` ``count`` times, each with a new stored output."""
    from sqlmodel import select

    from refstudio.storage.database import write_session
    from refstudio.storage.tables import Asset, Generation, Output

    with write_session(studio.db) as session:  # type: ignore[attr-defined]
        template = session.get(Generation, template_id)
        assert template is not None
        out = session.exec(select(Output).where(Output.generation_id == template_id)).first()
        assert out is not None
        asset = session.get(Asset, out.asset_id)
        assert asset is not None
        base = Image.open(studio.store.local_path(asset.path)).convert("RGB")  # type: ignore[attr-defined]
        base.load()
        fields = template.model_dump(exclude={"id"})
    done = 0
    while done < count:
        batch = min(100, count - done)
        with write_session(studio.db) as session:  # type: ignore[attr-defined]
            for i in range(batch):
                number = start + done + i
                data = _output_png(base, number)
                blob = studio.store.put_bytes(data, extension="png")  # type: ignore[attr-defined]
                new_asset = Asset(
                    sha256=blob.sha256,
                    path=blob.key,
                    format="PNG",
                    width=1280,
                    height=720,
                    bytes=blob.size,
                )
                params = json.loads(fields["params_json"])
                params["seed"] = 1000 + number
                gen = Generation(
                    **{
                        **fields,
                        "params_json": json.dumps(params),
                        "request_hash": f"bench-{number}",
                        "request_id": f"bench-task-{number}",
                        "prompt": f"{fields['prompt']} (take {number})",
                    }
                )
                session.add(new_asset)
                session.add(gen)
                session.flush()
                session.add(Output(generation_id=gen.id, index=0, asset_id=new_asset.id))  # type: ignore[arg-type]
        done += batch


def build_project(root: Path, generations: int) -> None:
    from refstudio import Studio
    from refstudio.app.demo import draw_character, draw_location

    os.environ["REFSTUDIO_OFFLINE_DIR"] = str(root.parent / "offline")
    sources = root.parent / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    with Studio.init(root) as studio:
        studio.add_reference("mara", [draw_character(sources / "mara.png")], tags=["hero"])
        studio.add_reference("tavern", [draw_location(sources / "tavern.png")], kind="location")
        real = studio.generate("@mara in @tavern by the hearth", n=4, seed=1, provider="offline")
        insert_generations(studio, real[0].id, generations - len(real), start=len(real) + 1)
        # Lineage: a new reference from one output, and a new primary for mara from another.
        studio.promote(real[1].id, "mara_coat")
        studio.promote(real[2].id, "mara")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="build the project here and keep it")
    args = parser.parse_args()

    from refstudio import Studio
    from refstudio.gallery import build_gallery

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-gallery-"))
    root = work / "proj"
    t0 = time.perf_counter()
    build_project(root, args.generations)
    print(
        f"project: {args.generations} generations made in {time.perf_counter() - t0:.1f} s ({root})"
    )
    print(f"{'build':<8}{'seconds':>9}{'pages':>7}{'made':>7}{'reused':>8}")

    def row(label: str, studio: Studio) -> None:
        report = build_gallery(studio)
        print(
            f"{label:<8}{report.seconds:>9.2f}{report.pages:>7}{report.thumbnails_made:>7}"
            f"{report.thumbnails_reused:>8}",
            flush=True,
        )

    with Studio.open(root) as studio:
        row("cold", studio)
        row("warm", studio)
        template = studio.history(limit=1)[0].id
        insert_generations(studio, template, 10, start=args.generations + 1)
        row("+10", studio)
    print(f"cpus: {os.cpu_count()}")


if __name__ == "__main__":
    main()
