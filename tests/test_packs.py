"""Reference packs: export/import round trips keep lineage, store media once, and refuse
hostile or clashing packs without writing anything."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import encode_image, media_keys, open_with_media, run_cli, snapshot_project

from refstudio import InputError, NameTakenError, Studio
from refstudio.library.packs import MANIFEST_NAME
from refstudio.simulator import Simulator, SimulatorConfig

SENTINEL_KEY = "sk-SENTINEL-7f3a9c-never-export-me"


#: REFSTUDIO_MEDIA_URL the shared source project was built under (None: the folder store).
SOURCE_MEDIA: dict[str, str | None] = {}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, media_backend: str) -> Iterator[Path]:
    """A project with a two-step lineage: @tavern (file) -> @tavern_night (generated on the
    simulator with a sentinel key) -> @mara's new primary and a labelled view (offline)."""
    root = tmp_path_factory.mktemp("source")
    files = root / "files"
    files.mkdir()
    (files / "mara.png").write_bytes(encode_image((400, 500), seed=1))
    (files / "tavern.png").write_bytes(encode_image((640, 360), seed=2))
    (files / "other.png").write_bytes(encode_image((300, 300), seed=3))
    SOURCE_MEDIA["url"] = os.environ.get("REFSTUDIO_MEDIA_URL")
    studio = Studio.init(root / "a")
    try:
        studio.provider_options["offline"] = {"cache_dir": root / "offline"}
        studio.add_reference("mara", [files / "mara.png"], description="a traveller",
                             tags=["hero", "red_coat"])
        studio.add_reference("tavern", [files / "tavern.png"], kind="location")
        studio.add_reference("loner", [files / "other.png"], kind="object")
        with Simulator(SimulatorConfig(latency=0.05, jitter=0.0, key=SENTINEL_KEY,
                                       seed=3)) as sim:
            studio.provider_options["wavespeed"] = {"api_key": SENTINEL_KEY,
                                                    "base_url": sim.base_url}
            [night] = studio.generate("@tavern at night", provider="wavespeed",
                                      resolution="720p", seed=10)
        studio.promote(night.id, "tavern_night", kind="location")
        scene = studio.generate("@mara in @tavern_night", provider="offline", n=2,
                                resolution="720p", seed=5)
        studio.promote(scene[1].id, "mara")
        studio.promote(scene[0].id, "mara", label="side", keep_primary=True)
    finally:
        studio.close()
    return root / "a"


@pytest.fixture
def pack(source: Path, tmp_path: Path) -> Path:
    with open_source(source) as studio:
        result = studio.export_pack(["mara"], tmp_path / "mara.zip")
    assert result.references == ("mara",)
    assert result.dependencies == ("tavern", "tavern_night")
    return result.path


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Studio]:
    studio = Studio.init(tmp_path / "b")
    try:
        yield studio
    finally:
        studio.close()


def shape(node: Any) -> Any:
    """A lineage tree without ids and paths: origins, prompts, seeds, names, hashes."""
    if isinstance(node, list):
        return [shape(n) for n in node]
    if not isinstance(node, dict):
        return node
    return {k: shape(v) for k, v in node.items()
            if k not in ("image_id", "generation_id", "source_file")}


def file_image(manifest: dict[str, Any]) -> dict[str, Any]:
    """@mara's image that came from a file (not from a generation)."""
    return next(i for i in manifest["references"][0]["images"] if i["source_output"] is None)


def add_image(manifest: dict[str, Any], sha: str) -> None:
    """Give @mara one more (file) image with content ``sha``."""
    manifest["references"][0]["images"].append({
        "key": "i_extra", "label": "extra", "primary": False, "position": 9, "sha256": sha,
        "source_file": None, "source_output": None})


def open_source(source: Path) -> Studio:
    return open_with_media(source, SOURCE_MEDIA.get("url"))


def source_env() -> dict[str, str]:
    url = SOURCE_MEDIA.get("url")
    return {"REFSTUDIO_MEDIA_URL": url} if url else {}


def media_files(root: Path) -> list[str]:
    """Every stored image key of the project at ``root`` (folder or bucket)."""
    with Studio.open(root) as studio:
        return media_keys(studio)


def count(root: Path, table: str) -> int:
    conn = sqlite3.connect(root / "library.db")
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


# -- round trip ---------------------------------------------------------------------------------


def test_round_trip_keeps_lineage(source: Path, pack: Path, target: Studio) -> None:
    result = target.import_pack(pack)
    assert result.references == ("mara", "tavern", "tavern_night")
    assert result.generations == 3  # the tavern at night, and both scene variants
    with open_source(source) as studio:
        for name in ("mara", "tavern_night", "tavern"):
            before, after = studio.lineage(name), target.lineage(name)
            assert shape(after) == shape(before), name
        original = studio.reference("mara")
    mara = target.reference("mara")
    assert (mara.kind, mara.description, mara.tags) == (original.kind, original.description,
                                                        original.tags)
    assert [(i.label, i.is_primary, i.sha256) for i in mara.images] == [
        (i.label, i.is_primary, i.sha256) for i in original.images]
    # The deep edge really is there: mara's primary <- generation <- @tavern_night's image,
    # which came from a generation whose input is the @tavern file.
    tree = target.lineage("mara")["images"][0]
    assert tree["origin"] == "generation" and tree["seed"] == 6
    night = next(i for i in tree["inputs"] if i["name"] == "tavern_night")
    assert night["origin"] == "generation" and night["prompt"] == "@tavern at night"
    assert night["inputs"][0]["origin"] == "file"
    # Imported generations are history, not spending.
    assert target.spent() == 0.0
    gens = target.history()
    assert {g.status for g in gens} == {"completed"}
    assert {g.provider for g in gens} == {"wavespeed", "offline"}
    assert all(g.request_id for g in gens)


def test_manifest_format(pack: Path) -> None:
    with zipfile.ZipFile(pack) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read(MANIFEST_NAME))
        for item in manifest["media"]:
            assert hashlib.sha256(zf.read(item["file"])).hexdigest() == item["sha256"]
    assert manifest["format"] == "refstudio-pack" and manifest["version"] == 1
    assert len(names) == len(set(names)) == 1 + len(manifest["media"])
    refs = {r["name"]: r for r in manifest["references"]}
    assert not refs["mara"]["dependency"] and refs["tavern"]["dependency"]
    assert refs["mara"]["tags"] == ["hero", "red_coat"]
    assert "loner" not in refs  # not in the lineage: not carried
    scenes = [g for g in manifest["generations"] if g["prompt"] == "@mara in @tavern_night"]
    assert sorted(g["seed"] for g in scenes) == [5, 6]
    for gen in scenes:
        assert [b["name"] for b in gen["bindings"]] == ["mara", "tavern_night"]
        assert len(gen["outputs"]) == 1 and gen["provider"] == "offline"
    # Only file names travel, never the exporter's folders.
    assert file_image(manifest)["source_file"] == "mara.png"
    assert "payload" not in json.dumps(manifest)


def test_each_image_is_stored_once(source: Path, pack: Path, target: Studio,
                                   tmp_path: Path) -> None:
    # The target already holds @tavern's picture (same bytes, under another name).
    with open_source(source) as studio:
        tavern_file = tmp_path / "t.png"
        tavern_file.write_bytes(Path(studio.reference("tavern").images[0].path).read_bytes())
    target.add_reference("pub", [tavern_file], kind="location")
    assets_before, files_before = count(target.root, "asset"), len(media_files(target.root))
    result = target.import_pack(pack)
    with zipfile.ZipFile(pack) as zf:
        unique = len(json.loads(zf.read(MANIFEST_NAME))["media"])
    assert result.media_reused == 1 and result.media_added == unique - 1
    assert count(target.root, "asset") == assets_before + unique - 1
    assert len(media_files(target.root)) == files_before + unique - 1
    shas = [hashlib.sha256(target.store.read_bytes(k)).hexdigest()
            for k in media_files(target.root)]
    assert len(shas) == len(set(shas))
    # A second import (under new names) adds rows but no media at all.
    again = target.import_pack(pack, rename={"mara": "mara_b", "tavern": "tavern_b",
                                             "tavern_night": "night_b"})
    assert again.media_added == 0
    assert len(media_files(target.root)) == files_before + unique - 1
    assert target.lineage("mara_b")["images"][0]["inputs"][1]["origin"] == "generation"


def test_clash_is_refused_with_every_name_and_nothing_written(pack: Path, target: Studio,
                                                              tmp_path: Path) -> None:
    image = tmp_path / "x.png"
    image.write_bytes(encode_image((200, 200), seed=9))
    target.add_reference("MARA", [image])
    target.add_reference("Tavern", [image])
    before = snapshot_project(target.root)
    with pytest.raises(NameTakenError) as err:
        target.import_pack(pack)
    assert "MARA" in err.value.message and "Tavern" in err.value.message
    assert "--rename" in (err.value.hint or "")
    assert snapshot_project(target.root) == before
    result = target.import_pack(pack, rename={"mara": "mara_pack", "@tavern": "tavern_pack"})
    assert result.renamed == {"mara": "mara_pack", "tavern": "tavern_pack"}
    assert target.reference("MARA").images[0].sha256 == hashlib.sha256(
        image.read_bytes()).hexdigest()  # untouched
    tree = target.lineage("mara_pack")
    assert tree["images"][0]["inputs"][0]["name"] == "mara"  # history keeps the names used


def test_bad_renames(pack: Path, target: Studio) -> None:
    before = snapshot_project(target.root)
    with pytest.raises(InputError, match="no reference named 'nobody'"):
        target.import_pack(pack, rename={"nobody": "somebody"})
    with pytest.raises(InputError, match="invalid reference name"):
        target.import_pack(pack, rename={"mara": "9lives"})
    with pytest.raises(InputError, match="two references in the pack"):
        target.import_pack(pack, rename={"mara": "Tavern"})
    assert snapshot_project(target.root) == before


def test_unknown_reference_is_not_exported(source: Path, tmp_path: Path) -> None:
    from refstudio import ReferenceNotFoundError

    with open_source(source) as studio, pytest.raises(ReferenceNotFoundError):
        studio.export_pack(["marra"], tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()


def test_the_key_is_in_no_exported_file(source: Path, pack: Path, tmp_path: Path) -> None:
    assert SENTINEL_KEY.encode() not in pack.read_bytes()
    with zipfile.ZipFile(pack) as zf:
        for name in zf.namelist():
            assert SENTINEL_KEY.encode() not in zf.read(name), name
    with open_source(source) as studio:
        for gen in studio.history():
            png = studio.export_image(gen.id, 0, tmp_path / f"g{gen.id}.png")
            assert SENTINEL_KEY.encode() not in png.read_bytes()


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_round_trip(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.zip"
    done = run_cli("-p", str(source), "export", "mara", "tavern", "--out", str(out), "--json",
                   env=source_env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dependencies"] == ["tavern_night"]
    Studio.init(tmp_path / "c").close()
    done = run_cli("-p", str(tmp_path / "c"), "import", str(out))
    assert done.returncode == 0, done.stderr
    assert "@mara" in done.stdout
    done = run_cli("-p", str(tmp_path / "c"), "import", str(out))
    assert done.returncode == 4
    assert "mara, tavern, tavern_night" in done.stderr and "--rename" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("-p", str(tmp_path / "c"), "import", str(out), "--rename", "mara=mara2",
                   "--rename", "tavern=tavern2", "--rename", "tavern_night=night2", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["references"] == ["mara2", "tavern2", "night2"]
    done = run_cli("-p", str(tmp_path / "c"), "import", str(out), "--rename", "mara")
    assert done.returncode == 4 and "OLD=NEW" in done.stderr


# -- hostile and broken packs --------------------------------------------------------------------


def rewrite(pack: Path, dest: Path, *, manifest: Any = None,
            extra: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """A copy of ``pack`` with its manifest replaced and entries added or dropped."""
    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(dest, "w") as out:
        for info in src.infolist():
            if info.filename in drop:
                continue
            data = src.read(info)
            if info.filename == MANIFEST_NAME and manifest is not None:
                data = json.dumps(manifest).encode()
            out.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
        for name, data in (extra or {}).items():
            out.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return dest


def read_manifest(pack: Path) -> dict[str, Any]:
    with zipfile.ZipFile(pack) as zf:
        return json.loads(zf.read(MANIFEST_NAME))


def refused(studio: Studio, pack: Path, match: str) -> None:
    before = snapshot_project(studio.root)
    with pytest.raises(InputError, match=match) as err:
        studio.import_pack(pack)
    assert snapshot_project(studio.root) == before
    assert "\n" not in err.value.message


def test_path_traversal_is_refused(pack: Path, target: Studio, tmp_path: Path) -> None:
    png = encode_image((50, 50), seed=4)
    for name in ("../evil.png", "media/../../evil.png", "/etc/evil.png", "C:/evil.png",
                 "media\\evil.png"):
        bad = rewrite(pack, tmp_path / "bad.zip", extra={name: png})
        refused(target, bad, "unsafe path")
    assert not (tmp_path / "evil.png").exists()


def test_unexpected_and_symlink_entries_are_refused(pack: Path, target: Studio,
                                                   tmp_path: Path) -> None:
    refused(target, rewrite(pack, tmp_path / "a.zip", extra={"notes.txt": b"hi"}),
            "unexpected entry")
    link = tmp_path / "link.zip"
    shutil.copy(pack, link)
    with zipfile.ZipFile(link, "a") as zf:
        sha = hashlib.sha256(b"/etc/passwd").hexdigest()
        info = zipfile.ZipInfo(f"media/{sha}.png")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, b"/etc/passwd")
    refused(target, link, "symbolic link")


def test_zip_bomb_is_refused(pack: Path, target: Studio, tmp_path: Path) -> None:
    zeros = bytes(25_000_000)  # 25 MB of zeros deflate to ~25 KB
    sha = hashlib.sha256(zeros).hexdigest()
    bomb = rewrite(pack, tmp_path / "bomb.zip", extra={f"media/{sha}.png": zeros})
    with zipfile.ZipFile(bomb) as zf:
        assert zf.getinfo(f"media/{sha}.png").compress_size < 100_000
    refused(target, bomb, "over the 20 MB limit|zip bomb")


def test_ratio_guard(pack: Path, target: Studio, tmp_path: Path) -> None:
    zeros = bytes(5_000_000)  # under the size limit, but expands ~1000x
    sha = hashlib.sha256(zeros).hexdigest()
    bomb = rewrite(pack, tmp_path / "ratio.zip", extra={f"media/{sha}.png": zeros})
    refused(target, bomb, "zip bomb")


def with_stated_size(data: bytes, name: str, size: int) -> bytes:
    """Zip bytes whose headers (local and central) claim ``name`` is ``size`` bytes."""
    raw = bytearray(data)
    encoded = name.encode()
    for signature, field in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (pos := raw.find(signature, start)) != -1:
            name_at = pos + (30 if signature == b"PK\x03\x04" else 46)
            if raw[name_at:name_at + len(encoded)] == encoded:
                raw[pos + field:pos + field + 4] = size.to_bytes(4, "little")
            start = pos + 4
    return bytes(raw)


def test_headers_that_understate_the_size_are_not_trusted(pack: Path, target: Studio,
                                                          tmp_path: Path) -> None:
    zeros = bytes(25_000_000)
    sha = hashlib.sha256(zeros).hexdigest()
    manifest = read_manifest(pack)
    manifest["media"].append({"sha256": sha, "format": "PNG", "file": f"media/{sha}.png",
                              "bytes": 1000})
    add_image(manifest, sha)
    plain = rewrite(pack, tmp_path / "plain.zip", manifest=manifest,
                    extra={f"media/{sha}.png": zeros})
    liar = tmp_path / "liar.zip"
    liar.write_bytes(with_stated_size(plain.read_bytes(), f"media/{sha}.png", 1000))
    with zipfile.ZipFile(liar) as zf:
        assert zf.getinfo(f"media/{sha}.png").file_size == 1000
    refused(target, liar, "damaged|grows past|hash to")


def test_bytes_that_do_not_match_their_name_are_refused(pack: Path, target: Studio,
                                                       tmp_path: Path) -> None:
    manifest = read_manifest(pack)
    victim = manifest["media"][0]["file"]
    other = encode_image((60, 60), seed=11)
    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(tmp_path / "t.zip", "w") as out:
        for info in src.infolist():
            data = other if info.filename == victim else src.read(info)
            out.writestr(info.filename, data)
    refused(target, tmp_path / "t.zip", "hash to")


def test_a_broken_image_is_refused(pack: Path, target: Studio, tmp_path: Path) -> None:
    manifest = read_manifest(pack)
    junk = b"not an image at all" * 10
    sha = hashlib.sha256(junk).hexdigest()
    manifest["media"].append({"sha256": sha, "format": "PNG", "file": f"media/{sha}.png",
                              "bytes": len(junk)})
    add_image(manifest, sha)
    refused(target, rewrite(pack, tmp_path / "j.zip", manifest=manifest,
                            extra={f"media/{sha}.png": junk}), "not an image")


@pytest.mark.parametrize("change, match", [
    (lambda m: m["references"][0].update(name="../../x"), "invalid reference name"),
    (lambda m: m["references"][0].update(name="ab"), "invalid reference name"),
    (lambda m: m["references"][0].update(kind="monster"), "unknown kind"),
    (lambda m: m["references"][0]["images"][0].update(label="a b"), "invalid label"),
    (lambda m: m["references"][0].update(images=[]), "at least one image"),
    (lambda m: m["generations"][0]["bindings"][0].update(image="i999"), "does not hold"),
    (lambda m: m["references"][0]["images"][0].update(
        source_output={"generation": "g9", "index": 0}), "does not hold"),
    (lambda m: m["generations"][0]["outputs"][0].update(index="0"), "wrong type"),
    (lambda m: m.update(version=99), "version 99"),
    (lambda m: m.update(format="zip"), "not a refstudio pack"),
    (lambda m: m["media"].pop(), "media list lacks|disagree"),
])
def test_bad_manifests_are_refused(pack: Path, target: Studio, tmp_path: Path,
                                   change: Any, match: str) -> None:
    manifest = read_manifest(pack)
    change(manifest)
    refused(target, rewrite(pack, tmp_path / "m.zip", manifest=manifest), match)


def test_not_a_pack(target: Studio, tmp_path: Path, pack: Path) -> None:
    (tmp_path / "x.zip").write_bytes(b"PK\x03\x04 nonsense")
    refused(target, tmp_path / "x.zip", "not a zip file")
    refused(target, rewrite(pack, tmp_path / "n.zip", drop=(MANIFEST_NAME,)), "no manifest")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(MANIFEST_NAME, b"{not json")
    (tmp_path / "j.zip").write_bytes(buf.getvalue())
    refused(target, tmp_path / "j.zip", "not valid JSON")
    with pytest.raises(InputError, match="no such file"):
        target.import_pack(tmp_path / "missing.zip")


def test_failed_write_leaves_no_media(pack: Path, target: Studio,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside the transaction rolls back the rows and removes the new media files."""
    from refstudio import StorageError
    from refstudio.library import packs

    def boom(*args: Any) -> None:
        raise StorageError("disk full (simulated)")

    monkeypatch.setattr(packs, "_insert", boom)
    before = snapshot_project(target.root)
    with pytest.raises(StorageError):
        target.import_pack(pack)
    after = snapshot_project(target.root)
    assert after[1] == before[1]
    assert {k: v for k, v in after[0].items() if v != "<dir>"} == {
        k: v for k, v in before[0].items() if v != "<dir>"}
