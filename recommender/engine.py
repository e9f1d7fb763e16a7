"""The async facade: `await rec.similar(...)`, `await rec.classify(...)`, `await rec.add_item(...)`.

One door into the recommender for the bot and the CLI. It composes three parts and delegates:
  * the embedder (embedder.py): the process's one backbone, decoding and the micro-batched model;
  * the catalogues (catalogues.py): per-catalogue index and classifier, derived from the store;
  * the bulk importer (bulk.py): batched, resumable imports through the two above.
CPU work runs in the embedder's bounded pool, the model in its own thread; the event loop only awaits.

Catalogues: guild 0 is the shared default. A guild searches its own catalogue once it has one item
or more, the default one until then. Changes always go to the guild's own catalogue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backbones import DEFAULT_MODEL, Backbone, load_backbone
from .bulk import BulkImporter, FetchFn, ProgressFn
from .catalogues import Catalogues
from .changes import Change, ChangeFeed
from .community import MemberPhotos
from .config import DEFAULT_GUILD, Settings, check_k
from .embedder import Embedder
from .errors import BadOption, ItemNotFound
from .feeds import FeedOptions
from .feedstate import FeedState, later
from .head import CANDIDATES, CatalogueHead
from .importer import ImportLimits, check_upload_name, records_from_source, records_from_upload
from .index import SearchFilter
from .learning import Community
from .records import (
    Classification,
    CommunityStats,
    Feedback,
    FeedSchedule,
    GuildSettings,
    ImportNotes,
    ImportRecord,
    ImportSummary,
    Item,
    ItemFields,
    Match,
    NewItem,
    SimilarResult,
    SyncSummary,
)
from .runtime import accelerate
from .store import Store
from .sync import LEASE_S, FeedSync
from .webfetch import UrlFetcher

log = logging.getLogger(__name__)


class Recommender:
    def __init__(self, store: Store, backbone: Backbone, settings: Settings) -> None:
        self.store = store
        self.backbone = backbone
        self.settings = settings
        self.model = backbone.name
        self.embedder = Embedder(backbone, settings)
        self.photos = MemberPhotos(store)  # members' photos as features, their votes and labels (community.py)
        self.catalogues = Catalogues(store, self.embedder, settings, self.photos)
        self.learning = Community(self.photos, self.catalogues, store, settings)
        self.importer = BulkImporter(self.embedder, store, self.catalogues)
        self._feed: ChangeFeed | None = None
        self._settings_listeners: list[Callable[[int | None], None]] = []

    @classmethod
    async def open(cls, settings: Settings, backbone: Backbone | None = None) -> Recommender:
        """Open (and migrate) the database, then load the model once for this process."""
        store = await Store.open(settings.db)
        try:
            if backbone is None:
                name = settings.model or await store.model_in_use(DEFAULT_MODEL)
                backbone = await asyncio.to_thread(load_backbone, name, weights=settings.weights, pooling=settings.pooling)
                if settings.runtime == "auto":
                    backbone = await asyncio.to_thread(accelerate, backbone, None, settings.model_threads, settings.precision)
        except BaseException:
            await store.close()
            raise
        rec = cls(store, backbone, settings)
        await rec.follow_changes()
        return rec

    async def follow_changes(self, timeout_s: float = 10.0) -> None:
        """Apply what other processes change, as they commit it (PostgreSQL's LISTEN/NOTIFY). On
        SQLite there is no such channel: a loaded catalogue is compared with the store every
        `refresh_check_s` instead."""
        feed = self.store.change_feed(self._changed)
        if feed is None or self._feed is not None:
            return
        self._feed = feed
        self.catalogues.polling = False
        feed.start()
        try:
            await asyncio.wait_for(feed.connected.wait(), timeout_s)
        except TimeoutError:
            log.warning("the change feed is not connected yet; it keeps trying")

    def on_settings_change(self, callback: Callable[[int | None], None]) -> None:
        """callback(guild id) when another process changed a guild's settings; None: maybe any guild's."""
        self._settings_listeners.append(callback)

    async def _changed(self, change: Change) -> None:
        await self.catalogues.apply(change)
        if change.kind in ("settings", "resync"):
            for callback in self._settings_listeners:
                callback(change.catalogue if change.kind == "settings" else None)

    async def close(self) -> None:
        if self._feed is not None:
            await self._feed.close()
        await self.catalogues.close()  # a fit in progress gets a few seconds to finish and be saved
        await self.embedder.close()  # ... else its remaining views are cancelled, and it stops
        await self.catalogues.join()
        await self.store.close()

    async def __aenter__(self) -> Recommender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def embed(self, source: Any) -> tuple[np.ndarray, str]:
        """Image (bytes/path/file) -> (vector, content hash)."""
        return await self.embedder.embed(source)

    async def catalogue_for(self, guild_id: int) -> int:
        """The catalogue `guild_id` searches: its own once it has items, the default one until then."""
        return await self.catalogues.catalogue_for(guild_id)

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
        remember: bool = False,
    ) -> SimilarResult:
        """The k catalogue items most like an image (or like a catalogue item), and the predicted category.
        remember: keep a member's photo as its vector (never the picture) for votes and labels (link_reply),
        unless the remember_photos setting is off."""
        k = check_k(self.settings.k if k is None else k)
        if min_price is not None and max_price is not None and min_price > max_price:
            raise BadOption("The minimum price is above the maximum price.")
        cid = await self.catalogues.catalogue_for(guild_id)
        index = await self.catalogues.index(cid)
        if len(index) == 0:
            raise await self.store.nothing_to_search(cid, self.model)
        if item_id is not None:
            item = await self.store.get_item(cid, item_id)
            vec = await self.catalogues.read_index(cid, lambda ix: ix.vector(item.pk))
            if vec is None:
                raise ItemNotFound(f"Item {item_id!r} has no {self.model} embedding yet.")
            flt = SearchFilter(category, min_price, max_price, frozenset({item.pk}), item.content_hash)
        elif image is not None:
            vec, digest = await self.embedder.embed(image)
            flt = SearchFilter(category, min_price, max_price, frozenset(), digest)
        else:
            raise BadOption("Give an image or an item id.")
        query = vec if item_id is not None else await self.catalogues.align(cid, vec)  # a member's photo: adapted
        answer = predict and item_id is None  # a member's photo: the head decides (an item is in the catalogue)
        whole = dataclasses.replace(flt, category=None, min_price=None, max_price=None)
        narrowed = answer and flt != whole  # the category and "nothing like this" come from the whole catalogue
        n = max(k, CANDIDATES) if answer else k
        hits, pool = await self.catalogues.read_index(
            cid, lambda ix: (ix.search(query, n, flt), ix.search(query, CANDIDATES, whole) if narrowed else None)
        )
        decision = await self.catalogues.decide(cid, query, pool if pool is not None else hits, k, guild_id) if answer else None
        ordered = await self.catalogues.decide(cid, query, hits, k, guild_id) if narrowed else decision
        if ordered is not None:  # the head's order of what the filters leave: the category prior weighs in
            hits = [hits[i] for i in ordered.order]
        hits = hits[:k]
        nothing = decision is not None and decision.nothing_like_this
        predicted = None if decision is None else decision.prediction.category
        remember = remember and item_id is None and self.settings.remember_photos
        remembering = (  # while the items are read; no product at all ("nothing like this") leaves the domain state alone
            self.learning.remember(cid, guild_id, vec, predicted, adapt=not nothing) if remember else None
        )
        items, photo_id = await asyncio.gather(self.store.items_by_pk([h.pk for h in hits]), remembering or asyncio.sleep(0))
        matches = [Match(items[h.pk], h.score) for h in hits if h.pk in items]
        return SimilarResult(matches, None if decision is None else decision.prediction, cid, nothing, photo_id)

    async def classify(self, image: Any, *, guild_id: int = DEFAULT_GUILD) -> Classification:
        """The photo's category, and whether the catalogue has anything like it."""
        cid = await self.catalogues.catalogue_for(guild_id)
        vec = await self.catalogues.align(cid, (await self.embedder.embed(image))[0])
        hits = await self.catalogues.read_index(cid, lambda ix: ix.search(vec, CANDIDATES))
        decision = await self.catalogues.decide(cid, vec, hits, 1, guild_id)
        if decision is None:
            raise await self.store.nothing_to_search(cid, self.model)
        return Classification(decision.prediction, decision.nothing_like_this)

    # -- learning from the community (learning.py, community.py) ----------------------------------

    async def link_reply(
        self, photo_ids: Sequence[int | None], *, guild_id: int, channel_id: int, photo_message_id: int, reply_message_id: int | None
    ) -> None:  # fmt: skip
        """Where remembered photos live (community.MemberPhotos.link); `reply_message_id` None: no reply was sent, none kept."""
        await self.learning.link_reply(photo_ids, guild_id, channel_id, photo_message_id, reply_message_id)

    async def react(self, *, guild_id: int, message_id: int, user_id: int, verdict: int, moderator: bool = False) -> Feedback | None:  # fmt: skip
        """A member's 👍 (+1), 👎 (-1) or its removal (0) on a reply or photo message; None: not a remembered one."""
        return await self.learning.react(guild_id, message_id, user_id, verdict, moderator)

    async def vote_messages(self, *, guild_id: int, message_id: int) -> list[int]:
        """The messages a vote on `message_id` counts on (photo message and reply); [] if none is remembered."""
        return await self.learning.vote_messages(guild_id, message_id)

    async def label_photo(self, *, guild_id: int, message_id: int, category: str, actor: str, photo: int = 1) -> Feedback:
        """A moderator's category for photo n of a message (PhotoNotFound, BadOption naming close categories)."""
        return await self.learning.label_photo(guild_id, message_id, category, actor, photo)

    async def community(self, *, guild_id: int) -> CommunityStats:
        """The guild's remembered member photos, labels and votes, and the photos its catalogue adapted to."""
        return await self.learning.stats(guild_id)

    async def forget_photos(self, *, guild_id: int, actor: str) -> int:
        """Delete every remembered photo of the guild (audit-logged); returns how many."""
        return await self.learning.forget(guild_id, actor)

    async def categories(self, *, guild_id: int, message_id: int | None = None) -> list[str]:
        """The categories of the catalogue the guild searches, or that answered a remembered message (for autocomplete)."""
        return await self.learning.categories(guild_id, message_id)

    # -- training ---------------------------------------------------------------------------------

    async def retrain(self, cid: int, *, force: bool = True) -> CatalogueHead | None:
        """Fit the catalogue's head (its classifier, search order and "nothing like this") now and save
        it (force=False reuses a saved one that is current)."""
        return await self.catalogues.heads.retrain(cid, force=force)

    def schedule_retrain(self, cid: int, delay: float | None = None) -> None:
        """Retrain in the background after `retrain_delay_s` (debounced)."""
        self.catalogues.heads.schedule(cid, delay)

    def refresh(self, cid: int) -> None:
        """Forget a catalogue's in-memory state: rebuilt from the database on next use."""
        self.catalogues.refresh(cid)

    # -- catalogue changes ------------------------------------------------------------------------

    async def import_items(
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
        """Bulk import, idempotent and resumable: each batch commits in one transaction, and items
        whose image hash is already stored for this model are not decoded or embedded again.
        It does not retrain: call `retrain` (now) or `schedule_retrain` (in the background) after it."""
        return await self.importer.run(
            records, guild_id=guild_id, actor=actor, total=total, progress=progress, fetch=fetch, batch=batch
        )

    def records(self, source: Path, notes: ImportNotes | None = None) -> Iterator[ImportRecord]:
        """What to import from a folder (sub-folder = category), a CSV/Parquet manifest or a ZIP on
        disk, read lazily; each bad row is a record with its error, never an exception later."""
        return records_from_source(source, limits=ImportLimits.for_images(self.settings.max_image_bytes), notes=notes)

    @staticmethod
    def check_upload(filename: str) -> str:
        """The kind of an uploaded catalogue ('.csv' or '.zip') from its name, or BadManifest in words."""
        return check_upload_name(filename)

    async def upload_records(self, data: bytes, filename: str, *, max_rows: int, notes: ImportNotes) -> list[ImportRecord]:
        """A moderator's upload (a CSV with image URLs, or a ZIP) parsed off the event loop: at most
        max_rows + 1 records, so the caller can tell that there are too many."""
        limits = ImportLimits.for_images(self.settings.max_image_bytes)
        return await asyncio.to_thread(
            lambda: list(itertools.islice(records_from_upload(data, filename, limits, notes), max_rows + 1))
        )

    async def add_item(self, image: Any, fields: ItemFields, *, guild_id: int, actor: str) -> Item:
        x, digest, thumb = await self.embedder.cpu(self.embedder.prepare, image)
        vec = await self.embedder.embed_input(x)
        [(item, _)] = await self.store.upsert_items(
            guild_id, [NewItem(fields, thumb, digest, vec)], self.model, actor, replace=False, audit="add"
        )
        await self.catalogues.written(guild_id, [(item, vec)])
        return item

    async def remove_item(self, item_id: str, *, guild_id: int, actor: str) -> Item:
        item = await self.store.remove_item(guild_id, item_id, actor)
        await self.catalogues.removed(guild_id, item)
        return item

    async def edit_item(self, item_id: str, changes: dict[str, Any], *, guild_id: int, actor: str) -> Item:
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            raise BadOption("Nothing to change: give at least one field.")
        item = await self.store.update_item(guild_id, item_id, changes, actor=actor)
        await self.catalogues.edited(guild_id, item, category_changed="category" in changes)
        return item

    # -- reading the catalogue and settings -------------------------------------------------------

    async def get_item(self, item_id: str, *, guild_id: int) -> Item:
        return await self.store.get_item(await self.catalogues.catalogue_for(guild_id), item_id)

    async def list_items(
        self, *, guild_id: int, category: str | None = None, page: int = 1, per_page: int = 10
    ) -> tuple[list[Item], int, int]:
        """(items, total, catalogue id) for one page of what this guild sees."""
        if page < 1:
            raise BadOption("Pages start at 1.")
        cid = await self.catalogues.catalogue_for(guild_id)
        items, total = await self.store.list_items(cid, category=category, offset=(page - 1) * per_page, limit=per_page)
        return items, total, cid

    async def thumbnails(self, pks: list[int]) -> dict[int, bytes]:
        return await self.store.thumbnails(pks)

    async def stats(self, *, guild_id: int) -> dict[str, Any]:
        cid = await self.catalogues.catalogue_for(guild_id)
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
            "index_loaded": self.catalogues.state(cid).index is not None,
            "batches": self.embedder.batches,
            "embedded": self.embedder.embedded,
        }

    async def guild_settings(self, guild_id: int) -> GuildSettings:
        return await self.store.guild_settings(guild_id)

    async def update_guild_settings(self, guild_id: int, *, actor: str, **values: Any) -> None:
        if values.get("k") is not None:
            check_k(values["k"])
        await self.store.update_guild_settings(guild_id, actor, **values)

    async def set_watched(self, guild_id: int, channel_id: int, watched: bool, *, actor: str) -> bool:
        return await self.store.set_watched(guild_id, channel_id, watched, actor=actor)

    # -- shop feeds: `lookalike sync`, `/catalog sync`, `/config feed` (sync.py, feedstate.py) ------

    @functools.cached_property
    def feed_sync(self) -> FeedSync:
        return FeedSync(self.importer, self.store, self.catalogues, FeedState(self.store.session))

    async def sync_feed(
        self,
        source: str | Path,
        *,
        guild_id: int,
        actor: str,
        fetcher: UrlFetcher | None,
        options: Mapping[str, str | None] | None = None,
        keep_missing: bool = False,
        progress: ProgressFn | None = None,
        leased: bool = False,
        lease_s: float = LEASE_S,
    ) -> SyncSummary:
        """Make the catalogue equal to a shop's feed (a web address or a file). `options`: format
        ("auto", "google", "shopify", "woocommerce"), category_level ("1", "2", "last"), currency,
        shop_url. `leased`: the caller holds the feed's lease (claim_feed, for `lease_s`); otherwise a guild
        with a scheduled feed has its lease taken for the run. The lease is renewed while the sync runs. It
        does not retrain: call `schedule_retrain` after it, as after an import."""
        return await self.feed_sync.run(
            source,
            guild_id=guild_id,
            actor=actor,
            fetcher=fetcher,
            options=FeedOptions(**{k: v for k, v in (options or {}).items() if v is not None}),
            keep_missing=keep_missing,
            progress=progress,
            leased=leased,
            lease_s=lease_s,
        )

    async def set_feed(
        self,
        guild_id: int,
        url: str,
        every_s: int,
        *,
        options: Mapping[str, str] | None = None,
        channel_id: int | None,
        actor: str,
    ) -> None:
        """Sync `url` into the guild's catalogue every `every_s` seconds (the first run is due now)."""
        opts = dict(options or {})
        FeedOptions(**opts).check()
        await self.feed_sync.state.set_feed(guild_id, url, every_s, opts, channel_id, actor)

    async def drop_feed(self, guild_id: int, *, actor: str) -> bool:
        return await self.feed_sync.state.drop_feed(guild_id, actor)

    async def feed(self, guild_id: int) -> FeedSchedule | None:
        return await self.feed_sync.state.feed(guild_id)

    async def due_feeds(self, guild_ids: Iterable[int] | None = None) -> list[FeedSchedule]:
        return await self.feed_sync.state.due(guild_ids)

    async def claim_feed(self, guild_id: int, lease_s: float) -> bool:
        """Take the feed's lease: of several processes, one runs its sync."""
        return await self.feed_sync.state.claim(guild_id, lease_s)

    async def release_feed(self, guild_id: int) -> None:
        """Give the lease back unfinished (shutting down): the feed stays due, for the next start."""
        await self.feed_sync.state.release(guild_id)

    async def finish_feed(self, guild_id: int, error: str | None, next_in_s: float) -> bool:
        """Release the lease and record the outcome; True when this failure is news to report."""
        return await self.feed_sync.state.finish(guild_id, error, later(next_in_s))


__all__ = ["Recommender"]
