"""Per-catalogue in-memory state: the vector index and the classifier of each catalogue, derived from
the store and rebuilt from it on demand.

Catalogues: guild 0 is the shared default. A guild searches its own catalogue once it has one item
or more, the default one until then. Writes go to the store first, then to a loaded index (in the
pool, under the index's lock, in the order their calls here were made: right after each commit, so two quick
edits of one item land as committed; a change feed's rows are read again when an own write was made during the
read); a write that lands while the index is loading is replayed on it, and a
refresh() then (another process's big write) makes the load read again. Another process's writes arrive by
the change feed (PostgreSQL), or are noticed within `refresh_check_s` from the catalogue's version (SQLite).

Each catalogue's head (head.py) is kept by heads.py: fitted again in the background after changes, here or
(by the change feed or the version) in another process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from .adapt import MIN_COUNT, DomainState
from .catalogue_state import CatalogueState
from .changes import Change
from .community import MemberPhotos
from .config import DEFAULT_GUILD, Settings
from .embedder import Embedder
from .fitlease import FitLeases
from .head import Decision, Members
from .heads import Heads
from .index import Hit, VectorIndex
from .records import Item
from .store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")
LOAD_TRIES = 3  # index loads in a row while refresh() keeps landing during them (the last one is kept)


class Catalogues:
    def __init__(self, store: Store, embedder: Embedder, settings: Settings, photos: MemberPhotos | None = None) -> None:
        self.store = store
        self.photos = MemberPhotos(store) if photos is None else photos
        self.embedder = embedder
        self.model = embedder.model
        self.settings = settings
        self._states: dict[int, CatalogueState] = {}
        self.heads = Heads(
            store,
            embedder,
            settings,
            FitLeases(store.session, store.database.kind),
            self._states,
            self._head_fingerprint,
            lambda cid: self.members(cid, cid, fresh=True),
        )
        self._own: dict[int, tuple[bool, float]] = {}  # guild -> (has its own items, when looked up)
        self.polling = True  # compare with the store every refresh_check_s; off while a change feed runs

    async def close(self) -> None:
        """Stop scheduling head fits; one in progress gets heads.FIT_GRACE_S to finish and be saved."""
        await self.heads.close()

    async def join(self) -> None:
        """Wait for the training thread to end (after the embedder closed, so an unfinished fit stops)."""
        await self.heads.join()

    def state(self, cid: int) -> CatalogueState:
        return self._states.setdefault(cid, CatalogueState())

    async def catalogue_for(self, guild_id: int) -> int:
        """The catalogue a guild searches: its own once it has items, the default one until then."""
        if guild_id == DEFAULT_GUILD:
            return DEFAULT_GUILD
        known = self._own.get(guild_id)
        stale = self.polling and time.monotonic() - (known[1] if known else 0.0) > self.settings.refresh_check_s
        if known is None or (not known[0] and stale):
            own = await self.store.has_items(guild_id)  # "no items" is looked up again now and then: a CLI may add some
            if self._own.get(guild_id, known) is known:  # nobody changed it while we awaited
                self._own[guild_id] = (own, time.monotonic())
            known = self._own[guild_id]
        return guild_id if known[0] else DEFAULT_GUILD

    def refresh(self, cid: int) -> None:
        """Forget in-memory state for a catalogue: rebuilt from the store on next use (e.g. after a
        CLI import into the database a running bot uses; also checked every `refresh_check_s`)."""
        cat = self.state(cid)
        cat.refreshes += 1
        if not cat.load_lock.locked():
            cat.index = None
        self._own.pop(cid, None)

    # -- the index --------------------------------------------------------------------------------

    async def index(self, cid: int) -> VectorIndex:
        """The catalogue's loaded index (loaded first if need be; reloaded if another process wrote)."""
        cat = self.state(cid)
        if self.polling and cat.index is not None and time.monotonic() - cat.checked_at > self.settings.refresh_check_s:
            cat.checked_at, known = time.monotonic(), cat.version
            version = await self.store.version(cid)
            if self.store.versions.only_ours(cid, known, version):  # our writes, applied to the index as they were made
                if cat.version == known:  # (unless it was reloaded meanwhile)
                    cat.version = version
            else:
                log.info("catalogue %s changed outside this process; reloading it", cid)
                self.refresh(cid)
                self.heads.schedule(cid, delay=0.0)
        if cat.index is None:
            async with cat.load_lock:
                for attempt in range(LOAD_TRIES):  # a refresh during the load: what it read may predate the change
                    if cat.index is not None:
                        break
                    refreshes = cat.refreshes
                    cat.pending = []
                    cat.version = await self.store.version(cid) if self.polling else None
                    cat.checked_at = time.monotonic()
                    rows = await self.store.load_vectors(cid, self.model)
                    index = await self.embedder.cpu(
                        VectorIndex.build, rows.pks, rows.vectors, rows.categories, rows.prices, rows.hashes, self.embedder.dim
                    )
                    for op in cat.pending:  # idempotent upserts/removals that raced the load
                        op(index)
                    cat.pending, cat.revision = [], cat.revision + 1
                    log.info("catalogue %s: %d vectors loaded for %s", cid, len(index), self.model)
                    cat.index = index if cat.refreshes == refreshes or attempt == LOAD_TRIES - 1 else None
        assert cat.index is not None
        return cat.index

    async def read_index(self, cid: int, fn: Callable[[VectorIndex], T]) -> T:
        """fn(index) in the pool under the index lock; the index is loaded first if need be."""
        index = await self.index(cid)
        lock = self.state(cid).index_lock

        def locked() -> T:
            with lock:
                return fn(index)

        return await self.embedder.cpu(locked)

    async def _write_index(self, cid: int, fn: Callable[[VectorIndex], Any]) -> None:
        """Apply a change to the loaded index (in the pool, under its lock). Not loaded: nothing to
        do, except that a change made while it is loading is replayed on it once built."""
        cat = self.state(cid)
        cat.made += 1
        if (index := cat.index) is None:
            if cat.load_lock.locked():
                cat.pending.append(fn)
            return

        try:
            await self.embedder.cpu(cat.write(index, fn))  # applied in the order made, whichever thread runs first
        except BaseException:  # not applied, though its version counts as ours (versions.py): reload at the next check
            cat.version = None
            raise
        cat.revision += 1

    # -- after the store changed ------------------------------------------------------------------

    async def written(self, cid: int, items: list[tuple[Item, np.ndarray | None]], *, retrain: bool = True) -> None:
        """Items were added or updated in the store (vector None: only their fields changed)."""
        if cid != DEFAULT_GUILD:
            self._own[cid] = (True, time.monotonic())

        def apply(ix: VectorIndex) -> None:
            for item, vec in items:
                if vec is not None:
                    ix.upsert(item.pk, vec, item.category, item.price, item.content_hash)
                else:
                    ix.update_meta(item.pk, item.category, item.price)

        await self._write_index(cid, apply)
        if retrain:
            self.heads.schedule(cid)

    async def removed(self, cid: int, item: Item) -> None:
        await self._write_index(cid, lambda ix: ix.remove(item.pk))
        self._own.pop(cid, None)  # may have become empty
        self.heads.schedule(cid)

    async def edited(self, cid: int, item: Item, *, category_changed: bool) -> None:
        await self._write_index(cid, lambda ix: ix.update_meta(item.pk, item.category, item.price))
        if category_changed:
            self.heads.schedule(cid)

    async def apply(self, change: Change) -> None:
        """A change another process committed (from the change feed): touch only what it names."""
        cid = change.catalogue
        if change.kind == "resync":  # the feed was away: whatever it missed is in the store
            self._own.clear()
            for known in list(self._states):
                self.refresh(known)
                self.state(known).head = None
                self.forget_lessons(known)
        elif change.kind == "reload":
            self.refresh(cid)
        elif change.kind == "items":
            if cid != DEFAULT_GUILD:
                self._own[cid] = (True, time.monotonic())
            cat = self._states.get(cid)
            if cat is not None and (cat.index is not None or cat.load_lock.locked()):
                for _ in range(LOAD_TRIES):  # an own write made while reading may hold newer rows: read after it
                    made = cat.made
                    rows = await self.store.vectors_by_pk(change.pks, self.model)
                    if cat.made == made:
                        break

                def upsert(ix: VectorIndex) -> None:
                    for pk, vec, category, price, digest in zip(
                        rows.pks, rows.vectors, rows.categories, rows.prices, rows.hashes
                    ):
                        ix.upsert(int(pk), vec, category, None if np.isnan(price) else float(price), digest)

                await self._write_index(cid, upsert)
            self._stale_head(cid)
        elif change.kind == "removed":
            self._own.pop(cid, None)

            def remove(ix: VectorIndex) -> None:
                for pk in change.pks:
                    ix.remove(pk)

            await self._write_index(cid, remove)
            self._stale_head(cid)
        elif change.kind == "classifier" and change.model == self.model and cid in self._states:
            self._states[cid].head = None  # the saved one is loaded on next use
        elif change.kind == "labels":  # the labelling process refits the head itself
            self.forget_lessons(cid)

    # -- the catalogue-tuned head (head.py: classifier, search order, "nothing like this") --------

    async def decide(self, cid: int, vec: np.ndarray, hits: list[Hit], k: int, guild_id: int | None = None) -> Decision | None:
        """The head's answer for a member's photo: the order of its nearest items `hits` (best first,
        ideally head.CANDIDATES of them), the category and whether the catalogue has nothing like it.
        The asking guild's labelled member photos vote on the category (head.decide's members)."""
        model = await self.heads.get(cid)
        if model is None or not hits:
            return None
        members = None if guild_id is None else await self.members(cid, guild_id)
        scores, categories, threshold = np.array([h.score for h in hits]), [h.category for h in hits], self.settings.threshold
        return await self.embedder.cpu(lambda: model.decide(vec, scores, categories, k, threshold, members=members))

    # -- what members' photos teach (community.py): labels for decide and the head, adaptation ----

    async def members(self, cid: int, guild_id: int, *, fresh: bool = False) -> Members | None:
        """The guild's labelled member photos in the catalogue (aligned like queries when adaptation is
        on), cached until labels change (here, or in another process: a "labels" change; on SQLite, at
        most refresh_check_s later). fresh: read them from the store now."""
        cat = self.state(cid)
        known = cat.members.get(guild_id)
        if fresh or known is None or time.monotonic() - known[0] > self.settings.refresh_check_s:
            loaded = time.monotonic()
            found = await self.photos.labelled(cid, guild_id, self.model, await self._carried(cid, guild_id))
            if found is not None and self.settings.adaptation:
                found = (await self.align(cid, found[0]), found[1])
            known = cat.members[guild_id] = (loaded, found)
        return known[1]

    async def _carried(self, cid: int, guild_id: int) -> frozenset[str]:
        """For a guild's own catalogue, its categories: the labels the guild gave while it searched the
        shared default catalogue that count for its own too (community.MemberPhotos._lessons)."""
        if cid != guild_id or cid == DEFAULT_GUILD:
            return frozenset()
        return frozenset(await self.store.category_counts(cid))

    async def domain(self, cid: int) -> DomainState:
        """The catalogue's members' domain state (as saved; reread every refresh_check_s: other processes add to it)."""
        cat = self.state(cid)
        if cat.domain is None or time.monotonic() - cat.domain[0] > self.settings.refresh_check_s:
            cat.domain = (time.monotonic(), await self.photos.domain(cid, self.model, self.embedder.dim))
        return cat.domain[1]

    def remembered(self, cid: int, state: DomainState | None) -> None:
        """A photo was remembered; `state` is the domain state it committed with."""
        if state is not None:
            self.state(cid).domain = (time.monotonic(), state)

    async def align(self, cid: int, vectors: np.ndarray) -> np.ndarray:
        """Members' photo vectors moved into the catalogue's domain (adapt.DomainState.align), when adaptation is on."""
        if not self.settings.adaptation:
            return vectors
        state = await self.domain(cid)
        index = await self.index(cid)
        if state.count < MIN_COUNT or len(index) == 0:
            return vectors
        cat = self.state(cid)
        if cat.reference is None or cat.reference[0] != cat.revision:  # the revision is read before the await
            cat.reference = (cat.revision, await self.read_index(cid, lambda ix: ix.mean()))
        return await self.embedder.cpu(state.align, vectors, cat.reference[1])

    def forget_lessons(self, cid: int) -> None:
        """Labels or remembered photos of the catalogue changed: reload them (and its domain state) on next use."""
        cat = self.state(cid)
        cat.members.clear()
        cat.domain = None

    def labels_changed(self, cid: int, guild_id: int) -> None:
        """The guild's labels in the catalogue changed: its category vote follows at once, and when the
        catalogue is the guild's own its head is fitted again (debounced). A label given in the shared
        catalogue also counts for the guild's own one, if it has one by now."""
        self.forget_lessons(cid)
        if guild_id == cid:
            self.heads.schedule(cid)
        elif cid == DEFAULT_GUILD and self._own.get(guild_id, (False, 0.0))[0]:
            self.forget_lessons(guild_id)
            self.heads.schedule(guild_id)

    async def _head_fingerprint(self, cid: int) -> str:
        """The catalogue state a head is fitted on: its items and, for a guild's own catalogue, its labels."""
        fingerprint = await self.store.fingerprint(cid, self.model)
        labels = await self.photos.label_fingerprint(cid, cid, self.model, await self._carried(cid, cid))
        return f"{fingerprint}|{labels}" if labels else fingerprint

    def _stale_head(self, cid: int) -> None:
        """Another process changed the catalogue's items: a loaded head is fitted again (debounced; of all the
        processes that saw the change, the one holding the fit lease fits it, the others load what it saves)."""
        cat = self._states.get(cid)
        if cat is not None and cat.head is not None:
            self.heads.schedule(cid)
