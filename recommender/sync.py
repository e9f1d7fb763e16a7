"""`lookalike sync` and `/catalog sync`: make a catalogue equal to a shop's feed.

Read the feed (a web address through the fetcher, or a file), parse it in a thread (feeds.py), import
its available products through the bulk importer (an unchanged picture is neither downloaded, thanks
to the remembered ETag/Last-Modified, nor embedded, thanks to its hash), then take out the items the
feed no longer sells (out of stock, a draft: never recommended) and those it no longer names, unless
`keep_missing`. Those it does not name are kept when the feed had rows that could not be read at all
(their product might be among them), and an item whose row or picture failed keeps its current version. A feed
that names no product at all (a shop's export answering with its header alone while it is rebuilt) changes
nothing: it is refused, never read as "the shop sells nothing any more". Resumable: each batch commits on its
own, and running the sync again skips what is already there. One sync per catalogue at a time in a
process; the scheduler's lease (feedstate.py) keeps other processes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from .bulk import BulkImporter, ProgressFn
from .catalogues import Catalogues
from .errors import BadManifest, ItemNotFound, RecommenderError, SyncInProgress
from .feeds import FeedOptions, read_feed
from .feedstate import FeedState
from .names import shown
from .records import SyncSummary
from .store import Store
from .urls import is_web_url
from .webfetch import UrlFetcher

log = logging.getLogger(__name__)

MAX_FEED_BYTES = 256 * 1024 * 1024
FEED_TIMEOUT_S = 300.0
LEASE_S = 3600.0  # a sync's hold on its catalogue, freed sooner when it ends, renewed while it runs


class FeedSync:
    def __init__(self, importer: BulkImporter, store: Store, catalogues: Catalogues, state: FeedState) -> None:
        self.importer = importer
        self.store = store
        self.catalogues = catalogues
        self.state = state
        self._running: set[int] = set()

    async def run(
        self,
        source: str | Path,
        *,
        guild_id: int,
        actor: str,
        fetcher: UrlFetcher | None,
        options: FeedOptions,
        keep_missing: bool = False,
        progress: ProgressFn | None = None,
        max_feed_bytes: int = MAX_FEED_BYTES,
        leased: bool = False,
        lease_s: float = LEASE_S,
    ) -> SyncSummary:
        """`leased`: the caller (the scheduler) holds the guild's feed lease, taken for `lease_s`. Otherwise,
        when the guild has a scheduled feed, its lease is taken for the run, so no other process syncs
        meanwhile. Either way the lease is renewed every third of `lease_s` while the sync runs: a sync longer
        than its lease (a first sync of a big shop) keeps the catalogue, and a process that died frees it."""
        if guild_id in self._running:
            raise SyncInProgress("A sync of this catalogue is already running; wait for it to finish.")
        self._running.add(guild_id)
        lease = False
        try:
            if not leased and await self.state.feed(guild_id) is not None:
                lease = await self.state.claim(guild_id, lease_s)
                if not lease:
                    raise SyncInProgress("A scheduled sync of this catalogue is running; wait for it to finish.")
            async with _alongside(self._renew(guild_id, lease_s)) if lease or leased else contextlib.nullcontext():
                return await self._run(source, guild_id, actor, fetcher, options.check(), keep_missing, progress, max_feed_bytes)
        finally:
            self._running.discard(guild_id)
            if lease:
                await asyncio.shield(self.state.release(guild_id))

    async def _renew(self, guild_id: int, lease_s: float) -> None:
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                await self.state.renew(guild_id, lease_s)
            except Exception as e:  # the database away for a moment: the next third tries again
                log.warning("could not renew the feed lease of catalogue %s: %s", guild_id, e)

    async def _run(
        self,
        source: str | Path,
        guild_id: int,
        actor: str,
        fetcher: UrlFetcher | None,
        options: FeedOptions,
        keep_missing: bool,
        progress: ProgressFn | None,
        max_feed_bytes: int,
    ) -> SyncSummary:
        data, label = await self._read(source, fetcher, max_feed_bytes)
        feed = await asyncio.to_thread(read_feed, data, options, label)
        del data
        if not feed.ids and not feed.records:
            raise BadManifest(f"The {label} names no products, so the catalogue was left as it is.")
        urls = [r.image for r in feed.records if isinstance(r.image, str)]
        images = None
        if fetcher is not None:
            images = fetcher.sibling(validators=await self.state.validators(urls))
        imported = await self.importer.run(
            feed.records, guild_id=guild_id, actor=actor, total=len(feed.records), progress=progress, fetch=images
        )
        if images is not None:
            await self.state.prune_validators()
            await self.state.save_validators(images.learned)
        summary = SyncSummary(feed.format, imported, unavailable=len(feed.unavailable))
        existing = await self.state.item_ids(guild_id)
        gone = set() if keep_missing else existing - feed.ids
        unknown = sum(1 for r in feed.records if r.error is not None and r.item_id not in feed.ids)
        if gone and unknown:
            summary.warnings.append(
                f"{unknown} rows of the feed could not be read, so the {len(gone)} items it does not name were kept this time."
            )
            gone = set()
        for item_id in sorted(gone | (existing & feed.unavailable)):
            try:
                item = await self.store.remove_item(guild_id, item_id, actor)
            except ItemNotFound:  # removed meanwhile
                continue
            await self.catalogues.removed(guild_id, item)
            summary.removed += 1
        await self.store.audit(
            guild_id, actor, "sync", None, source=shown(str(source), 200), format=feed.format, removed=summary.removed
        )
        return summary

    @staticmethod
    async def _read(source: str | Path, fetcher: UrlFetcher | None, max_bytes: int) -> tuple[bytes, str]:
        if isinstance(source, str) and is_web_url(source):
            if fetcher is None:
                raise BadManifest("Feeds on the web are not fetched here; give a file.")
            reader = fetcher.sibling(max_bytes=max_bytes, timeout_s=max(fetcher.timeout_s, FEED_TIMEOUT_S), what="feed")
            try:
                got = await reader(source)
            except RecommenderError as e:
                raise BadManifest(f"The feed could not be downloaded: {e}.") from None
            assert isinstance(got, bytes)
            return got, "feed"
        path = Path(source)

        def read() -> bytes:
            if not path.is_file():
                raise BadManifest(f"{shown(str(path), 200)} is not a file.")
            if path.stat().st_size > max_bytes:
                raise BadManifest(f"{shown(path.name, 80)} is larger than {max_bytes // (1024 * 1024)} MB.")
            return path.read_bytes()

        return await asyncio.to_thread(read), shown(path.name, 80)


@contextlib.asynccontextmanager
async def _alongside(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run `work` in a task while the block runs; cancelled when it ends."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
