"""The tests' CLI runs (tests/cli_forkserver.py) answer as a fresh ``python -m refstudio`` does:
same output, exit status, stdin, environment and limits, and nothing carried between runs."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import cli_forkserver
import pytest
from conftest import run_cli


def _fresh_interpreter(*args: str, cwd: Path, input: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "refstudio", *args], cwd=cwd, env=env,
                          input=input, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [
    ("--help",),
    ("ref", "list"),  # no project here: exit 3 with one error line
    ("gen", "@nobody", "--resolution", "9000p"),  # a usage error from click: exit 2
    ("models",),
])
def test_the_same_answer_as_a_fresh_interpreter(tmp_path: Path, args: tuple[str, ...]) -> None:
    forked = run_cli(*args, cwd=tmp_path)
    fresh = _fresh_interpreter(*args, cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode, fresh.stdout, fresh.stderr)
    assert forked.args == fresh.args


def test_stdin_environment_and_working_folder_are_the_commands_own(tmp_path: Path) -> None:
    init = run_cli("init", "p", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "p" / "refstudio.toml").is_file()
    # Piped stdin is not a terminal: `config set-key` reads the key from it.
    saved = run_cli("config", "set-key", input="sk-from-stdin\n")
    assert saved.returncode == 0, saved.stderr
    refused = run_cli("config", "set-key")  # empty stdin: refused as a usage error
    assert refused.returncode == 2 and refused.stderr.startswith("error:")
    # The environment is the request's: the project named by REFSTUDIO_PROJECT is found from
    # anywhere, and is not found by the next run without it.
    named = run_cli("ref", "list", "--json", cwd="/", env={
        "REFSTUDIO_PROJECT": str(tmp_path / "p")})
    assert named.returncode == 0 and named.stdout.strip() == "[]", named.stderr
    assert run_cli("ref", "list", cwd="/").returncode == 3


def test_a_command_past_its_timeout_is_killed(tmp_path: Path) -> None:
    command = cli_forkserver.SERVER.start(["--help"], str(tmp_path), dict(os.environ),
                                          timeout=1.0, prelude="import time\ntime.sleep(60)\n")
    assert command.wait(poll=0.2) is None  # still running
    with pytest.raises(subprocess.TimeoutExpired):
        command.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(command.pid, 0)


def test_limits_and_a_prelude_apply_to_the_command_alone(tmp_path: Path) -> None:
    prelude = "import resource\nprint(resource.getrlimit(resource.RLIMIT_FSIZE)[0])\n"
    command = cli_forkserver.SERVER.start(
        ["--help"], str(tmp_path), dict(os.environ), 60,
        limits=((resource.RLIMIT_FSIZE, 12345),), prelude=prelude, new_session=True)
    done = command.wait()
    assert done is not None
    code, out, _ = done
    assert code == 0 and out.decode().splitlines()[0] == "12345"
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] != 12345
