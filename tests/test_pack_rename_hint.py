"""The name-clash hint of ``refstudio import`` gives ``--rename`` options that work as given.

It used to suggest ``--rename NAME=NAME_2`` by the clashing name: after a rename that clashed
(``--rename mara=mara_2`` with @mara_2 already there) it suggested ``--rename mara_2=mara_2_2``,
which fails because the pack has no reference called mara_2; and it suggested names that were
themselves taken. Each hint here is copied from stderr and run, as a user would.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from conftest import ImageMaker, run_cli


def _hint_options(stderr: str) -> list[str]:
    found = re.search(r"`(--rename [^`]*)`", stderr)
    assert found is not None, stderr
    return shlex.split(found.group(1))


def _names(root: Path) -> set[str]:
    done = run_cli("-p", str(root), "ref", "list", "--json")
    assert done.returncode == 0, done.stderr
    return {r["name"] for r in json.loads(done.stdout)}


def test_the_suggested_renames_import_the_pack(tmp_path: Path, make_image: ImageMaker) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("init", str(a)).returncode == 0
    assert run_cli("init", str(b)).returncode == 0
    for name, seed in (("mara", 1), ("tavern", 2)):
        image = make_image(tmp_path / f"{name}.png", seed=seed)
        assert run_cli("-p", str(a), "ref", "add", name, str(image)).returncode == 0
    pack = tmp_path / "pack.zip"
    assert run_cli("-p", str(a), "export", "mara", "tavern", "--out", str(pack)).returncode == 0
    assert run_cli("-p", str(b), "import", str(pack)).returncode == 0

    # A plain import again clashes; the hint's options work, and the next hint picks new names.
    seen: list[set[str]] = []
    for _ in range(2):
        done = run_cli("-p", str(b), "import", str(pack))
        assert done.returncode == 4 and "Traceback" not in done.stderr, done.stderr
        options = _hint_options(done.stderr)
        assert run_cli("-p", str(b), "import", str(pack), *options).returncode == 0
        seen.append(_names(b))
    assert seen[0] == {"mara", "tavern", "mara_2", "tavern_2"}
    assert seen[1] == seen[0] | {"mara_3", "tavern_3"}

    # A rename that clashes: the hint renames by the pack's name, to a free name, and keeps the
    # user's other rename.
    image = make_image(tmp_path / "x.png", seed=3)
    assert run_cli("-p", str(b), "ref", "add", "mara_4", str(image)).returncode == 0
    done = run_cli("-p", str(b), "import", str(pack), "--rename", "mara=mara_3",
                   "--rename", "tavern=pub")
    assert done.returncode == 4, done.stderr
    options = _hint_options(done.stderr)
    assert options == ["--rename", "tavern=pub", "--rename", "mara=mara_5"], done.stderr
    done = run_cli("-p", str(b), "import", str(pack), *options)
    assert done.returncode == 0, done.stderr
    assert {"pub", "mara_5"} <= _names(b)


def test_a_long_name_is_cut_to_the_name_rule(tmp_path: Path, make_image: ImageMaker) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("init", str(a)).returncode == 0
    assert run_cli("init", str(b)).returncode == 0
    image = make_image(tmp_path / "long.png", seed=4)
    assert run_cli("-p", str(a), "ref", "add", "sixteen_chars_xy", str(image)).returncode == 0
    pack = tmp_path / "pack.zip"
    assert run_cli("-p", str(a), "export", "sixteen_chars_xy", "--out", str(pack)).returncode == 0
    assert run_cli("-p", str(b), "import", str(pack)).returncode == 0
    done = run_cli("-p", str(b), "import", str(pack))
    options = _hint_options(done.stderr)
    assert options == ["--rename", "sixteen_chars_xy=sixteen_chars_2"]
    assert run_cli("-p", str(b), "import", str(pack), *options).returncode == 0
