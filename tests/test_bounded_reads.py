"""Paths that are not ordinary files never hang refstudio or fill its memory.

Every file a user names (images, packs, exported PNGs, workflow files, templates, variables files,
``refstudio.toml``) is opened without blocking, must be a regular file (checked on the opened
descriptor), and is read up to its size limit plus one byte. ``/dev/zero``, a FIFO, a folder, a
socket or a huge file gets one ``error:`` line and a documented exit code.

Each command runs in a subprocess with a memory ceiling and a timeout, so the old behaviour
(reading ``/dev/zero`` until memory runs out, waiting forever on a FIFO) fails the test instead
of taking the machine down.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import encode_image, snapshot_project

from refstudio import Studio

pytestmark = pytest.mark.skipif(not Path("/dev/zero").exists() or not hasattr(os, "mkfifo"),
                                reason="needs /dev/zero and FIFOs (POSIX)")

MEMORY_CEILING = 1_500_000_000  # bytes of address space; refstudio needs a few hundred MB
TIMEOUT = 60.0


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CEILING, MEMORY_CEILING))


def run_limited(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m refstudio ARGS`` (or ``python -c CODE`` when args[0] == "-c") under a memory
    ceiling; a hang fails the test after TIMEOUT seconds."""
    command = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "refstudio",
                                                                *args]
    env = {**os.environ, "COLUMNS": "200", "REFSTUDIO_NO_PROGRESS": "1",
           # Each thread's malloc arena reserves address space; keep the ceiling about memory.
           "MALLOC_ARENA_MAX": "2"}
    try:
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(args)}` hung for {TIMEOUT:.0f}s")


def _one_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "mara.png").write_bytes(encode_image((200, 250), seed=1))
    with Studio.init(tmp_path / "proj") as studio:
        studio.add_reference("mara", [tmp_path / "mara.png"])
    (tmp_path / "proj" / "sources").mkdir()
    yield tmp_path / "proj"


def _special(kind: str, where: Path) -> Path:
    """A path that is not an ordinary, reasonably sized file."""
    if kind == "dev-zero":
        where.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(where)
    elif kind == "folder":
        where.mkdir()
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(where))
        sock.close()  # the socket file stays
    elif kind == "huge":
        with open(where, "wb") as fh:  # sparse: costs no disk
            fh.truncate(3_000_000_000)
    else:  # pragma: no cover
        raise ValueError(kind)
    return where


KINDS = ["dev-zero", "fifo", "folder", "socket", "huge"]


@pytest.mark.parametrize("kind", KINDS)
def test_ref_add_refuses_what_is_not_an_image_file(proj: Path, kind: str) -> None:
    bad = _special(kind, proj.parent / f"bad-{kind}.png")
    before = snapshot_project(proj)
    line = _one_error(run_limited("-p", str(proj), "ref", "add", "nora", str(bad)), 5)
    assert str(bad) in line
    assert snapshot_project(proj) == before


def test_dev_zero_itself_is_refused(proj: Path) -> None:
    line = _one_error(run_limited("-p", str(proj), "ref", "image", "add", "mara", "/dev/zero"), 5)
    assert "/dev/zero" in line and "device" in line


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge"])
def test_a_workflow_image_that_is_not_a_file_is_refused(proj: Path, kind: str) -> None:
    _special(kind, proj / "sources" / "nora.png")
    (proj / "workflows" / "wf.toml").write_text(
        '[refs.nora]\nimages = ["../sources/nora.png"]\n\n'
        '[[step]]\nid = "a"\nprompt = "@nora at dawn"\n'
    )
    before = snapshot_project(proj)
    # --allow-outside: /dev/zero is outside the project; this is about how it is read.
    done = run_limited("-p", str(proj), "run", "wf", "--provider", "offline", "--allow-outside")
    _one_error(done, 5)
    assert snapshot_project(proj) == before


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge"])
def test_the_python_api_refuses_the_same_paths(proj: Path, kind: str) -> None:
    bad = _special(kind, proj.parent / f"api-{kind}.png")
    code = (
        "from refstudio import Studio, ImageError\n"
        f"s = Studio.open({str(proj)!r})\n"
        "try:\n"
        f"    s.add_reference('nora', [{str(bad)!r}])\n"
        "except ImageError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = run_limited("-c", code)
    assert done.returncode == 0 and done.stdout.startswith("refused:"), done.stderr


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge"])
def test_a_workflow_file_that_is_not_a_file_is_refused(proj: Path, kind: str) -> None:
    bad = _special(kind, proj / "workflows" / "odd.toml")
    code = (
        "from refstudio import WorkflowError\n"
        "from refstudio.workflow import load_workflow\n"
        "try:\n"
        f"    load_workflow({str(bad)!r})\n"
        "except WorkflowError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = run_limited("-c", code)
    assert done.returncode == 0 and done.stdout.startswith("refused:"), done.stderr


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge"])
def test_a_template_that_is_not_a_file_is_refused(proj: Path, kind: str) -> None:
    _special(kind, proj / "templates" / "odd.j2")
    done = run_limited("-p", str(proj), "render", "--template", "odd", "--provider", "offline")
    line = _one_error(done, 7)
    assert "odd.j2" in line


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge"])
def test_a_variables_file_that_is_not_a_file_is_refused(proj: Path, kind: str) -> None:
    bad = _special(kind, proj.parent / "vars.toml")
    done = run_limited("-p", str(proj), "render", "@mara", "--vars", str(bad),
                       "--provider", "offline")
    _one_error(done, 4)


def test_a_huge_refstudio_toml_is_refused(proj: Path) -> None:
    config = proj / "refstudio.toml"
    config.unlink()
    _special("huge", config)
    done = run_limited("-p", str(proj), "ref", "list")
    line = _one_error(done, 3)
    assert "refstudio.toml" in line


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_a_pack_that_is_not_a_file_is_refused(proj: Path, kind: str) -> None:
    bad = _special(kind, proj.parent / "pack.zip")
    before = snapshot_project(proj)
    _one_error(run_limited("-p", str(proj), "import", str(bad)), 4)
    assert snapshot_project(proj) == before


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_inspect_refuses_what_is_not_a_file(tmp_path: Path, kind: str) -> None:
    bad = _special(kind, tmp_path / "scene.png")
    _one_error(run_limited("inspect", str(bad)), 4)
