"""Catalogue changes shared between processes on one PostgreSQL database (LISTEN/NOTIFY).

Every committing write of the store publishes a small `Change` in the same transaction, so it is
delivered exactly when the write becomes visible, and never for a write that rolled back. Each
process listens on one connection of its own and applies what others changed to its in-memory
state: the items named, not a reload of the catalogue. A listener that lost its connection says
`resync` once it is back (notifications sent meanwhile are lost), and its owner reloads.

SQLite has no such channel: a process there compares each loaded catalogue's version with the
database's every `refresh_check_s` instead (versions.py, catalogues.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

CHANNEL = "lookalike_changes"
MAX_PKS = 400  # more items than this in one change: "reload" instead (a NOTIFY payload is < 8,000 bytes)

Kind = Literal["items", "edited", "removed", "reload", "classifier", "settings", "resync", "labels"]


@dataclass(frozen=True)
class Change:
    kind: Kind
    catalogue: int = 0  # the catalogue (guild id; 0 = default) it concerns
    pks: tuple[int, ...] = ()
    model: str | None = None  # for "classifier"
    origin: str = ""  # the store that wrote it (a process ignores its own)

    def payload(self) -> str:
        pks = self.pks
        kind = self.kind
        if len(pks) > MAX_PKS:
            kind, pks = "reload", ()
        body: dict[str, Any] = {"k": kind, "c": self.catalogue, "o": self.origin}
        if pks:
            body["p"] = list(pks)
        if self.model:
            body["m"] = self.model
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def parse(cls, payload: str) -> Change:
        body = json.loads(payload)
        return cls(body["k"], int(body.get("c", 0)), tuple(int(p) for p in body.get("p", ())), body.get("m"), body.get("o", ""))


Handler = Callable[[Change], Awaitable[None]]


@dataclass
class ChangeFeed:
    """Listens on CHANNEL with a dedicated asyncpg connection and hands each change (other than the
    listening store's own) to `handler`, one at a time, in order. Reconnects with back-off."""

    dsn: str
    origin: str
    handler: Handler
    retry_s: Sequence[float] = (0.2, 0.5, 1.0, 2.0, 5.0)
    _task: asyncio.Task[None] | None = None
    _queue: asyncio.Queue[Change] = field(default_factory=asyncio.Queue)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lookalike-change-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        import asyncpg

        worker = asyncio.get_running_loop().create_task(self._apply(), name="lookalike-change-apply")
        failures = 0
        try:
            while True:
                lost = asyncio.Event()
                try:
                    conn = await asyncpg.connect(self.dsn)
                except (TimeoutError, OSError, asyncpg.PostgresError) as e:
                    wait = self.retry_s[min(failures, len(self.retry_s) - 1)]
                    failures += 1
                    log.warning("change feed: cannot connect (%s); retrying in %.1fs", e, wait)
                    await asyncio.sleep(wait)
                    continue
                try:
                    conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                    await conn.add_listener(CHANNEL, self._heard)
                    failures = 0
                    # whatever was sent before this LISTEN is lost: start again from the store (a first connection
                    # too: it may come after catalogues were loaded; at a plain start there is nothing to redo)
                    self._queue.put_nowait(Change("resync", origin=""))
                    self.connected.set()
                    while not lost.is_set():  # a server that went away without a word is noticed by a ping
                        try:
                            await asyncio.wait_for(lost.wait(), 5.0)
                        except TimeoutError:
                            try:
                                await asyncio.wait_for(conn.execute("SELECT 1"), 5.0)
                            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                                lost.set()
                    log.warning("change feed: connection lost; reconnecting")
                finally:
                    self.connected.clear()
                    conn.terminate()
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            change = Change.parse(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("change feed: unreadable notification %r", payload[:200])
            return
        if change.origin != self.origin:
            self._queue.put_nowait(change)

    async def _apply(self) -> None:
        while True:
            change = await self._queue.get()
            try:
                await self.handler(change)
            except Exception:
                log.exception("change feed: applying %s failed", change)
