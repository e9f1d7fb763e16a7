"""The catalogue in SQLite: items, embeddings, guild settings, audit log, saved classifiers.

Async SQLAlchemy 2 over aiosqlite. The schema is Alembic's (`migrations/`): `Store.open()` upgrades an
older database to the head revision before anything else touches it. WAL journaling plus one
transaction per write batch means a crash or `kill -9` leaves either all of a batch or none of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import BigInteger, CursorResult, delete, func, literal, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import item_writes
from .changes import CHANNEL, Change, ChangeFeed, Handler
from .database import Database, create_engine, guarded, locate
from .database import migrate as migrate_async
from .errors import CatalogEmpty, DuplicateItem, ItemNotFound
from .records import GuildSettings, Item, ItemFields, NewItem, SavedClassifier, VectorRows, WriteStatus  # noqa: F401  (ItemFields: importer.py, until it imports records)
from .rows import (
    aggregated_vector_rows,
    audit_row,
    decode_vectors,
    insert_new,
    item_from_row,
    joined_vector_rows,
    now,
    upsert_statement,
    vector_rows,
)
from .schema import AuditRow, ClassifierRow, EmbeddingRow, GuildSettingsRow, ItemRow, WatchedChannelRow
from .versions import CatalogueVersions

log = logging.getLogger(__name__)
_SLICE = 2000  # rows per slice of a bulk read
_AGGREGATED_SLICE = text(
    "SELECT array_agg(pk ORDER BY pk), array_agg(category ORDER BY pk), array_agg(price ORDER BY pk), "
    "array_agg(content_hash ORDER BY pk), max(dim), string_agg(vector, ''::bytea ORDER BY pk) FROM ("
    "SELECT i.pk, i.category, i.price, i.content_hash, e.dim, e.vector FROM items i "
    "JOIN embeddings e ON e.item_pk = i.pk AND e.model = :model WHERE i.guild_id = :g AND i.pk > :last "
    "ORDER BY i.pk LIMIT :n) s"
)
UPSERT_ATTEMPTS = 8  # an import's batch read again after a concurrent writer inserted some of its ids


def migrate(db: str | Path, revision: str = "head") -> None:
    """Upgrade a database to `revision`, synchronously (scripts and tests; the store migrates on open)."""

    async def run() -> None:
        database = locate(db)
        engine = create_engine(database)
        try:
            await migrate_async(engine, database, revision)
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:  # a loop of its own: the caller may be inside one
        pool.submit(asyncio.run, run()).result()


async def _find(s: AsyncSession, guild_id: int, item_id: str) -> ItemRow:
    row = (await s.execute(select(ItemRow).where(ItemRow.guild_id == guild_id, ItemRow.item_id == item_id))).scalar_one_or_none()
    if row is None:
        raise ItemNotFound(f"There is no item {item_id!r} in this catalogue.")
    return row


@guarded
class Store:
    """Catalogue persistence. Collaborators pass it in; it knows nothing of models or indexes."""

    def __init__(self, engine: AsyncEngine, database: Database) -> None:
        self.engine = engine
        self.database = database
        self.path = database.path  # the SQLite file; None on PostgreSQL
        self.origin = uuid.uuid4().hex  # names this store's changes on the change feed
        self.versions = CatalogueVersions()  # SQLite: which of a catalogue's versions this store committed
        self.session = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, db: str | Path) -> Store:
        """Open a SQLite file or a postgresql:// URL, upgrading its schema to the head revision first."""
        database = locate(db)
        engine = create_engine(database)
        try:
            await migrate_async(engine, database)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, database)

    async def close(self) -> None:
        await self.engine.dispose()

    # -- telling the other processes (PostgreSQL: the change feed; SQLite: versions) --------------

    async def _publish(self, s: AsyncSession, change: Change) -> None:
        """Tell the other processes, in the writing transaction (delivered when, and if, it commits): PostgreSQL's
        change feed; on SQLite, a change of items bumps the catalogue's version, which its processes compare."""
        if self.database.kind == "postgresql":
            change = Change(change.kind, change.catalogue, change.pks, change.model, self.origin)
            await s.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": change.payload()})
        elif change.kind in ("items", "edited", "removed", "reload"):
            await self.versions.bump(s, change.catalogue)

    async def version(self, guild_id: int) -> int:
        """The catalogue's version (SQLite; versions.py): one more with each committed change of its items."""
        async with self.session() as s:
            return await self.versions.read(s, guild_id)

    def change_feed(self, handler: Handler) -> ChangeFeed | None:
        """What other processes change, as it commits (PostgreSQL); None on SQLite, which has no channel."""
        if self.database.kind != "postgresql":
            return None
        return ChangeFeed(self.database.async_url.replace("postgresql+asyncpg://", "postgresql://", 1), self.origin, handler)

    # -- items ----------------------------------------------------------------------------------

    async def has_items(self, guild_id: int) -> bool:
        async with self.session() as s:
            q = select(ItemRow.pk).where(ItemRow.guild_id == guild_id).limit(1)
            return (await s.execute(q)).first() is not None

    async def known_hashes(self, guild_id: int, item_ids: Iterable[str], model: str) -> dict[str, str]:
        """item_id -> content_hash for items that already have an embedding for `model`."""
        ids = list(item_ids)
        out: dict[str, str] = {}
        async with self.session() as s:
            for i in range(0, len(ids), 500):
                q = (
                    select(ItemRow.item_id, ItemRow.content_hash)
                    .join(EmbeddingRow, (EmbeddingRow.item_pk == ItemRow.pk) & (EmbeddingRow.model == model))
                    .where(ItemRow.guild_id == guild_id, ItemRow.item_id.in_(ids[i : i + 500]))
                )
                out.update({r.item_id: r.content_hash for r in await s.execute(q)})
        return out

    async def upsert_items(
        self,
        guild_id: int,
        items: Sequence[NewItem],
        model: str,
        actor: str,
        *,
        replace: bool = True,
        audit: str | None = None,
    ) -> list[tuple[Item, WriteStatus]]:
        """Insert or update a batch in ONE transaction. Returns (item, "added"|"updated"|"unchanged").

        With replace=False an existing id raises DuplicateItem (moderators adding by hand). With
        `audit`, each item's audit entry is written in the same transaction."""
        for attempt in range(UPSERT_ATTEMPTS):
            try:
                return await self._upsert(guild_id, items, model, actor, replace, audit)
            except IntegrityError:  # a concurrent writer added the same id between our read and insert
                if not replace or attempt == UPSERT_ATTEMPTS - 1:
                    raise DuplicateItem("An item with that id was just added to this catalogue; try again.") from None
                # an import: read again (the other writer's rows are visible now) and update them; a short,
                # growing, random pause lets two imports of one catalogue stop colliding batch after batch
                await asyncio.sleep(random.uniform(0, 0.02 * (attempt + 1)))
        raise AssertionError("unreachable")

    async def _upsert(
        self, guild_id: int, items: Sequence[NewItem], model: str, actor: str, replace: bool, audit: str | None
    ) -> list[tuple[Item, WriteStatus]]:
        async with self.session() as s, s.begin():
            results = await item_writes.upsert(
                s, self.database.kind, guild_id, items, model, actor, replace=replace, audit=audit, t=now()
            )
            changed = tuple(item.pk for item, status in results if status != "unchanged")
            if changed:
                await self._publish(s, Change("items", guild_id, changed))
        return results

    async def remove_item(self, guild_id: int, item_id: str, actor: str) -> Item:
        """Delete the item and its embeddings, and audit it, in one transaction."""
        async with self.session() as s, s.begin():
            row = await _find(s, guild_id, item_id)
            item = item_from_row(row)
            await s.execute(delete(EmbeddingRow).where(EmbeddingRow.item_pk == row.pk))
            await s.delete(row)
            s.add(audit_row(guild_id, actor, "remove", item_id, name=item.name, category=item.category))
            await self._publish(s, Change("removed", guild_id, (item.pk,)))
        return item

    async def update_item(self, guild_id: int, item_id: str, changes: dict[str, Any], *, actor: str) -> Item:
        """Change an item's fields (others are ignored), audit-logged in the same transaction."""
        allowed = {"name", "category", "price", "url", "description"}
        async with self.session() as s, s.begin():
            row = await _find(s, guild_id, item_id)
            for k, v in changes.items():
                if k in allowed:
                    setattr(row, k, v)
            row.updated_at = now()
            s.add(audit_row(guild_id, actor, "edit", item_id, **{k: v for k, v in changes.items() if k in allowed}))
            await s.flush()
            await self._publish(s, Change("items", guild_id, (row.pk,)))
            return item_from_row(row)

    async def get_item(self, guild_id: int, item_id: str) -> Item:
        async with self.session() as s:
            row = await _find(s, guild_id, item_id)
            return item_from_row(row)

    async def items_by_pk(self, pks: Sequence[int]) -> dict[int, Item]:
        async with self.session() as s:
            rows = (await s.execute(select(ItemRow).where(ItemRow.pk.in_(list(pks))))).scalars()
            return {r.pk: item_from_row(r) for r in rows}

    async def thumbnails(self, pks: Sequence[int]) -> dict[int, bytes]:
        async with self.session() as s:
            rows = await s.execute(select(ItemRow.pk, ItemRow.thumbnail).where(ItemRow.pk.in_(list(pks))))
            return {r.pk: r.thumbnail for r in rows}

    async def list_items(
        self, guild_id: int, *, category: str | None = None, offset: int = 0, limit: int = 10
    ) -> tuple[list[Item], int]:
        where = [ItemRow.guild_id == guild_id]
        if category:
            where.append(func.lower(ItemRow.category) == category.lower())
        q = select(ItemRow, func.count().over()).where(*where).order_by(ItemRow.category, ItemRow.item_id)
        async with self.session() as s:  # the page and its total in one statement: of one moment
            rows = (await s.execute(q.offset(offset).limit(limit))).all()
            if not rows and offset:  # past the last page: the total alone
                return [], int((await s.execute(select(func.count()).select_from(ItemRow).where(*where))).scalar_one())
            return [item_from_row(r[0]) for r in rows], int(rows[0][1]) if rows else 0

    async def category_counts(self, guild_id: int) -> dict[str, int]:
        async with self.session() as s:
            q = select(ItemRow.category, func.count()).where(ItemRow.guild_id == guild_id).group_by(ItemRow.category)
            return {c: int(n) for c, n in await s.execute(q)}

    async def nothing_to_search(self, guild_id: int, model: str) -> CatalogEmpty:
        """Why a catalogue has no `model` vectors to search: no items, or items embedded with other models only."""
        other = [m for m in await self.model_counts(guild_id) if m != model]
        if not other:
            return CatalogEmpty("The catalogue is empty: a moderator can add items with /catalog add.")
        return CatalogEmpty(
            f"This catalogue's items were embedded with {', '.join(other)}, not {model}: its operator runs the bot with "
            f"--model {other[0]}, or imports them again with --model {model}."
        )

    async def model_counts(self, guild_id: int) -> dict[str, int]:
        async with self.session() as s:
            q = (
                select(EmbeddingRow.model, func.count())
                .join(ItemRow, ItemRow.pk == EmbeddingRow.item_pk)
                .where(ItemRow.guild_id == guild_id)
                .group_by(EmbeddingRow.model)
            )
            return {m: int(n) for m, n in await s.execute(q)}

    async def catalogue_ids(self) -> list[int]:
        async with self.session() as s:
            return [int(g) for (g,) in await s.execute(select(ItemRow.guild_id).distinct())]

    async def model_in_use(self, default: str, guild_id: int | None = None) -> str:
        """The model most embeddings were made with (in one catalogue, or in all): what it was built with."""
        q = select(EmbeddingRow.model, func.count().label("n")).group_by(EmbeddingRow.model).order_by(text("n DESC")).limit(1)
        if guild_id is not None:
            q = q.join(ItemRow, ItemRow.pk == EmbeddingRow.item_pk).where(ItemRow.guild_id == guild_id)
        async with self.session() as s:
            row = (await s.execute(q)).first()
        return row[0] if row else default

    async def load_vectors(self, guild_id: int, model: str) -> VectorRows:
        """All of a catalogue's vectors for `model`: a bulk read of up to 100,000s of rows that must not
        hold the event loop, nor fill the heap with a tuple per row, whose garbage collection would
        (a full collection in a large process takes 0.1 s). SQLite: plain sqlite3 in a thread (same WAL
        database), a slice of rows at a time. PostgreSQL: slices the server aggregates into a few columns
        each, in one snapshot; the vectors are decoded in a thread."""
        if self.path is not None:
            return await asyncio.to_thread(self._load_vectors_sqlite, self.path, guild_id, model)
        slices: list[Any] = []
        last = -1
        async with self.engine.connect() as c:
            await c.execution_options(isolation_level="REPEATABLE READ")
            async with c.begin():
                while True:
                    part = (await c.execute(_AGGREGATED_SLICE, dict(g=guild_id, model=model, last=last, n=_SLICE))).one()
                    if part[0] is None:
                        break
                    slices.append(tuple(part))
                    last = part[0][-1]
        return await asyncio.to_thread(aggregated_vector_rows, slices)

    @staticmethod
    def _load_vectors_sqlite(path: Path, guild_id: int, model: str) -> VectorRows:
        con = sqlite3.connect(path, timeout=30)
        try:
            cursor = con.execute(
                "SELECT i.pk, i.category, i.price, i.content_hash, e.dim, e.vector FROM items i "
                "JOIN embeddings e ON e.item_pk = i.pk AND e.model = ? WHERE i.guild_id = ? ORDER BY i.pk",
                (model, guild_id),
            )
            parts = []
            while rows := cursor.fetchmany(_SLICE):
                parts.append(vector_rows(rows))
        finally:
            con.close()
        return joined_vector_rows(parts)

    async def vectors_by_pk(self, pks: Sequence[int], model: str) -> VectorRows:
        """The vectors (for `model`) and index fields of the given items, those that have one."""
        q = (
            select(ItemRow.pk, ItemRow.category, ItemRow.price, ItemRow.content_hash, EmbeddingRow.dim, EmbeddingRow.vector)
            .join(EmbeddingRow, (EmbeddingRow.item_pk == ItemRow.pk) & (EmbeddingRow.model == model))
            .where(ItemRow.pk.in_(list(pks)))
            .order_by(ItemRow.pk)
        )
        async with self.session() as s:
            rows = [tuple(r) for r in await s.execute(q)]
        return vector_rows(rows)

    async def iter_export(self, guild_id: int, model: str, batch: int = 2000) -> AsyncIterator[list[tuple[Item, np.ndarray]]]:
        last = -1
        while True:
            q = (
                select(ItemRow, EmbeddingRow.dim, EmbeddingRow.vector)
                .join(EmbeddingRow, (EmbeddingRow.item_pk == ItemRow.pk) & (EmbeddingRow.model == model))
                .where(ItemRow.guild_id == guild_id, ItemRow.pk > last)
                .order_by(ItemRow.pk)
                .limit(batch)
            )
            async with self.session() as s:
                rows = (await s.execute(q)).all()
            if not rows:
                return
            yield [(item_from_row(r[0]), decode_vectors([r.vector], r.dim)[0]) for r in rows]
            last = rows[-1][0].pk

    async def fingerprint(self, guild_id: int, model: str) -> str:
        """Changes whenever items are added, removed or edited: tells whether a classifier is stale."""
        async with self.session() as s:
            q = (
                select(func.count(), func.max(ItemRow.pk), func.max(ItemRow.updated_at), func.sum(ItemRow.pk))
                .join(EmbeddingRow, (EmbeddingRow.item_pk == ItemRow.pk) & (EmbeddingRow.model == model))
                .where(ItemRow.guild_id == guild_id)
            )
            n, mx, upd, total = (await s.execute(q)).one()
        return f"{n}:{mx}:{total}:{upd.isoformat() if upd else ''}"

    # -- classifiers ------------------------------------------------------------------------------

    async def save_classifier(self, guild_id: int, model: str, fingerprint: str, method: str, blob: bytes) -> None:
        values = dict(guild_id=guild_id, model=model, fingerprint=fingerprint, method=method, blob=blob, trained_at=now())
        async with self.session() as s, s.begin():  # one statement: merge's SELECT-then-INSERT raced another process's
            await s.execute(upsert_statement(self.database.kind, ClassifierRow, ("guild_id", "model"), values), values)
            await self._publish(s, Change("classifier", guild_id, model=model))

    async def load_classifier(self, guild_id: int, model: str) -> SavedClassifier | None:
        async with self.session() as s:
            row = await s.get(ClassifierRow, (guild_id, model))
        return None if row is None else SavedClassifier(row.fingerprint, row.method, row.blob, row.trained_at)

    # -- guild settings and audit -----------------------------------------------------------------

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        """The settings and watched channels, read in one statement: of one moment, never half of a change."""
        g, st, w = select(literal(guild_id, BigInteger).label("id")).subquery(), GuildSettingsRow, WatchedChannelRow
        both = select(st.guild_id, st.k, st.moderator_role_id, st.remember_photos, w.channel_id).select_from(g)
        async with self.session() as s:
            rows = (await s.execute(both.outerjoin(st, st.guild_id == g.c.id).outerjoin(w, w.guild_id == g.c.id))).all()
        row, watched = rows[0], {r.channel_id for r in rows if r.channel_id is not None}
        if row.guild_id is None:
            return GuildSettings(guild_id, watched=watched)
        return GuildSettings(guild_id, row.k, row.moderator_role_id, watched, row.remember_photos is not False)

    async def update_guild_settings(self, guild_id: int, actor: str, **values: Any) -> None:
        """Change a guild's settings, audit-logged in the same transaction. One statement: two first changes
        of a guild at once (two admins, two shards) both land."""
        row = {"guild_id": guild_id, **values, "updated_at": now()}
        async with self.session() as s, s.begin():
            await s.execute(upsert_statement(self.database.kind, GuildSettingsRow, ("guild_id",), row), row)
            s.add(audit_row(guild_id, actor, "config", None, **values))
            await self._publish(s, Change("settings", guild_id))

    async def set_watched(self, guild_id: int, channel_id: int, watched: bool, *, actor: str) -> bool:
        """Returns whether anything changed (a change is audit-logged in the same transaction)."""
        key = {"guild_id": guild_id, "channel_id": channel_id}
        async with self.session() as s, s.begin():  # one statement each: the same change twice at once is one
            if watched:
                statement = insert_new(self.database.kind, WatchedChannelRow.__table__).values(**key)
            else:
                where = (WatchedChannelRow.guild_id == guild_id, WatchedChannelRow.channel_id == channel_id)
                statement = delete(WatchedChannelRow).where(*where)
            if cast(CursorResult[Any], await s.execute(statement)).rowcount != 1:
                return False
            s.add(audit_row(guild_id, actor, "watch" if watched else "unwatch", None, channel=channel_id))
            await self._publish(s, Change("settings", guild_id))
            return True

    async def audit(self, guild_id: int, actor: str, action: str, item_id: str | None = None, **detail: Any) -> None:
        async with self.session() as s, s.begin():
            s.add(audit_row(guild_id, actor, action, item_id, **detail))

    async def audit_entries(self, guild_id: int, limit: int = 50) -> list[dict[str, Any]]:
        async with self.session() as s:
            q = select(AuditRow).where(AuditRow.guild_id == guild_id).order_by(AuditRow.id.desc()).limit(limit)
            return [
                dict(actor=r.actor, action=r.action, item_id=r.item_id, detail=json.loads(r.detail) if r.detail else {}, at=r.at)
                for r in (await s.execute(q)).scalars()
            ]

    async def integrity_check(self) -> str:
        """ "ok", or what is wrong: SQLite's own check of the file, and on both databases the invariants
        the schema cannot state (every embedding's vector has its declared size)."""
        async with self.engine.connect() as c:
            if self.path is not None:
                verdict = str((await c.execute(text("PRAGMA integrity_check"))).scalar_one())
                if verdict != "ok":
                    return verdict
            orphans = (
                await c.execute(
                    text("SELECT count(*) FROM embeddings e LEFT JOIN items i ON i.pk = e.item_pk WHERE i.pk IS NULL")
                )
            ).scalar_one()
            ragged = (await c.execute(text("SELECT count(*) FROM embeddings WHERE length(vector) != 2 * dim"))).scalar_one()
        problems = [f"{orphans} embeddings without an item"] if orphans else []
        problems += [f"{ragged} embeddings whose size is not their dimension"] if ragged else []
        return "; ".join(problems) or "ok"


__all__ = ["Store", "migrate"]
