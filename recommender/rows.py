"""Between database rows and the recommender's records: vector encoding (little-endian float16),
item and audit rows, and column-wise vector rows. Plain functions, no session."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .records import Item, VectorRows
from .schema import AuditRow, ItemRow


def upsert_statement(dialect: str, table: Any, keys: Sequence[str], columns: Iterable[str], where: Any = None) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` of `columns` (only where `where` holds for the existing row), in
    the database's own dialect; execute it with one row's values or a list of them. One statement, so two processes
    writing the same new row both succeed (an ORM ``merge`` is a SELECT, then an INSERT)."""
    from sqlalchemy.dialects import postgresql, sqlite

    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    set_ = {c: stmt.excluded[c] for c in columns if c not in keys}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=set_, where=where)


def insert_new(dialect: str, table: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING``: its rowcount says whether the row was new. One statement, so two
    processes adding the same row at once both succeed (a read, then an INSERT, raced)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).on_conflict_do_nothing()


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def encode_vector(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype="<f2").tobytes()


def decode_vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f2").reshape(len(blobs), dim).astype(np.float32)


def audit_values(guild_id: int, actor: str, action: str, item_id: str | None, **detail: Any) -> dict[str, Any]:
    """An audit entry's column values (for executemany)."""
    return dict(
        guild_id=guild_id,
        actor=actor,
        action=action,
        item_id=item_id,
        detail=json.dumps(detail, default=str) if detail else None,
        at=now(),
    )


def audit_row(guild_id: int, actor: str, action: str, item_id: str | None, **detail: Any) -> AuditRow:
    return AuditRow(**audit_values(guild_id, actor, action, item_id, **detail))


def item_from_row(row: ItemRow) -> Item:
    return Item(
        row.pk,
        row.guild_id,
        row.item_id,
        row.name,
        row.category,
        row.price,
        row.url,
        row.description,
        json.loads(row.attributes) if row.attributes else {},
        row.content_hash,
        row.added_by,
        row.added_at,
        row.updated_at,
    )


def vector_rows(rows: Sequence[Any]) -> VectorRows:
    """(pk, category, price, hash, dim, vector) rows -> column-wise VectorRows."""
    dim = rows[0][4] if rows else 0
    return VectorRows(
        np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
        decode_vectors([bytes(r[5]) for r in rows], dim),
        [r[1] for r in rows],
        np.fromiter((math.nan if r[2] is None else r[2] for r in rows), dtype=np.float64, count=len(rows)),
        [r[3] for r in rows],
    )


def joined_vector_rows(parts: Sequence[VectorRows]) -> VectorRows:
    """Slices of one catalogue's VectorRows, in order -> one VectorRows."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return vector_rows([])
    return VectorRows(
        np.concatenate([p.pks for p in parts]),
        np.concatenate([p.vectors for p in parts]),
        [c for p in parts for c in p.categories],
        np.concatenate([p.prices for p in parts]),
        [h for p in parts for h in p.hashes],
    )


def aggregated_vector_rows(slices: Sequence[Sequence[Any]]) -> VectorRows:
    """Slices as PostgreSQL aggregates them, (pks[], categories[], prices[], hashes[], dim, vectors joined)
    -> one VectorRows."""
    return joined_vector_rows(
        [
            VectorRows(
                np.asarray(pks, dtype=np.int64),
                decode_vectors([blob], len(pks) * dim).reshape(len(pks), dim),
                list(categories),
                np.array([math.nan if p is None else p for p in prices], dtype=np.float64),
                list(hashes),
            )
            for pks, categories, prices, hashes, dim, blob in slices
        ]
    )
