"""The micro-batcher: concurrent requests share forward passes of the real tiny backbone; errors,
back-pressure and shutdown reach every caller."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from recommender.batcher import Batcher
from recommender.errors import Busy

from helpers import backbone, demo_photos


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(1, thread_name_prefix="test-model")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


def held() -> tuple[Callable[[list[int]], list[int]], threading.Event, threading.Event]:
    """A model that holds each batch until ``release`` is set; ``started``: a batch has begun."""
    release, started = threading.Event(), threading.Event()

    def slow(xs: list[int]) -> list[int]:
        started.set()
        release.wait(10)
        return xs

    return slow, started, release


def photos(n: int) -> list[Image.Image]:
    out = []
    for p in demo_photos()[:: max(1, 120 // n)][:n]:
        with Image.open(p) as im:
            out.append(im.convert("RGB"))
    return out


async def test_requests_arriving_together_share_forward_passes(executor) -> None:
    net = backbone("tiny")
    sizes: list[int] = []

    def embed(batch):
        sizes.append(len(batch))
        return net.embed(batch)

    b = Batcher(embed, executor, max_batch=8, max_wait_s=0.05)
    imgs = photos(20)
    try:
        vecs = await asyncio.gather(*(b.submit(im) for im in imgs))
    finally:
        await b.close()
    assert b.items == 20 and sum(sizes) == 20
    assert b.batches == len(sizes) < 20 and max(sizes) <= 8
    assert b.batches <= 4  # 20 requests at once: 8 + 8 + 4, give or take a wait
    # each caller got the vector of its own image, the same as embedding it alone
    alone = net.embed(imgs)
    for got, want in zip(vecs, alone):
        assert got.shape == (96,)
        assert np.allclose(got, want, atol=1e-5)


async def test_a_lone_request_waits_at_most_max_wait(executor) -> None:
    b = Batcher(lambda xs: [x * 2 for x in xs], executor, max_batch=16, max_wait_s=0.05)
    try:
        t0 = time.perf_counter()
        assert await b.submit(21) == 42
        assert time.perf_counter() - t0 < 1.0
        assert (b.batches, b.items) == (1, 1)
    finally:
        await b.close()


async def test_an_error_reaches_every_caller_and_the_batcher_carries_on(executor) -> None:
    calls: list[list[int]] = []

    def fn(xs):
        calls.append(list(xs))
        if any(x < 0 for x in xs):
            raise ValueError("negative input in this batch")
        return [x + 1 for x in xs]

    b = Batcher(fn, executor, max_batch=16, max_wait_s=0.05)
    try:
        results = await asyncio.gather(*(b.submit(x) for x in (1, 2, -3, 4)), return_exceptions=True)
        assert len(calls) == 1
        assert all(isinstance(r, ValueError) and "negative" in str(r) for r in results)
        assert await b.submit(10) == 11  # the worker survived
        assert b.items == 1  # failed batches are not counted as done
    finally:
        await b.close()


async def test_a_full_queue_answers_busy_after_put_timeout(executor) -> None:
    slow, started, release = held()
    b = Batcher(slow, executor, max_batch=1, max_wait_s=0.0, max_queue=2, put_timeout_s=0.3)
    try:
        first = asyncio.ensure_future(b.submit("a"))
        await asyncio.to_thread(started.wait, 5)  # the worker holds "a" inside the model
        queued = [asyncio.ensure_future(b.submit(x)) for x in ("b", "c")]  # fill the queue
        await asyncio.sleep(0.05)
        assert b.pending == 2
        t0 = time.perf_counter()
        with pytest.raises(Busy, match="try again"):
            await b.submit("d")
        waited = time.perf_counter() - t0
        assert 0.25 <= waited < 2.0
        release.set()
        assert await asyncio.gather(first, *queued) == ["a", "b", "c"]
        assert b.items == 3
    finally:
        release.set()
        await b.close()


async def test_close_cancels_waiting_callers(executor) -> None:
    slow, started, release = held()
    b = Batcher(slow, executor, max_batch=1, max_wait_s=0.0, max_queue=8)
    try:
        running = asyncio.ensure_future(b.submit(1))
        await asyncio.to_thread(started.wait, 5)
        waiting = [asyncio.ensure_future(b.submit(x)) for x in (2, 3, 4)]
        await asyncio.sleep(0.05)
        await asyncio.wait_for(b.close(), 5)  # does not wait for the model to finish
        for fut in [running, *waiting]:
            with pytest.raises(asyncio.CancelledError):
                await fut
        assert b.pending == 0
    finally:
        release.set()


async def test_close_also_ends_callers_waiting_for_room(executor) -> None:
    """A bulk caller waiting for room in a full queue (a head fit's views, behind an import) waited for ever once
    the batcher closed: nothing woke it, and shutdown hung on it."""
    slow, started, release = held()
    b = Batcher(slow, executor, max_batch=1, max_wait_s=0.0, max_queue=1)
    try:
        running = asyncio.ensure_future(b.submit(1, wait=True))
        await asyncio.to_thread(started.wait, 5)
        queued = asyncio.ensure_future(b.submit(2, wait=True))  # fills the queue
        bulk = asyncio.ensure_future(b.submit_many([3, 4, 5]))  # waits for room
        one = asyncio.ensure_future(b.submit(6, wait=True))  # waits for room
        await asyncio.sleep(0.05)
        await asyncio.wait_for(b.close(), 5)
        for fut in (running, queued, bulk, one):
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(fut, 5)
        with pytest.raises(asyncio.CancelledError):  # and a closed batcher takes no more work
            await asyncio.wait_for(b.submit(7), 5)
    finally:
        release.set()


async def test_a_cancelled_caller_is_skipped(executor) -> None:
    seen: list[int] = []
    gate = threading.Event()

    def fn(xs):
        gate.wait(5)
        seen.extend(xs)
        return xs

    b = Batcher(fn, executor, max_batch=1, max_wait_s=0.0)
    try:
        first = asyncio.ensure_future(b.submit(1))
        await asyncio.sleep(0.05)
        doomed = asyncio.ensure_future(b.submit(2))
        kept = asyncio.ensure_future(b.submit(3))
        await asyncio.sleep(0.05)
        doomed.cancel()
        gate.set()
        assert await first == 1 and await kept == 3
        assert seen == [1, 3]
    finally:
        gate.set()
        await b.close()


async def test_an_interactive_request_goes_before_queued_bulk_work(executor) -> None:
    """A photo posted during an import waits at most for the forward pass already running."""
    order: list[str] = []
    started = threading.Event()

    def fn(batch: list[str]) -> list[str]:
        started.set()
        order.extend(batch)
        time.sleep(0.05)
        return batch

    b: Batcher[str, str] = Batcher(fn, executor, max_batch=4, max_wait_s=0.0, max_queue=64)
    try:
        bulk = [asyncio.create_task(b.submit(f"bulk-{i}", wait=True)) for i in range(40)]
        await asyncio.to_thread(started.wait, 5)
        photo = await b.submit("photo")
        assert photo == "photo"
        assert order.index("photo") <= 8  # behind the running pass (and the one already taken), not 40
        await asyncio.gather(*bulk)
    finally:
        await b.close()


async def test_lanes_run_batches_at_once_and_share_a_burst_out() -> None:
    """With two lanes, two forward passes run at once (one per core), a burst is split evenly between
    them rather than 16 + 4, and bulk work queued in one go comes back in order."""
    net = backbone("tiny")
    running, most, sizes = 0, 0, []
    lock = threading.Lock()

    def embed(batch):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            sizes.append(len(batch))
        time.sleep(0.05)
        with lock:
            running -= 1
        return net.embed(batch)

    pool = ThreadPoolExecutor(2, thread_name_prefix="test-lanes")
    b = Batcher(embed, pool, max_batch=16, max_wait_s=0.05, lanes=2)
    imgs = photos(20)
    try:
        await b.submit(imgs[0])  # the worker is up
        sizes.clear()
        burst = await asyncio.gather(*(b.submit(im) for im in imgs))
        assert most == 2 and max(sizes) <= 10 and sum(sizes) == 20
        bulk = await b.submit_many(imgs)
    finally:
        await b.close()
        pool.shutdown(wait=True)
    alone = net.embed(imgs)
    for got, want in zip([*burst, *bulk], [*alone, *alone]):
        assert np.allclose(got, want, atol=1e-5)
