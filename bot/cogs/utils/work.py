"""In-flight work, so shutdown can stop taking new requests and let running ones finish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

log = logging.getLogger(__name__)


class ShuttingDown(Exception):
    pass


class WorkTracker:
    def __init__(self) -> None:
        self.accepting = True
        self._tasks: set[asyncio.Task[object]] = set()

    @property
    def in_flight(self) -> int:
        """Replies and commands running now."""
        return sum(1 for t in self._tasks if not t.done())

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wrap one unit of work (a photo reply, a command). Raises ShuttingDown once closing."""
        if not self.accepting:
            raise ShuttingDown()
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    def adopt(self, task: asyncio.Task[object]) -> None:
        """Track a task that is already running (a slash command's task) until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, grace_s: float) -> None:
        """Refuse new work; wait up to grace_s for running work, then cancel what is left."""
        self.accepting = False
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current and not t.done()]
        if not tasks:
            return
        log.info("waiting up to %.0fs for %d replies in flight", grace_s, len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            log.warning("cancelled %d replies still running at shutdown", len(pending))
