"""The async facade: `await rec.similar(...)`, `await rec.classify(...)`, `await rec.add_item(...)`.

Holds the one backbone of the process, the store, an in-memory index and a classifier per catalogue.
CPU work (decoding, search, training) runs in a bounded thread pool, the network in its own
single-thread executor behind the micro-batcher; the event loop only awaits.

Bulk import lives in bulk.py (a mixin this class inherits).

Catalogues: guild 0 is the shared default. A guild searches its own catalogue once it has one item
or more, the default one until then. Moderator changes always go to the guild's own catalogue.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from . import classify, images
from .backbones import DEFAULT_MODEL, Backbone, load_backbone
from .batcher import Batcher
from .bulk import BulkImport, ImportSummary
from .config import DEFAULT_GUILD, Settings
from .errors import BadOption, CatalogEmpty, ItemNotFound, RecommenderError
from .index import SearchFilter, VectorIndex
from .store import GuildSettings, Item, ItemFields, NewItem, Store

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_K = 25


@dataclass(frozen=True)
class Match:
    item: Item
    score: float


@dataclass(frozen=True)
class SimilarResult:
    matches: list[Match]
    prediction: classify.Prediction | None
    catalogue_id: int


class _Catalogue:
    """Per-catalogue in-memory state (derived; rebuilt from the store on demand)."""

    def __init__(self) -> None:
        self.index: VectorIndex | None = None
        self.index_lock = threading.Lock()  # guards the index across pool threads
        self.load_lock = asyncio.Lock()
        self.train_lock = asyncio.Lock()
        self.classifier: classify.Classifier | None = None
        self.retrain_timer: asyncio.Task[None] | None = None
        self.training: asyncio.Task[Any] | None = None  # a background fit in progress (never cancelled midway)
        self.pending: list[Callable[[VectorIndex], Any]] = []  # writes that landed while the index was loading
        self.fingerprint: str | None = None  # store state the in-memory index reflects
        self.checked_at = 0.0  # when the store was last compared with it


class Recommender(BulkImport):
    def __init__(self, store: Store, backbone: Backbone, settings: Settings) -> None:
        self.store = store
        self.backbone = backbone
        self.settings = settings
        self.model = backbone.name
        self.limits = images.ImageLimits(settings.max_image_bytes, settings.max_image_pixels, settings.decode_side)
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="lookalike-cpu")
        self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="lookalike-model")
        self._train_pool = ThreadPoolExecutor(1, thread_name_prefix="lookalike-train")
        self._batcher: Batcher[Any, np.ndarray] = Batcher(
            self.backbone.embed,
            self._model_pool,
            max_batch=settings.batch_size,
            max_wait_s=settings.batch_wait_ms / 1000,
            max_queue=settings.queue_size,
        )
        self._catalogues: dict[int, _Catalogue] = {}
        self._own: dict[int, tuple[bool, float]] = {}  # guild -> (has its own items, when looked up)

    @classmethod
    async def open(cls, settings: Settings, backbone: Backbone | None = None) -> Recommender:
        """Open (and migrate) the database, then load the model once for this process."""
        store = await Store.open(settings.db)
        try:
            if backbone is None:
                name = settings.model or await store.model_in_use(DEFAULT_MODEL)
                backbone = await asyncio.to_thread(load_backbone, name, weights=settings.weights, pooling=settings.pooling)
        except BaseException:
            await store.close()
            raise
        return cls(store, backbone, settings)

    async def close(self) -> None:
        timers = [c.retrain_timer for c in self._catalogues.values() if c.retrain_timer and not c.retrain_timer.done()]
        for t in timers:
            t.cancel()
        fits = [c.training for c in self._catalogues.values() if c.training and not c.training.done()]
        await asyncio.gather(*timers, *fits, return_exceptions=True)  # a fit in progress finishes and is saved
        await self._batcher.close()
        for pool in (self._pool, self._model_pool, self._train_pool):
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        await self.store.close()

    async def __aenter__(self) -> Recommender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- plumbing -------------------------------------------------------------------------------

    async def _cpu(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kw))

    def _cat(self, cid: int) -> _Catalogue:
        return self._catalogues.setdefault(cid, _Catalogue())

    async def catalogue_for(self, guild_id: int) -> int:
        if guild_id == DEFAULT_GUILD:
            return DEFAULT_GUILD
        known = self._own.get(guild_id)
        if known is None or (not known[0] and time.monotonic() - known[1] > self.settings.refresh_check_s):
            own = await self.store.has_items(guild_id)  # "no items" is looked up again now and then: a CLI may add some
            if self._own.get(guild_id, known) is known:  # nobody changed it while we awaited
                self._own[guild_id] = (own, time.monotonic())
            known = self._own[guild_id]
        return guild_id if known[0] else DEFAULT_GUILD

    async def _index(self, cid: int) -> VectorIndex:
        cat = self._cat(cid)
        if cat.index is not None and time.monotonic() - cat.checked_at > self.settings.refresh_check_s:
            cat.checked_at = time.monotonic()
            if await self.store.fingerprint(cid, self.model) != cat.fingerprint:  # another process wrote to it
                log.info("catalogue %s changed outside this process; reloading it", cid)
                self.refresh(cid)
                self.schedule_retrain(cid, delay=0.0)
        if cat.index is None:
            async with cat.load_lock:
                if cat.index is None:
                    cat.pending = []
                    cat.fingerprint = await self.store.fingerprint(cid, self.model)
                    cat.checked_at = time.monotonic()
                    rows = await self.store.load_vectors(cid, self.model)
                    index = await self._cpu(
                        VectorIndex.build, rows.pks, rows.vectors, rows.categories, rows.prices, rows.hashes, self.backbone.dim
                    )
                    for op in cat.pending:  # idempotent upserts/removals that raced the load
                        op(index)
                    cat.pending = []
                    cat.index = index
                    log.info("catalogue %s: %d vectors loaded for %s", cid, len(cat.index), self.model)
        return cat.index

    async def _read_index(self, cid: int, fn: Callable[[VectorIndex], T]) -> T:
        """fn(index) in the pool under the index lock; the index is loaded first if need be."""
        index = await self._index(cid)
        lock = self._cat(cid).index_lock

        def locked() -> T:
            with lock:
                return fn(index)

        return await self._cpu(locked)

    async def _write_index(self, cid: int, fn: Callable[[VectorIndex], Any]) -> None:
        """Apply a change to the loaded index (in the pool, under its lock). Not loaded: nothing to
        do, except that a change made while it is loading is replayed on it once built."""
        cat = self._cat(cid)
        index = cat.index
        if index is None:
            if cat.load_lock.locked():
                cat.pending.append(fn)
            return

        def locked() -> None:
            with cat.index_lock:
                fn(index)

        await self._cpu(locked)
        cat.fingerprint = await self.store.fingerprint(cid, self.model)  # our own write is not a reason to reload

    def _decode(self, source: Any) -> tuple[Any, str]:
        return images.load_image(source, self.limits)

    async def embed(self, source: Any) -> tuple[np.ndarray, str]:
        """Image (bytes/path/file) -> (vector, content hash). Decoding in the pool, the model batched."""
        img, digest = await self._cpu(self._decode, source)
        return await self._batcher.submit(img), digest

    # -- queries ----------------------------------------------------------------------------------

    async def similar(
        self,
        image: Any = None,
        *,
        guild_id: int = DEFAULT_GUILD,
        item_id: str | None = None,
        k: int | None = None,
        category: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        predict: bool = True,
    ) -> SimilarResult:
        k = self.settings.k if k is None else k
        if not 1 <= k <= MAX_K:
            raise BadOption(f"k must be between 1 and {MAX_K}.")
        if min_price is not None and max_price is not None and min_price > max_price:
            raise BadOption("The minimum price is above the maximum price.")
        cid = await self.catalogue_for(guild_id)
        index = await self._index(cid)
        if len(index) == 0:
            raise CatalogEmpty("The catalogue is empty: a moderator can add items with /catalog add.")
        if item_id is not None:
            item = await self.store.get_item(cid, item_id)
            vec = await self._read_index(cid, lambda ix: ix.vector(item.pk))
            if vec is None:
                raise ItemNotFound(f"Item {item_id!r} has no {self.model} embedding yet.")
            flt = SearchFilter(category, min_price, max_price, frozenset({item.pk}), item.content_hash)
        elif image is not None:
            vec, digest = await self.embed(image)
            flt = SearchFilter(category, min_price, max_price, frozenset(), digest)
        else:
            raise BadOption("Give an image or an item id.")
        hits = await self._read_index(cid, lambda ix: ix.search(vec, k, flt))
        items = await self.store.items_by_pk([h.pk for h in hits])
        matches = [Match(items[h.pk], h.score) for h in hits if h.pk in items]
        prediction = await self._predict(cid, vec) if predict else None
        return SimilarResult(matches, prediction, cid)

    async def classify(self, image: Any, *, guild_id: int = DEFAULT_GUILD) -> classify.Prediction:
        cid = await self.catalogue_for(guild_id)
        vec, _ = await self.embed(image)
        prediction = await self._predict(cid, vec)
        if prediction is None:
            raise CatalogEmpty("The catalogue is empty, so there are no categories to predict.")
        return prediction

    async def _predict(self, cid: int, vec: np.ndarray) -> classify.Prediction | None:
        clf = await self._classifier(cid)
        if clf is None:
            return None
        preds = await self._cpu(clf.predict, vec[None, :], self.settings.threshold)
        return preds[0]

    # -- the classifier ---------------------------------------------------------------------------

    async def _classifier(self, cid: int) -> classify.Classifier | None:
        cat = self._cat(cid)
        if cat.classifier is None:
            saved = await self.store.load_classifier(cid, self.model)
            if saved is not None:
                try:
                    cat.classifier = await self._cpu(classify.classifier_from_bytes, saved.blob)
                except RecommenderError as e:
                    log.warning("saved classifier for catalogue %s unreadable (%s); retraining", cid, e)
                    await self.retrain(cid, force=True)
                if cat.classifier is not None and saved.fingerprint != await self.store.fingerprint(cid, self.model):
                    self.schedule_retrain(cid, delay=0.0)
            if cat.classifier is None:
                await self.retrain(cid, force=False)  # concurrent first callers: one fit, the rest load it
        return cat.classifier

    def refresh(self, cid: int) -> None:
        """Forget in-memory state for a catalogue: rebuilt from the store on next use (e.g. after a
        CLI import into the database a running bot uses; also checked every `refresh_check_s`)."""
        cat = self._cat(cid)
        if not cat.load_lock.locked():
            cat.index = None
        self._own.pop(cid, None)

    async def retrain(self, cid: int, *, force: bool = True) -> classify.Classifier | None:
        """Fit the catalogue's classifier now (in the training thread) and save it.
        With force=False a saved classifier trained on the same catalogue state is reused."""
        cat = self._cat(cid)
        async with cat.train_lock:
            fingerprint = await self.store.fingerprint(cid, self.model)
            saved = None if force else await self.store.load_classifier(cid, self.model)
            if saved is not None and saved.fingerprint == fingerprint:
                try:
                    cat.classifier = await self._cpu(classify.classifier_from_bytes, saved.blob)
                    return cat.classifier
                except RecommenderError as e:
                    log.warning("saved classifier for catalogue %s unreadable (%s); retraining", cid, e)
            rows = await self.store.load_vectors(cid, self.model)
            if len(rows.pks) == 0:
                cat.classifier = None
                return None
            t0 = time.perf_counter()

            def fit() -> tuple[classify.Classifier, bytes]:
                clf = classify.fit_classifier(rows.vectors, rows.categories)
                return clf, clf.to_bytes()

            clf, blob = await asyncio.get_running_loop().run_in_executor(self._train_pool, fit)
            await self.store.save_classifier(cid, self.model, fingerprint, clf.method, blob)
            cat.classifier = clf
            log.info(
                "catalogue %s: %s classifier over %d items in %.1fs", cid, clf.method, len(rows.pks), time.perf_counter() - t0
            )
            return clf

    def schedule_retrain(self, cid: int, delay: float | None = None) -> None:
        """Debounced: many changes in a row cause one retrain, `retrain_delay_s` after the last. A
        change that comes while a fit runs lets that fit finish (it is never cancelled midway) and
        causes one more after it."""
        cat = self._cat(cid)
        if cat.retrain_timer and not cat.retrain_timer.done():
            cat.retrain_timer.cancel()  # still sleeping: start the wait again
        delay = self.settings.retrain_delay_s if delay is None else delay

        async def later() -> None:
            await asyncio.sleep(delay)
            if cat.training is not None and not cat.training.done():
                await asyncio.shield(cat.training)  # the next fit follows the one in progress
            cat.training = asyncio.get_running_loop().create_task(self._retrain_logged(cid), name=f"fit-{cid}")
            await asyncio.shield(cat.training)

        cat.retrain_timer = asyncio.get_running_loop().create_task(later(), name=f"retrain-{cid}")

    async def _retrain_logged(self, cid: int) -> None:
        try:
            await self.retrain(cid)
        except Exception:
            log.exception("background retrain of catalogue %s failed", cid)

    # -- catalogue changes ------------------------------------------------------------------------

    def _prepare(self, source: Any) -> tuple[Any, str, bytes]:
        img, digest = self._decode(source)
        return img, digest, images.make_thumbnail(img, self.settings.thumbnail_side)

    async def add_item(self, image: Any, fields: ItemFields, *, guild_id: int, actor: str) -> Item:
        img, digest, thumb = await self._cpu(self._prepare, image)
        vec = await self._batcher.submit(img)
        [(item, _)] = await self.store.upsert_items(
            guild_id, [NewItem(fields, thumb, digest, vec)], self.model, actor, replace=False, audit="add"
        )
        await self._after_write(guild_id, [(item, vec)])
        return item

    async def _after_write(self, cid: int, written: list[tuple[Item, np.ndarray | None]], *, retrain: bool = True) -> None:
        if cid != DEFAULT_GUILD:
            self._own[cid] = (True, time.monotonic())

        def apply(ix: VectorIndex) -> None:
            for item, vec in written:
                if vec is not None:
                    ix.upsert(item.pk, vec, item.category, item.price, item.content_hash)
                else:
                    ix.update_meta(item.pk, item.category, item.price)

        await self._write_index(cid, apply)
        if retrain:
            self.schedule_retrain(cid)

    async def remove_item(self, item_id: str, *, guild_id: int, actor: str) -> Item:
        item = await self.store.remove_item(guild_id, item_id, actor)
        await self._write_index(guild_id, lambda ix: ix.remove(item.pk))
        self._own.pop(guild_id, None)  # may have become empty
        self.schedule_retrain(guild_id)
        return item

    async def edit_item(self, item_id: str, changes: dict[str, Any], *, guild_id: int, actor: str) -> Item:
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            raise BadOption("Nothing to change: give at least one field.")
        item = await self.store.update_item(guild_id, item_id, changes)
        await self.store.audit(guild_id, actor, "edit", item_id, **changes)
        await self._write_index(guild_id, lambda ix: ix.update_meta(item.pk, item.category, item.price))
        if "category" in changes:
            self.schedule_retrain(guild_id)
        return item

    # -- reading the catalogue and settings -------------------------------------------------------

    async def get_item(self, item_id: str, *, guild_id: int) -> Item:
        return await self.store.get_item(await self.catalogue_for(guild_id), item_id)

    async def list_items(
        self, *, guild_id: int, category: str | None = None, page: int = 1, per_page: int = 10
    ) -> tuple[list[Item], int, int]:
        """(items, total, catalogue id) for one page of what this guild sees."""
        if page < 1:
            raise BadOption("Pages start at 1.")
        cid = await self.catalogue_for(guild_id)
        items, total = await self.store.list_items(cid, category=category, offset=(page - 1) * per_page, limit=per_page)
        return items, total, cid

    async def thumbnails(self, pks: list[int]) -> dict[int, bytes]:
        return await self.store.thumbnails(pks)

    async def stats(self, *, guild_id: int) -> dict[str, Any]:
        cid = await self.catalogue_for(guild_id)
        cat = self._cat(cid)
        counts = await self.store.category_counts(cid)
        saved = await self.store.load_classifier(cid, self.model)
        return {
            "catalogue": "default" if cid == DEFAULT_GUILD else str(cid),
            "items": sum(counts.values()),
            "categories": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
            "embeddings": await self.store.model_counts(cid),
            "model": self.model,
            "pretrained": self.backbone.pretrained,
            "classifier": None
            if saved is None
            else {"method": saved.method, "trained_at": saved.trained_at.isoformat(timespec="seconds")},
            "index_loaded": cat.index is not None,
            "batches": self._batcher.batches,
            "embedded": self._batcher.items,
        }

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        return await self.store.guild_settings(guild_id)

    async def update_guild_settings(self, guild_id: int, *, actor: str, **values: Any) -> None:
        if "k" in values and values["k"] is not None and not 1 <= values["k"] <= MAX_K:
            raise BadOption(f"k must be between 1 and {MAX_K}.")
        await self.store.update_guild_settings(guild_id, **values)
        await self.store.audit(guild_id, actor, "config", None, **values)

    async def set_watched(self, guild_id: int, channel_id: int, watched: bool, *, actor: str) -> bool:
        changed = await self.store.set_watched(guild_id, channel_id, watched)
        if changed:
            await self.store.audit(guild_id, actor, "watch" if watched else "unwatch", None, channel=channel_id)
        return changed


__all__ = ["Recommender", "Match", "SimilarResult", "ImportSummary"]
