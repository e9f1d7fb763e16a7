"""Bulk import: records in, batches embedded and committed one transaction each.

Idempotent and resumable: items whose image hash is already stored for the model are neither
decoded nor embedded again, and a crash loses at most the batch in flight. Composed of the embedder,
the store and the catalogues, through their public methods only. It never retrains: the caller
decides when (the CLI right away, the bot in the background).

A pipeline that keeps both cores busy: local images go to the pool `GROUP` at a time, where each is
read, hashed, decoded and made into the network's input and a thumbnail in one pass
(`Embedder.prepare_many`), and each group goes to the model as soon as it is ready (one call to the
batcher), so decoding overlaps the forward passes; two chunks are in flight, so the next one decodes
while this one's last batch is embedded, and a batch is written while the next one is being
embedded. Memory stays flat whatever the catalogue's size: a pool thread holds one undecoded file at
a time, at most `READERS_PER_WORKER` x workers web images are fetched at once (each within the byte
limit), and decoded images are small (`decode_side`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from .catalogues import Catalogues
from .embedder import Embedder
from .errors import BadImage, BadOption, RecommenderError
from .records import ImportRecord, ImportSummary, NewItem, NotModified
from .store import Store
from .urls import is_web_url

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, "int | None", ImportSummary], None]
FetchFn = Callable[[str, "str | None"], Awaitable["bytes | NotModified"]]  # (url, hash the item has now)
READERS_PER_WORKER = 2
GROUP = 8  # local images per trip to the pool and per call to the batcher


class BulkImporter:
    def __init__(self, embedder: Embedder, store: Store, catalogues: Catalogues) -> None:
        self.embedder = embedder
        self.store = store
        self.catalogues = catalogues

    async def run(
        self,
        records: Iterable[ImportRecord],
        *,
        guild_id: int,
        actor: str,
        total: int | None = None,
        progress: ProgressFn | None = None,
        fetch: FetchFn | None = None,
        batch: int = 64,
    ) -> ImportSummary:
        if batch < 1:
            raise BadOption("The import batch size must be at least 1.")
        summary = ImportSummary()
        readers = asyncio.Semaphore(READERS_PER_WORKER * self.embedder.workers)
        t0 = time.perf_counter()
        it = iter(records)
        loop = asyncio.get_running_loop()
        embedding: list[asyncio.Task[tuple[list[NewItem], list[tuple[str, str, str]]]]] = []
        writing: asyncio.Task[None] | None = None

        async def write_next() -> None:  # the oldest chunk in flight, once embedded; batches commit in order
            nonlocal writing
            ready, failed = await embedding[0]  # still listed while awaited: cancelled with the others
            embedding.pop(0)
            if writing is not None:
                await writing
            writing = loop.create_task(self._write(ready, failed, guild_id, actor, summary))
            writing.add_done_callback(lambda _t: _report(progress, total, summary, t0))

        try:
            for chunk in iter(lambda: list(itertools.islice(it, batch)), []):
                embedding.append(loop.create_task(self._embed(chunk, guild_id, fetch, readers)))
                if len(embedding) == 2:  # two chunks in flight: the next one decodes while this one's tail is embedded
                    await write_next()
            while embedding:
                await write_next()
            if writing is not None:
                await writing
        finally:
            for task in embedding:
                task.cancel()
            await asyncio.gather(*embedding, return_exceptions=True)
            if writing is not None and not writing.done():
                await asyncio.gather(writing, return_exceptions=True)  # never leave a batch half-handled
        summary.seconds = time.perf_counter() - t0
        await self.store.audit(
            guild_id,
            actor,
            "import",
            None,
            added=summary.added,
            updated=summary.updated,
            unchanged=summary.unchanged,
            failed=len(summary.failed),
        )
        return summary

    async def _embed(
        self, chunk: list[ImportRecord], cid: int, fetch: FetchFn | None, readers: asyncio.Semaphore
    ) -> tuple[list[NewItem], list[tuple[str, str, str]]]:
        """The chunk's items ready to write, in order, and its failures (item id, where, reason)."""
        ids = [i for r in chunk if r.error is None and r.fields is not None for i in (r.item_id, r.former_id) if i]
        known = await self.store.known_hashes(cid, ids, self.embedder.model)
        chunk = [_former_id_kept(r, known) for r in chunk]
        good = [(r, r.fields) for r in chunk if r.error is None and r.fields is not None]
        failed = [(r.item_id, r.where, r.error or "no item fields") for r in chunk if r.error is not None or r.fields is None]

        web = {i for i, (r, _) in enumerate(good) if isinstance(r.image, str) and is_web_url(r.image)}
        local = [i for i in range(len(good)) if i not in web]
        groups = [[i] for i in sorted(web)] + [local[k : k + GROUP] for k in range(0, len(local), GROUP)]
        slots: list[NewItem | BaseException | None] = [None] * len(good)

        async def run_group(idx: list[int]) -> None:
            """Read, hash, decode and prepare the group's items in one trip to the pool, then queue their
            inputs for the model together. A web image is fetched first (one per group, `readers` at once)."""
            jobs: list[tuple[Any, str | None]] = []
            async with readers if len(idx) == 1 else contextlib.nullcontext():
                for i in idx:
                    rec, fields = good[i]
                    have = known.get(rec.item_id)
                    try:
                        src = await self._source(rec, fetch, have)
                    except RecommenderError as e:
                        slots[i] = e
                        continue
                    if isinstance(src, NotModified):  # the web image is still the one the item has
                        slots[i] = NewItem(fields, None, src.digest, None)
                    else:
                        jobs.append((src, have))
                todo = [i for i in idx if slots[i] is None]
                prepared = await self.embedder.cpu(self.embedder.prepare_many, jobs) if jobs else []
            inputs: list[tuple[int, str, np.ndarray, bytes]] = []
            for i, got in zip(todo, prepared):
                if isinstance(got, Exception):
                    slots[i] = got
                elif got[1] is None:  # same picture: update fields only, no decode, no model
                    slots[i] = NewItem(good[i][1], None, got[0], None)
                else:
                    inputs.append((i, got[0], *got[1]))
            if inputs:
                vectors = await self.embedder.embed_bulk_many([x for _, _, x, _ in inputs])
                for (i, digest, _, thumb), vec in zip(inputs, vectors):
                    slots[i] = NewItem(good[i][1], thumb, digest, vec)

        done = await asyncio.gather(*(run_group(g) for g in groups), return_exceptions=True)
        for g, got in zip(groups, done):
            if isinstance(got, asyncio.CancelledError):
                raise got
            for i in g:
                if isinstance(got, BaseException) and slots[i] is None:
                    slots[i] = got
        ready = []
        for (rec, _), item in zip(good, slots):
            if isinstance(item, NewItem):
                ready.append(item)
            else:
                failed.append((rec.item_id, rec.where, _reason(item or RuntimeError("not embedded"))))
        return ready, failed

    async def _source(self, rec: ImportRecord, fetch: FetchFn | None, known: str | None) -> Any:
        """What the pool reads the record's image from: its path, bytes or opener; the fetched bytes of a
        web image, or NotModified when the fetcher says it is still the one the item has."""
        src = rec.image
        if isinstance(src, str) and is_web_url(src):
            if fetch is None:
                raise BadImage("image URLs are not fetched here; give a local file path")
            return await fetch(src, known)
        return src

    async def _write(
        self, items: list[NewItem], failed: list[tuple[str, str, str]], cid: int, actor: str, summary: ImportSummary
    ) -> None:
        summary.failed += failed  # counted with their batch, so progress reports whole batches
        if not items:
            return
        results = await self.store.upsert_items(cid, items, self.embedder.model, actor)
        for _, status in results:
            summary.count(status)
        changed = [(item, new.vector) for (item, status), new in zip(results, items) if status != "unchanged"]
        if changed:
            await self.catalogues.written(cid, changed, retrain=False)


def _report(progress: ProgressFn | None, total: int | None, summary: ImportSummary, t0: float) -> None:
    summary.seconds = time.perf_counter() - t0
    if progress:
        progress(summary.done, total, summary)


def _reason(e: BaseException) -> str:
    if isinstance(e, RecommenderError):
        return str(e)
    log.warning("unexpected import error: %r", e)
    return f"unexpected error: {type(e).__name__}"


def _former_id_kept(rec: ImportRecord, known: dict[str, str]) -> ImportRecord:
    """A first twin imported before 2026-12-07 has its full name as id (``ImportRecord.former_id``): where the
    catalogue has that id (``known``) and not the new one, the record keeps the old one (no second copy of it)."""
    if rec.former_id and rec.fields and rec.former_id in known and rec.item_id not in known:
        return replace(rec, item_id=rec.former_id, fields=replace(rec.fields, item_id=rec.former_id))
    return rec
