"""A batch of items written in the caller's transaction with a few set-wise statements: one read of
the rows the batch names, then one executemany each for new rows, changed rows, their vectors and
their audit entries (SQLAlchemy's insertmanyvalues on SQLite and PostgreSQL alike), instead of a
select, a flush and a merge per item through ORM objects (2.7 ms of CPU per item, measured with
bench/throughput.py's import on 2026-11-27: as much as the model's own work with int8).

The result is the same as writing the items one after another: an id that appears twice in a batch
is added by its first occurrence and updated by the second, and each occurrence gets the item as it
stood after it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import DuplicateItem, ItemNotFound
from .records import Item, NewItem, WriteStatus
from .rows import audit_values, encode_vector, upsert_statement
from .schema import AuditRow, EmbeddingRow, ItemRow

_IN = 500  # ids per IN (...) list
_FIELDS = ("name", "category", "price", "url", "description", "attributes", "content_hash")
_COLUMNS = (
    ItemRow.pk,
    ItemRow.item_id,
    *(getattr(ItemRow, k) for k in _FIELDS),
    ItemRow.added_by,
    ItemRow.added_at,
    ItemRow.updated_at,
)


async def upsert(
    s: AsyncSession,
    dialect: str,
    guild_id: int,
    items: Sequence[NewItem],
    model: str,
    actor: str,
    *,
    replace: bool,
    audit: str | None,
    t: datetime,
) -> list[tuple[Item, WriteStatus]]:
    """Insert or update `items` in `s`'s transaction; (item as written, status) per item, in order."""
    current = await _current(s, guild_id, list(dict.fromkeys(n.fields.item_id for n in items)))
    thumbs = await _thumbnails(s, [current[n.fields.item_id]["pk"] for n in items if _compares_thumbnail(n, current)])
    added: dict[str, dict[str, Any]] = {}  # item id -> the new row's values (pk unknown until inserted)
    changed: dict[int, dict[str, Any]] = {}  # pk -> the row's new values
    stale: set[int] = set()  # pks whose picture changed: other models' vectors of it go
    pictured: set[int] = set()  # pks this batch gives a picture (a vector): only their hash is written
    vectors: dict[str, tuple[int, bytes]] = {}  # item id -> (dim, vector) to store for `model`
    audits: list[dict[str, Any]] = []
    done: list[tuple[dict[str, Any], WriteStatus]] = []  # a snapshot of the row per occurrence
    for new in items:
        f = new.fields
        row = current.get(f.item_id)
        if row is not None and not replace:
            raise DuplicateItem(f"An item with id {f.item_id!r} already exists in this catalogue.")
        if row is None and new.thumbnail is None:
            raise ItemNotFound(f"Item {f.item_id!r} was removed while it was being imported; run the import again.")
        values: dict[str, Any] = dict(
            name=f.name,
            category=f.category,
            price=f.price,
            url=f.url,
            description=f.description,
            attributes=json.dumps(f.attributes, sort_keys=True) if f.attributes else None,
            content_hash=new.content_hash,
        )
        if row is None:
            row = dict(pk=None, item_id=f.item_id, added_by=actor, added_at=t, updated_at=t, **values)
            row["thumbnail"] = new.thumbnail
            current[f.item_id] = added[f.item_id] = row
            status: WriteStatus = "added"
        else:
            thumbnail = new.thumbnail
            if new.vector is None and row["content_hash"] != new.content_hash:
                # found unchanged, then its picture replaced by another writer before this write: that writer's
                # hash, vector and thumbnail stay together (the next import of this picture embeds it again)
                values["content_hash"], thumbnail = row["content_hash"], None
            if row["pk"] is not None and row["content_hash"] != values["content_hash"]:
                stale.add(row["pk"])
            same = new.vector is None and all(row[k] == v for k, v in values.items())
            if same and thumbnail is not None:
                same = thumbs.get(row["pk"], row.get("thumbnail")) == thumbnail
            status = "unchanged" if same else "updated"
            row.update(values)
            if thumbnail is not None:
                row["thumbnail"] = thumbnail
            if not same:
                row["updated_at"] = t
                if row["pk"] is not None:
                    changed[row["pk"]] = row
            if new.vector is not None and row["pk"] is not None:
                pictured.add(row["pk"])
        if new.vector is not None:
            vectors[f.item_id] = (int(new.vector.shape[-1]), encode_vector(new.vector))
        if audit:
            audits.append(audit_values(guild_id, actor, audit, f.item_id, name=f.name, category=f.category))
        done.append((dict(row), status))

    if stale:
        await s.execute(delete(EmbeddingRow).where(EmbeddingRow.item_pk.in_(sorted(stale)), EmbeddingRow.model != model))
    if added:
        rows = [{k: v for k, v in r.items() if k != "pk"} | {"guild_id": guild_id} for r in added.values()]
        got = await s.execute(insert(ItemRow).returning(ItemRow.pk, sort_by_parameter_order=True), rows)
        for r, (pk,) in zip(added.values(), got.all()):
            r["pk"] = pk
    # A row updated without a picture keeps its stored hash: what was read may have been replaced since by another
    # writer's picture (hash, vector, thumbnail), whose hash must stay with them. One executemany per key set.
    by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in changed.values():
        keys = ("pk", *(k for k in _FIELDS if r["pk"] in pictured or k != "content_hash"), "updated_at")
        row = {k: r[k] for k in keys} | _thumb(r)
        by_keys.setdefault(tuple(row), []).append(row)
    for rows in by_keys.values():
        await s.execute(update(ItemRow), rows)
    if vectors:
        rows = [dict(item_pk=current[i]["pk"], model=model, dim=d, vector=v) for i, (d, v) in vectors.items()]
        await s.execute(upsert_statement(dialect, EmbeddingRow, ("item_pk", "model"), ("dim", "vector")), rows)
    if audits:
        await s.execute(insert(AuditRow), audits)
    return [(_item(guild_id, snap, current[snap["item_id"]]["pk"]), status) for snap, status in done]


async def _current(s: AsyncSession, guild_id: int, ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), _IN):
        q = select(*_COLUMNS).where(ItemRow.guild_id == guild_id, ItemRow.item_id.in_(ids[i : i + _IN]))
        out.update({r.item_id: dict(r._mapping) for r in await s.execute(q)})
    return out


def _compares_thumbnail(new: NewItem, current: dict[str, dict[str, Any]]) -> bool:
    """Only an item sent with a thumbnail but no vector needs its stored thumbnail to tell 'unchanged'."""
    row = current.get(new.fields.item_id)
    return new.vector is None and new.thumbnail is not None and row is not None


async def _thumbnails(s: AsyncSession, pks: list[int]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for i in range(0, len(pks), _IN):
        q = select(ItemRow.pk, ItemRow.thumbnail).where(ItemRow.pk.in_(pks[i : i + _IN]))
        out.update({pk: bytes(thumb) for pk, thumb in await s.execute(q)})
    return out


def _thumb(row: dict[str, Any]) -> dict[str, Any]:
    return {"thumbnail": row["thumbnail"]} if "thumbnail" in row else {}


def _item(guild_id: int, row: dict[str, Any], pk: int) -> Item:
    return Item(
        pk,
        guild_id,
        row["item_id"],
        row["name"],
        row["category"],
        row["price"],
        row["url"],
        row["description"],
        json.loads(row["attributes"]) if row["attributes"] else {},
        row["content_hash"],
        row["added_by"],
        row["added_at"],
        row["updated_at"],
    )
