"""Bulk import: records in, batches embedded and committed one transaction each.

Idempotent and resumable: items whose image hash is already stored for the model are neither
decoded nor embedded again, and a crash loses at most the batch in flight. Composed of the embedder,
the store and the catalogues, through their public methods only. It never retrains: the caller
decides when (the CLI right away, the bot in the background).

A pipeline that keeps both cores busy: each record is read, hashed, decoded and made into the network's
input and a thumbnail in one trip to the pool (`Embedder.prepare_new`), and goes to the model as soon
as it is ready, so decoding overlaps the forward passes, and a batch is written while the next one is
being embedded. Memory stays flat whatever the batch size: at most
`READERS_PER_WORKER` x workers source files are held undecoded at once (each within the byte limit),
and decoded images are small (`decode_side`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import numpy as np

from .catalogues import Catalogues
from .embedder import Embedder
from .errors import BadImage, BadOption, RecommenderError
from .records import ImportRecord, ImportSummary, ItemFields, NewItem, NotModified
from .store import Store
from .urls import is_web_url

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, "int | None", ImportSummary], None]
FetchFn = Callable[[str, "str | None"], Awaitable["bytes | NotModified"]]  # (url, hash the item has now)
READERS_PER_WORKER = 2


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
        writing: asyncio.Task[None] | None = None
        try:
            while chunk := list(itertools.islice(it, batch)):
                ready, failed = await self._embed(chunk, guild_id, fetch, readers)
                if writing is not None:
                    await writing  # batches commit in order, one at a time
                writing = asyncio.get_running_loop().create_task(self._write(ready, failed, guild_id, actor, summary))
                writing.add_done_callback(lambda _t: _report(progress, total, summary, t0))
            if writing is not None:
                await writing
        finally:
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
        good = [(r, r.fields) for r in chunk if r.error is None and r.fields is not None]
        failed = [(r.item_id, r.where, r.error or "no item fields") for r in chunk if r.error is not None or r.fields is None]
        known = await self.store.known_hashes(cid, [r.item_id for r, _ in good], self.embedder.model)

        async def one(rec: ImportRecord, fields: ItemFields) -> NewItem:
            async with readers:
                have = known.get(rec.item_id)
                src = await self._source(rec, fetch, have)
                if isinstance(src, NotModified):  # the web image is still the one the item has
                    return NewItem(fields, None, src.digest, None)
                digest, prepared = await self.embedder.cpu(self.embedder.prepare_new, src, have)
            if prepared is None:  # same picture: update fields only, no decode, no model
                return NewItem(fields, None, digest, None)
            x, thumb = prepared
            vec: np.ndarray = await self.embedder.embed_bulk(x)
            return NewItem(fields, thumb, digest, vec)

        outcomes = await asyncio.gather(*(one(r, f) for r, f in good), return_exceptions=True)
        ready = []
        for (rec, _), got in zip(good, outcomes):
            if isinstance(got, NewItem):
                ready.append(got)
            elif isinstance(got, asyncio.CancelledError):
                raise got
            else:
                failed.append((rec.item_id, rec.where, _reason(got)))
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
