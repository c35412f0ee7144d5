"""The reference library through the Python API: real SQLite files and real Pillow images."""

from __future__ import annotations

import hashlib
import io
import sqlite3
from pathlib import Path

import pytest
from conftest import (
    BAD_IMAGE_KINDS,
    ImageMaker,
    draw_image,
    media_keys,
    snapshot_project,
    write_bad_image,
)
from PIL import Image, ImageFilter

from refstudio import (
    ImageError,
    ImageNotFoundError,
    InputError,
    InvalidNameError,
    NameTakenError,
    ReferenceNotFoundError,
    Studio,
)


def media_files(studio: Studio) -> list[str]:
    """Stored blobs (the store's temp folder is not content), on either media backend."""
    return media_keys(studio)


def count_rows(studio: Studio, table: str) -> int:
    conn = sqlite3.connect(studio.project.db_path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


# -- adding ------------------------------------------------------------------------------------


def test_add_with_images_labels_tags(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    files = [make_image(tmp_path / f"m{i}.png", seed=i) for i in range(3)]
    info, added = project.add_reference(
        "@Mara",
        files,
        kind="character",
        description="red coat, scar over the left eye",
        tags=["hero", "act1", "hero"],
        labels=["front", "side"],
    )
    assert info.name == "Mara"
    assert info.kind == "character"
    assert info.description == "red coat, scar over the left eye"
    assert info.tags == ("act1", "hero")
    assert [i.label for i in info.images] == ["front", "side", None]
    assert [i.position for i in info.images] == [0, 1, 2]
    assert [i.is_primary for i in info.images] == [True, False, False]
    assert info.primary is not None and info.primary.label == "front"
    assert len(added) == 3 and all(a.warnings == () for a in added)
    for image, src in zip(info.images, files, strict=True):
        data = src.read_bytes()
        assert image.sha256 == hashlib.sha256(data).hexdigest()
        assert Path(image.path).read_bytes() == data
        # Stored in the project's store: its media/ folder, or its bucket prefix.
        assert image.location.startswith(project.store.url.removeprefix("file:"))
        assert (image.format, image.width, image.height, image.bytes) == (
            "PNG",
            800,
            1000,
            len(data),
        )
        assert image.source_file == str(src.resolve())
    assert project.reference("mara") == info
    assert count_rows(project, "referenceimage") == 3


def test_same_bytes_are_stored_once(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    one = make_image(tmp_path / "a.png", seed=5)
    copy = tmp_path / "elsewhere" / "b.png"
    copy.parent.mkdir()
    copy.write_bytes(one.read_bytes())
    first, _ = project.add_reference("mara", [one])
    second, _ = project.add_reference("mara_twin", [copy])
    assert first.images[0].sha256 == second.images[0].sha256
    assert first.images[0].path == second.images[0].path
    assert len(media_files(project)) == 1
    assert count_rows(project, "asset") == 1
    assert count_rows(project, "referenceimage") == 2
    # A different image is a second asset.
    project.add_images("mara", [make_image(tmp_path / "c.png", seed=6)])
    assert len(media_files(project)) == 2
    assert count_rows(project, "asset") == 2


def test_names_are_unique_ignoring_case(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    img = make_image(tmp_path / "m.png")
    project.add_reference("Mara", [img])
    for taken in ("mara", "MARA", "@mArA"):
        with pytest.raises(NameTakenError) as info:
            project.add_reference(taken, [img])
        assert "Mara" in str(info.value)
    assert [r.name for r in project.references()] == ["Mara"]
    for lookup in ("mara", "@MARA", "Mara"):
        assert project.reference(lookup).name == "Mara"


@pytest.mark.parametrize(
    "bad", ["ab", "1mara", "_mara", "mara-x", "mara x", "m" * 17, "@", "", "@@mara", "mära"]
)
def test_invalid_names(project: Studio, make_image: ImageMaker, tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        project.add_reference(bad, [make_image(tmp_path / "m.png")])
    assert "3-16 characters" in str(info.value)
    assert project.references() == []


def test_longest_and_shortest_valid_names(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    img = make_image(tmp_path / "m.png")
    for name in ("abc", "A" + "b1_" * 5):
        assert project.add_reference(name, [img])[0].name == name


# -- rename, remove, edit, tags ----------------------------------------------------------------


def test_rename(project: Studio, make_image: ImageMaker, tmp_path: Path) -> None:
    project.add_reference("mara", [make_image(tmp_path / "m.png", seed=1)])
    project.add_reference("tavern", [make_image(tmp_path / "t.png", seed=2)], kind="location")
    renamed = project.rename_reference("@mara", "Mara_Old")
    assert renamed.name == "Mara_Old"
    with pytest.raises(ReferenceNotFoundError):
        project.reference("mara")
    assert project.reference("mara_old").id == renamed.id
    # Changing only the case of one's own name is fine; taking another's name is not.
    assert project.rename_reference("mara_old", "MARA_OLD").name == "MARA_OLD"
    with pytest.raises(NameTakenError):
        project.rename_reference("mara_old", "Tavern")
    with pytest.raises(InvalidNameError):
        project.rename_reference("mara_old", "x")
    assert sorted(r.name for r in project.references()) == ["MARA_OLD", "tavern"]


def test_remove(project: Studio, make_image: ImageMaker, tmp_path: Path) -> None:
    project.add_reference("mara", [make_image(tmp_path / "m.png")], tags=["hero"])
    gone = project.remove_reference("MARA")
    assert gone.name == "mara"
    assert project.references() == []
    assert count_rows(project, "referenceimage") == 0
    assert count_rows(project, "referencetag") == 0
    # The stored image stays (lineage); the name is free again.
    assert len(media_files(project)) == 1
    project.add_reference("mara", [make_image(tmp_path / "m.png")])
    assert count_rows(project, "asset") == 1


def test_unknown_reference_suggests_close_names(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    project.add_reference("mara", [make_image(tmp_path / "m.png")])
    with pytest.raises(ReferenceNotFoundError) as info:
        project.reference("marra")
    assert "@mara" in (info.value.hint or "")
    for call in (
        lambda: project.remove_reference("nobody"),
        lambda: project.rename_reference("nobody", "somebody"),
        lambda: project.tag_reference("nobody", ["x"]),
        lambda: project.check_reference("nobody"),
        lambda: project.add_images("nobody", [tmp_path / "m.png"]),
    ):
        with pytest.raises(ReferenceNotFoundError):
            call()


def test_tags_add_and_remove(project: Studio, make_image: ImageMaker, tmp_path: Path) -> None:
    project.add_reference("mara", [make_image(tmp_path / "m.png", seed=1)], tags=["draft"])
    project.add_reference(
        "tavern", [make_image(tmp_path / "t.png", seed=2)], kind="location", tags=["act1"]
    )
    info = project.tag_reference("@mara", add=["hero", "act1"], remove=["draft"])
    assert info.tags == ("act1", "hero")
    assert project.tag_reference("mara", add=["hero"], remove=["absent"]).tags == ("act1", "hero")
    assert [r.name for r in project.references(tag="act1")] == ["mara", "tavern"]
    assert [r.name for r in project.references(tag="hero")] == ["mara"]
    assert project.references(tag="draft") == []
    assert [r.name for r in project.references(kind="location")] == ["tavern"]
    assert [r.name for r in project.references(kind="location", tag="hero")] == []
    with pytest.raises(InputError):
        project.tag_reference("mara", add=["two words"])
    with pytest.raises(InputError):
        project.references(kind="monster")


def test_update_kind_and_description(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    info, _ = project.add_reference("mara", [make_image(tmp_path / "m.png")])
    updated = project.update_reference("mara", kind="style", description="ink wash")
    assert (updated.kind, updated.description) == ("style", "ink wash")
    assert updated.updated_at >= info.updated_at
    with pytest.raises(InputError):
        project.update_reference("mara", kind="monster")
    assert project.reference("mara").kind == "style"


# -- images of a reference ---------------------------------------------------------------------


def test_image_add_remove_primary(project: Studio, make_image: ImageMaker, tmp_path: Path) -> None:
    project.add_reference("mara", [make_image(tmp_path / "a.png", seed=1)], labels=["front"])
    info, added = project.add_images(
        "mara",
        [make_image(tmp_path / "b.png", seed=2), make_image(tmp_path / "c.png", seed=3)],
        labels=["side", "back"],
    )
    assert [a.image.label for a in added] == ["side", "back"]
    assert [i.label for i in info.images] == ["front", "side", "back"]
    assert info.primary is not None and info.primary.label == "front"

    info = project.set_primary("mara", "back")
    assert info.images[0].label == "back" and info.images[0].is_primary
    assert sum(i.is_primary for i in info.images) == 1
    side_id = next(i.id for i in info.images if i.label == "side")
    info = project.set_primary("mara", f"#{side_id}")
    assert info.primary is not None and info.primary.id == side_id

    # Removing the primary promotes another image; exactly one stays primary.
    info = project.remove_image("mara", "side")
    assert [i.label for i in info.images] == ["front", "back"]
    assert sum(i.is_primary for i in info.images) == 1
    assert info.images[0].is_primary

    info, _ = project.add_images(
        "mara", [make_image(tmp_path / "d.png", seed=4)], labels=["new"], make_primary=True
    )
    assert info.primary is not None and info.primary.label == "new"

    with pytest.raises(ImageNotFoundError):
        project.remove_image("mara", "nope")
    with pytest.raises(ImageNotFoundError):
        project.set_primary("mara", "#999999")
    with pytest.raises(InputError):  # labels name one image each
        project.add_images("mara", [make_image(tmp_path / "e.png", seed=5)], labels=["front"])


def test_removing_the_last_image_is_refused(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    info, _ = project.add_reference("mara", [make_image(tmp_path / "a.png")], labels=["only"])
    with pytest.raises(InputError) as err:
        project.remove_image("mara", "only")
    assert "ref rm" in (err.value.hint or "")
    assert project.reference("mara").images == info.images


def test_labels_must_be_valid_and_distinct(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    a, b = make_image(tmp_path / "a.png", seed=1), make_image(tmp_path / "b.png", seed=2)
    with pytest.raises(InputError):
        project.add_reference("mara", [a, b], labels=["x", "x"])
    with pytest.raises(InputError):
        project.add_reference("mara", [a], labels=["x", "y"])
    with pytest.raises(InputError):
        project.add_reference("mara", [a], labels=["no spaces"])
    with pytest.raises(InputError):
        project.add_reference("mara", [])
    assert project.references() == []


# -- formats and orientation -------------------------------------------------------------------


def test_exif_orientation_is_honoured(project: Studio, tmp_path: Path) -> None:
    img = draw_image((400, 200), seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, "JPEG", exif=exif.tobytes(), quality=90)
    info, _ = project.add_reference("mara", [path])
    image = info.images[0]
    assert (image.format, image.width, image.height) == ("JPEG", 200, 400)
    # The file itself is kept byte for byte (the EXIF tag still says how to show it).
    assert Path(image.path).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_converted_to_png(
    project: Studio, make_image: ImageMaker, tmp_path: Path, fmt: str
) -> None:
    src = make_image(tmp_path / f"m.{fmt.lower()}", size=(600, 700), fmt=fmt)
    info, _ = project.add_reference("mara", [src])
    image = info.images[0]
    assert (image.format, image.width, image.height) == ("PNG", 600, 700)
    assert image.path.endswith(".png")
    with Image.open(image.path) as stored:
        assert stored.format == "PNG"
        assert stored.size == (600, 700)
    data = Path(image.path).read_bytes()
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert image.bytes == len(data)


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", "jpg"), ("WEBP", "webp"), ("PNG", "png")])
def test_kept_formats(
    project: Studio, make_image: ImageMaker, tmp_path: Path, fmt: str, ext: str
) -> None:
    src = make_image(tmp_path / f"m.{ext}", size=(640, 640), fmt=fmt)
    image = project.add_reference("mara", [src])[0].images[0]
    assert (image.format, image.width, image.height) == (fmt, 640, 640)
    assert image.path.endswith(f".{ext}")
    assert Path(image.path).read_bytes() == src.read_bytes()


# -- quality hints -----------------------------------------------------------------------------


def test_tiny_blurry_image_gets_warnings(project: Studio, tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    draw_image((120, 120), seed=4).filter(ImageFilter.GaussianBlur(6)).save(path)
    info, added = project.add_reference("mara", [path])  # warnings never refuse
    assert len(added) == 1
    joined = " ".join(added[0].warnings).lower()
    assert "small" in joined and "blurry" in joined
    results = project.check_reference("@mara")
    assert [img.id for img, _ in results] == [info.images[0].id]
    messages = " ".join(results[0][1]).lower()
    assert "small" in messages and "blurry" in messages
    assert info.images[0].warnings  # recorded on the asset at import


def test_good_image_has_no_warnings(
    project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    info, added = project.add_reference("mara", [make_image(tmp_path / "m.png")])
    assert added[0].warnings == ()
    assert project.check_reference("mara") == [(info.images[0], [])]


# -- bad input changes nothing -----------------------------------------------------------------


@pytest.fixture
def busy_project(project: Studio, make_image: ImageMaker, tmp_path: Path) -> Studio:
    """A project with two references, so a failure has data it could damage."""
    project.add_reference(
        "mara",
        [make_image(tmp_path / "m1.png", seed=1), make_image(tmp_path / "m2.png", seed=2)],
        labels=["front", "side"],
        tags=["hero"],
    )
    project.add_reference("tavern", [make_image(tmp_path / "t.png", seed=3)], kind="location")
    return project


@pytest.mark.parametrize("kind", BAD_IMAGE_KINDS)
def test_bad_image_changes_nothing(busy_project: Studio, tmp_path: Path, kind: str) -> None:
    bad = write_bad_image(kind, tmp_path / "bad" / f"bad.{kind}")
    before = snapshot_project(busy_project.root)
    with pytest.raises(ImageError) as info:
        busy_project.add_reference("newref", [bad])
    assert str(bad) in str(info.value)
    with pytest.raises(ImageError):
        busy_project.add_images("mara", [bad])
    assert snapshot_project(busy_project.root) == before


def test_one_bad_file_among_good_ones_stores_nothing(
    busy_project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    good = make_image(tmp_path / "good.png", seed=40)
    bad = write_bad_image("truncated", tmp_path / "bad.png")
    before = snapshot_project(busy_project.root)
    with pytest.raises(ImageError):
        busy_project.add_reference("newref", [good, bad])
    with pytest.raises(ImageError):
        busy_project.add_images("mara", [good, bad], labels=["x", "y"])
    assert snapshot_project(busy_project.root) == before


def test_size_limit_from_config(make_image: ImageMaker, tmp_path: Path) -> None:
    Studio.init(tmp_path / "p").close()
    toml = tmp_path / "p" / "refstudio.toml"
    toml.write_text(toml.read_text().replace("max_image_mb = 20", "max_image_mb = 0.01"))
    big = make_image(tmp_path / "big.png")
    small = tmp_path / "small.png"
    Image.new("RGB", (16, 16), (10, 20, 30)).save(small)
    assert big.stat().st_size > 10_000 > small.stat().st_size
    with Studio.open(tmp_path / "p") as studio:
        studio.add_reference("tiny", [small])
        before = snapshot_project(studio.root)
        with pytest.raises(ImageError) as info:
            studio.add_reference("mara", [big])
        assert "limit" in str(info.value) and "max_image_mb" in (info.value.hint or "")
        assert snapshot_project(studio.root) == before


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s, p: s.add_reference("x", [p]), id="invalid-name"),
        pytest.param(lambda s, p: s.add_reference("MARA", [p]), id="taken-name"),
        pytest.param(lambda s, p: s.add_reference("newref", [p.parent / "nope.png"]), id="missing"),
        pytest.param(lambda s, p: s.add_reference("newref", [p.parent]), id="folder"),
        pytest.param(lambda s, p: s.add_images("nobody", [p]), id="unknown-ref"),
        pytest.param(lambda s, p: s.rename_reference("mara", "tavern"), id="rename-taken"),
        pytest.param(lambda s, p: s.remove_image("tavern", "#1"), id="rm-last-or-absent"),
        pytest.param(lambda s, p: s.remove_reference("nobody"), id="rm-unknown"),
        pytest.param(lambda s, p: s.tag_reference("mara", ["ok", "not ok"]), id="bad-tag"),
        pytest.param(lambda s, p: s.add_reference("newref", [p], kind="monster"), id="bad-kind"),
    ],
)
def test_bad_call_changes_nothing(
    busy_project: Studio, make_image: ImageMaker, tmp_path: Path, call
) -> None:
    good = make_image(tmp_path / "fresh.png", seed=77)
    before = snapshot_project(busy_project.root)
    with pytest.raises((InputError, ReferenceNotFoundError, ImageNotFoundError)):
        call(busy_project, good)
    assert snapshot_project(busy_project.root) == before


def test_snapshot_notices_changes(
    busy_project: Studio, make_image: ImageMaker, tmp_path: Path
) -> None:
    """Guard for the tests above: a real change does show up in the snapshot."""
    before = snapshot_project(busy_project.root)
    busy_project.tag_reference("mara", ["villain"])
    after_tag = snapshot_project(busy_project.root)
    assert after_tag[1] != before[1]
    busy_project.add_images("tavern", [make_image(tmp_path / "n.png", seed=99)])
    assert snapshot_project(busy_project.root)[0] != after_tag[0]


def test_stored_images_decode(busy_project: Studio) -> None:
    for ref in busy_project.references():
        for image in ref.images:
            with Image.open(io.BytesIO(Path(image.path).read_bytes())) as img:
                img.load()
                assert img.size == (image.width, image.height)
