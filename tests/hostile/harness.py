"""The machinery of the hostile suite: a case, a run of the real CLI, and the checks.

A :class:`Case` is data: an id, a setup that plants the bad input, the CLI arguments, and what
must come out (exit code and a pattern for the ``error:`` line). :func:`check` copies the base
project, runs ``python -m refstudio`` in a subprocess and asserts the rules every bad input
obeys:

- the documented exit code; no ``Traceback`` on stdout or stderr; no hang (a timeout);
- exactly one ``error:`` line on stderr, at most one indented hint line after it, and no raw
  control characters echoed back;
- the project exactly as before: the SQL dump of ``library.db``, and the sha256 of every other
  file (``media/`` included) — plus every file of the case's scratch folder, where the user's
  own inputs and named outputs live;
- nothing submitted to the suite's WaveSpeed simulator (for cases that run with a key).

Cases whose input is valid (``--force`` onto a file that is not the project's) pass a ``change``
that checks the documented change and nothing else.

Arguments may name ``%PROJ%`` (the project), ``%TMP%`` (the scratch folder) and any key a
setup stored in ``ctx.values`` (``%PACK%``, ``%MEDIA0%``, ...).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cli_forkserver
import pytest

#: The key cases with ``key=True`` run with, against the suite's simulator.
KEY = "sk-hostile-suite"
#: Run as root, the suite drops the capabilities that let root ignore file permissions
#: (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the bounding set before the CLI runs, so a
#: ``chmod 000`` file or a read-only folder binds as it would for any user.
DROP_DAC_CODE = (
    "import ctypes\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "for cap in (1, 2):\n"
    "    if libc.prctl(24, cap, 0, 0, 0) != 0:\n"
    "        raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP)')\n"
    # The bounding set binds from the next exec on; a forked CLI (tests/cli_forkserver.py)
    # execs nothing, so the two also leave this process's effective and permitted sets
    # (capget/capset, _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set).
    "header = (ctypes.c_uint32 * 2)(0x20080522, 0)\n"
    "sets = (ctypes.c_uint32 * 6)()\n"
    "if libc.capget(header, sets) != 0:\n"
    "    raise OSError(ctypes.get_errno(), 'capget')\n"
    "sets[0] &= ~0b110; sets[1] &= ~0b110\n"
    "if libc.capset(header, sets) != 0:\n"
    "    raise OSError(ctypes.get_errno(), 'capset')\n"
)
#: After the prelude, a fresh interpreter becomes the real CLI.
EXEC_ARGV = "import os, sys\nos.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
#: Address space of a case's process: enough for any command, and a runaway read (``/dev/zero``)
#: fails in about a second instead of eating the machine.
ADDRESS_SPACE = 1024**3
#: Files of the project compared through the SQL dump rather than their bytes.
DB_FILES = ("library.db", "library.db-wal", "library.db-shm", "library.db-journal")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x9b]")
_ERROR_LINE = re.compile(r"^\s*error:", re.IGNORECASE)


@dataclass(frozen=True)
class Base:
    """The project every case starts from (built once per session, copied per case)."""

    template: Path
    #: A valid pack of @mara (with its lineage), exported from the base project.
    pack: Path
    #: Project-relative paths of the media files, in a stable order.
    media: tuple[str, ...]
    #: A completed generation (one output, ``1:0``) and a failed one.
    gen_done: int
    gen_failed: int
    #: Good image files outside any project, to feed commands.
    good_png: Path
    good_jpeg: Path
    sim_url: str
    sim_stats: Callable[[], dict[str, Any]]


@dataclass
class Ctx:
    """What a case's setup and its change check see."""

    proj: Path
    tmp: Path
    base: Base
    values: dict[str, str] = field(default_factory=dict)
    #: Extra environment for the command (setups may add to it).
    env: dict[str, str] = field(default_factory=dict)

    def sub(self, arg: str) -> str:
        """Fill ``%PROJ%``, ``%TMP%`` and the setup's ``%KEY%`` placeholders."""
        table = {"PROJ": str(self.proj), "TMP": str(self.tmp), **self.values}
        return re.sub(r"%([A-Z0-9_]+)%", lambda m: table.get(m.group(1), m.group(0)), arg)


@dataclass(frozen=True)
class Snapshot:
    db: tuple[str, ...]
    files: dict[str, str]
    scratch: dict[str, str]


Setup = Callable[[Ctx], None]
Change = Callable[[Ctx, Snapshot, Snapshot], None]


@dataclass(frozen=True)
class Case:
    """One bad input and what refstudio must answer."""

    id: str
    argv: tuple[str, ...]
    #: The documented exit code (a tuple where the fix may reasonably pick either).
    code: int | tuple[int, ...]
    #: Searched (case-insensitively) in the ``error:`` line; for exit 0, in all of stderr.
    pattern: str = ""
    setup: Setup | None = None
    #: Behaviour broken today: the case is an expected failure until the fix is merged.
    needs_fix: str | None = None
    #: For valid input: checks the documented change. None: nothing may change.
    change: Change | None = None
    #: Run with an API key against the suite's simulator (else: no key, offline provider).
    key: bool = False
    #: Run in the scratch folder instead of the project.
    in_tmp: bool = False
    #: Run without root's power over file permissions (the suite may run as root).
    unprivileged: bool = False
    #: Extra resource limits of the process, e.g. ``((resource.RLIMIT_FSIZE, 1 << 20),)``.
    limits: tuple[tuple[int, int], ...] = ()
    timeout: float = 30.0
    stdin: str | None = None
    #: Run the project from a small tmpfs of this many spare bytes (a full disk); root only.
    tmpfs_spare: int | None = None

    def param(self) -> Any:
        marks = [pytest.mark.needs_fix(self.needs_fix)] if self.needs_fix else []
        return pytest.param(self, id=self.id, marks=marks)


#: ``REFSTUDIO_HOSTILE=all`` also runs the extended corpus: more variants of paths the standing
#: cases already cover (each case costs a CLI start, ~0.5 s of CPU; the standing suite must stay
#: near a minute on two cores).
ALL = os.environ.get("REFSTUDIO_HOSTILE", "") == "all"


def params(cases: Sequence[Case], extended: Iterable[str] = ()) -> list[Any]:
    """pytest params of the standing cases (and of the ``extended`` ids too with ALL)."""
    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"duplicate case ids: {sorted(dupes)}"
    more = set(extended)
    assert more <= set(ids), f"unknown extended ids: {sorted(more - set(ids))}"
    return [c.param() for c in cases if ALL or c.id not in more]


def standing(cases: Sequence[Case], extended: Iterable[str]) -> list[Case]:
    more = set(extended)
    return [c for c in cases if c.id not in more]


# -- snapshots ----------------------------------------------------------------------------------


def tree_digest(root: Path, skip: Iterable[str] = ()) -> dict[str, str]:
    """path -> sha256 (files), or what the entry is (folders, links, FIFOs, devices).

    Never follows links and never opens anything but regular files, so a FIFO or a link loop
    planted by a case is recorded, not read.
    """
    skipped = set(skip)
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if rel in skipped:
                continue
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = f"file {digest} {mode:o}"
            elif stat.S_ISLNK(info.st_mode):
                out[rel] = f"link {os.readlink(path)}"
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = f"dir {mode:o}"
            elif stat.S_ISFIFO(info.st_mode):
                out[rel] = "fifo"
            else:
                out[rel] = f"other {info.st_mode:o}"
    return out


def db_dump(proj: Path) -> tuple[str, ...]:
    """The SQL dump of the project's database, read from a copy (the project is not touched)."""
    db = proj / "library.db"
    if not db.exists() and not db.is_symlink():
        return ("<missing>",)
    if not db.is_file():
        return ("<not a regular file>",)
    with tempfile.TemporaryDirectory(prefix="hostile-dump-") as scratch:
        copy = Path(scratch) / "library.db"
        shutil.copyfile(db, copy)
        if (proj / "library.db-wal").is_file():
            shutil.copyfile(proj / "library.db-wal", Path(scratch) / "library.db-wal")
        try:
            conn = sqlite3.connect(copy)
            try:
                return tuple(conn.iterdump())
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            return (f"<not a database: {exc}>", hashlib.sha256(db.read_bytes()).hexdigest())


def snapshot(ctx: Ctx) -> Snapshot:
    return Snapshot(
        db=db_dump(ctx.proj),
        files=tree_digest(ctx.proj, skip=DB_FILES),
        scratch=tree_digest(ctx.tmp),
    )


def assert_unchanged(before: Snapshot, after: Snapshot) -> None:
    assert after.files == before.files, _diff("project files", before.files, after.files)
    assert after.scratch == before.scratch, _diff("scratch files", before.scratch, after.scratch)
    if after.db != before.db:
        gone = [line for line in before.db if line not in set(after.db)][:5]
        new = [line for line in after.db if line not in set(before.db)][:5]
        pytest.fail(f"library.db changed: removed {gone}, added {new}")


def _diff(what: str, before: dict[str, str], after: dict[str, str]) -> str:
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    return (f"{what} changed: added {sorted(after.keys() - before.keys())}, removed "
            f"{sorted(before.keys() - after.keys())}, changed {changed}")


# -- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str
    #: Why the process was killed, or empty.
    hung: str


def run_cli(case: Case, ctx: Ctx, home: Path) -> Result:
    """``python -m refstudio ARGV`` with the suite's isolated environment and limits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAVESPEED_", "REFSTUDIO_"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), COLUMNS="200",
               REFSTUDIO_NO_PROGRESS="1")
    if case.key:
        env.update(WAVESPEED_API_KEY=KEY, WAVESPEED_BASE_URL=ctx.base.sim_url)
    env.update(ctx.env)
    args = [ctx.sub(a) for a in case.argv]
    if case.unprivileged and os.geteuid() == 0 and not _can_drop_dac():
        pytest.skip("running as root without CAP_SETPCAP: file permissions cannot bind")
    prelude = DROP_DAC_CODE if case.unprivileged and os.geteuid() == 0 else ""
    cwd = ctx.tmp if case.in_tmp else ctx.proj
    stdin = case.stdin.encode() if case.stdin is not None else b""
    if cli_forkserver.PLAIN_SUBPROCESS:
        return _run_in_new_interpreter(case, args, cwd, env, prelude, stdin)
    command = cli_forkserver.SERVER.start(
        args, str(cwd), env, case.timeout + 60, stdin=stdin, new_session=True,
        limits=((resource.RLIMIT_AS, ADDRESS_SPACE), *case.limits), prelude=prelude)
    hung = ""
    deadline = time.monotonic() + case.timeout
    blocked = 0
    while (done := command.wait(poll=0.25)) is None:
        # Blocked opening a FIFO nobody writes: that is a hang, no need to wait it out.
        blocked = blocked + 1 if _waiting_for_fifo(command.pid) else 0
        if blocked >= 4 or time.monotonic() > deadline:
            hung = ("blocked opening a FIFO" if blocked >= 4
                    else f"still running after {case.timeout:.0f} s")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(command.pid, signal.SIGKILL)
    code, out, err = done
    return Result(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), hung)


def _run_in_new_interpreter(case: Case, args: list[str], cwd: Path, env: dict[str, str],
                            prelude: str, stdin: bytes) -> Result:
    """The same as a fresh ``python -m refstudio`` (REFSTUDIO_TEST_CLI=subprocess)."""
    argv = [sys.executable, "-m", "refstudio", *args]
    if prelude:
        argv[1:1] = ["-c", prelude + EXEC_ARGV]
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env,
        stdin=subprocess.PIPE if case.stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    # Limits set from outside (no preexec_fn: the suite has threads); the child spends far
    # longer than this importing before it could read anything.
    for which, value in ((resource.RLIMIT_AS, ADDRESS_SPACE), *case.limits):
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
            resource.prlimit(proc.pid, which, (value, value))
    hung = ""
    deadline = time.monotonic() + case.timeout
    data: bytes | None = stdin if case.stdin is not None else None
    blocked = 0
    while True:
        try:
            out, err = proc.communicate(input=data, timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            data = None  # communicate() sends the input once
            blocked = blocked + 1 if _waiting_for_fifo(proc.pid) else 0
            if blocked >= 4 or time.monotonic() > deadline:
                hung = ("blocked opening a FIFO" if blocked >= 4
                        else f"still running after {case.timeout:.0f} s")
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
                break
    return Result(proc.returncode, out.decode("utf-8", "replace"),
                  err.decode("utf-8", "replace"), hung)


@functools.lru_cache(maxsize=1)
def _can_drop_dac() -> bool:
    done = subprocess.run([sys.executable, "-c", DROP_DAC_CODE + EXEC_ARGV, "-c", "pass"],
                          capture_output=True)
    return done.returncode == 0


def _waiting_for_fifo(pid: int) -> bool:
    """Whether a thread of ``pid`` sleeps in the kernel's FIFO open (Linux only)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/wchan") as fh:
                if fh.read().strip() == "wait_for_partner":
                    return True
        except OSError:
            continue
    return False


def assert_answer(case: Case, res: Result) -> None:
    """The rules of the CLI's answer to a bad input."""
    shown = f"exit {res.code}\n--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-3000:]}"
    assert not res.hung, f"hung ({res.hung}) and was killed\n{shown}"
    assert "Traceback" not in res.stdout + res.stderr, f"a traceback\n{shown}"
    codes = case.code if isinstance(case.code, tuple) else (case.code,)
    assert res.code in codes, f"exit code {res.code}, expected {codes}\n{shown}"
    assert not _CONTROL.search(res.stderr), f"raw control characters on stderr\n{shown}"
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if _ERROR_LINE.match(line)]
    if res.code == 0:
        assert not errors, f"an error line on success\n{shown}"
        if case.pattern:
            assert re.search(case.pattern, res.stderr, re.IGNORECASE), shown
        return
    assert len(errors) == 1, f"{len(errors)} error lines, expected one\n{shown}"
    after = lines[errors[0] + 1:]
    assert len(after) <= 1 and all(line.startswith(" ") for line in after), (
        f"after the error line only one indented hint line may follow\n{shown}")
    if case.pattern:
        assert re.search(case.pattern, "\n".join(lines[errors[0]:]), re.IGNORECASE), (
            f"the error line (and hint) do not match {case.pattern!r}\n{shown}")


def check(case: Case, base: Base, tmp_path: Path) -> None:
    """Run one case from a fresh copy of the base project and assert every rule."""
    work = tmp_path
    mounted: Path | None = None
    try:
        proj = work / "proj"
        if case.tmpfs_spare is not None:
            mounted = _mount_tmpfs(proj, _tree_size(base.template) + case.tmpfs_spare)
            shutil.copytree(base.template, proj, dirs_exist_ok=True)
        else:
            shutil.copytree(base.template, proj)
        ctx = Ctx(proj=proj, tmp=work / "scratch", base=base)
        ctx.tmp.mkdir()
        home = work / "home"
        home.mkdir()
        if case.setup is not None:
            case.setup(ctx)
        before = snapshot(ctx)
        sim_before = base.sim_stats()
        res = run_cli(case, ctx, home)
        assert_answer(case, res)
        after = snapshot(ctx)
        if case.change is None:
            assert_unchanged(before, after)
        else:
            case.change(ctx, before, after)
        if case.change is None:
            sim_after = base.sim_stats()
            for counter in ("submits_received", "uploads"):
                assert sim_after[counter] == sim_before[counter], (
                    f"the simulator saw {sim_after[counter] - sim_before[counter]} {counter}")
    finally:
        if mounted is not None:
            subprocess.run(["umount", "-l", str(mounted)], check=False)
        _make_removable(work)


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def tmpfs_available() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def _mount_tmpfs(where: Path, size: int) -> Path:
    where.mkdir(parents=True)
    pages = -(-size // 4096) * 4096
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={pages},mode=755", "tmpfs",
                           str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return where


def _make_removable(root: Path) -> None:
    for folder, dirs, _files in os.walk(root):
        for name in dirs:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
    os.chmod(root, 0o755)


# -- change checks for valid input ------------------------------------------------------------


def new_scratch_file(rel: str, magic: bytes) -> Change:
    """The command wrote ``rel`` in the scratch folder (starting with ``magic``), nothing else."""

    def change(ctx: Ctx, before: Snapshot, after: Snapshot) -> None:
        assert after.files == before.files, _diff("project files", before.files, after.files)
        assert after.db == before.db, "library.db changed"
        assert set(after.scratch) - set(before.scratch) <= {rel} and rel in after.scratch, (
            _diff("scratch files", before.scratch, after.scratch))
        rest = {k: v for k, v in after.scratch.items() if k != rel}
        assert rest == {k: v for k, v in before.scratch.items() if k != rel}, (
            _diff("scratch files", before.scratch, after.scratch))
        assert (ctx.tmp / rel).read_bytes().startswith(magic)

    return change


def replaced_scratch_file(rel: str, magic: bytes) -> Change:
    """With --force the command replaced ``rel`` (a file of the user's, not the project's)."""

    def change(ctx: Ctx, before: Snapshot, after: Snapshot) -> None:
        assert after.files == before.files, _diff("project files", before.files, after.files)
        assert after.db == before.db, "library.db changed"
        assert set(after.scratch) == set(before.scratch)
        assert after.scratch[rel] != before.scratch[rel], f"{rel} was not replaced"
        assert {k: v for k, v in after.scratch.items() if k != rel} == {
            k: v for k, v in before.scratch.items() if k != rel}
        assert (ctx.tmp / rel).read_bytes().startswith(magic)

    return change


def only_inserts(*tables: str, media_added: int | None = None) -> Change:
    """Rows were only added (to ``tables``), files only added under media/."""

    def change(ctx: Ctx, before: Snapshot, after: Snapshot) -> None:
        kept = set(after.db)
        assert all(line in kept for line in before.db), "rows were changed or removed"
        added = [line for line in after.db if line not in set(before.db)]
        assert added, "nothing was added"
        for line in added:
            assert any(line.startswith(f'INSERT INTO "{t}"') for t in tables), line
        assert {k: v for k, v in after.files.items() if k in before.files} == before.files
        new_files = set(after.files) - set(before.files)
        assert all(k.startswith("media/") for k in new_files), new_files
        if media_added is not None:
            assert len([k for k in new_files if after.files[k].startswith("file")]) == (
                media_added)
        assert after.scratch == before.scratch

    return change
