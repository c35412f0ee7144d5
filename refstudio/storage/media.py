"""Content-addressed media storage.

Blobs are named by the SHA-256 of their bytes, so the same image is stored once. Writes go to a
temporary file in the store, are flushed to disk, then renamed into place: a crash leaves at most
a stray ``.part`` file, never a half image under a final name that the database could point to.

A batch (:meth:`LocalMediaStore.put_many`) keeps that guarantee at a fraction of the cost: it
writes every file, then flushes them all at once from a few threads (the file system commits
concurrent flushes together, where one after another each waits for its own journal commit),
renames them into place and flushes each folder that changed once. Only then does the caller
commit the database rows that point at them.

:class:`MediaStore` is the interface the rest of refstudio uses. It deals in content-addressed
keys, bytes and streams, never in paths: the library, the engine, packs, the gallery and
provenance all go through it. :class:`LocalMediaStore` implements it on a folder (the default);
:class:`refstudio.storage.s3store.S3MediaStore` on any S3-compatible bucket. Where a consumer
needs a file (Pillow, a gallery link), :meth:`MediaStore.local_copy` gives one: for a folder it
is the stored file itself; for a bucket, a hash-verified copy in a bounded local cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from ..errors import StorageError
from .fsutil import UnreadableFileError, open_regular, read_regular

EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
#: Largest media file read back. Far above any image the model takes or makes (a few MB); it
#: only stops a media file replaced by something huge from being read into memory.
MAX_BLOB_BYTES = 512_000_000
DAMAGED_HINT = ("it was changed after refstudio stored it: put the original bytes back (adding "
                "the original file again, e.g. `refstudio ref image add NAME FILE`, rewrites "
                "it) or restore media/ from a backup")
MISSING_HINT = ("put the file back from a backup of media/, or add the original file again "
                "(e.g. `refstudio ref image add NAME FILE`); `refstudio doctor` lists every "
                "missing file")
#: Where writes are staged before they are renamed into place (``media/.tmp``).
TMP_DIR = ".tmp"


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    key: str  # path relative to the store root
    size: int
    created: bool = False  # this call wrote the file (it was not in the store before)


class MediaStore(Protocol):
    """Where a library's images live, by content-addressed key (:func:`blob_key`).

    Every put is durable and whole when it returns (a reader never sees half an image), skips
    a key that already holds the right bytes, and is done before the caller records a row that
    names it. Failures are :class:`StorageError` with one clear line.
    """

    @property
    def url(self) -> str:
        """``file:`` + folder, or ``s3://bucket/prefix``: for messages and ``storage copy``."""
        ...

    #: Whether :meth:`local_copy` is the stored file itself (no cache, no download).
    is_local: bool

    def check_writable(self, *, hint: str | None = None) -> None:
        """Raise :class:`StorageError` (with ``hint``) unless a new blob could be stored now."""
        ...

    def put_bytes(self, data: bytes, *, extension: str) -> StoredBlob: ...
    def put_many(self, items: Iterable[tuple[bytes, str]]) -> list[StoredBlob]:
        """Many ``(data, extension)`` at once; on error nothing this call created remains."""
        ...

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        extension: str,
        check: Callable[[Path], object] | None = None,
    ) -> StoredBlob:
        """Store a stream under its hash; ``check`` sees the complete bytes as a local file
        before anything is stored, and whatever it raises leaves nothing behind."""
        ...

    def open_stream(self, key: str) -> BinaryIO:
        """The stored bytes as a readable binary stream (close it)."""
        ...

    def read_bytes(self, key: str) -> bytes: ...
    def read_verified(self, key: str, sha256: str) -> bytes:
        """The bytes, refused (StorageError) when they no longer hash to ``sha256``."""
        ...

    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None:
        """Stored size in bytes, None when the key is absent."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (absent is fine). Callers delete only keys no row names."""
        ...

    def keys(self) -> Iterator[str]:
        """Every stored key, in no particular order."""
        ...

    def local_copy(self, key: str, sha256: str) -> Path:
        """A local file holding the blob: the stored file for a folder; for a remote store a
        copy fetched on demand into a bounded cache, verified against ``sha256``."""
        ...

    def location(self, key: str) -> str:
        """Where ``key`` lives, for people: a file path, or an ``s3://`` URL. No download."""
        ...

    def flush_spool(self) -> int:
        """Store blobs kept locally because the store refused them earlier; return how many."""
        ...

    def close(self) -> None: ...


def blob_key(sha256: str, extension: str) -> str:
    """``ab/cd/abcd….ext``: two levels of fan-out keep directories small."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.{extension}"


class LocalMediaStore:
    """A :class:`MediaStore` on a local folder (the project's ``media/``)."""

    is_local = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp_ready = False

    @property
    def url(self) -> str:
        return f"file:{self.root}"

    def _tmp_dir(self) -> Path:
        tmp = self.root / TMP_DIR
        if not self._tmp_ready:  # once per store, not once per image
            try:
                tmp.mkdir(exist_ok=True)  # not parents: a missing media/ is not ours to remake
            except OSError as exc:
                raise self.write_error(exc) from exc
            self._tmp_ready = True
        return tmp

    def write_error(self, exc: OSError) -> StorageError:
        """The one-line error for a write into the media folder that the OS refused."""
        why = _WRITE_ERRORS.get(exc.errno or 0) or exc.strerror or type(exc).__name__
        return StorageError(f"cannot write to the media folder {self.root}: {why}")

    def check_writable(self, *, hint: str | None = None) -> None:
        """Raise :class:`StorageError` (with ``hint``) unless the store can take a new file.

        Called before anything is sent, so a read-only or full media folder costs nothing.
        """
        tmp = self.root / TMP_DIR
        try:
            # No trace left: an unnamed file, in .tmp if it is there, else in the folder itself.
            with tempfile.TemporaryFile(dir=tmp if tmp.is_dir() else self.root,
                                        suffix=".part") as fh:
                fh.write(b"\0")
                fh.flush()
        except OSError as exc:
            error = self.write_error(exc)
            error.hint = hint
            raise error from exc

    def put_bytes(self, data: bytes, *, extension: str) -> StoredBlob:
        """Store ``data`` (once) and return where it lives.

        A file already under that name whose bytes no longer match it is replaced: adding the
        original again is how a damaged media file is repaired.
        """
        sha = hashlib.sha256(data).hexdigest()
        key = blob_key(sha, extension)
        created = not self._intact(key, sha)
        if created:
            tmp_dir = self._tmp_dir()
            try:
                fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
            except OSError as exc:
                raise self.write_error(exc) from exc
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                self._publish(Path(tmp_name), key)
            except OSError as exc:
                _unlink_quietly(Path(tmp_name))
                raise self.write_error(exc) from exc
        return StoredBlob(sha, key, len(data), created=created)

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        extension: str,
        check: Callable[[Path], object] | None = None,
    ) -> StoredBlob:
        """Stream chunks to a temporary file while hashing, then publish under their hash.

        ``check`` (run off the event loop) sees the complete temporary file before it is
        published; whatever it raises is raised here and nothing is left in the store.
        """
        hasher = hashlib.sha256()
        size = 0
        tmp_dir = self._tmp_dir()
        try:
            fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
        except OSError as exc:
            raise self.write_error(exc) from exc
        tmp = Path(tmp_name)
        try:
            try:
                with os.fdopen(fd, "wb") as fh:
                    async for chunk in chunks:
                        hasher.update(chunk)
                        size += len(chunk)
                        fh.write(chunk)
                    fh.flush()
                    if check is not None:
                        await asyncio.to_thread(check, tmp)
                    # fsync takes milliseconds to tens of them: keep it off the event loop.
                    await asyncio.to_thread(os.fsync, fh.fileno())
                sha = hasher.hexdigest()
                key = blob_key(sha, extension)
                if await asyncio.to_thread(self._intact, key, sha):
                    _unlink_quietly(tmp)
                else:
                    self._publish(tmp, key)
            except OSError as exc:  # the providers' streams raise their own errors, not OSError
                raise self.write_error(exc) from exc
            return StoredBlob(sha, key, size)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def put_many(self, items: Iterable[tuple[bytes, str]]) -> list[StoredBlob]:
        """Store many ``(data, extension)`` at once; durable on return, like :meth:`put_bytes`.

        Every new file's bytes are on disk before it gets its final name, and the folders that
        gained a name are flushed too. On error nothing new is left behind.
        """
        blobs: list[StoredBlob] = []
        pending: dict[str, Path] = {}  # key -> temporary file, for blobs not yet stored
        published: list[Path] = []
        try:
            for data, extension in items:
                sha = hashlib.sha256(data).hexdigest()
                key = blob_key(sha, extension)
                # A damaged file under that name is written again: adding the original is
                # how it is repaired (as in put_bytes).
                new = key not in pending and not self._intact(key, sha)
                blobs.append(StoredBlob(sha, key, len(data), created=new))
                if not new:
                    continue
                fd, tmp_name = tempfile.mkstemp(dir=self._tmp_dir(), suffix=".part")
                pending[key] = Path(tmp_name)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            if not pending:
                return blobs
            _sync_all([*pending.values()], data_only=True)
            folders: set[Path] = set()
            for key, tmp in pending.items():
                target = self.root / key
                folders.update(_new_folders(target.parent, self.root))
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
                published.append(target)
            _sync_all(sorted(folders), data_only=False)
        except BaseException as exc:
            for path in [*pending.values(), *published]:
                _unlink_quietly(path)
            if isinstance(exc, OSError):
                raise self.write_error(exc) from exc
            raise
        return blobs

    def _publish(self, tmp: Path, key: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)  # atomic on POSIX and Windows

    def read_bytes(self, key: str) -> bytes:
        path = self.local_path(key)
        try:
            return read_regular(path, limit=MAX_BLOB_BYTES)
        except UnreadableFileError as exc:
            raise _unreadable(path, exc) from exc

    def read_verified(self, key: str, sha256: str) -> bytes:
        """The stored bytes, checked against the hash they were stored under.

        Raises :class:`StorageError` naming the file when they differ: a changed media file
        must never be uploaded or exported as if it were the image the library recorded.
        """
        data = self.read_bytes(key)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StorageError(
                f"media file {self.root / key} does not match its recorded hash; "
                "refusing to use it", hint=DAMAGED_HINT)
        return data

    def _intact(self, key: str, sha256: str) -> bool:
        """Whether ``key`` exists and holds the bytes it is named for (a rare, deduplicating
        path: checking it keeps a damaged file from being kept forever)."""
        if not self.exists(key):
            return False
        try:
            return hashlib.sha256(self.read_bytes(key)).hexdigest() == sha256
        except StorageError:
            return False

    def local_path(self, key: str) -> Path:
        """Where ``key`` lives. A key that would leave the folder (absolute, ``..``: only a
        hand-edited library.db has one) is a StorageError, so no row can make refstudio read,
        upload or delete a file elsewhere."""
        if key.startswith(("/", "\\")) or ".." in key.replace("\\", "/").split("/") or (
                len(key) > 1 and key[1] == ":"):
            raise StorageError(f"the library names {key!r} as a media file, a path outside "
                               f"{self.root}", hint="`refstudio doctor` lists such rows")
        return self.root / key

    def exists(self, key: str) -> bool:
        return self.local_path(key).is_file()

    def size(self, key: str) -> int | None:
        try:
            return self.local_path(key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read media file {self.root / key}: "
                               f"{exc.strerror or exc}") from exc

    def open_stream(self, key: str) -> BinaryIO:
        path = self.local_path(key)
        try:
            return open_regular(path, limit=MAX_BLOB_BYTES)
        except UnreadableFileError as exc:
            raise _unreadable(path, exc) from exc

    def delete(self, key: str) -> None:
        self.local_path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        for path in media_files(self.root):
            yield path.relative_to(self.root).as_posix()

    def local_copy(self, key: str, sha256: str) -> Path:
        """The stored file itself: a folder store needs no copy (and no hashing here; the
        consumers that hand bytes on verify them, as before)."""
        return self.local_path(key)

    def location(self, key: str) -> str:
        return str(self.local_path(key))

    def flush_spool(self) -> int:
        return 0  # a folder refuses a write before the bytes are taken, never after

    def close(self) -> None:
        pass


def _unreadable(path: Path, exc: UnreadableFileError) -> StorageError:
    """The error of a media file that cannot be read; a missing one says where to get it."""
    return StorageError(f"media file {path} is missing or unreadable ({exc.reason})",
                        hint=MISSING_HINT if exc.reason == "no such file" else None)


def media_files(root: Path) -> list[Path]:
    """Every file under a media folder, except the store's own temporary folder."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and p.relative_to(root).parts[0] != TMP_DIR)


def count_media_files(root: Path) -> int:
    return len(media_files(root))


def out_of_space(exc: BaseException) -> bool:
    """Whether a (storage) error was caused by a full disk or an exhausted quota."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)


#: Plain words for what most often stops a write into the media folder.
_WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "permission denied (the folder is read-only)",
    errno.EPERM: "permission denied (the folder is read-only)",
    errno.ENOENT: "it does not exist",
    errno.ENOTDIR: "it is not a folder",
}


#: Flushes in flight at once in a batch: enough for the file system to group them.
SYNC_THREADS = 16
_sync_pool: ThreadPoolExecutor | None = None
_sync_pool_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One pool for the process: starting threads for every batch cost more than the flushes
    of a small one."""
    global _sync_pool
    with _sync_pool_lock:
        if _sync_pool is None:
            _sync_pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="refstudio-sync")
        return _sync_pool


def _forget_pool_after_fork() -> None:
    global _sync_pool, _sync_pool_lock
    _sync_pool, _sync_pool_lock = None, threading.Lock()  # its threads stayed in the parent


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _sync_all(paths: list[Path], *, data_only: bool) -> None:
    """fsync (or fdatasync) every path, several at once; raise the first OSError. Folders are
    skipped on Windows, which cannot open them (NTFS journals their entries itself)."""
    if not data_only and os.name == "nt":  # pragma: no cover - Windows
        return

    def sync(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if data_only and hasattr(os, "fdatasync"):
                os.fdatasync(fd)
            else:
                os.fsync(fd)
        finally:
            os.close(fd)

    if len(paths) == 1:
        sync(paths[0])
        return
    pool = _pool()
    for done in [pool.submit(sync, p) for p in paths]:
        done.result()


def _new_folders(folder: Path, root: Path) -> list[Path]:
    """The folders whose entries change when ``folder`` (under ``root``) gets a new file: it,
    and the parents of the fan-out folders that do not exist yet."""
    changed = [folder]
    while folder != root and not folder.is_dir():
        folder = folder.parent
        changed.append(folder)
    return changed


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
