"""Micro-batching for the model: requests that arrive together share one forward pass.

Callers `await batcher.submit(x)`; one worker task takes up to `max_batch` waiting requests (waiting
up to `max_wait_s` for company), runs `fn(batch)` on the model's executor (so the event loop never
blocks) and hands each caller its own result.

Two queues, each bounded by `max_queue`: interactive requests (a member's photo) and bulk ones (an
import, `wait=True`). A batch takes interactive requests first, so a photo never waits behind a
5,000-row import: at most behind the one forward pass already running. A full interactive queue is
back-pressure: `submit` waits up to `put_timeout_s`, then raises `Busy`; bulk callers wait for room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

from .errors import Busy

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        executor: Executor,
        *,
        max_batch: int = 16,
        max_wait_s: float = 0.01,
        max_queue: int = 64,
        put_timeout_s: float = 5.0,
    ) -> None:
        self._fn = fn
        self._executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.put_timeout_s = put_timeout_s
        self.max_queue = max_queue
        self._fast: deque[tuple[T, asyncio.Future[R]]] = deque()  # interactive
        self._slow: deque[tuple[T, asyncio.Future[R]]] = deque()  # bulk
        self._changed = asyncio.Condition()
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # counters for stats and tests
        self.items = 0

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="lookalike-batcher")

    @property
    def pending(self) -> int:
        return len(self._fast) + len(self._slow)

    async def submit(self, item: T, *, wait: bool = False) -> R:
        """Queue one item and await its result. Interactive callers go first and get Busy when their
        queue stays full; bulk callers (wait=True) queue behind them and wait for room instead."""
        self._ensure_worker()
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        queue = self._slow if wait else self._fast
        async with self._changed:
            if len(queue) >= self.max_queue:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: len(queue) < self.max_queue), None if wait else self.put_timeout_s
                    )
                except TimeoutError:
                    raise Busy("The recommender is busy right now; please try again in a few seconds.") from None
            queue.append((item, fut))
            self._changed.notify_all()
        return await fut

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Bulk: queue several items at once (one wake-up of the worker, not one per item), behind
        interactive queries, waiting for room, never Busy; their results in order."""
        self._ensure_worker()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = [loop.create_future() for _ in items]
        pending = list(zip(items, futures))
        try:
            while pending:
                async with self._changed:
                    await self._changed.wait_for(lambda: len(self._slow) < self.max_queue)
                    room = self.max_queue - len(self._slow)
                    self._slow.extend(pending[:room])
                    pending = pending[room:]
                    self._changed.notify_all()
            return list(await asyncio.gather(*futures))
        except BaseException:
            for f in futures:  # queued ones are skipped by the worker
                f.cancel()
            raise

    async def _take_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._fast or self._slow))
                deadline = time.monotonic() + self.max_wait_s
                while True:
                    while len(batch) < self.max_batch and (self._fast or self._slow):
                        batch.append((self._fast or self._slow).popleft())
                    left = deadline - time.monotonic()
                    if len(batch) >= self.max_batch or left <= 0:
                        break
                    try:
                        await asyncio.wait_for(self._changed.wait_for(lambda: bool(self._fast or self._slow)), left)
                    except TimeoutError:
                        break
                self._changed.notify_all()  # room in the queues
        except asyncio.CancelledError:  # closing: the callers already taken must not wait forever
            for _, f in batch:
                f.cancel()
            raise
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._take_batch()
            live = [(x, f) for x, f in batch if not f.cancelled()]
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._fn, [x for x, _ in live])
            except asyncio.CancelledError:
                for _, f in live:
                    if not f.done():
                        f.cancel()
                raise
            except Exception as e:  # hand the error to every caller in the batch
                log.exception("batch of %d failed", len(live))
                for _, f in live:
                    if not f.done():
                        f.set_exception(e)
                continue
            self.batches += 1
            self.items += len(live)
            for (_, f), r in zip(live, results):
                if not f.done():
                    f.set_result(r)

    async def close(self) -> None:
        """Stop the worker; callers still waiting get CancelledError."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        for queue in (self._fast, self._slow):
            while queue:
                _, f = queue.popleft()
                f.cancel()
