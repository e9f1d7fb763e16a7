"""Which process fits a catalogue's head (head.py) in the background. Shards and processes on one database all
see a catalogue change (the change feed, or the catalogue's version on SQLite) and would each fit the same head
for minutes; a lease in the database, one per catalogue and model, lets one of them fit it while the others keep
answering with the head they have and load the one it saves. The lease is renewed while its fit runs; one whose
process died (`kill -9`) lapses after `ttl_s`, and the next process that wants the head fitted takes it over.
Built on the store's session factory; knows nothing of heads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, DateTime, delete, func, or_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .rows import now, upsert_statement
from .schema import FitLeaseRow

log = logging.getLogger(__name__)
LEASE_S = 60.0  # renewed every third of it while the fit runs; what a dead process's lease outlives it by


class FitLeases:
    def __init__(self, session: async_sessionmaker[AsyncSession], dialect: str, *, ttl_s: float = LEASE_S) -> None:
        self.session = session
        self.ttl_s = ttl_s
        self.holder = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.dialect = dialect

    def _now(self) -> Any:
        """Now by the database server's clock on PostgreSQL, whose processes may run on several hosts whose clocks
        differ; by this host's on SQLite (a file on one host)."""
        return func.timezone("UTC", func.now(), type_=DateTime) if self.dialect == "postgresql" else now()

    async def take(self, catalogue_id: int, model: str) -> bool:
        """Take (or renew) the lease, for `ttl_s` from now: one statement, so of several processes one wins.
        False while another process holds it."""
        t = self._now()
        where = or_(FitLeaseRow.expires_at < t, FitLeaseRow.holder == self.holder)
        stmt = upsert_statement(self.dialect, FitLeaseRow, ("catalogue_id", "model"), ("holder", "expires_at"), where)
        values = dict(catalogue_id=catalogue_id, model=model, holder=self.holder, expires_at=t + timedelta(seconds=self.ttl_s))
        async with self.session() as s, s.begin():
            return bool(cast(CursorResult[Any], await s.execute(stmt.values(values))).rowcount)

    async def release(self, catalogue_id: int, model: str) -> None:
        """Give the lease back, if it is still ours."""
        mine = (FitLeaseRow.catalogue_id == catalogue_id) & (FitLeaseRow.model == model) & (FitLeaseRow.holder == self.holder)
        async with self.session() as s, s.begin():
            await s.execute(delete(FitLeaseRow).where(mine))

    @contextlib.asynccontextmanager
    async def held(self, catalogue_id: int, model: str) -> AsyncIterator[bool]:
        """True: the lease is ours for the block (renewed meanwhile, given back after). False: another process holds
        it, or the database could not say (the caller tries again later)."""
        try:
            ours = await self.take(catalogue_id, model)
        except Exception as e:  # the database away, or SQLite busy past its timeout
            log.warning("could not take the head-fit lease of catalogue %s: %s", catalogue_id, e)
            ours = False
        if not ours:
            yield False
            return
        renewing = asyncio.create_task(self._renew(catalogue_id, model))
        try:
            yield True
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            try:
                await asyncio.shield(self.release(catalogue_id, model))
            except Exception as e:  # the database away: the lease lapses by itself
                log.warning("could not give back the head-fit lease of catalogue %s: %s", catalogue_id, e)

    async def _renew(self, catalogue_id: int, model: str) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                if not await self.take(catalogue_id, model):
                    log.warning("the head-fit lease of catalogue %s lapsed and another process took it", catalogue_id)
            except Exception as e:  # the database away for a moment: the next third tries again
                log.warning("could not renew the head-fit lease of catalogue %s: %s", catalogue_id, e)
