"""``refstudio demo``: the whole loop on a fresh machine, with no key and no network.

It draws a character and a location with Pillow, starts the WaveSpeed simulator inside this
process, and drives the real WaveSpeed client against it: add references, compose a scene,
promote the best output into a new version of the character, and generate again from it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter


def draw_character(path: Path, *, coat: tuple[int, int, int] = (170, 40, 40)) -> Path:
    """A simple, evenly lit full-body character on a plain background (800x1000)."""
    img = Image.new("RGB", (800, 1000), (196, 206, 214))
    d = ImageDraw.Draw(img)
    d.ellipse((300, 90, 500, 310), fill=(236, 196, 160), outline=(40, 30, 30), width=5)
    d.pieslice((290, 70, 510, 260), 180, 360, fill=(60, 40, 30))  # hair
    d.ellipse((355, 180, 375, 200), fill=(30, 30, 30))
    d.ellipse((425, 180, 445, 200), fill=(30, 30, 30))
    d.arc((370, 220, 430, 260), 20, 160, fill=(120, 40, 40), width=4)
    d.polygon([(300, 330), (500, 330), (560, 860), (240, 860)], fill=coat, outline=(30, 20, 20))
    d.line((400, 340, 400, 850), fill=(40, 20, 20), width=4)
    for y in range(400, 820, 70):
        d.ellipse((385, y, 415, y + 30), fill=(220, 190, 90))
    d.rectangle((300, 860, 370, 960), fill=(50, 50, 60))
    d.rectangle((430, 860, 500, 960), fill=(50, 50, 60))
    img = img.filter(ImageFilter.SMOOTH)
    img.save(path)
    return path


def draw_location(path: Path, *, seed: int = 7) -> Path:
    """A tavern interior: wooden walls, a hearth, tables (1600x900)."""
    rng = random.Random(seed)
    img = Image.new("RGB", (1600, 900), (92, 60, 38))
    d = ImageDraw.Draw(img)
    for x in range(0, 1600, 80):  # planks
        shade = 80 + rng.randint(-12, 12)
        d.rectangle((x, 0, x + 78, 600), fill=(shade + 30, shade, shade - 30))
    d.rectangle((0, 600, 1600, 900), fill=(70, 48, 30))
    d.rectangle((620, 260, 980, 600), fill=(60, 60, 64))  # hearth
    d.rectangle((680, 380, 920, 600), fill=(25, 20, 20))
    for i in range(9):
        cx = 800 + 90 * math.sin(i)
        d.polygon([(cx - 40, 600), (cx, 430 + 10 * i), (cx + 40, 600)], fill=(250, 150 + 8 * i, 40))
    for tx in (180, 1180):
        d.ellipse((tx, 640, tx + 260, 720), fill=(120, 80, 50), outline=(40, 25, 15), width=4)
        d.rectangle((tx + 115, 700, tx + 145, 860), fill=(90, 60, 40))
    for lx in (200, 1400):
        d.ellipse((lx - 30, 120, lx + 30, 180), fill=(255, 220, 140))
    img.save(path)
    return path


@dataclass(frozen=True)
class DemoResult:
    project: Path
    steps: list[tuple[str, list[Path]]]


def run_demo(target: Path, say: Callable[[str], None] = print) -> DemoResult:
    """Make a project at ``target`` and run the loop against an in-process simulator."""
    from .simulator import Simulator, SimulatorConfig
    from .studio import Studio

    studio = Studio.init(target, name="refstudio-demo")
    steps: list[tuple[str, list[Path]]] = []
    try:
        sources = target / "sources"
        sources.mkdir()
        mara = draw_character(sources / "mara.png")
        tavern = draw_location(sources / "tavern.png")
        studio.add_reference("mara", [mara], kind="character",
                             description="a young traveller in a red coat with brass buttons")
        studio.add_reference("tavern", [tavern], kind="location",
                             description="a warm wooden tavern with a stone hearth")
        say("added @mara (character) and @tavern (location) from drawings in sources/")
        config = SimulatorConfig(latency=0.4, jitter=0.2, key="demo-key", seed=1)
        with Simulator(config) as sim:
            studio.provider_options["wavespeed"] = {"api_key": "demo-key",
                                                    "base_url": sim.base_url}
            plan = [
                ("portrait", "@mara as a watercolor portrait, soft even light", {}),
                ("scene", "@mara sitting in @tavern by the hearth, dramatic lighting",
                 {"n": 2, "seed": 42}),
            ]
            for title, prompt, options in plan:
                gens = studio.generate(prompt, provider="wavespeed", resolution="720p", **options)
                paths = [o.path for g in gens for o in g.outputs]
                steps.append((title, paths))
                say(f"{title}: {prompt!r} -> {len(paths)} image(s), generations "
                    + ", ".join(f"#{g.id}" for g in gens))
            scene = studio.history(limit=1)[0]
            studio.promote(scene.id, "mara")
            say(f"promoted output {scene.id}:0 to the new primary image of @mara")
            gens = studio.generate("@mara walking out of @tavern at dawn, wide shot",
                                   provider="wavespeed", resolution="720p")
            steps.append(("refined", [o.path for g in gens for o in g.outputs]))
            say(f"refined: generated again from the promoted @mara -> #{gens[0].id}")
            stats = sim.stats()
        say(f"simulator: {stats['submits_accepted']} paid submits, {stats['polls']} polls, "
            f"{stats['uploads']} uploads (each reference image uploaded once)")
    finally:
        studio.close()
    return DemoResult(target, steps)
