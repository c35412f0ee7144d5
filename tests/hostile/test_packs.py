"""Hostile packs: zip slip, absolute paths, links, bombs, duplicates, lying headers, bad
manifests. Each is refused with exit 4 before anything is written."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from . import plant as p
from .harness import (
    Base,
    Case,
    Ctx,
    Result,
    Setup,
    assert_answer,
    check,
    only_inserts,
    params,
    run_cli,
    snapshot,
)

PACK = "%TMP%/pack.zip"
IMPORT = ("import", PACK)
ALL_RENAMED = ("--rename", "hero=hero_b", "--rename", "mara=mara_b", "--rename",
               "tavern=tavern_b")
NEW_ROWS = ("asset", "reference", "referenceimage", "referencetag", "generation", "output")


def bad(cid: str, mutate: object, pattern: str = "", code: int | tuple[int, ...] = 4,
        **kw: object) -> Case:
    """Import a copy of the base pack changed by ``mutate(ctx, zf, manifest)``."""
    return Case(f"pack-{cid}", (*IMPORT, *ALL_RENAMED), code, pattern,
                setup=p.pack_with("pack.zip", mutate), **kw)  # type: ignore[arg-type]


def raw(cid: str, setup: Setup, pattern: str = "", code: int | tuple[int, ...] = 4,
        **kw: object) -> Case:
    return Case(f"pack-{cid}", IMPORT, code, pattern, setup=setup, **kw)  # type: ignore[arg-type]


def add_entry(name: str, data: bytes = b"x") -> object:
    def mutate(ctx: Ctx, zf: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
        zf.writestr(name, data)

    return mutate


def media_names(ctx: Ctx) -> list[str]:
    return [i.filename for i, _ in p.pack_entries(ctx) if i.filename.startswith("media/")]


def change_manifest(edit: object) -> object:
    def mutate(ctx: Ctx, zf: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
        edit(manifest)  # type: ignore[operator]

    return mutate


def _set(path: str, value: object) -> object:
    """Set a key of the manifest by a dotted path (``references.0.name``)."""

    def edit(manifest: dict[str, Any]) -> None:
        node: object = manifest
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value  # type: ignore[index]

    return change_manifest(edit)


def _symlink(ctx: Ctx, zf: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
    zf.writestr(p.symlink_entry(f"media/{'a' * 64}.png", "/etc/passwd"), "/etc/passwd")


def _bomb(ctx: Ctx, zf: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
    zf.writestr(f"media/{'b' * 64}.png", bytes(5_000_000))


def _manifest_bomb(ctx: Ctx, zf: zipfile.ZipFile, manifest: dict[str, Any]) -> object:
    zf.writestr("manifest.json", " " * 40_000_000)
    return p.OMIT


def _duplicate_manifest(ctx: Ctx, zf: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
    zf.writestr("manifest.json", json.dumps(manifest))  # and again at the end


def _duplicate_media(ctx: Ctx, zf: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
    p.writestr(zf, media_names(ctx)[0], b"other bytes")


def _hash_mismatch(ctx: Ctx) -> None:
    """The pack with one media entry holding another image's bytes."""
    with zipfile.ZipFile(ctx.tmp / "pack.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        swapped = False
        for info, data in p.pack_entries(ctx):
            if info.filename.startswith("media/") and not swapped:
                data, swapped = p.png_bytes(seed=43), True
            zf.writestr(info, data)


def _text_as_media(ctx: Ctx, zf: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
    data = b"not an image\n"
    sha = hashlib.sha256(data).hexdigest()
    zf.writestr(f"media/{sha}.png", data)
    manifest["media"].append({"sha256": sha, "format": "PNG", "file": f"media/{sha}.png",
                              "bytes": len(data)})
    manifest["references"][0]["images"][0]["sha256"] = sha


def _encrypted(ctx: Ctx) -> None:
    """The pack with its manifest flagged as encrypted."""
    _copy_pack(ctx)
    p.patch_entry(ctx.tmp / "pack.zip", "manifest.json", "flags", 0x1)


def _lying_header(ctx: Ctx) -> None:
    """A listed media entry that inflates to 3 MB while its headers claim 100 bytes."""
    path = ctx.tmp / "pack.zip"
    entries = p.pack_entries(ctx)
    target = next(i.filename for i, _ in entries if i.filename.startswith("media/"))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, bytes(3_000_000) if info.filename == target else data)
    p.patch_entry(path, target, "size", 100)


def _many_entries(ctx: Ctx) -> None:
    with zipfile.ZipFile(ctx.tmp / "pack.zip", "w", zipfile.ZIP_STORED) as zf:
        for i in range(20_001):
            zf.writestr(f"media/{i:064x}.png", b"")


def _truncated(ctx: Ctx) -> None:
    data = ctx.base.pack.read_bytes()
    (ctx.tmp / "pack.zip").write_bytes(data[: len(data) // 2])


def _copy_pack(ctx: Ctx) -> None:
    (ctx.tmp / "pack.zip").write_bytes(ctx.base.pack.read_bytes())


CASES = [
    # -- not a pack at all --
    raw("text", p.write("pack.zip", "just words\n"), "pack.zip"),
    raw("empty", p.write("pack.zip", b""), "pack.zip"),
    raw("truncated", _truncated, "pack.zip"),
    raw("directory", p.folder("pack.zip"), "pack.zip"),
    raw("missing", lambda ctx: None, "pack.zip", code=(4, 6)),
    raw("fifo", p.fifo("pack.zip"), "pack.zip"),
    Case("pack-dev-zero", ("import", "/dev/zero"), 4, "zero", timeout=15),
    Case("pack-library-db", ("import", "%PROJ%/library.db"), 4, "library.db"),
    raw("png-named-zip", p.image("pack.zip"), "pack.zip"),
    raw("nested-zip", p.zip_file("pack.zip", lambda ctx, zf: zf.writestr(
        "inner.zip", ctx.base.pack.read_bytes())), "inner.zip|manifest"),
    # -- entries that could escape a folder --
    bad("zip-slip", add_entry("../evil.png"), "unsafe"),
    bad("zip-slip-deep", add_entry("media/../../../../tmp/evil.png"), "unsafe"),
    bad("absolute-path", add_entry("/tmp/evil.png"), "unsafe"),
    bad("backslash-path", add_entry("..\\evil.png"), "unsafe"),
    bad("drive-letter", add_entry("C:/evil.png"), "unsafe"),
    bad("dot-segment", add_entry("media/./x.png"), "unsafe"),
    bad("unexpected-entry", add_entry("run.sh", b"#!/bin/sh\nrm -rf ~\n"), "unexpected"),
    bad("symlink-entry", _symlink, "symbolic link"),
    Case("pack-encrypted-entry", (*IMPORT, *ALL_RENAMED), 4, "encrypted", setup=_encrypted),
    # -- bombs and lies --
    bad("zip-bomb", _bomb, "bomb|expands"),
    bad("manifest-bomb", _manifest_bomb, "bomb|expands|limit"),
    Case("pack-lying-header", (*IMPORT, *ALL_RENAMED), 4, "damaged|grows|limit",
         setup=_lying_header),
    raw("too-many-entries", _many_entries, "entries"),
    bad("duplicate-manifest", _duplicate_manifest, "twice"),
    bad("duplicate-media", _duplicate_media, "twice"),
    Case("pack-media-hash-mismatch", (*IMPORT, *ALL_RENAMED), 4, "hash",
         setup=_hash_mismatch),
    bad("text-as-media", _text_as_media, ""),
    # -- the manifest --
    bad("no-manifest", lambda ctx, zf, m: p.OMIT, "manifest"),
    bad("manifest-not-json", lambda ctx, zf, m: b"{not json", "JSON"),
    bad("manifest-not-utf8", lambda ctx, zf, m: b'{"a": "\xff"}', "manifest"),
    bad("manifest-list", lambda ctx, zf, m: b"[]", "manifest"),
    bad("wrong-format", _set("format", "zip-of-cats"), "manifest"),
    bad("future-version", _set("version", 99), "version"),
    bad("version-text", _set("version", "1"), "version"),
    bad("references-not-list", _set("references", "hero"), "references"),
    bad("bad-reference-name", _set("references.0.name", "1 bad"), "1 bad|name"),
    bad("confusable-reference-name", _set("references.0.name", "h\u0435ro"), "name"),
    bad("bad-kind", _set("references.0.kind", "wizard"), "wizard"),
    bad("bad-label", _set("references.0.images.0.label", "a b"), "label"),
    bad("bad-sha", _set("references.0.images.0.sha256", "z" * 64), "sha256"),
    bad("two-primaries", lambda ctx, zf, m: _two_primaries(m), "primary"),
    bad("bad-date", _set("generations.0.created_at", "yesterday"), "date|created_at"),
    bad("unknown-generation", _set("references.0.images.0.source_output.generation", "g99"),
        "g99"),
    bad("media-unused", lambda ctx, zf, m: _unused_media(ctx, zf, m), "used by nothing"),
    # -- names --
    raw("name-clash", _copy_pack, "already has"),
    Case("pack-rename-invalid", (*IMPORT, "--rename", "hero=bad name", "--rename",
                                 "mara=mara_b", "--rename", "tavern=tavern_b"), 4,
         "invalid reference name", setup=_copy_pack),
    Case("pack-rename-malformed", (*IMPORT, "--rename", "hero"), 4, "OLD=NEW",
         setup=_copy_pack),
    Case("pack-rename-same-target", (*IMPORT, "--rename", "hero=twin", "--rename", "mara=twin",
                                     "--rename", "tavern=tavern_b"), 4, "twin",
         setup=_copy_pack),
    Case("pack-rename-onto-existing", (*IMPORT, "--rename", "hero=lantern", "--rename",
                                       "mara=mara_b", "--rename", "tavern=tavern_b"), 4,
         "lantern", setup=_copy_pack),
    # -- valid input: the documented change only --
    Case("pack-import-renamed", (*IMPORT, *ALL_RENAMED), 0, "", setup=_copy_pack,
         change=only_inserts(*NEW_ROWS)),
]


def _two_primaries(manifest: dict[str, Any]) -> None:
    for ref in manifest["references"]:
        if len(ref["images"]) == 1:
            ref["images"].append({**ref["images"][0], "key": "i99"})
            return


def _unused_media(ctx: Ctx, zf: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
    data = p.png_bytes(seed=41)
    sha = hashlib.sha256(data).hexdigest()
    zf.writestr(f"media/{sha}.png", data)
    manifest["media"].append({"sha256": sha, "format": "PNG", "file": f"media/{sha}.png",
                              "bytes": len(data)})


#: Run with REFSTUDIO_HOSTILE=all (see harness.ALL): more variants of the paths above.
EXTENDED = {
    "pack-backslash-path", "pack-bad-date", "pack-bad-kind", "pack-bad-label", "pack-bad-sha",
    "pack-confusable-reference-name", "pack-directory", "pack-dot-segment", "pack-drive-letter",
    "pack-duplicate-manifest", "pack-duplicate-media", "pack-empty", "pack-future-version",
    "pack-library-db", "pack-manifest-list", "pack-manifest-not-json", "pack-manifest-not-utf8",
    "pack-media-unused", "pack-missing", "pack-nested-zip", "pack-no-manifest",
    "pack-png-named-zip", "pack-references-not-list", "pack-rename-malformed",
    "pack-rename-onto-existing", "pack-rename-same-target", "pack-text-as-media",
    "pack-truncated", "pack-two-primaries", "pack-unknown-generation", "pack-version-text",
    "pack-wrong-format", "pack-zip-slip-deep",
}


@pytest.mark.parametrize("case", params(CASES, EXTENDED))
def test_bad_pack(case: Case, base: Base, tmp_path: Path) -> None:
    check(case, base, tmp_path)


def test_following_the_clash_hint_imports_the_pack(base: Base, tmp_path: Path) -> None:
    """A pack whose names clash: the hint's ``--rename`` must work when followed."""
    from refstudio import Studio

    def taken_names(ctx: Ctx) -> None:
        _copy_pack(ctx)
        with Studio.open(ctx.proj) as studio:
            studio.add_reference("mara_2", [base.good_png], kind="character")

    refused = Case("clash", IMPORT, 4, "already has", setup=taken_names)
    check(refused, base, tmp_path / "first")
    ctx = Ctx(proj=tmp_path / "first" / "proj", tmp=tmp_path / "first" / "scratch", base=base)
    res: Result = run_cli(refused, ctx, tmp_path / "first" / "home")
    hint = re.search(r"`refstudio import[^`]*?((?:--rename \S+ ?)+)`|`((?:--rename \S+ ?)+)`",
                     res.stderr)
    assert hint, res.stderr
    renames = (hint.group(1) or hint.group(2)).split()
    follow = Case("follow", (*IMPORT, *renames), 0, "", change=only_inserts(*NEW_ROWS))
    before = snapshot(ctx)
    res = run_cli(follow, ctx, tmp_path / "first" / "home")
    assert_answer(follow, res)
    only_inserts(*NEW_ROWS)(ctx, before, snapshot(ctx))
