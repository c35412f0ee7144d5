"""``media_url`` → a :class:`~refstudio.storage.media.MediaStore`.

- ``file:`` (the default): the project's ``media/`` folder; ``file:PATH`` another folder
  (relative to the project);
- ``s3://bucket/prefix``: an S3-compatible bucket (endpoint and credentials from the standard
  AWS environment variables and ``~/.aws``, never from the URL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .media import LocalMediaStore, MediaStore
from .mediacache import DEFAULT_CACHE_BYTES, MediaCache

ENV_MEDIA_URL = "REFSTUDIO_MEDIA_URL"
#: S3's bucket naming rule (3-63 lowercase letters, digits, dots, hyphens).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class MediaUrl:
    scheme: str  # "file" or "s3"
    bucket: str = ""
    prefix: str = ""
    folder: str = ""  # for file: ("" is the project's media/)


def parse_media_url(url: str, *, source: str = "media_url") -> MediaUrl:
    """Check a media URL; :class:`ConfigError` naming ``source`` says what is wrong (without
    repeating anything that looks like a credential)."""
    text = url.strip()
    if text == "" or text == "file:" or text == "file://":
        return MediaUrl("file")
    if text.startswith("file:"):
        rest = text[len("file://"):] if text.startswith("file://") else text[len("file:"):]
        return MediaUrl("file", folder=rest)
    if text.startswith("s3://"):
        rest = text[len("s3://"):]
        bucket, _, prefix = rest.partition("/")
        if "@" in bucket or ":" in bucket:
            raise ConfigError(f"{source}: an s3:// URL holds no credentials or port; give "
                              "s3://bucket/prefix",
                              hint="credentials come from AWS_ACCESS_KEY_ID/"
                              "AWS_SECRET_ACCESS_KEY or ~/.aws, the endpoint from "
                              "AWS_ENDPOINT_URL")
        if not _BUCKET.match(bucket):
            raise ConfigError(f"{source}: {bucket!r} is not a valid bucket name (3-63 "
                              "lowercase letters, digits, dots and hyphens)")
        if "?" in prefix or "#" in prefix or ".." in prefix.split("/"):
            raise ConfigError(f"{source}: the prefix of {text!r} must be a plain path")
        return MediaUrl("s3", bucket=bucket, prefix=prefix.strip("/"))
    scheme = text.split(":", 1)[0] if ":" in text else text
    raise ConfigError(f"{source}: {scheme[:20]!r} is not a media store refstudio knows",
                      hint='use "file:" (the project\'s media/ folder) or "s3://bucket/prefix"')


def open_media_store(
    url: str | None,
    *,
    root: Path,
    media_dir: Path,
    cache_dir: Path,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> MediaStore:
    """The store ``url`` names for the project at ``root``. Nothing is contacted yet."""
    parsed = parse_media_url(url or "")
    if parsed.scheme == "file":
        folder = media_dir if not parsed.folder else (root / parsed.folder).resolve()
        return LocalMediaStore(folder)
    from .s3store import S3MediaStore  # boto3 comes only with it

    return S3MediaStore(parsed.bucket, parsed.prefix,
                        MediaCache(cache_dir / "media", max_bytes=cache_bytes))
