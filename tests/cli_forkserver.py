"""A fork server for the tests' ``refstudio`` command runs: a real process per command, without
paying Python's imports each time.

The suite runs the CLI about a thousand times. As ``python -m refstudio`` every run spent ~0.7 s
of CPU importing SQLAlchemy, Pillow, httpx, typer and refstudio, and ~0.4 s more freeing it all
at exit, around ~50-150 ms of work; on a 2-core CI machine that was most of the suite's time.
Here one server process per test worker imports all of that once, then forks a fresh child for
every command: a separate process with its own working directory, environment, stdin, stdout
and stderr (files), resource limits and exit status — what ``subprocess.run`` gives — started
from a state that has run no command yet. Its exit does what a caller can see of an interpreter
exit (threads joined, atexit handlers run, streams flushed) and skips freeing every module.
Nothing of refstudio is patched or called in the test's own process.

Protocol, over a Unix socket: the client sends one length-prefixed JSON request
``{"args", "cwd", "env", "timeout", "stdin", "limits", "prelude", "new_session"}``; the server
forks a handler for the connection; the handler forks the command's process, answers
``{"pid"}``, waits for it (killing it at the timeout) and answers ``{"returncode", "stdout",
"stderr", "timed_out"}`` (outputs base64). Concurrent requests run concurrently. The server
exits when its parent (the test worker) is gone.

``REFSTUDIO_TEST_CLI=subprocess`` makes :func:`run` start plain ``python -m refstudio``
processes instead (tests/test_cli_forkserver.py compares the two).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: What the server imports before its first fork: everything a command may import, so that no
#: child imports anything heavy again (boto3 and psycopg for the S3 and PostgreSQL backends).
PRELOAD = (
    "refstudio.cli", "refstudio.app.studio", "refstudio.storage.database",
    "refstudio.providers.wavespeed.client", "refstudio.providers.runway.client",
    "refstudio.providers.offline", "refstudio.library.packs", "refstudio.gallery",
    "refstudio.workflow.runner", "refstudio.storage.s3store", "refstudio.storage.dbcopy",
    "refstudio.simulator", "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql",
    "psycopg", "boto3", "botocore.client", "PIL.Image", "PIL.PngImagePlugin",
    "PIL.JpegImagePlugin", "PIL.WebPImagePlugin", "rich.table", "httpx", "jinja2.sandbox",
)


# -- the wire: one length-prefixed JSON message each way -------------------------------------

def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    sock.sendall(struct.pack("!I", len(data)) + data)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("the CLI fork server closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _recv(sock: socket.socket) -> dict[str, Any]:
    (size,) = struct.unpack("!I", _recv_exact(sock, 4))
    message: dict[str, Any] = json.loads(_recv_exact(sock, size))
    return message


# -- the server side -------------------------------------------------------------------------

class _RunCommand(BaseException):
    """Raised in a command's process to leave the server's loop: the command then runs at the
    top of the interpreter, with none of the server's frames below it."""

    def __init__(self, request: dict[str, Any], stdin: int, out: int, err: int) -> None:
        super().__init__()
        self.request, self.fds = request, (stdin, out, err)


def _wait(pid: int, timeout: float) -> tuple[int | None, bool]:
    """Wait for child ``pid``: (its wait status, whether it was killed at the timeout)."""
    deadline = time.monotonic() + timeout
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status, False
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                return os.waitpid(pid, 0)[1], True
            if pidfd is not None:
                select.select([pidfd], [], [], left)
            else:  # pragma: no cover - kernels before 5.3
                time.sleep(min(left, 0.005))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _handle(conn: socket.socket) -> None:
    """In the handler process: run one request's command, tell its pid, then answer with its
    outcome. Returns only in the command's own process (by raising :class:`_RunCommand`)."""
    request = _recv(conn)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryFile() as stdin:
        stdin.write(base64.b64decode(request.get("stdin") or ""))
        stdin.seek(0)
        pid = os.fork()
        if pid == 0:
            conn.close()
            raise _RunCommand(request, *(os.dup(f.fileno()) for f in (stdin, out, err)))
        _send(conn, {"pid": pid})
        status, timed_out = _wait(pid, float(request["timeout"]))
        outputs = []
        for stream in (out, err):
            stream.seek(0)
            outputs.append(base64.b64encode(stream.read()).decode())
    returncode = os.waitstatus_to_exitcode(status) if status is not None else -9
    _send(conn, {"returncode": returncode, "stdout": outputs[0], "stderr": outputs[1],
                 "timed_out": timed_out})


def _serve(path: str) -> None:
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(1.0)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # As in a fresh interpreter whatever this server inherited: Ctrl-C raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print("ready", flush=True)
    while os.getppid() == parent:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass  # reap finished handlers
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        if os.fork() == 0:
            listener.close()
            conn.settimeout(None)
            try:
                _handle(conn)
            except _RunCommand:
                raise
            except BaseException:  # the handler must never return into the loop
                os._exit(70)
            os._exit(0)
        conn.close()


def _run_command(command: _RunCommand) -> None:
    """In the command's process, at the top of the interpreter: become ``python -m refstudio
    ARGS`` run in ``cwd`` with ``env``, the request's stdin and resource limits, outputs to
    the given files."""
    import resource
    import runpy

    request = command.request
    if request.get("new_session"):
        os.setsid()  # as Popen(start_new_session=True): the caller may kill the whole group
    for which, value in request.get("limits", ()):
        resource.setrlimit(which, (value, value))
    os.chdir(request["cwd"])
    sys.path.insert(0, os.getcwd())  # as ``python -m`` puts the working directory first
    os.environ.clear()
    os.environ.update(request["env"])
    for target, fd in enumerate(command.fds):
        os.dup2(fd, target)
        os.close(fd)
    if request.get("prelude"):
        exec(request["prelude"], {"__name__": "__prelude__"})
    sys.argv = ["refstudio", *request["args"]]
    try:
        runpy.run_module("refstudio", run_name="__main__", alter_sys=True)
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # uncaught, as the interpreter reports it: a traceback and status 1
        import traceback

        traceback.print_exc()
        code = 1
    os._exit(_exit_like_the_interpreter(code))


def _exit_like_the_interpreter(code: object) -> int:
    """Do what an interpreter exit does that a caller can see (join non-daemon threads, run
    atexit handlers, flush the standard streams) and return the exit status; the rest of the
    teardown (freeing every module: ~0.4 s with SQLAlchemy and boto3 loaded) is left out."""
    import atexit as _atexit

    threading._shutdown()  # type: ignore[attr-defined]  # what Py_FinalizeEx calls first
    _atexit._run_exitfuncs()  # type: ignore[attr-defined]
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return status


def _build_every_command() -> None:
    """Build each command once, so no child imports a command module or what typer needs to
    build one (pydantic, for typer 0.29) again: the root builds a command's module only when
    it runs (refstudio/cli/_lazy.py), so importing refstudio.cli no longer does."""
    import typer.main
    from typer.core import TyperGroup

    import refstudio.cli

    root = typer.main.get_command(refstudio.cli.app)
    assert isinstance(root, TyperGroup)
    ctx = root.make_context("refstudio", [], resilient_parsing=True)  # parses, runs nothing
    for name in root.list_commands(ctx):
        root.get_command(ctx, name)


def _server_main() -> None:
    import importlib

    sys.path.pop(0)  # this script's folder (tests/): nothing there may shadow what commands import
    for name in PRELOAD:
        importlib.import_module(name)
    _build_every_command()
    try:
        _serve(sys.argv[1])
    except _RunCommand as command:
        _run_command(command)


# -- the client side -------------------------------------------------------------------------

class Command:
    """A command running in a process forked by the server."""

    def __init__(self, sock: socket.socket, args: list[str], timeout: float) -> None:
        self._sock, self.args, self.timeout = sock, args, timeout
        #: The command's process id (to send it signals, or read its /proc entry).
        self.pid = int(_recv(sock)["pid"])

    def wait(self, poll: float | None = None) -> tuple[int, bytes, bytes] | None:
        """(exit status, stdout, stderr); None if it is still running after ``poll`` seconds.
        Raises :class:`subprocess.TimeoutExpired` when the server killed it at the timeout."""
        self._sock.settimeout(poll)
        try:
            answer = _recv(self._sock)
        except TimeoutError:
            return None
        self._sock.close()
        if answer["timed_out"]:
            raise subprocess.TimeoutExpired(["refstudio", *self.args], self.timeout)
        return (int(answer["returncode"]), base64.b64decode(answer["stdout"]),
                base64.b64decode(answer["stderr"]))


class ForkServer:
    """This test process's server (started on first use, stopped when the process exits)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._dir = ""

    def _path(self) -> str:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._dir = tempfile.mkdtemp(prefix="rs-cli-")
                path = os.path.join(self._dir, "socket")
                env = {k: v for k, v in os.environ.items()
                       if not k.startswith(("REFSTUDIO_", "WAVESPEED_", "RUNWAYML_", "AWS_"))}
                self._proc = subprocess.Popen(
                    [sys.executable, __file__, path], stdout=subprocess.PIPE, text=True,
                    stdin=subprocess.DEVNULL, env=env, cwd=self._dir,
                    # Its own session: a test's Ctrl-C (SIGINT to the process group) is for the
                    # command it sends, not for the server.
                    start_new_session=True)
                assert self._proc.stdout is not None
                if self._proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("the CLI fork server did not start")
                atexit.register(self.stop)
            return os.path.join(self._dir, "socket")

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                self._proc.wait(10)
            if self._proc.stdout is not None:
                self._proc.stdout.close()

    def start(self, args: list[str], cwd: str, env: dict[str, str], timeout: float, *,
              stdin: bytes = b"", limits: tuple[tuple[int, int], ...] = (),
              prelude: str = "", new_session: bool = False) -> Command:
        """Start ``refstudio ARGS``; ``prelude`` is Python run in its process first."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self._path())
            _send(sock, {"args": args, "cwd": cwd, "env": env, "timeout": timeout,
                         "stdin": base64.b64encode(stdin).decode(), "limits": limits,
                         "prelude": prelude, "new_session": new_session})
            return Command(sock, args, timeout)
        except BaseException:
            sock.close()
            raise


#: This test process's fork server.
SERVER = ForkServer()
#: Read at import: the tests' autouse fixture clears REFSTUDIO_* from each test's environment.
PLAIN_SUBPROCESS = os.environ.get("REFSTUDIO_TEST_CLI") == "subprocess"


def _text(data: bytes) -> str:
    """As ``subprocess.run(text=True)`` decodes: the locale's encoding, universal newlines."""
    import locale

    text = data.decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def run(args: list[str], cwd: Path | str | None, env: dict[str, str], timeout: float,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([python, -m, refstudio, *args], input=input, capture_output=True,
    text=True)``, stdin empty without ``input``."""
    argv = [sys.executable, "-m", "refstudio", *args]
    if PLAIN_SUBPROCESS:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, input=input or "")
    stdin = (input or "").encode()
    done = SERVER.start(list(args), str(cwd or os.getcwd()), env, timeout, stdin=stdin).wait()
    assert done is not None
    code, out, err = done
    return subprocess.CompletedProcess(argv, code, _text(out), _text(err))


if __name__ == "__main__":
    _server_main()
