"""Bulk import: records in, batches embedded and committed one transaction each.

Idempotent and resumable: items whose image hash is already stored for the model are neither
decoded nor embedded again, and a crash loses at most the batch in flight. Composed of the embedder,
the store and the catalogues, through their public methods only. It never retrains: the caller
decides when (the CLI right away, the bot in the background).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from .catalogues import Catalogues
from .embedder import Embedder
from .errors import BadImage, BadOption, RecommenderError
from .importer import ImportRecord
from .records import ImportSummary, ItemFields, NewItem
from .store import Store
from .urls import is_web_url

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, "int | None", ImportSummary], None]
FetchFn = Callable[[str], Awaitable[bytes]]


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
        t0 = time.perf_counter()
        it = iter(records)
        while chunk := list(itertools.islice(it, batch)):
            await self._chunk(chunk, guild_id, actor, fetch, summary)
            summary.seconds = time.perf_counter() - t0
            if progress:
                progress(summary.done, total, summary)
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

    async def _read(self, rec: ImportRecord, fetch: FetchFn | None) -> tuple[bytes, str]:
        """The record's image bytes and their hash (read and hashed in the pool)."""
        src = rec.image
        if isinstance(src, str) and is_web_url(src):
            if fetch is None:
                raise BadImage("image URLs are not fetched here; give a local file path")
            src = await fetch(src)
        return await self.embedder.cpu(lambda: self.embedder.read(src() if callable(src) else src))

    async def _chunk(
        self, chunk: list[ImportRecord], cid: int, actor: str, fetch: FetchFn | None, summary: ImportSummary
    ) -> None:
        good = [(r, r.fields) for r in chunk if r.error is None and r.fields is not None]
        summary.failed += [
            (r.item_id, r.where, r.error or "no item fields") for r in chunk if r.error is not None or r.fields is None
        ]
        raw = await asyncio.gather(*(self._read(r, fetch) for r, _ in good), return_exceptions=True)
        known = await self.store.known_hashes(cid, [r.item_id for r, _ in good], self.embedder.model)
        todo: list[tuple[ImportRecord, ItemFields, bytes, str]] = []
        new_items: list[NewItem] = []
        for (rec, fields), got in zip(good, raw):
            if isinstance(got, BaseException):
                summary.failed.append((rec.item_id, rec.where, _reason(got)))
                continue
            data, digest = got
            if known.get(rec.item_id) == digest:  # same picture: update fields only, no decode, no model
                new_items.append(NewItem(fields, None, digest, None))
            else:
                todo.append((rec, fields, data, digest))
        prepared = await asyncio.gather(
            *(self.embedder.cpu(self.embedder.prepare, data) for _, _, data, _ in todo), return_exceptions=True
        )
        ok = []
        for (rec, fields, _, digest), p in zip(todo, prepared):
            if isinstance(p, BaseException):
                summary.failed.append((rec.item_id, rec.where, _reason(p)))
            else:
                ok.append((fields, digest, p))
        vecs = await self.embedder.embed_many([img for _, _, (img, _, _) in ok])
        new_items += [NewItem(fields, thumb, digest, vec) for (fields, digest, (_, _, thumb)), vec in zip(ok, vecs)]
        if not new_items:
            return
        results = await self.store.upsert_items(cid, new_items, self.embedder.model, actor)
        for _, status in results:
            summary.count(status)
        changed = [(item, new.vector) for (item, status), new in zip(results, new_items) if status != "unchanged"]
        if changed:
            await self.catalogues.written(cid, changed, retrain=False)


def _reason(e: BaseException) -> str:
    if isinstance(e, RecommenderError):
        return str(e)
    log.warning("unexpected import error: %r", e)
    return f"unexpected error: {type(e).__name__}"
