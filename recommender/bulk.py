"""Bulk import for the Recommender: records in, batches embedded and committed one transaction each.

Idempotent and resumable: items whose image hash is already stored for the model are neither
decoded nor embedded again, and a crash loses at most the batch in flight. `Recommender` inherits
this mixin; it uses the engine's pool, batcher and store.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import images
from .errors import BadImage, BadOption, RecommenderError
from .importer import ImportRecord
from .store import NewItem

if TYPE_CHECKING:
    from .engine import Recommender

log = logging.getLogger(__name__)


@dataclass
class ImportSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (item id, where, reason)
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return self.added + self.updated + self.unchanged + len(self.failed)


ProgressFn = Callable[[int, "int | None", ImportSummary], None]
FetchFn = Callable[[str], Awaitable[bytes]]


class BulkImport:
    async def import_items(
        self: Recommender,
        records: Iterable[ImportRecord],
        *,
        guild_id: int,
        actor: str,
        total: int | None = None,
        progress: ProgressFn | None = None,
        fetch: FetchFn | None = None,
        batch: int = 64,
    ) -> ImportSummary:
        """Bulk import, idempotent and resumable: each batch commits in one transaction, and items
        whose image hash is already stored for this model are not decoded or embedded again."""
        if batch < 1:
            raise BadOption("The import batch size must be at least 1.")
        summary = ImportSummary()
        t0 = time.perf_counter()
        it = iter(records)
        while chunk := list(itertools.islice(it, batch)):
            await self._import_chunk(chunk, guild_id, actor, fetch, summary)
            summary.seconds = time.perf_counter() - t0
            if progress:
                progress(summary.done, total, summary)
        if summary.added or summary.updated:
            self.schedule_retrain(guild_id)  # once, after the last batch (callers may also retrain now)
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

    async def _read(self: Recommender, rec: ImportRecord, fetch: FetchFn | None) -> tuple[bytes, str]:
        """The record's image bytes and their hash (read and hashed in the pool)."""
        src = rec.image
        if isinstance(src, str) and src.startswith(("http://", "https://")):
            if fetch is None:
                raise BadImage("image URLs are not fetched here; give a local file path")
            src = await fetch(src)

        def read() -> tuple[bytes, str]:
            data = images.read_source(src() if callable(src) else src, self.limits)
            return data, images.content_hash(data)

        return await self._cpu(read)

    async def _import_chunk(
        self: Recommender, chunk: list[ImportRecord], cid: int, actor: str, fetch: FetchFn | None, summary: ImportSummary
    ) -> None:
        good = [r for r in chunk if r.error is None]
        summary.failed += [(r.item_id, r.where, r.error or "") for r in chunk if r.error is not None]
        raw = await asyncio.gather(*(self._read(r, fetch) for r in good), return_exceptions=True)
        known = await self.store.known_hashes(cid, [r.item_id for r in good], self.model)
        todo: list[tuple[ImportRecord, bytes, str]] = []
        new_items: list[NewItem] = []
        for rec, got in zip(good, raw):
            if isinstance(got, BaseException):
                summary.failed.append((rec.item_id, rec.where, _reason(got)))
                continue
            data, digest = got
            if known.get(rec.item_id) == digest:  # same picture: update fields only, no decode, no model
                new_items.append(NewItem(rec.fields, None, digest, None))  # type: ignore[arg-type]
            else:
                todo.append((rec, data, digest))
        prepared = await asyncio.gather(*(self._cpu(self._prepare, data) for _, data, _ in todo), return_exceptions=True)
        ok = [(t, p) for t, p in zip(todo, prepared) if not isinstance(p, BaseException)]
        for (rec, _, _), p in zip(todo, prepared):
            if isinstance(p, BaseException):
                summary.failed.append((rec.item_id, rec.where, _reason(p)))
        # Bulk work waits for room in the queue, in slices that leave head-room for interactive queries.
        step = max(1, self.settings.queue_size // 2)
        vecs: list[np.ndarray] = []
        for i in range(0, len(ok), step):
            vecs += await asyncio.gather(*(self._batcher.submit(p[0], wait=True) for _, p in ok[i : i + step]))
        for ((rec, _, digest), (_, _, thumb)), vec in zip(ok, vecs):
            new_items.append(NewItem(rec.fields, thumb, digest, vec))  # type: ignore[arg-type]
        if not new_items:
            return
        results = await self.store.upsert_items(cid, new_items, self.model, actor)
        for _, status in results:
            setattr(summary, status, getattr(summary, status) + 1)
        changed = [(item, new.vector) for (item, status), new in zip(results, new_items) if status != "unchanged"]
        if changed:
            await self._after_write(cid, changed, retrain=False)


def _reason(e: BaseException) -> str:
    if isinstance(e, RecommenderError):
        return str(e)
    log.warning("unexpected import error: %r", e)
    return f"unexpected error: {type(e).__name__}"
