"""The README's two commands: the test command is what `.ci/run` runs, and the demo command's
main job (`refstudio demo DIR`) works.

The test does not create a virtual environment or run `pip install`: CI does that, running the
second command itself in a fresh venv (`.ci/run`), so that command is executed on every CI run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text("utf-8")
    blocks = re.findall(r"^```(?:bash|sh|console)?\n(.*?)^```", text, re.S | re.M)
    return [b.strip() for b in blocks if b.strip().startswith("python3 -m venv")]


def parts(command: str) -> list[str]:
    return [p.strip() for p in command.split("&&")]


def test_the_readme_has_the_two_commands() -> None:
    demo, tests = readme_commands()
    assert parts(demo)[-1].startswith("refstudio demo")
    assert parts(tests)[-1] == "pytest"
    for command in (demo, tests):
        assert parts(command)[:2] == ["python3 -m venv .venv", ". .venv/bin/activate"]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, tests = readme_commands()
    script = (REPO / ".ci" / "run").read_text("utf-8").splitlines()
    lines = [line.strip() for line in script if line.strip() and not line.startswith("#")]
    venv, activate, *rest = parts(tests)
    assert venv in lines and activate in lines
    assert " && ".join(rest) in lines  # `pip install -e '.[test]' && pytest`, as one line
    assert lines.index(venv) < lines.index(activate) < lines.index(" && ".join(rest))


def test_the_demo_command_runs(tmp_path: Path) -> None:
    demo, _ = readme_commands()
    main = shlex.split(parts(demo)[-1])
    assert main[:2] == ["refstudio", "demo"]
    target = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAVESPEED_", "REFSTUDIO_"))}
    # `refstudio` is the console script of the installed package; `python -m refstudio` is the
    # same entry point in this interpreter's environment.
    done = subprocess.run(
        [sys.executable, "-m", "refstudio", *main[1:], str(target)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert str(target) in done.stdout
    assert re.search(r"simulator: \d+ paid submits", done.stdout), done.stdout
    assert (target / "library.db").is_file() and any((target / "media").rglob("*.png"))
