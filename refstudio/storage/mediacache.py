"""A bounded local cache of media held in a remote store, plus the spool of unstored blobs.

A remote store (S3) hands consumers that need a file (Pillow, the gallery) a local copy: fetched
once, checked against the hash it is named for, kept under its key, and evicted least recently
used first when the cache grows past its size limit. A hit touches the file's mtime, which is
what eviction orders by, so no index has to be kept consistent with the files.

The spool is a separate folder the cache never evicts: a paid output whose upload failed waits
there, under its key, until :meth:`MediaCache.take_spooled` hands it to the store again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, cast

from ..errors import StorageError

#: Default size limit of a project's media cache.
DEFAULT_CACHE_BYTES = 2_000_000_000
_TMP = ".tmp"


class MediaCache:
    """Blob copies under ``root/<key>``, at most ``max_bytes`` together (one blob may exceed
    it on its own: it is kept until the next one arrives)."""

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.root = root
        self.spool = root.parent / "spool"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        #: Bytes in the cache as far as this process knows (None: not counted yet). Other
        #: processes add files too, so eviction counts again before it removes anything.
        self._total: int | None = None

    def path_of(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str, sha256: str, fetch: Callable[[BinaryIO], None]) -> Path:
        """The cached copy of ``key``; on a miss ``fetch`` writes the blob into the file it is
        given, and the bytes are kept only if they hash to ``sha256``."""
        path = self.root / key
        if path.is_file():
            with contextlib.suppress(OSError):
                os.utime(path)  # most recently used
            return path
        tmp = self._tmp_file()
        try:
            with open(tmp, "wb") as raw:
                fh = _HashingWriter(raw)  # hashed as it arrives: no second read of the file
                fetch(cast(BinaryIO, fh))
            if fh.digest.hexdigest() != sha256:
                raise StorageError(
                    f"the copy of {key} fetched from the media store does not match its "
                    "recorded hash; refusing to use it",
                    hint="the object was changed or damaged in the store: restore it from a "
                    "backup, or add the original image again")
            self.adopt(tmp, key)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def adopt(self, tmp: Path, key: str) -> Path:
        """Move a complete file (already verified) into the cache under ``key``."""
        target = self.root / key
        try:
            size = tmp.stat().st_size
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)  # the cache is a convenience: losing a copy is fine
            return target
        with self._lock:
            if self._total is not None:
                self._total += size
            over = self._total is None or self._total > self.max_bytes
        if over:
            self.evict()
        return target

    def keep(self, data: bytes, key: str) -> None:
        """Cache bytes just stored (best effort: a full cache disk is no error)."""
        if (self.root / key).is_file() or len(data) > self.max_bytes:
            return
        try:
            tmp = self._tmp_file()
            tmp.write_bytes(data)
        except OSError:
            return
        self.adopt(tmp, key)

    def evict(self) -> None:
        """Remove least recently used copies until the cache is within its limit."""
        with self._lock:
            files = []
            total = 0
            for path in self._files():
                try:
                    info = path.stat()
                except OSError:
                    continue
                files.append((info.st_mtime, info.st_size, path))
                total += info.st_size
            self._total = total
            if total <= self.max_bytes:
                return
            files.sort()
            for _, size, path in files[:-1]:  # never the newest: it was just asked for
                with contextlib.suppress(OSError):
                    path.unlink()
                    total -= size
                if total <= self.max_bytes:
                    break
            self._total = total

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._files())

    # -- spool ---------------------------------------------------------------------------------

    def spool_file(self, tmp: Path, key: str) -> Path:
        """Keep a complete, verified file that could not be stored, under its key; durable,
        since it may be a paid output the provider no longer serves."""
        target = self.spool / key
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return target

    def spooled(self) -> Iterator[tuple[str, Path]]:
        """``(key, file)`` for every spooled blob."""
        if not self.spool.is_dir():
            return
        for path in sorted(self.spool.rglob("*")):
            if path.is_file():
                yield path.relative_to(self.spool).as_posix(), path

    def _files(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for path in self.root.rglob("*"):
            if path.is_file() and path.relative_to(self.root).parts[0] != _TMP:
                yield path

    def _tmp_file(self) -> Path:
        tmp_dir = self.root / _TMP
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
        os.close(fd)
        return Path(name)

    def tmp_file(self) -> Path:
        """A new empty temporary file inside the cache (same disk: renames are free)."""
        try:
            return self._tmp_file()
        except OSError as exc:
            raise StorageError(f"cannot write to the media cache {self.root}: "
                               f"{exc.strerror or exc}") from exc


class _HashingWriter:
    """A binary file that hashes what is written through it (boto3 only calls ``write``)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self._fh.write(data)
