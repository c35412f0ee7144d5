"""Storage under fault: broken refstudio.toml, a read-only or full media folder, a damaged,
missing or foreign library.db, a media/ that is missing, a file, or a link out of the project.

Every fault is real, made by the operating system, never patched into refstudio: a read-only
bind mount (as root, where chmod stops nothing) or chmod 0o555; a small tmpfs filled to the
brim for a full disk. Each case runs the real CLI in a subprocess and asserts one ``error:``
line, the documented exit code, no traceback, and every file of the project as it was (or,
for a full disk while outputs are stored, exactly the documented state: the generation stays
``submitted`` and ``refstudio resume`` stores it later without sending anything again).

Mounting needs root (CAP_SYS_ADMIN); where that is missing the mount-based tests skip and say
so. The CI machine runs them as root.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ImageMaker, run_cli, snapshot_project
from PIL import Image
from project_support import wavespeed_from_env

from refstudio import Studio
from refstudio.simulator import Simulator

KEY = "sk-storage-faults"
ROOT = os.geteuid() == 0


# -- helpers -----------------------------------------------------------------------------------


def snapshot_files(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed): a file's sha256, ``<dir>``, or where a
    link points. Byte-exact, so it also holds for a library.db too damaged to dump."""
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries[rel] = f"<link {os.readlink(path)}>"
            elif path.is_dir():
                entries[rel] = "<dir>"
            elif path.is_file():
                entries[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                entries[rel] = f"<special {stat.S_IFMT(path.lstat().st_mode):o}>"
    return entries


def one_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """Assert a failure the standard way and return its ``error:`` line."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    others = [line for line in result.stderr.splitlines()
              if line and not line.startswith(("error:", "  ", "warning:"))]
    assert others == [], result.stderr
    return errors[0]


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` (and everything below it) refuse writes for real.

    As a normal user chmod does it. As root chmod stops nothing, so the folder is bind-mounted
    read-only over itself (the kernel answers EROFS); if mounting is not permitted, the test
    skips rather than pretend.
    """
    if not ROOT:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
        for path in modes:
            path.chmod(0o555)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(stat.S_IMODE(mode))
        return
    if not (_mount("--bind", str(folder), str(folder))):
        pytest.skip("running as root without permission to mount: cannot make a folder "
                    "read-only for real")
    try:
        if not _mount("-o", "remount,bind,ro", str(folder)):
            pytest.skip("cannot remount a bind mount read-only here")
        yield
    finally:
        _umount(folder)


@contextlib.contextmanager
def small_disk(folder: Path, size_kb: int = 512) -> Iterator[Path]:
    """Mount an empty tmpfs of ``size_kb`` over ``folder``; yield a filler file's path.

    Needs root (CAP_SYS_ADMIN): elsewhere the test skips, saying why.
    """
    if not ROOT or not _mount("-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs",
                              str(folder)):
        pytest.skip("a full disk is made with a small tmpfs, which needs root to mount")
    try:
        yield folder / "filler"
    finally:
        _umount(folder)


@contextlib.contextmanager
def media_on_small_disk(root: Path) -> Iterator[Path]:
    """Move the project's media/ onto a tmpfs with 256 KB to spare; yield the filler's path."""
    media = root / "media"
    folders = [p.relative_to(media) for p in media.rglob("*") if p.is_dir()]
    kept = {p.relative_to(media): p.read_bytes() for p in media.rglob("*") if p.is_file()}
    size_kb = sum(len(d) // 4096 + 1 for d in kept.values()) * 4 + 256
    with small_disk(media, size_kb) as filler:
        for rel in folders:  # media/.tmp included: it is there once anything was stored
            (media / rel).mkdir(parents=True, exist_ok=True)
        for rel, data in kept.items():
            (media / rel).write_bytes(data)
        yield filler


def fill(filler: Path, leave: int = 0) -> None:
    """Write ``filler`` until the disk refuses (ENOSPC), then give back ``leave`` bytes."""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        block = b"\xa5" * 4096
        while True:
            os.write(fd, block)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))


def statuses(root: Path) -> dict[int, str]:
    conn = sqlite3.connect(root / "library.db")
    try:
        return dict(conn.execute("SELECT id, status FROM generation"))
    finally:
        conn.close()


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    monkeypatch.setenv("REFSTUDIO_NO_PROGRESS", "1")
    with wavespeed_from_env(monkeypatch, KEY, latency=0.2, seed=11) as server:
        yield server


@pytest.fixture
def root(project: Studio, make_image: ImageMaker, tmp_path: Path) -> Path:
    """A closed project holding one reference, @mara."""
    project.add_reference("mara", [make_image(tmp_path / "mara.png", seed=1)])
    project.close()
    return project.root


# -- refstudio.toml ------------------------------------------------------------------------------


def test_config_that_is_not_utf8_is_one_config_error(root: Path) -> None:
    toml = root / "refstudio.toml"
    toml.write_bytes(toml.read_bytes() + b"\n# caf\xe9 au lait\n")
    before = snapshot_files(root)
    line = one_error(run_cli("--project", str(root), "ref", "list"), 3)
    assert "not UTF-8" in line and str(toml) in line
    assert snapshot_files(root) == before


@pytest.mark.parametrize(
    ("bad", "table"),
    [
        ("name = [", ""),  # not TOML
        ('concurrency = "four"', ""),
        ("concurrency = 2.5", ""),
        ("concurrency = 0", ""),
        ("concurrency = inf", ""),
        ("max_image_mb = inf", ""),
        ("max_image_mb = nan", ""),
        ("name = 5", ""),
        ("aspect_ratio = [16, 9]", "defaults"),
        ("provider = 3", "defaults"),
    ],
)
def test_broken_config_is_one_config_error(root: Path, bad: str, table: str) -> None:
    toml = root / "refstudio.toml"
    key = bad.split()[0]
    lines = [ln for ln in toml.read_text().splitlines() if not ln.startswith(key)]
    if table:  # the bad line goes inside its table, so nothing else is misplaced
        at = lines.index(f"[{table}]") + 1
        lines[at:at] = [bad]
    else:
        lines.insert(0, bad)
    toml.write_text("\n".join(lines) + "\n")
    before = snapshot_files(root)
    line = one_error(run_cli("--project", str(root), "ref", "list"), 3)
    assert str(toml) in line
    if bad != "name = [":
        assert f"{table + '.' if table else ''}{key} must be" in line
    assert snapshot_files(root) == before


def test_config_that_is_a_folder_is_named_not_skipped(root: Path) -> None:
    toml = root / "refstudio.toml"
    toml.unlink()
    toml.mkdir()
    before = snapshot_files(root)
    for result in (run_cli("--project", str(root), "ref", "list"),
                   run_cli("ref", "list", cwd=root / "media")):  # found walking upward too
        line = one_error(result, 3)
        assert f"{toml} is a folder" in line
    assert snapshot_files(root) == before


def test_config_that_is_a_pipe_does_not_hang(root: Path) -> None:
    toml = root / "refstudio.toml"
    toml.unlink()
    os.mkfifo(toml)
    before = snapshot_files(root)
    line = one_error(run_cli("--project", str(root), "ref", "list"), 3)
    assert "not a regular file" in line
    assert snapshot_files(root) == before


def test_unreadable_config_is_one_config_error(root: Path) -> None:
    toml = root / "refstudio.toml"
    if ROOT:
        # Root reads any file whatever its mode; this kernel file refuses even root (EACCES).
        locked = Path("/proc/sys/vm/drop_caches")
        try:
            locked.read_bytes()
        except PermissionError:
            pass
        except OSError:
            pytest.skip("no file here that refuses root a read")
        else:
            pytest.skip("no file here that refuses root a read")
        toml.unlink()
        toml.symlink_to(locked)
    else:
        toml.chmod(0)
    try:
        line = one_error(run_cli("--project", str(root), "ref", "list"), 3)
        assert f"cannot read {toml}" in line and "ermission denied" in line
    finally:
        if not ROOT:
            toml.chmod(0o644)


# -- a read-only media folder --------------------------------------------------------------------


def test_ref_add_into_read_only_media_changes_nothing(
    root: Path, make_image: ImageMaker, tmp_path: Path
) -> None:
    new = make_image(tmp_path / "new.png", seed=5)
    before, dump = snapshot_files(root), snapshot_project(root)
    with read_only(root / "media"):
        line = one_error(run_cli("--project", str(root), "ref", "add", "bob", str(new)), 13)
        line2 = one_error(
            run_cli("--project", str(root), "ref", "image", "add", "mara", str(new)), 13)
    for text in (line, line2):
        assert f"cannot write to the media folder {root / 'media'}" in text
    assert snapshot_files(root) == before
    assert snapshot_project(root) == dump


def test_gen_with_read_only_media_sends_nothing(sim: Simulator, root: Path) -> None:
    before, dump = snapshot_files(root), snapshot_project(root)
    with read_only(root / "media"):
        result = run_cli("--project", str(root), "gen", "@mara on a pier", "-n", "2",
                         "--provider", "wavespeed", "--resolution", "720p")
    line = one_error(result, 13)
    assert f"cannot write to the media folder {root / 'media'}" in line
    assert "nothing was sent or paid" in result.stderr
    assert sim.stats()["submits_received"] == 0
    assert sim.stats()["uploads"] == 0
    assert snapshot_files(root) == before
    assert snapshot_project(root) == dump


def test_retry_with_read_only_media_keeps_the_row(sim: Simulator, root: Path) -> None:
    sim.config.fail_rate = 1.0  # the task fails at the provider: a retryable row
    result = run_cli("--project", str(root), "gen", "@mara on a pier", "--provider", "wavespeed",
                     "--resolution", "720p")
    assert result.returncode == 11, result.stderr
    assert statuses(root) == {1: "failed"}
    sim.config.fail_rate = 0.0
    sent = sim.stats()["submits_received"]
    before, dump = snapshot_files(root), snapshot_project(root)
    with read_only(root / "media"):
        line = one_error(run_cli("--project", str(root), "retry", "1", "--yes"), 13)
    assert "cannot write to the media folder" in line
    assert sim.stats()["submits_received"] == sent
    assert snapshot_files(root) == before
    assert snapshot_project(root) == dump


# -- a full disk ---------------------------------------------------------------------------------


def test_full_disk_while_storing_outputs_is_recoverable_by_resume(
    sim: Simulator, root: Path
) -> None:
    """The tasks are paid and done; media/ has room for the pre-flight check but not for the
    images. gen ends with one line saying so; after space is freed, resume stores both images
    without sending anything again."""
    media = root / "media"
    kept = [p.relative_to(media) for p in media.rglob("*") if p.is_file()]
    with media_on_small_disk(root) as filler:
        fill(filler, leave=8192)  # room for the pre-flight check, not for a 720p image
        result = run_cli("--project", str(root), "gen", "@mara on a pier", "-n", "2",
                         "--provider", "wavespeed", "--resolution", "720p", "--seed", "40")
        line = one_error(result, 13)
        assert f"cannot write to the media folder {media}: the disk is full" in line
        assert "generations #1, #2" in line
        assert "safe at the provider" in line and "`refstudio resume` when there is space" in line
        sent = sim.stats()["submits_received"]
        assert sent == 2
        assert statuses(root) == {1: "submitted", 2: "submitted"}
        # Nothing half-written: no temporary file, no image, only what was there.
        assert sorted(p.relative_to(media) for p in media.rglob("*") if p.is_file()) == sorted(
            [*kept, Path("filler")])

        # Still full: resume says the same, and still sends nothing.
        one_error(run_cli("--project", str(root), "resume"), 13)
        assert statuses(root) == {1: "submitted", 2: "submitted"}

        filler.unlink()  # space again
        resumed = run_cli("--project", str(root), "resume")
        assert resumed.returncode == 0, resumed.stderr
        assert statuses(root) == {1: "completed", 2: "completed"}
        assert sim.stats()["submits_received"] == sent  # nothing was sent again
        with Studio.open(root) as studio:
            for gen_id in (1, 2):
                info = studio.generation(gen_id)
                assert info.request_id in sim.stats()["tasks"]
                [output] = info.outputs
                with Image.open(output.path) as img:
                    img.load()
                    assert img.size == (1280, 720)
        assert not list((media / ".tmp").iterdir())


def test_full_disk_before_gen_sends_nothing(sim: Simulator, root: Path) -> None:
    with media_on_small_disk(root) as filler:
        fill(filler)
        before, dump = snapshot_files(root), snapshot_project(root)
        line = one_error(run_cli("--project", str(root), "gen", "@mara on a pier",
                                 "--provider", "wavespeed", "--resolution", "720p"), 13)
        assert "the disk is full" in line
        assert sim.stats()["submits_received"] == 0
        assert snapshot_files(root) == before
        assert snapshot_project(root) == dump


def test_ref_add_onto_a_full_disk_changes_nothing(
    root: Path, make_image: ImageMaker, tmp_path: Path
) -> None:
    media = root / "media"
    new = make_image(tmp_path / "new.png", seed=6)
    with media_on_small_disk(root) as filler:
        fill(filler, leave=8192)
        before, dump = snapshot_files(root), snapshot_project(root)
        line = one_error(run_cli("--project", str(root), "ref", "add", "bob", str(new)), 13)
        assert f"cannot write to the media folder {media}: the disk is full" in line
        assert snapshot_files(root) == before
        assert snapshot_project(root) == dump


# -- a damaged, foreign or misplaced library -----------------------------------------------------


def _random_bytes(root: Path) -> None:
    (root / "library.db").write_bytes(os.urandom(64 * 1024))


def _truncated(root: Path) -> None:
    db = root / "library.db"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])


def _a_folder(root: Path) -> None:
    (root / "library.db").unlink()
    (root / "library.db").mkdir()
    (root / "library.db" / "keep.txt").write_text("not a database")


def _newer_schema(root: Path) -> None:
    conn = sqlite3.connect(root / "library.db")
    with conn:
        conn.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_future', 'x')")
    conn.close()


def _media_missing(root: Path) -> None:
    shutil.rmtree(root / "media")


def _media_a_file(root: Path) -> None:
    shutil.rmtree(root / "media")
    (root / "media").write_text("not a folder")


def _media_a_link_outside(root: Path) -> None:
    outside = root.parent / "elsewhere"
    shutil.move(root / "media", outside)
    (root / "media").symlink_to(outside)


DAMAGE = {
    "db-random-bytes": (_random_bytes, "file is not a database"),
    "db-truncated": (_truncated, "malformed"),
    "db-a-folder": (_a_folder, "is a folder, not a database"),
    "db-newer-schema": (_newer_schema, "written by a newer refstudio"),
    "media-missing": (_media_missing, "is missing"),
    "media-a-file": (_media_a_file, "is not a folder"),
    "media-a-link-outside": (_media_a_link_outside, "outside the project"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("command", ["list", "add", "gen"])
def test_damaged_storage_is_one_line_and_changes_nothing(
    root: Path, make_image: ImageMaker, tmp_path: Path, damage: str, command: str
) -> None:
    harm, words = DAMAGE[damage]
    harm(root)
    before = snapshot_files(root)
    outside = snapshot_files(root.parent / "elsewhere") if damage.endswith("outside") else None
    args = {
        "list": ["ref", "list"],
        "add": ["ref", "add", "bob", str(make_image(tmp_path / "bob.png", seed=9))],
        "gen": ["gen", "@mara on a pier", "--provider", "offline"],
    }[command]
    line = one_error(run_cli("--project", str(root), *args,
                             env={"REFSTUDIO_OFFLINE_DIR": str(tmp_path / "offline")}), 13)
    assert words in line
    assert snapshot_files(root) == before
    if outside is not None:
        assert snapshot_files(root.parent / "elsewhere") == outside


def test_media_link_inside_the_project_is_fine(root: Path) -> None:
    (root / "media").rename(root / "images")
    (root / "media").symlink_to("images")
    result = run_cli("--project", str(root), "ref", "list")
    assert result.returncode == 0, result.stderr
    assert "@mara" in result.stdout


def test_a_library_row_naming_a_file_outside_media_is_never_read(
    sim: Simulator, root: Path, tmp_path: Path
) -> None:
    """A hand-edited (or hostile) library.db points @mara's image at a file outside the project,
    with the right hash even: nothing reads, uploads or sends it."""
    conn = sqlite3.connect(root / "library.db")
    [(asset_id, rel)] = conn.execute("SELECT id, path FROM asset").fetchall()
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes((root / "media" / rel).read_bytes())
    hostile = os.path.relpath(secret, root / "media")
    assert hostile.startswith("..")
    with conn:
        conn.execute("UPDATE asset SET path = ? WHERE id = ?", (hostile, asset_id))
    conn.close()
    before = snapshot_files(root)
    line = one_error(run_cli("--project", str(root), "gen", "@mara on a pier",
                             "--provider", "wavespeed", "--resolution", "720p"), 13)
    assert "a path outside" in line
    assert sim.stats()["uploads"] == 0 and sim.stats()["submits_received"] == 0
    assert snapshot_files(root) == before
    report = run_cli("--project", str(root), "doctor")
    one_error(report, 13)
    assert "a path outside media/" in report.stdout
