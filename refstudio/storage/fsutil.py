"""Files in and out: bounded reads of regular files only, and writes a reader never sees half of.

Reading: every path a user names (an image, a workflow, a template, a pack, ``refstudio.toml``)
is opened with :func:`open_regular` / :func:`read_regular`. They open without blocking (a FIFO
would otherwise wait forever for a writer), check the *opened* descriptor is a regular file (so a
path swapped for ``/dev/zero`` between a check and the open changes nothing), and never read more
than the caller's limit plus one byte.

Writing: :func:`check_output_file` / :func:`check_output_dir` are the one rule for files a user
names as output: an existing file is replaced only when asked (``--force``), and the project's
own files (``library.db`` and its journals, ``refstudio.toml``, anything under ``media/``) are
never written over, however the path is spelled. Then :func:`atomic_file` writes through a
temporary file and a rename, so an error never leaves half a file behind.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError

_CHUNK = 1 << 20

# -- reading ------------------------------------------------------------------------------------


class UnreadableFileError(Exception):
    """A path that must not or cannot be read. ``reason`` completes "PATH: …" for a message."""

    def __init__(self, path: Path, reason: str, *, too_large: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.too_large = too_large


_KINDS = (
    (stat.S_ISDIR, "is a folder, not a file"),
    (stat.S_ISFIFO, "is a pipe (FIFO), not a regular file"),
    (stat.S_ISCHR, "is a device, not a regular file"),
    (stat.S_ISBLK, "is a device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)


def _not_regular(mode: int) -> str:
    for test, reason in _KINDS:
        if test(mode):
            return reason
    return "is not a regular file"


def _too_large(size: int, limit: int) -> str:
    return f"{size / 1e6:.1f} MB is over the {limit / 1e6:.0f} MB limit"


def open_regular(path: Path | str, *, limit: int | None = None) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (of at most ``limit`` bytes).

    Raises :class:`UnreadableFileError` for a missing file, a folder, a FIFO, a device, a socket,
    a file over ``limit``, or any other OS refusal. Never blocks on a FIFO. Close the returned
    file (it is a context manager).
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise UnreadableFileError(path, "no such file") from None
    except IsADirectoryError:
        raise UnreadableFileError(path, _not_regular(stat.S_IFDIR)) from None
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot read it ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)  # the opened file, not whatever the path names by now
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFileError(path, _not_regular(info.st_mode))
        if limit is not None and info.st_size > limit:
            raise UnreadableFileError(path, _too_large(info.st_size, limit), too_large=True)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path | str, *, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refusing it when it holds more than ``limit``.

    Reads at most ``limit + 1`` bytes whatever the file claims (it may grow while read, or be a
    ``/proc`` file that reports size 0). Raises :class:`UnreadableFileError`.
    """
    path = Path(path)
    with open_regular(path, limit=limit) as fh:
        try:
            data = _read_bounded(fh, limit)
        except OSError as exc:
            raise UnreadableFileError(path, f"cannot read it ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise UnreadableFileError(path, f"grows past the {limit / 1e6:.0f} MB limit",
                                  too_large=True)
    return data


def _read_bounded(fh: BinaryIO, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``fh``, asking for no more memory than the file needs
    (``read(n)`` allocates ``n`` bytes up front, and limits can be hundreds of MB)."""
    want = min(limit, os.fstat(fh.fileno()).st_size) + 1
    data = fh.read(want)
    if len(data) < want or len(data) > limit:
        return data
    # Longer than its size said (growing, or a /proc-like file): go on in bounded chunks.
    chunks, total = [data], len(data)
    while total <= limit:
        chunk = fh.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def read_regular_text(path: Path | str, *, limit: int) -> str:
    """:func:`read_regular` decoded as UTF-8; undecodable bytes raise UnreadableFileError."""
    data = read_regular(path, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(
            Path(path), f"is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x})"
        ) from None


# -- writing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProtectedArea:
    """Files and folders that output named by a user must never replace or land in."""

    files: tuple[Path, ...] = ()
    folders: tuple[Path, ...] = ()
    #: Folders a whole output folder (a gallery) must not be; files inside them are fine.
    roots: tuple[Path, ...] = ()


FORCE_HINT = "pass --force (overwrite=True in Python) to replace it"


def check_output_file(path: Path | str, *, protected: ProtectedArea, overwrite: bool) -> Path:
    """Where to write a file the user named as output, or :class:`InputError` saying why not.

    Refused always: a path that is (after resolving symlinks and ``..``, by inode, and ignoring
    case) one of ``protected.files`` or inside one of ``protected.folders``; a folder; anything
    but a regular file. Refused unless ``overwrite``: an existing file. Returns the path to write
    (symlinks resolved, so the rename replaces the file they point to, not the link).
    """
    given = Path(path).expanduser()
    target = _resolved(given)
    _refuse_protected(given, target, protected)
    try:
        info = target.stat()
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise InputError(f"cannot write {given}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{given} is a folder; give the name of the file to write")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{given} {_not_regular(info.st_mode)}; refstudio only writes files")
    if not overwrite:
        raise InputError(f"{given} already exists; nothing was written", hint=FORCE_HINT)
    return target


def check_output_dir(
    path: Path | str, *, protected: ProtectedArea, overwrite: bool, marker: str
) -> Path:
    """Where to write a folder of output (a gallery), or :class:`InputError` saying why not.

    Refused always: one of ``protected.roots``, a folder inside ``protected.folders``, a path
    that is not a folder. Refused unless ``overwrite``: an existing folder that holds anything
    but lacks the ``marker`` file a previous build left (so it is someone else's folder).
    """
    given = Path(path).expanduser()
    target = _resolved(given)
    for root in protected.roots:
        if _same(target, root):
            raise InputError(f"{given} is the project folder itself; refstudio will not write "
                             "output over it", hint="choose a new folder, e.g. gallery/")
    _refuse_protected(given, target, protected)
    if target.exists() and not target.is_dir():
        raise InputError(f"{given} is not a folder")
    if target.is_dir() and not (target / marker).exists() and not overwrite:
        try:
            with os.scandir(target) as entries:
                occupied = next(entries, None) is not None
        except OSError as exc:
            raise InputError(f"cannot write {given}: {exc.strerror or exc}") from None
        if occupied:
            raise InputError(
                f"{given} already holds files that refstudio did not write; nothing was written",
                hint="choose a new or empty folder, or pass --force (overwrite=True in Python) "
                "to write into it",
            )
    return target


def _resolved(path: Path) -> Path:
    """``path`` made absolute with symlinks and ``..`` resolved, also when it does not exist."""
    path = path if path.is_absolute() else Path.cwd() / path
    if path.exists() or path.is_symlink():
        return path.resolve()
    return path.parent.resolve() / path.name


def _refuse_protected(given: Path, target: Path, protected: ProtectedArea) -> None:
    for file in protected.files:
        if _same(target, file):
            raise InputError(
                f"{given} is the project's own {file.name}; refstudio never writes output "
                "over it (not even with --force)",
                hint="choose a file outside library.db, refstudio.toml and media/",
            )
    for folder in protected.folders:
        if _inside(target, folder):
            raise InputError(
                f"{given} is inside the project's {folder.name}/ folder, which only refstudio "
                "writes (not even with --force)",
                hint=f"choose a place outside {folder.name}/",
            )


def _same(target: Path, other: Path) -> bool:
    """Whether ``target`` (resolved) names the same place as ``other``: by path, by inode, or
    by a name differing only in case in the same folder (one file on case-insensitive disks;
    a name like ``library.db-wal`` counts even before it exists)."""
    other = _resolved(other)
    if target == other:
        return True
    try:
        if os.path.samefile(target, other):
            return True
    except OSError:
        pass
    if target.name.casefold() != other.name.casefold():
        return False
    try:
        return os.path.samefile(target.parent, other.parent)
    except OSError:
        return False


def _inside(target: Path, folder: Path) -> bool:
    """Whether ``target`` (resolved) is ``folder`` or below it, by path or by inode."""
    folder = _resolved(folder)
    if target == folder or folder in target.parents:
        return True
    if not folder.exists():
        return False
    for parent in (target, *target.parents):
        try:
            if os.path.samefile(parent, folder):
                return True
        except OSError:
            continue
    return False


@contextmanager
def atomic_file(path: Path, *, durable: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file in ``path``'s folder; on success rename it onto ``path``.

    On any error the temporary file is removed and ``path`` is untouched. ``durable`` flushes the
    bytes to disk before the rename, for files whose loss would matter after a power cut.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, durable=durable) as fh:
        fh.write(data)
