"""Media on an S3-compatible object store (AWS S3, Cloudflare R2, MinIO): ``s3://bucket/prefix``.

The same content-addressed keys as the folder store, under ``prefix/``. Endpoint, region and
credentials come from where every AWS tool reads them (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws``), never from the
project. boto3 is imported on first use, so commands that touch no media do not pay for it.

Guarantees, as for the folder store:

- a PUT is atomic: an object is whole or absent, so a row never names half an image; every put
  returns only once the object is stored, and the library records rows after that;
- a key that already holds the right bytes is not sent again (a HEAD first; the SHA-256 rides
  along as object metadata, so a damaged object is replaced by adding the original again);
- a download is checked against its hash before anyone uses it (:meth:`local_copy`,
  :meth:`read_verified`);
- a finished, paid output whose upload fails is kept in the local spool (durably) and stored by
  the next ``resume`` (:meth:`flush_spool`), and the generation stays ``submitted``;
- every failure is one :class:`StorageError` line naming the bucket, never a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit, urlunsplit

from ..errors import StorageError
from .media import MAX_BLOB_BYTES, MISSING_HINT, StoredBlob, blob_key
from .mediacache import MediaCache

#: Requests in flight at once for a batch (HEADs and PUTs): the store's latency, not local
#: work, is what a batch waits for.
BATCH_THREADS = 16
#: Items of a batch held in memory at once (a batch import can name thousands of big files).
BATCH_WINDOW = 64
_SHA_META = "sha256"
_RESUME_HINT = "`refstudio resume` stores it once the media store can take it"


class S3MediaStore:
    """A :class:`~refstudio.storage.media.MediaStore` on ``s3://bucket/prefix``."""

    is_local = False

    def __init__(self, bucket: str, prefix: str, cache: MediaCache) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache = cache
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client: Any = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # -- the client ------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _make_client()
            return self._client

    def _threads(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(BATCH_THREADS, thread_name_prefix="refstudio-s3")
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _name(self, key: str) -> str:
        """The object name of ``key``; a key that is not a plain relative path (only a
        hand-edited library has one) is refused, as by the folder store."""
        parts = key.replace("\\", "/").split("/")
        if not key or key.startswith(("/", "\\")) or ".." in parts or "" in parts:
            raise StorageError(f"the library names {key!r} as a media file, which is not a "
                               "media key", hint="`refstudio doctor` lists such rows")
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._name(key)}"

    # -- writing ---------------------------------------------------------------------------------

    def check_writable(self, *, hint: str | None = None) -> None:
        """The bucket exists and these credentials reach it (one HEAD request)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            error = self._error(exc, "reach", bucket_level=True)
            if hint:
                error.hint = f"{error.hint}; {hint}" if error.hint else hint
            raise error from exc

    def _intact(self, key: str, sha256: str) -> bool:
        """Whether the object exists and was stored as these bytes (by its metadata)."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:
            if _status(exc) == 404 and _code(exc) not in ("NoSuchBucket",):
                return False
            raise self._error(exc, "read", key) from exc
        recorded = (head.get("Metadata") or {}).get(_SHA_META)
        return recorded in (None, sha256)

    def _put(self, data: bytes, key: str, sha256: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data,
                                   Metadata={_SHA_META: sha256},
                                   ContentType=_content_type(key))
        except Exception as exc:
            raise self._error(exc, "write", key) from exc

    def _put_if_missing(self, data: bytes, key: str, sha256: str) -> bool:
        """Store unless the object already holds these bytes; whether it was stored."""
        if self._intact(key, sha256):
            return False
        self._put(data, key, sha256)
        return True

    def put_bytes(self, data: bytes, *, extension: str) -> StoredBlob:
        sha = hashlib.sha256(data).hexdigest()
        key = blob_key(sha, extension)
        created = not self._intact(key, sha)
        if created:
            self._put(data, key, sha)
        self.cache.keep(data, key)
        return StoredBlob(sha, key, len(data), created=created)

    def put_many(self, items: Iterable[tuple[bytes, str]]) -> list[StoredBlob]:
        """Store a batch, many requests at once; on error the objects this call created are
        deleted again (objects it found already stored are left alone)."""
        blobs: list[StoredBlob] = []
        created: list[str] = []
        seen: set[str] = set()
        pool = self._threads()
        window: list[tuple[bytes, str, str]] = []

        def flush() -> None:
            fresh = [(d, k, s) for d, k, s in window if k not in seen]
            seen.update(k for _, k, _ in fresh)
            # One task per blob, HEAD then PUT: no barrier between the two phases.
            futures = [(pool.submit(self._put_if_missing, *item), item[1]) for item in fresh]
            new: set[str] = set()
            for future, key in futures:
                if future.result():
                    created.append(key)
                    new.add(key)
            for data, key, sha in window:
                blobs.append(StoredBlob(sha, key, len(data), created=key in new))
                new.discard(key)  # a second copy in the same batch was not created by it
            window.clear()

        try:
            for data, extension in items:
                sha = hashlib.sha256(data).hexdigest()
                window.append((data, blob_key(sha, extension), sha))
                if len(window) >= BATCH_WINDOW:
                    flush()
            if window:
                flush()
        except BaseException:
            for key in created:
                with contextlib.suppress(StorageError):  # unreferenced: harmless
                    self.delete(key)  # the first error is the news
            raise
        return blobs

    async def put_stream(
        self,
        chunks: AsyncIterator[bytes],
        *,
        extension: str,
        check: Callable[[Path], object] | None = None,
    ) -> StoredBlob:
        """Spool the stream to a local file while hashing, check it, upload it, keep the file
        as the cached copy. An upload that fails leaves the file in the spool (see module)."""
        hasher = hashlib.sha256()
        size = 0
        tmp = self.cache.tmp_file()
        try:
            with open(tmp, "wb") as fh:
                async for chunk in chunks:
                    hasher.update(chunk)
                    size += len(chunk)
                    fh.write(chunk)
            if check is not None:
                await asyncio.to_thread(check, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        sha = hasher.hexdigest()
        key = blob_key(sha, extension)
        await asyncio.to_thread(self._store_file, tmp, key, sha)
        return StoredBlob(sha, key, size, created=True)

    def _store_file(self, tmp: Path, key: str, sha256: str) -> None:
        try:
            if not self._intact(key, sha256):
                self._upload_file(tmp, key, sha256)
        except StorageError as exc:
            kept = self.cache.spool_file(tmp, key)
            exc.message = f"{exc.message}; the downloaded image is kept at {kept}"
            exc.hint = _RESUME_HINT
            raise
        self.cache.adopt(tmp, key)

    def _upload_file(self, path: Path, key: str, sha256: str) -> None:
        """One file; boto3 splits a large one into a multipart upload (completed or aborted as
        a whole: S3 never shows the object until the last part is committed)."""
        try:
            with open(path, "rb") as fh:
                self.client.upload_fileobj(
                    fh, self.bucket, self._name(key),
                    ExtraArgs={"Metadata": {_SHA_META: sha256},
                               "ContentType": _content_type(key)})
        except Exception as exc:
            raise self._error(exc, "write", key) from exc

    def flush_spool(self) -> int:
        stored = 0
        for key, path in self.cache.spooled():
            sha = Path(key).stem
            if _file_sha256(path) != sha:
                continue  # damaged while spooled: never stored as that image (doctor shows it)
            if not self._intact(key, sha):
                self._upload_file(path, key, sha)
            self.cache.adopt(path, key)
            stored += 1
        return stored

    # -- reading ---------------------------------------------------------------------------------

    def open_stream(self, key: str) -> BinaryIO:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:
            raise self._error(exc, "read", key) from exc
        return cast(BinaryIO, answer["Body"])

    def read_bytes(self, key: str) -> bytes:
        cached = self.cache.path_of(key)
        if cached.is_file():
            return cached.read_bytes()
        body = self.open_stream(key)
        try:
            data = body.read(MAX_BLOB_BYTES + 1)
        except Exception as exc:
            raise self._error(exc, "read", key) from exc
        finally:
            body.close()
        if len(data) > MAX_BLOB_BYTES:
            raise StorageError(f"{self.location(key)} is larger than any image refstudio "
                               "stores; refusing to read it")
        return data

    def read_verified(self, key: str, sha256: str) -> bytes:
        data = self.read_bytes(key)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StorageError(f"media object {self.location(key)} does not match its recorded "
                               "hash; refusing to use it",
                               hint="restore it from a backup, or add the original image again")
        # Verified bytes are kept locally: a reference bound into many generations is checked
        # before each one, and should cost one GET, not one per generation.
        self.cache.keep(data, key)
        return data

    def local_copy(self, key: str, sha256: str) -> Path:
        def fetch(fh: BinaryIO) -> None:
            try:
                self.client.download_fileobj(self.bucket, self._name(key), fh)
            except Exception as exc:
                raise self._error(exc, "read", key) from exc

        return self.cache.get(key, sha256, fetch)

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:
            if _status(exc) == 404 and _code(exc) != "NoSuchBucket":
                return None
            raise self._error(exc, "read", key) from exc
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:
            raise self._error(exc, "delete", key) from exc
        self.cache.path_of(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start)
            for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"][len(start):]
        except Exception as exc:
            raise self._error(exc, "list") from exc

    # -- errors ----------------------------------------------------------------------------------

    def _error(self, exc: BaseException, action: str, key: str | None = None, *,
               bucket_level: bool = False) -> StorageError:
        """One line for any failure of the client; never the credentials or a traceback."""
        if isinstance(exc, StorageError):
            return exc
        where = self.location(key) if key else self.url
        name = type(exc).__name__
        code = _code(exc)
        status = _status(exc)
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return StorageError(
                f"no AWS credentials for {self.url}",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE / "
                "~/.aws/credentials); they never go in refstudio.toml")
        if code == "NoSuchBucket" or (bucket_level and status == 404):
            return StorageError(f"the bucket {self.bucket!r} of {self.url} does not exist",
                                hint="create it, or point media_url at an existing bucket")
        if code in ("NoSuchKey", "404") or status == 404:
            return StorageError(f"media object {where} is missing", hint=MISSING_HINT)
        if status == 403 or code in _DENIED:
            return StorageError(
                f"no permission to {action} {where} ({code or 'access denied'})",
                hint="check the AWS credentials in use and the bucket's policy")
        if name in _UNREACHABLE or isinstance(exc, (ConnectionError, TimeoutError)):
            return StorageError(
                f"cannot {action} {where}: the connection to {_endpoint(self._client)} failed "
                f"({_plain(name)}); nothing was stored under that key",
                hint="check the network and AWS_ENDPOINT_URL")
        if code:
            return StorageError(f"the media store refused to {action} {where} ({code})")
        return StorageError(f"cannot {action} {where} ({_plain(name)})")


_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
           "InvalidToken", "ExpiredToken", "AccountProblem"}
_UNREACHABLE = {"EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
                "ConnectTimeoutError", "ConnectionError", "ProxyConnectionError",
                "ResponseStreamingError", "IncompleteReadError", "ProtocolError",
                "S3UploadFailedError"}


def _code(exc: BaseException) -> str:
    seen = exc
    for _ in range(4):  # boto3 wraps some (S3UploadFailedError) around the ClientError
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
        if seen.__cause__ is None and seen.__context__ is None:
            break
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    return ""


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        value = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(value) if value is not None else None
    return None


def _plain(name: str) -> str:
    return {"EndpointConnectionError": "connection refused",
            "ConnectionClosedError": "connection dropped",
            "ReadTimeoutError": "timed out", "ConnectTimeoutError": "timed out"}.get(name, name)


def _endpoint(client: Any) -> str:
    """The endpoint for a message, without any user:password someone put in it."""
    url = getattr(getattr(client, "meta", None), "endpoint_url", None) or "the media store"
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return url


def _content_type(key: str) -> str:
    ext = key.rsplit(".", 1)[-1]
    return {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}.get(
        ext, "application/octet-stream")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _make_client() -> Any:
    """An S3 client from the standard AWS configuration (environment, ``~/.aws``)."""
    import os

    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
    except ImportError as exc:
        raise StorageError("media_url names an S3 store, but boto3 is not installed",
                           hint="pip install 'refstudio[s3]'") from exc
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=BATCH_THREADS * 2,
        # An endpoint of one's own (MinIO, a test server, R2) rarely resolves bucket subdomains.
        s3={"addressing_style": "path"} if endpoint else {},
    )
    try:
        session = boto3.session.Session()
        return session.client("s3", config=config,
                              region_name=session.region_name or "us-east-1")
    except Exception as exc:  # a malformed ~/.aws/config or endpoint URL
        raise StorageError(f"cannot set up the S3 client ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200]})",
                           hint="check AWS_ENDPOINT_URL, AWS_REGION and ~/.aws/config") from exc
