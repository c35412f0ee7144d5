"""``refstudio serve`` as a user starts it: a real process, the address it prints, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import run_cli

from refstudio import Studio


def _serve(root: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAVESPEED_", "REFSTUDIO_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "refstudio", "-p", str(root), "serve", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_serve_prints_its_address_answers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    Studio.init(tmp_path / "proj").close()
    process = _serve(tmp_path / "proj", "--port", "0")
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            match = re.match(r"open (http://127\.0\.0\.1:\d+/)$", line.strip())
            url = match.group(1) if match else None
        assert url, "no address printed"
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "Library" in page.text
        # An open event stream must not hold the shutdown up.
        with httpx.stream("GET", url + "events/generations?ids=999", timeout=10) as stream:
            assert stream.status_code == 200
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_serve_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    outside = run_cli("serve", "--port", "0", cwd=tmp_path)
    assert outside.returncode == 3 and outside.stderr.startswith("error:")
    Studio.init(tmp_path / "proj").close()
    bad_port = run_cli("-p", str(tmp_path / "proj"), "serve", "--port", "70000")
    assert bad_port.returncode == 2 and "Traceback" not in bad_port.stderr
