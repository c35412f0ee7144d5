"""Storage faults: read-only folders, a full disk, a deleted or corrupt database, media files
whose bytes no longer match. One ``error:`` line with exit 13, nothing half-written."""

from __future__ import annotations

import os
import resource
import sqlite3
from pathlib import Path

import pytest

from . import plant as p
from .harness import Base, Case, Ctx, Setup, Snapshot, check, params, tmpfs_available

#: Big enough that storing it cannot fit the spare room of a "full disk" case.
BIG = p.image("big.png", size=(1200, 1200), seed=51)
GEN = ("gen", "@mara in the rain")


def _read_only_media(ctx: Ctx) -> None:
    for folder, dirs, _files in os.walk(ctx.proj / "media"):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o555)
    (ctx.proj / "media").chmod(0o555)


def _future_db(ctx: Ctx) -> None:
    conn = sqlite3.connect(ctx.proj / "library.db")
    try:
        conn.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_future', 'x')")
        conn.commit()
    finally:
        conn.close()


def _overwrite_db(data: bytes | None, size: int | None = None) -> Setup:
    def setup(ctx: Ctx) -> None:
        db = ctx.proj / "library.db"
        for extra in ("library.db-wal", "library.db-shm"):
            (ctx.proj / extra).unlink(missing_ok=True)
        if size is not None:
            with db.open("r+b") as fh:
                fh.truncate(size)
        if data is not None:
            db.write_bytes(data)

    return setup


def _delete_media(ctx: Ctx) -> None:
    """Delete @mara's primary image from media/ (the first stored file of the base)."""
    from refstudio import Studio

    with Studio.open(ctx.proj) as studio:
        path = Path(studio.reference("mara").primary.path)
    path.unlink()


def _corrupt_mara(ctx: Ctx) -> None:
    from refstudio import Studio

    with Studio.open(ctx.proj) as studio:
        path = Path(studio.reference("mara").primary.path)
    data = bytearray(path.read_bytes())
    data[-200:-100] = bytes(100)  # inside the image data: still decodes, no longer the hash
    path.write_bytes(bytes(data))


def gen_rows_only(ctx: Ctx, before: Snapshot, after: Snapshot) -> None:
    """A generation that could not store its output: its row (recoverable), nothing else."""
    assert after.files == before.files, "project files changed"
    assert after.scratch == before.scratch
    kept = set(after.db)
    assert all(line in kept for line in before.db), "rows were changed or removed"
    for line in after.db:
        if line not in set(before.db):
            assert line.startswith('INSERT INTO "generation"'), line
            assert "'completed'" not in line, f"completed without its output: {line}"


def recreated_or_refused(ctx: Ctx, before: Snapshot, after: Snapshot) -> None:
    """After a deleted library.db: refused (nothing made), or a new empty library."""
    assert after.files == before.files
    assert after.scratch == before.scratch
    if after.db != before.db:
        assert not [line for line in after.db if line.startswith("INSERT INTO")
                    and not line.startswith('INSERT INTO "_migrations"')], after.db


CASES = [
    # -- the database --
    Case("db-garbage", ("ref", "list"), 13, "library.db",
         setup=_overwrite_db(os.urandom(4096) * 2)),
    Case("db-text", ("ref", "list"), 13, "library.db",
         setup=_overwrite_db(b"SQLite format 3\x00 but then just words\n" * 100)),
    Case("db-truncated", ("ref", "list"), 13, "library.db", setup=_overwrite_db(None, 20_000)),
    Case("db-truncated-gen", GEN, 13, "library.db", setup=_overwrite_db(None, 20_000),
         key=True),
    Case("db-directory", ("ref", "list"), 13, "library.db",
         setup=p.steps(p.remove("library.db"), p.folder("library.db", where="proj"))),
    Case("db-link-loop", ("ref", "list"), 13, "library.db",
         setup=p.steps(p.remove("library.db"), p.link_loop("library.db", where="proj"))),
    Case("db-future", ("ref", "list"), 13, "newer", setup=_future_db),
    Case("db-future-gen", GEN, 13, "newer", setup=_future_db, key=True),
    Case("db-read-only-add", ("ref", "add", "newref", "%TMP%/big.png"), 13, "",
         setup=p.steps(BIG, p.chmod("library.db", 0o444, where="proj"),
                       p.chmod(".", 0o555, where="proj")), unprivileged=True),
    Case("db-deleted", ("ref", "list"), (0, 3, 13), "doctor", setup=p.remove("library.db"),
         change=recreated_or_refused),
    # -- media/ --
    Case("media-is-a-file", ("ref", "add", "newref", "%TMP%/big.png"), 13, "media",
         setup=p.steps(BIG, lambda ctx: _replace_media_with_file(ctx))),
    Case("media-read-only-add", ("ref", "add", "newref", "%TMP%/big.png"), 13, "media",
         setup=p.steps(BIG, _read_only_media), unprivileged=True),
    Case("media-read-only-gen", GEN, 13, "media", setup=_read_only_media, unprivileged=True,
         change=gen_rows_only),
    Case("media-read-only-import", ("import", "%TMP%/pack.zip", "--rename", "hero=hero_b",
                                    "--rename", "mara=mara_b", "--rename", "tavern=tavern_b"),
         13, "media", setup=p.steps(lambda ctx: _copy_pack_with_new_image(ctx),
                                    _read_only_media), unprivileged=True),
    Case("media-file-deleted-gen", GEN, (5, 6, 13), "", setup=_delete_media, key=True),
    Case("media-file-deleted-export", ("export", "mara", "--out", "%TMP%/x.zip"), (5, 6, 13),
         "", setup=_delete_media),
    Case("media-file-corrupt-gen", GEN, (5, 13), "media", setup=_corrupt_mara, key=True),
    Case("media-file-corrupt-export", ("export", "mara", "--out", "%TMP%/x.zip"), (5, 13),
         "", setup=_corrupt_mara),
    Case("media-file-corrupt-export-image", ("export-image", "1:0", "--out", "%TMP%/x.png"),
         (5, 13), "media", setup=p.corrupt_media()),
    # -- a full disk: an injected EFBIG (any system), a small tmpfs (root) --
    Case("fsize-add", ("ref", "add", "newref", "%TMP%/big.png"), 13, "", setup=BIG,
         limits=((resource.RLIMIT_FSIZE, 256 * 1024),)),
    # 40 KB: the database's journal cannot grow (the tmpfs case below fills up on the output)
    Case("fsize-gen", GEN, 13, "", limits=((resource.RLIMIT_FSIZE, 40 * 1024),),
         change=gen_rows_only),
    *([
        Case("tmpfs-full-add", ("ref", "add", "newref", "%TMP%/big.png"), 13, "", setup=BIG,
             tmpfs_spare=128 * 1024),
        Case("tmpfs-full-gen", GEN, 13, "resume", tmpfs_spare=128 * 1024,
             change=gen_rows_only),
    ] if tmpfs_available() else []),
]


def _replace_media_with_file(ctx: Ctx) -> None:
    import shutil

    shutil.rmtree(ctx.proj / "media")
    (ctx.proj / "media").write_text("not a folder\n")


def _copy_pack_with_new_image(ctx: Ctx) -> None:
    """A pack whose images this project lacks (so an import must write to media/)."""
    import shutil

    from refstudio import Studio

    other = ctx.tmp / "other"
    images = [other / f"{name}.png" for name in ("hero", "mara", "tavern")]
    for seed, path in enumerate(images, start=61):
        p.image(str(path), size=(720, 720), seed=seed)(ctx)
    with Studio.init(other / "proj") as studio:
        for path in images:
            studio.add_reference(path.stem, [path], kind="character")
        studio.export_pack([path.stem for path in images], ctx.tmp / "pack.zip")
    shutil.rmtree(other)


#: Run with REFSTUDIO_HOSTILE=all (see harness.ALL): more variants of the paths above.
EXTENDED = {
    "db-directory", "db-future-gen", "db-link-loop", "db-text", "db-truncated-gen",
    "media-file-deleted-export",
}


@pytest.mark.parametrize("case", params(CASES, EXTENDED))
def test_storage_fault(case: Case, base: Base, tmp_path: Path) -> None:
    check(case, base, tmp_path)
