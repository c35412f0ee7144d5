"""SQLModel tables of a project's library: the one source of truth for its schema.

A new library (SQLite or PostgreSQL) is created from these classes' metadata; libraries written
by older releases are brought to the same schema by :mod:`refstudio.storage.migrations`, and a
test checks that both roads end at the same tables, columns and indexes on both databases.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import BigInteger, Index, Integer
from sqlmodel import Field, SQLModel

REFERENCE_KINDS: tuple[str, ...] = ("character", "location", "style", "object", "other")

GENERATION_STATES: tuple[str, ...] = (
    "pending",  # nothing sent yet, or certainly not accepted: `refstudio resume` sends it
    "submitting",  # the request is leaving the machine
    "submitted",  # the provider accepted it: request_id is known
    "completed",  # every output is stored in media/
    "failed",  # the provider (or we) gave up; see error
    "unknown",  # the submit's fate is ambiguous: may have been accepted and billed
)


def utcnow() -> datetime:
    """Timezone-aware UTC now. SQLModel stores datetimes as UTC (``timestamptz`` on
    PostgreSQL, zone-less text on SQLite) and reads them back aware, in UTC."""
    return datetime.now(timezone.utc)


#: Row ids: 64-bit on PostgreSQL (as SQLite's rowids are, and as the CLI accepts); on SQLite the
#: column must be spelled INTEGER to be the rowid itself.
ID = BigInteger().with_variant(Integer(), "sqlite")


class Asset(SQLModel, table=True):
    """One unique image content. Images are never stored twice."""

    # Optional[...] rather than "int | None": SQLModel needs it.
    id: Optional[int] = Field(default=None, primary_key=True, sa_type=ID)  # noqa: UP045
    sha256: str = Field(unique=True, index=True)
    path: str  # relative to the media store root
    format: str  # PNG, JPEG, WEBP
    width: int
    height: int
    bytes: int
    quality_json: str = "[]"  # quality warnings found on import, as a JSON list
    created_at: datetime = Field(default_factory=utcnow)


class Reference(SQLModel, table=True):
    """A named character, location, style or object."""

    id: Optional[int] = Field(default=None, primary_key=True, sa_type=ID)  # noqa: UP045
    name: str  # as the user wrote it
    name_key: str = Field(unique=True, index=True)  # lower-cased: names are unique ignoring case
    kind: str = "character"
    description: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    author: Optional[str] = None  # noqa: UP045 - who created it


class ReferenceTag(SQLModel, table=True):
    reference_id: int = Field(foreign_key="reference.id", sa_type=ID, primary_key=True,
                              ondelete="CASCADE")
    tag: str = Field(primary_key=True, index=True)


class ReferenceImage(SQLModel, table=True):
    """An image of a reference. ``source_output_id`` is the lineage edge to a generation."""

    # A label names one image of one reference.
    __table_args__ = (Index("ux_referenceimage_label", "reference_id", "label", unique=True),)

    id: Optional[int] = Field(default=None, primary_key=True, sa_type=ID)  # noqa: UP045
    reference_id: int = Field(foreign_key="reference.id", sa_type=ID, index=True,
                              ondelete="CASCADE")
    asset_id: int = Field(foreign_key="asset.id", sa_type=ID, index=True)
    label: Optional[str] = None  # noqa: UP045
    is_primary: bool = False
    position: int = 0
    source_file: Optional[str] = None  # noqa: UP045 - the file it was imported from
    created_at: datetime = Field(default_factory=utcnow)
    source_output_id: Optional[int] = Field(  # noqa: UP045
        default=None, foreign_key="output.id", sa_type=ID, index=True
    )
    author: Optional[str] = None  # noqa: UP045 - who added or promoted it


class Run(SQLModel, table=True):
    """One run of a workflow file."""

    id: Optional[int] = Field(default=None, primary_key=True, sa_type=ID)  # noqa: UP045
    workflow: str
    workflow_hash: str
    status: str = "running"
    vars_json: str = "{}"
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: Optional[datetime] = None  # noqa: UP045


class Generation(SQLModel, table=True):
    """One paid request, recorded before it is sent (write-ahead)."""

    id: Optional[int] = Field(default=None, primary_key=True, sa_type=ID)  # noqa: UP045
    status: str = Field(default="pending", index=True)
    provider: str  # who ran it: wavespeed, runway, offline
    model: str  # the provider's own name of the model (the WaveSpeed path part)
    #: The catalog id of the model asked for (``wavespeed:google/nano-banana/edit``).
    model_id: str = Field(index=True)
    template_source: Optional[str] = None  # noqa: UP045
    prompt: str  # the rendered prompt as sent
    params_json: str  # aspect_ratio, resolution, seed
    payload_json: str = "{}"  # the exact body the provider received
    bindings_json: str = "[]"  # [{name, label, reference_id, image_id, asset_id, sha256}]
    request_hash: str = Field(index=True)
    request_id: Optional[str] = Field(default=None, index=True)  # noqa: UP045
    poll_url: Optional[str] = None  # noqa: UP045
    error: str = ""
    cost_estimate: float = 0.0
    inference_ms: Optional[int] = None  # noqa: UP045
    attempts: int = 0
    run_id: Optional[int] = Field(  # noqa: UP045
        default=None, foreign_key="run.id", sa_type=ID, index=True)
    step_id: Optional[str] = None  # noqa: UP045
    owner: Optional[str] = None  # noqa: UP045 - "pid@host" of the process driving it
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: Optional[datetime] = None  # noqa: UP045
    submitted_at: Optional[datetime] = None  # noqa: UP045
    completed_at: Optional[datetime] = None  # noqa: UP045
    #: Submits that were, or may have been, accepted (and billed) by the provider.
    paid_attempts: int = 0
    #: When the latest submit was about to leave; for an ``unknown`` one, ``sent_until`` is the
    #: latest moment its task (if any) can have been created. Both on the local clock.
    sent_at: Optional[datetime] = None  # noqa: UP045
    sent_until: Optional[datetime] = None  # noqa: UP045
    sent_to: Optional[str] = None  # noqa: UP045 - the provider account/endpoint (no secrets)
    note: str = ""  # what was found out afterwards, e.g. by reconcile
    author: Optional[str] = None  # noqa: UP045 - who asked for it (configured name / OS user)


class Output(SQLModel, table=True):
    """One image a generation produced, stored in media/."""

    __table_args__ = (
        Index("ux_output_generation_index", "generation_id", "index", unique=True),
    )

    id: Optional[int] = Field(default=None, primary_key=True, sa_type=ID)  # noqa: UP045
    generation_id: int = Field(foreign_key="generation.id", sa_type=ID, index=True)
    index: int
    asset_id: int = Field(foreign_key="asset.id", sa_type=ID)
    nsfw: bool = False
    source_url: str = ""  # where it was downloaded from ("base64" for inline outputs)
    created_at: datetime = Field(default_factory=utcnow)


class Upload(SQLModel, table=True):
    """An asset made readable by a provider: uploaded once while its URL lives."""

    id: Optional[int] = Field(default=None, primary_key=True, sa_type=ID)  # noqa: UP045
    asset_id: int = Field(foreign_key="asset.id", sa_type=ID, index=True)
    provider: str = Field(index=True)
    url: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: Optional[datetime] = None  # noqa: UP045


class EngineLease(SQLModel, table=True):
    """An engine driving generations somewhere, alive while it renews ``expires_at``.

    ``Generation.owner`` names a lease; a ``resume`` on any machine leaves a generation alone
    while its owner's lease runs, and takes it over once the lease has expired (the engine died
    or lost its database for longer than the lease).
    """

    __tablename__ = "engine_lease"

    owner: str = Field(primary_key=True)  # "pid@host#n"
    host: str
    pid: int
    author: Optional[str] = None  # noqa: UP045
    started_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
