"""Output paths: never over a file without ``--force``, never over the project's own files."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import plant as p
from .harness import Base, Case, check, new_scratch_file, params, replaced_scratch_file

PRECIOUS = "my precious data, not a zip\n"

_precious = p.write("existing.zip", PRECIOUS)
_precious_png = p.write("existing.png", PRECIOUS)


def export(cid: str, out: str, *extra: str, code: int | tuple[int, ...] = 4,
           pattern: str = "", **kw: object) -> Case:
    return Case(f"export-{cid}", ("export", "mara", "--out", out, *extra), code, pattern,
                **kw)  # type: ignore[arg-type]


def image(cid: str, out: str, *extra: str, code: int | tuple[int, ...] = 4,
          pattern: str = "", **kw: object) -> Case:
    return Case(f"export-image-{cid}", ("export-image", "1:0", "--out", out, *extra), code,
                pattern, **kw)  # type: ignore[arg-type]


CASES = [
    # -- the project's own files: refused even with --force --
    export("onto-library-db", "library.db", pattern="library.db"),
    export("onto-library-db-forced", "library.db", "--force", pattern="library.db"),
    export("onto-library-db-absolute", "%PROJ%/library.db", pattern="library.db"),
    export("onto-library-db-dotted", "%PROJ%/media/../library.db", pattern="library.db"),
    export("onto-wal", "library.db-wal", pattern="library.db-wal"),
    export("onto-shm", "library.db-shm", "--force", pattern="library.db-shm"),
    export("onto-config", "refstudio.toml", pattern="refstudio.toml"),
    export("onto-config-forced", "refstudio.toml", "--force", pattern="refstudio.toml"),
    export("onto-media-file", "%PROJ%/%MEDIA%", pattern="media", setup=p.media(0)),
    export("into-media", "media/new.zip", "--force", pattern="media"),
    export("through-link-to-db", "%TMP%/link.zip", "--force", pattern="library.db",
           setup=p.symlink("link.zip", "%PROJ%/library.db")),
    # -- the user's own files: refused without --force, replaced with it --
    export("onto-existing", "%TMP%/existing.zip", pattern="existing.zip|--force",
           setup=_precious),
    export("onto-existing-fifo", "%TMP%/pipe.zip", pattern="pipe.zip",
           setup=p.fifo("pipe.zip")),
    export("onto-existing-forced", "%TMP%/existing.zip", "--force", code=0, setup=_precious,
           change=replaced_scratch_file("existing.zip", b"PK")),
    export("onto-folder", "%TMP%", pattern="folder"),
    export("new-file", "%TMP%/new.zip", code=0, change=new_scratch_file("new.zip", b"PK")),
    Case("export-unknown-ref", ("export", "nobody", "--out", "%TMP%/x.zip"), 6, "nobody"),
    Case("export-no-names", ("export", "--out", "%TMP%/x.zip"), (2, 4), "names"),
    # -- export-image --
    image("onto-existing", "%TMP%/existing.png", pattern="existing.png|--force",
          setup=_precious_png),
    image("onto-existing-forced", "%TMP%/existing.png", "--force", code=0,
          setup=_precious_png, change=replaced_scratch_file("existing.png", b"\x89PNG")),
    image("onto-library-db", "library.db", pattern="library.db"),
    image("onto-config-forced", "refstudio.toml", "--force", pattern="refstudio.toml"),
    image("onto-its-own-media", "%PROJ%/%MEDIA%", "--force", pattern="media",
          setup=p.media(0)),
    image("onto-folder", "%TMP%", pattern="folder|directory|png"),
    image("new-file", "%TMP%/new.png", code=0, change=new_scratch_file("new.png", b"\x89PNG")),
    # -- gallery --
    Case("gallery-into-media", ("gallery", "--out", "%PROJ%/media"), 4, "media"),
    Case("gallery-onto-db", ("gallery", "--out", "library.db"), (4, 13), "library.db"),
    Case("gallery-onto-user-file", ("gallery", "--out", "%TMP%/existing.zip"), (4, 13),
         "existing.zip", setup=_precious),
]


#: Run with REFSTUDIO_HOSTILE=all (see harness.ALL): more variants of the paths above.
EXTENDED = {
    "export-image-new-file", "export-image-onto-config-forced", "export-image-onto-folder",
    "export-image-onto-library-db", "export-no-names", "export-onto-config-forced",
    "export-onto-folder", "export-onto-library-db-absolute", "export-onto-library-db-dotted",
    "export-onto-shm", "gallery-onto-user-file",
}


@pytest.mark.parametrize("case", params(CASES, EXTENDED))
def test_bad_output_path(case: Case, base: Base, tmp_path: Path) -> None:
    check(case, base, tmp_path)
