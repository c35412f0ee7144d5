"""Reference images become provider URLs once each while the URL lives.

A URL is recorded in the ``upload`` table with when it was made; concurrent requests that need the
same image wait on one upload instead of sending the bytes twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from sqlmodel import col, select

from ..errors import StorageError
from ..providers.base import Provider
from ..storage.database import Database, read_session, write_session
from ..storage.media import MediaStore
from ..storage.tables import Asset, Upload

CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


class UploadCache:
    def __init__(self, db: Database, store: MediaStore, provider: Provider, *, ttl: timedelta):
        self.db = db
        self.store = store
        self.provider = provider
        self.ttl = ttl
        self._inflight: dict[str, asyncio.Future[str]] = {}

    async def url_for(self, sha256: str) -> str:
        """The provider URL of the stored image with this hash, uploading it if needed."""
        cached = self._lookup(sha256)
        if cached is not None:
            return cached
        pending = self._inflight.get(sha256)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inflight[sha256] = future
        try:
            url = await self._upload(sha256)
            future.set_result(url)
            return url
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[sha256]

    def verify(self, hashes: Iterable[str]) -> None:
        """Check that each image's media file is there and holds the bytes of its hash.

        Called before work is recorded, so a missing or changed file is refused while nothing
        is written, sent or paid (StorageError naming the file, with how to repair it). It
        reads and hashes every image, cached URL or not: a few milliseconds per image of a few
        MB (``benchmarks/media_verify.py``), small next to one generation. The upload checks
        again as it reads, for a file changed in between.
        """
        wanted = sorted(set(hashes))
        if not wanted:
            return
        with read_session(self.db) as session:
            paths = dict(session.exec(select(Asset.sha256, Asset.path)
                                      .where(col(Asset.sha256).in_(wanted))).all())
        for sha256 in wanted:
            if sha256 not in paths:
                raise StorageError(f"the library has no stored image {sha256[:12]}…",
                                   hint="`refstudio doctor` checks the library")
            self.store.read_verified(paths[sha256], sha256)

    def _lookup(self, sha256: str) -> str | None:
        # Treat a URL as dead a margin before its expiry: a request may queue a while before the
        # provider fetches the image. A provider that says when its URL expires (Runway's
        # uploads: ~24 h, given with the margin taken off) is taken at its word too.
        now = _naive_utc()
        fresh_after = now - self.ttl
        with read_session(self.db) as session:
            row: Upload | None = session.exec(
                select(Upload)
                .join(Asset, col(Asset.id) == Upload.asset_id)
                .where(Asset.sha256 == sha256, Upload.provider == self.provider.name)
                .where(col(Upload.created_at) > fresh_after)
                .order_by(col(Upload.created_at).desc())
            ).first()
            if row is None:
                return None
            expires = row.expires_at
            if expires is not None and _aware(expires) <= now:
                return None
            url: str = row.url
            return url

    async def _upload(self, sha256: str) -> str:
        with read_session(self.db) as session:
            asset = session.exec(select(Asset).where(Asset.sha256 == sha256)).one()
        # Hashed while read for the upload anyway: a media file changed since it was stored is
        # refused here, never sent to the model as if it were the recorded image.
        data = self.store.read_verified(asset.path, sha256)
        ext = asset.path.rsplit(".", 1)[-1]
        uploaded = await self.provider.upload(
            data, filename=f"{sha256[:16]}.{ext}", content_type=CONTENT_TYPES[asset.format]
        )
        with write_session(self.db) as session:
            session.add(
                Upload(
                    asset_id=asset.id,  # type: ignore[arg-type]
                    provider=self.provider.name,
                    url=uploaded.url,
                    created_at=_naive_utc(),
                    expires_at=uploaded.expires_at,
                )
            )
        return uploaded.url


def _aware(when: datetime) -> datetime:
    """Databases may hand back naive UTC datetimes: compare them as UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _naive_utc() -> datetime:
    return datetime.now(timezone.utc)
