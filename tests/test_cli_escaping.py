"""User text the CLI echoes back never reaches the terminal raw.

Escape sequences in a file name, a description or a prompt could clear the screen, retitle the
window, recolour the rest of the session or hide part of a line (``\\r``, bidi overrides). Every
string the CLI prints goes through one console that shows control characters escaped (``\\x1b``),
and error lines also escape newlines, so they stay one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import encode_image, run_cli

from refstudio import Studio

RAW = ("\x1b", "\r", "\x07", "\x9b", "\u202e")


def _no_raw_controls(text: str) -> None:
    for char in RAW:
        assert char not in text, f"raw {char!r} in {text!r}"


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    (tmp_path / "mara.png").write_bytes(encode_image((200, 250), seed=1))
    with Studio.init(tmp_path / "proj") as studio:
        studio.add_reference("mara", [tmp_path / "mara.png"],
                             description="evil\x1b]0;pwned\x07 \x1b[31mred\r\u202eright",
                             tags=["t\x1b[1m"])
    return tmp_path / "proj"


def test_printable_escapes_like_repr() -> None:
    from refstudio.cli._common import printable

    assert (printable("a\x1b[2Jb\r\n\x00\t\x7f\x9b\u202e")
            == "a\\x1b[2Jb\\r\\n\\x00\\t\\x7f\\x9b\\u202e")
    assert printable("line\nnext\tcol\x1b", keep_lines=True) == "line\nnext\tcol\\x1b"
    assert printable("plain «ünïcode» text") == "plain «ünïcode» text"


def test_an_error_echoing_a_path_shows_it_escaped(proj: Path, tmp_path: Path) -> None:
    bad = tmp_path / "x\x1b[2Jy\rz\nw.png"
    done = run_cli("-p", str(proj), "ref", "add", "nora", str(bad))
    assert done.returncode == 5, done.stderr
    _no_raw_controls(done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(done.stderr.splitlines()) <= 2, done.stderr
    assert "x\\x1b[2Jy\\rz\\nw.png" in errors[0]


def test_a_warning_echoing_a_file_name_shows_it_escaped(proj: Path, tmp_path: Path) -> None:
    # A flat grey image draws quality warnings, which name the file.
    from PIL import Image

    flat = tmp_path / "flat\x1b[8m.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(flat)
    done = run_cli("-p", str(proj), "ref", "add", "flat", str(flat))
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr
    _no_raw_controls(done.stderr)
    assert "flat\\x1b[8m.png" in done.stderr


def test_normal_output_shows_stored_text_escaped(proj: Path) -> None:
    for args in (["ref", "show", "mara"], ["ref", "list"]):
        done = run_cli("-p", str(proj), *args)
        assert done.returncode == 0, done.stderr
        _no_raw_controls(done.stdout)
        assert "\\x1b" in done.stdout
    done = run_cli("-p", str(proj), "ref", "show", "mara")
    assert "evil\\x1b]0;pwned\\x07 \\x1b[31mred\\r\\u202eright" in done.stdout


def test_a_prompt_is_echoed_escaped(proj: Path) -> None:
    done = run_cli("-p", str(proj), "render", "@mara \x1b[2Jin the rain", "--provider",
                   "offline")
    assert done.returncode == 0, done.stderr
    _no_raw_controls(done.stdout)
    assert "\\x1b[2Jin the rain" in done.stdout
