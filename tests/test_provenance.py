"""Provenance in exported PNGs: written by export-image, read back by inspect; originals intact."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import encode_image, run_cli
from PIL import Image

from refstudio import ImageError, InputError, OutputNotFoundError, Studio, read_provenance
from refstudio.library.provenance import png_with_provenance, provenance_from_bytes


@pytest.fixture
def studio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Studio]:
    monkeypatch.setenv("REFSTUDIO_OFFLINE_DIR", str(tmp_path / "offline"))
    (tmp_path / "mara.png").write_bytes(encode_image((300, 400), seed=1))
    (tmp_path / "tavern.png").write_bytes(encode_image((400, 300), seed=2))
    s = Studio.init(tmp_path / "proj")
    try:
        s.add_reference("mara", [tmp_path / "mara.png"])
        s.add_reference("tavern", [tmp_path / "tavern.png"], kind="location")
        yield s
    finally:
        s.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_and_read_back(studio: Studio, tmp_path: Path) -> None:
    prompt = "@mara sitting in @tavern — «ünïcode» and <script>"
    [gen] = studio.generate(prompt, provider="offline", resolution="720p", seed=77)
    original = gen.outputs[0].path
    before = sha(original)
    out = studio.export_image(gen.id, 0, tmp_path / "out" / "scene.png")
    assert sha(original) == before  # the stored original is only read

    record = read_provenance(out)
    assert record["prompt"] == gen.prompt
    assert record["seed"] == 77 and record["params"]["seed"] == 77
    assert record["params"]["resolution"] == "720p"
    assert record["provider"] == "offline" and record["model"] == gen.model
    assert record["generation_id"] == gen.id and record["output_index"] == 0
    assert record["original_sha256"] == before
    mara, tavern = studio.reference("mara"), studio.reference("tavern")
    assert record["references"] == [{"name": "mara", "sha256": mara.images[0].sha256},
                                     {"name": "tavern", "sha256": tavern.images[0].sha256}]

    # The single chunks say the same, and any PNG reader sees them.
    with Image.open(out) as img:
        img.load()
        text = dict(img.text)  # type: ignore[attr-defined]
        assert img.size == (gen.outputs[0].width, gen.outputs[0].height)
        with Image.open(original) as src:
            assert img.tobytes() == src.tobytes()  # pixels unchanged
    assert text["refstudio:prompt"] == gen.prompt
    assert json.loads(text["refstudio:references"]) == record["references"]
    assert text["refstudio:seed"] == "77"
    assert json.loads(text["refstudio:params"]) == gen.params
    assert text["refstudio:provider"] == "offline"
    assert text["refstudio:model"] == gen.model
    assert text["refstudio:generation_id"] == str(gen.id)
    assert json.loads(text["refstudio:provenance"]) == record


def test_single_chunks_are_enough(studio: Studio, tmp_path: Path) -> None:
    [gen] = studio.generate("@mara alone", provider="offline", resolution="720p", seed=3)
    out = studio.export_image(gen.id, 0, tmp_path / "x.png")
    # Another tool kept the single chunks but dropped the combined one.
    with Image.open(out) as img:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in img.text.items():  # type: ignore[attr-defined]
            if key != "refstudio:provenance":
                info.add_itxt(key, value)
        img.save(tmp_path / "y.png", pnginfo=info)
    record = read_provenance(tmp_path / "y.png")
    assert record["prompt"] == "@mara alone" and record["seed"] == 3
    assert record["generation_id"] == gen.id and record["references"][0]["name"] == "mara"


def test_reexport_replaces_old_chunks() -> None:
    first = png_with_provenance(encode_image((32, 32), seed=5), {"prompt": "one", "seed": 1})
    second = png_with_provenance(first, {"prompt": "two", "seed": 2})
    assert provenance_from_bytes(second) == {"prompt": "two", "seed": 2}
    assert second.count(b"refstudio:prompt") == 1


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_outputs_are_converted(studio: Studio, tmp_path: Path, fmt: str) -> None:
    """A provider that returned JPEG/WebP: the export is a PNG, the stored file unchanged."""
    from sqlmodel import select

    from refstudio.storage.database import write_session
    from refstudio.storage.tables import Output

    [gen] = studio.generate("@tavern by day", provider="offline", resolution="720p", seed=9)
    data = encode_image((320, 180), fmt=fmt, seed=4)
    asset_id = studio.library.store_probed(studio.library.probe_bytes(data, source="t"))
    with write_session(studio.db) as session:
        row = session.exec(select(Output).where(Output.generation_id == gen.id)).one()
        row.asset_id = asset_id
        session.add(row)
    stored = studio.generation(gen.id).outputs[0].path
    before = sha(stored)
    out = studio.export_image(gen.id, 0, tmp_path / f"{fmt}.png")
    assert sha(stored) == before
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (320, 180)
    assert read_provenance(out)["original_sha256"] == before


def test_errors(studio: Studio, tmp_path: Path) -> None:
    [gen] = studio.generate("@mara", provider="offline", resolution="720p", seed=1)
    with pytest.raises(OutputNotFoundError):
        studio.export_image(gen.id, 3, tmp_path / "x.png")
    with pytest.raises(InputError, match=r"\*\.png"):
        studio.export_image(gen.id, 0, tmp_path / "x.jpg")
    with pytest.raises(InputError, match="stored original"):
        studio.export_image(gen.id, 0, gen.outputs[0].path)
    plain = tmp_path / "plain.png"
    plain.write_bytes(encode_image((20, 20), seed=2))
    with pytest.raises(InputError, match="carries no refstudio provenance"):
        read_provenance(plain)
    jpeg = tmp_path / "p.jpg"
    jpeg.write_bytes(encode_image((20, 20), fmt="JPEG"))
    with pytest.raises(ImageError, match="not a PNG"):
        read_provenance(jpeg)
    truncated = tmp_path / "t.png"
    truncated.write_bytes(plain.read_bytes()[:40])
    with pytest.raises(ImageError, match="truncated"):
        read_provenance(truncated)


def test_cli_round_trip(studio: Studio, tmp_path: Path) -> None:
    [gen] = studio.generate("@mara in @tavern at dusk", provider="offline",
                            resolution="720p", seed=12)
    before = sha(gen.outputs[0].path)
    env = {"REFSTUDIO_OFFLINE_DIR": str(tmp_path / "offline"),
           "WAVESPEED_API_KEY": "sk-SENTINEL-prov-0042"}
    out = tmp_path / "cli.png"
    done = run_cli("-p", str(studio.root), "export-image", f"{gen.id}:0", "--out", str(out),
                   env=env)
    assert done.returncode == 0, done.stderr
    assert sha(gen.outputs[0].path) == before
    assert b"sk-SENTINEL-prov-0042" not in out.read_bytes()
    done = run_cli("inspect", str(out), "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["prompt"] == "@mara in @tavern at dusk" and record["seed"] == 12
    assert [r["name"] for r in record["references"]] == ["mara", "tavern"]
    done = run_cli("inspect", str(out))
    assert done.returncode == 0 and "@mara in @tavern at dusk" in done.stdout
    assert "seed       12" in done.stdout
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    done = run_cli("inspect", str(plain))
    assert done.returncode == 4
    assert "no refstudio provenance" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("-p", str(studio.root), "export-image", "nope", "--out", str(out))
    assert done.returncode == 4 and "GEN_ID" in done.stderr


def test_png_bytes_are_valid_for_pillow() -> None:
    png = png_with_provenance(encode_image((16, 16), seed=1), {"prompt": "p"})
    with Image.open(io.BytesIO(png)) as img:
        img.verify()
