"""What syncs remember between runs, in the catalogue database: each guild's scheduled feed (with
the lease that keeps two syncs of one catalogue from running at once, across processes) and each
image URL's ETag/Last-Modified. Built on the store's session factory; knows nothing of models."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .records import FeedSchedule
from .rows import audit_row, now, upsert_statement
from .schema import FeedRow, ImageValidatorRow, ItemRow
from .webfetch import Validator

_SLICE = 500
_IDS_SLICE = 2000
_LAST_MODIFIED_CHARS = cast(Any, ImageValidatorRow.__table__.c.last_modified.type).length  # String(100)
VALIDATOR_TTL_S = 30 * 24 * 3600.0


def _validator_rows(learned: dict[str, Validator], t: datetime) -> list[dict[str, Any]]:
    """The validators worth storing, as rows (a Last-Modified longer than its column is no HTTP date: dropped)."""
    rows = []
    for url, v in learned.items():
        modified = v.last_modified if v.last_modified is not None and len(v.last_modified) <= _LAST_MODIFIED_CHARS else None
        if v.etag is not None or modified is not None:
            rows.append(dict(url_key=_key(url), url=url, etag=v.etag, last_modified=modified, digest=v.digest, seen_at=t))
    return rows


def _key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogateescape")).hexdigest()


def _schedule(row: FeedRow) -> FeedSchedule:
    return FeedSchedule(
        row.guild_id,
        row.url,
        row.every_s,
        json.loads(row.options) if row.options else {},
        row.channel_id,
        row.next_run_at,
        row.last_run_at,
        row.last_error,
    )


class FeedState:
    def __init__(self, session: async_sessionmaker[AsyncSession]) -> None:
        self.session = session

    # -- image validators -------------------------------------------------------------------------

    async def validators(self, urls: Iterable[str]) -> dict[str, Validator]:
        """What image servers said about these URLs before (a feed's 250,000 at most: keyed in a thread, read in slices)."""
        wanted = await asyncio.to_thread(lambda: list({_key(u): u for u in urls}))
        out: dict[str, Validator] = {}
        async with self.session() as s:
            for i in range(0, len(wanted), _SLICE):
                q = select(ImageValidatorRow).where(ImageValidatorRow.url_key.in_(wanted[i : i + _SLICE]))
                for r in (await s.execute(q)).scalars():
                    out[r.url] = Validator(r.etag, r.last_modified, r.digest)
        return out

    async def save_validators(self, learned: dict[str, Validator]) -> None:
        """Remember what image servers said (merged by URL). A Last-Modified longer than its column is no HTTP
        date (those are 29 characters): it is dropped, not stored, so a server's odd header can never make
        PostgreSQL refuse the sync that learned it (SQLite would have kept it whole). A validator left with
        nothing to revalidate by is not stored."""
        rows = await asyncio.to_thread(_validator_rows, learned, now())
        if not rows:
            return
        async with self.session() as s, s.begin():  # upserts: two syncs may learn one picture URL at once
            upsert = upsert_statement(s.get_bind().dialect.name, ImageValidatorRow, ("url_key",), rows[0])
            for i in range(0, len(rows), _SLICE):  # one transaction; the loop runs between slices
                await s.execute(upsert, rows[i : i + _SLICE])

    async def prune_validators(self, older_than_s: float = VALIDATOR_TTL_S) -> None:
        """Forget validators neither learned nor confirmed (a 304) for long: URLs that left every feed. At
        worst a picture still in a feed is downloaded once more, never embedded again (its hash is unchanged)."""
        async with self.session() as s, s.begin():
            await s.execute(delete(ImageValidatorRow).where(ImageValidatorRow.seen_at < now() - timedelta(seconds=older_than_s)))

    # -- the catalogue's ids ----------------------------------------------------------------------

    async def item_ids(self, guild_id: int) -> set[str]:
        """The catalogue's item ids, read in slices (the loop runs between them), of one moment."""
        ids: set[str] = set()
        last = -1
        async with self.session() as s, s.begin():
            if s.get_bind().dialect.name == "postgresql":  # later slices see what the first one saw
                await s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            while True:
                q = select(ItemRow.pk, ItemRow.item_id).where(ItemRow.guild_id == guild_id, ItemRow.pk > last)
                rows = (await s.execute(q.order_by(ItemRow.pk).limit(_IDS_SLICE))).all()
                ids.update(r.item_id for r in rows)
                if len(rows) < _IDS_SLICE:
                    return ids
                last = rows[-1].pk

    # -- scheduled feeds --------------------------------------------------------------------------

    async def set_feed(self, guild_id: int, url: str, every_s: int, options: dict[str, str], channel_id: int | None, actor: str) -> None:  # fmt: skip
        """Configure (or reconfigure) a guild's feed, audit-logged in the same transaction; its first run is due now."""
        t = now()
        row = dict(guild_id=guild_id, url=url, every_s=every_s, options=json.dumps(options, sort_keys=True),
                   channel_id=channel_id, next_run_at=t, last_error=None, error_reported=False, updated_at=t)  # fmt: skip
        async with self.session() as s, s.begin():  # one statement: two admins setting it at once both succeed
            s.add(audit_row(guild_id, actor, "feed", None, url=url, every_s=every_s))
            await s.execute(upsert_statement(s.get_bind().dialect.name, FeedRow, ("guild_id",), row), row)

    async def drop_feed(self, guild_id: int, actor: str) -> bool:
        """Stop syncing the guild's feed; False if it had none (a drop is audit-logged in the same transaction)."""
        async with self.session() as s, s.begin():
            result = cast(CursorResult[Any], await s.execute(delete(FeedRow).where(FeedRow.guild_id == guild_id)))
            if result.rowcount:
                s.add(audit_row(guild_id, actor, "feed", None, url=None))
            return bool(result.rowcount)

    async def feed(self, guild_id: int) -> FeedSchedule | None:
        async with self.session() as s:
            row = await s.get(FeedRow, guild_id)
            return None if row is None else _schedule(row)

    async def due(self, guild_ids: Iterable[int] | None = None) -> list[FeedSchedule]:
        """Scheduled feeds whose time has come and that no process is syncing (of these guilds only, if given)."""
        t = now()
        q = select(FeedRow).where(
            FeedRow.every_s > 0,
            FeedRow.next_run_at <= t,
            or_(FeedRow.running_until.is_(None), FeedRow.running_until < t),
        )
        if guild_ids is not None:
            q = q.where(FeedRow.guild_id.in_(list(guild_ids)))
        async with self.session() as s:
            return [_schedule(r) for r in (await s.execute(q.order_by(FeedRow.next_run_at))).scalars()]

    async def claim(self, guild_id: int, lease_s: float) -> bool:
        """Take the feed's lease (atomic: of several processes, one wins); False if another holds it."""
        t = now()
        async with self.session() as s, s.begin():
            result = cast(
                CursorResult[Any],
                await s.execute(
                    update(FeedRow)
                    .where(FeedRow.guild_id == guild_id, or_(FeedRow.running_until.is_(None), FeedRow.running_until < t))
                    .values(running_until=t + timedelta(seconds=lease_s))
                ),
            )
            return bool(result.rowcount)

    async def renew(self, guild_id: int, lease_s: float) -> None:
        """Extend a held lease to `lease_s` from now (a running sync, every third of it); a released one stays free."""
        async with self.session() as s, s.begin():
            held = and_(FeedRow.guild_id == guild_id, FeedRow.running_until.is_not(None))
            await s.execute(update(FeedRow).where(held).values(running_until=now() + timedelta(seconds=lease_s)))

    async def release(self, guild_id: int) -> None:
        """Give the lease back without a result (the process is stopping): the feed stays due."""
        async with self.session() as s, s.begin():
            await s.execute(update(FeedRow).where(FeedRow.guild_id == guild_id).values(running_until=None))

    async def finish(self, guild_id: int, error: str | None, next_run_at: datetime) -> bool:
        """Release the lease and record the outcome. True when this failure should be reported: the
        first failure after a success (the same failure an hour later is not news)."""
        async with self.session() as s, s.begin():
            row = await s.get(FeedRow, guild_id)
            if row is None:  # dropped while it ran
                return False
            report = error is not None and not row.error_reported
            row.running_until, row.last_run_at, row.next_run_at = None, now(), next_run_at
            row.last_error, row.error_reported = error, error is not None
            return report


def later(seconds: float) -> datetime:
    return now() + timedelta(seconds=seconds)
