"""Inserts that several writers may race on, made safe by the database's unique indexes.

On SQLite one writer runs at a time, so "look, then insert" was enough; on PostgreSQL two
processes can both look, both find nothing, and both insert. Here the unique index decides:
``INSERT … ON CONFLICT DO NOTHING`` skips a row whose key exists (waiting, if another
transaction is inserting it, for that one to end), and the caller learns what happened from
what the statement returned, never from the words of an error message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, select
from sqlmodel import col

from ..errors import NameTakenError
from .database import insert_ignoring
from .tables import Asset, Reference, ReferenceTag, utcnow

_ASSET: Table = Asset.__table__  # type: ignore[attr-defined]
_REFERENCE: Table = Reference.__table__  # type: ignore[attr-defined]
_TAG: Table = ReferenceTag.__table__  # type: ignore[attr-defined]


def ensure_assets(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Asset ids by sha256 for ``rows`` (asset column values), inserting those not stored yet.

    Each content is one row whoever stores it first; a row inserted meanwhile by another
    process is found, not duplicated or refused.
    """
    if not rows:
        return {}
    now = utcnow()
    fresh: dict[str, dict[str, Any]] = {}
    for row in rows:
        fresh.setdefault(row["sha256"], {"quality_json": "[]", "created_at": now, **row})
    conn.execute(insert_ignoring(_ASSET, conn.dialect.name, ("sha256",)), list(fresh.values()))
    ids: dict[str, int] = {}
    shas = sorted(fresh)
    for start in range(0, len(shas), 500):
        found = conn.execute(
            select(col(Asset.sha256), col(Asset.id)).where(
                col(Asset.sha256).in_(shas[start:start + 500]))
        ).all()
        ids.update({sha: int(asset_id) for sha, asset_id in found if asset_id is not None})
    return ids


def insert_reference(conn: Connection, *, name: str, key: str, kind: str, description: str,
                     author: str | None) -> int:
    """A new reference's id; :class:`NameTakenError` naming ``name`` when its case-insensitive
    key is taken (by a row committed before, or by a writer racing this one)."""
    now = utcnow()
    statement = insert_ignoring(_REFERENCE, conn.dialect.name, ("name_key",)).values(
        name=name, name_key=key, kind=kind, description=description, author=author,
        created_at=now, updated_at=now,
    ).returning(_REFERENCE.c.id)
    ref_id = conn.execute(statement).scalar()
    if ref_id is None:
        raise NameTakenError(f"a reference named {name!r} already exists",
                             hint=f"add an image to it with `refstudio ref image add {name} "
                                  "FILE`, or choose another name")
    return int(ref_id)


def add_tags(conn: Connection, reference_id: int, tags: Iterable[str]) -> None:
    """Tag a reference; a tag it already has (even one just added elsewhere) is kept once."""
    rows = [{"reference_id": reference_id, "tag": tag} for tag in tags]
    if rows:
        conn.execute(insert_ignoring(_TAG, conn.dialect.name, ("reference_id", "tag")), rows)


__all__ = ["add_tags", "ensure_assets", "insert_reference"]
