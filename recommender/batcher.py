"""Micro-batching for the model: requests that arrive together share one forward pass.

Callers `await batcher.submit(x)`; one worker task takes up to `max_batch` waiting requests (waiting
up to `max_wait_s` for company), runs `fn(batch)` on the model's executor (so the event loop never
blocks) and hands each caller its own result. With `lanes` > 1, that many batches run at once (one
per core, each runtime on one thread: no two threads of one forward pass wait for each other while
the decoding threads take a core), and waiting requests are shared out among the free lanes.

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
        lanes: int = 1,
    ) -> None:
        self._fn = fn
        self._executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.put_timeout_s = put_timeout_s
        self.max_queue = max_queue
        self.lanes = lanes  # forward passes at once (the executor needs as many threads)
        self._serving: set[asyncio.Task[None]] = set()
        self._fast: deque[tuple[T, asyncio.Future[R]]] = deque()  # interactive
        self._slow: deque[tuple[T, asyncio.Future[R]]] = deque()  # bulk
        self._changed = asyncio.Condition()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
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
        self._open()
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        queue = self._slow if wait else self._fast
        async with self._changed:
            if len(queue) >= self.max_queue:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: len(queue) < self.max_queue or self._closed),
                                           None if wait else self.put_timeout_s)  # fmt: skip
                except TimeoutError:
                    raise Busy("The recommender is busy right now; please try again in a few seconds.") from None
                self._open()
            queue.append((item, fut))
            self._changed.notify_all()
        return await fut

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Bulk: queue several items at once (one wake-up of the worker, not one per item), behind
        interactive queries, waiting for room, never Busy; their results in order."""
        self._open()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = [loop.create_future() for _ in items]
        pending = list(zip(items, futures))
        try:
            while pending:
                async with self._changed:
                    await self._changed.wait_for(lambda: len(self._slow) < self.max_queue or self._closed)
                    self._open()
                    room = self.max_queue - len(self._slow)
                    self._slow.extend(pending[:room])
                    pending = pending[room:]
                    self._changed.notify_all()
            return list(await asyncio.gather(*futures))
        except BaseException:
            for f in futures:  # queued ones are skipped by the worker
                f.cancel()
            raise

    def _open(self) -> None:
        """Start the worker if need be; a closed batcher takes no more work (CancelledError, as for those queued)."""
        if self._closed:
            raise asyncio.CancelledError("the batcher is closed")
        self._ensure_worker()

    async def _take_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        """Up to max_batch waiting requests, waiting up to max_wait_s for company. With several lanes
        the waiting requests are shared out among them at once (20 photos, 2 lanes: 10 and 10, not 16
        and 4), without waiting: a free core is worth more than a fuller batch."""
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._fast or self._slow))
                cap = self.max_batch if self.lanes == 1 else min(self.max_batch, -(-self.pending // self.lanes))
                deadline = time.monotonic() + (self.max_wait_s if self.lanes == 1 else 0.0)
                while True:
                    while len(batch) < cap and (self._fast or self._slow):
                        batch.append((self._fast or self._slow).popleft())
                    left = deadline - time.monotonic()
                    if len(batch) >= cap or left <= 0:
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
        lanes = asyncio.Semaphore(self.lanes)
        try:
            while True:
                await lanes.acquire()
                try:
                    batch = await self._take_batch()
                except BaseException:
                    lanes.release()
                    raise
                live = [(x, f) for x, f in batch if not f.cancelled()]
                if not live:
                    lanes.release()
                    continue
                task = loop.create_task(self._serve(live))
                self._serving.add(task)

                def done(t: asyncio.Task[None]) -> None:
                    self._serving.discard(t)
                    lanes.release()

                task.add_done_callback(done)
        finally:
            for task in list(self._serving):
                task.cancel()

    async def _serve(self, live: list[tuple[T, asyncio.Future[R]]]) -> None:
        """One forward pass on the model's executor; each caller gets its own result (or the error)."""
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self._fn, [x for x, _ in live])
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
            return
        self.batches += 1
        self.items += len(live)
        for (_, f), r in zip(live, results):
            if not f.done():
                f.set_result(r)

    async def close(self) -> None:
        """Stop the worker; callers still waiting, queued or waiting for room, get CancelledError."""
        self._closed = True
        async with self._changed:
            self._changed.notify_all()  # callers waiting for room see it closed
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        await asyncio.gather(*self._serving, return_exceptions=True)
        for queue in (self._fast, self._slow):
            while queue:
                _, f = queue.popleft()
                f.cancel()
