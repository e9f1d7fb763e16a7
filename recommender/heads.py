"""Each catalogue's head (head.py: its classifier, search order and "nothing like this" threshold, fitted on
member-like views of its items): loaded from the store, fitted in its own thread, saved with the catalogue state
(fingerprint) it was fitted on, and fitted again in the background after changes, debounced; a fit in progress
is never cancelled midway. Of the processes on one database that see a change, the one holding the catalogue's
fit lease (fitlease.py) fits it; the others keep answering with the head they have and load the one it saves.
Catalogues (catalogues.py) owns one and passes in what a fit reads: the catalogues' states (shared), the
fingerprint and the guild's labelled member photos."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from .catalogue_state import CatalogueState
from .config import Settings
from .embedder import Embedder
from .errors import RecommenderError
from .fitlease import FitLeases
from .head import CatalogueHead, Members, fit_head, head_from_bytes, train_head
from .store import Store

log = logging.getLogger(__name__)
FIT_GRACE_S = 10.0  # how long closing waits for a head fit in progress


class Heads:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        settings: Settings,
        leases: FitLeases,
        states: dict[int, CatalogueState],
        fingerprint: Callable[[int], Awaitable[str]],
        members: Callable[[int], Awaitable[Members | None]],
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.model = embedder.model
        self.settings = settings
        self.leases = leases
        self._states = states  # the catalogues' states, shared with Catalogues (catalogues.py)
        self._fingerprint = fingerprint
        self._members = members
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lookalike-train")
        self._closed = False  # no fit is scheduled once closing began

    async def close(self) -> None:
        """Stop scheduling fits; a fit in progress gets FIT_GRACE_S to finish and be saved. One still
        embedding its views then (minutes with a big model) stops when the embedder closes, and the head
        saved before stays: call join() after closing the embedder."""
        self._closed = True
        timers = [c.retrain_timer for c in self._states.values() if c.retrain_timer and not c.retrain_timer.done()]
        for t in timers:
            t.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        fits = [c.training for c in self._states.values() if c.training and not c.training.done()]
        if fits:
            await asyncio.wait(fits, timeout=FIT_GRACE_S)

    async def join(self) -> None:
        """Wait for the training thread to end (after the embedder closed, so an unfinished fit stops)."""
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        fits = [c.training for c in self._states.values() if c.training and not c.training.done()]
        await asyncio.gather(*fits, return_exceptions=True)

    def _cat(self, cid: int) -> CatalogueState:
        return self._states.setdefault(cid, CatalogueState())

    async def get(self, cid: int) -> CatalogueHead | None:
        """The catalogue's head: loaded from the store, else fitted now (a stale one answers while a
        fresh one is fitted in the background; an unreadable one is fitted again, never trusted; a quick one,
        from the items alone, answers while the one with member-like views is fitted)."""
        cat = self._cat(cid)
        if cat.head is None:
            saved = await self.store.load_classifier(cid, self.model)
            if saved is not None:  # unreadable: fitted again as if never fitted, quickly now, fully after
                cat.head = await self._read_head(cid, saved.blob)
                if cat.head is not None and saved.fingerprint != await self._fingerprint(cid):
                    self.schedule(cid, delay=0.0)
            loaded = cat.head is not None
            if not loaded:  # never fitted: a quick head on the items answers now (concurrent first callers:
                await self.retrain(cid, force=False, views=False)  # one fit, the rest load it) ...
            idle = all(t is None or t.done() for t in (cat.retrain_timer, cat.training))
            if cat.head is not None and not cat.head.info.get("views") and idle:  # ... and the one with member-
                # like views follows; also for a quick head a stop cut short, debounced: a CLI command that
                # meets one is done before it starts
                self.schedule(cid, delay=None if loaded else 0.0)
        return cat.head

    async def retrain(
        self, cid: int, *, force: bool = True, views: bool = True, background: bool = False
    ) -> CatalogueHead | None:
        """Fit the catalogue's head now (in the training thread; its member-like views go through the
        model behind members' photos) and save it. With force=False a saved head fitted on the same
        catalogue state (with views, if views are wanted) is reused. views=False: from the items alone, in
        seconds (what a catalogue's very first query waits for; embedding views takes minutes with a big
        model on a CPU). background: fit only with the catalogue's fit lease (fitlease.py); while another
        process holds it, keep the head in hand and look again (for the head it saved, or a lapsed lease) soon."""
        cat = self._cat(cid)
        async with cat.train_lock:
            fingerprint = await self._fingerprint(cid)
            if not force and (head := await self._saved(cid, fingerprint, views)):
                cat.head = head
                return head
            if not background:
                return await self._fit(cid, fingerprint, views)
            async with self.leases.held(cid, self.model) as ours:
                if ours:  # the holder before may have saved this very state's head since it was looked for
                    if head := await self._saved(cid, fingerprint, views):
                        cat.head = head
                        return head
                    return await self._fit(cid, fingerprint, views)
            log.info("catalogue %s: another process is fitting its head; this one looks again later", cid)
            self.schedule(cid, delay=self.leases.ttl_s / 3)  # as often as the holder renews it
            return cat.head

    async def _saved(self, cid: int, fingerprint: str, views: bool) -> CatalogueHead | None:
        """The saved head, if it was fitted on this catalogue state (`fingerprint`) and with views where they are
        wanted (not the quick head a first query got), and can be read."""
        saved = await self.store.load_classifier(cid, self.model)
        if saved is None or saved.fingerprint != fingerprint:
            return None
        head = await self._read_head(cid, saved.blob)
        return head if head is not None and (head.info.get("views") or not (views and self.settings.head_views)) else None

    async def _fit(self, cid: int, fingerprint: str, views: bool) -> CatalogueHead | None:
        """retrain's fit, under the catalogue's train_lock."""
        cat = self._cat(cid)
        rows = await self.store.load_vectors(cid, self.model)
        if len(rows.pks) == 0:
            cat.head = None
            return None
        members = await self._members(cid)  # the guild's labelled photos teach its own catalogue's head
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()

        def pictures(indices: list[int]) -> list[Image.Image]:  # the stored thumbnails, read via the loop
            pks = [int(rows.pks[i]) for i in indices]
            thumbs = asyncio.run_coroutine_threadsafe(self.store.thumbnails(pks), loop).result()
            return [_picture(thumbs.get(pk)) for pk in pks]

        def embed(views: list[Image.Image]) -> np.ndarray:  # behind members' photos in the model's queue
            return np.stack(asyncio.run_coroutine_threadsafe(self.embedder.embed_views(views), loop).result())

        def fit() -> tuple[CatalogueHead, bytes]:
            if not views:
                model = fit_head(rows.vectors, rows.categories, members=members)
            else:
                model = train_head(
                    rows.vectors, rows.categories, pictures, embed, max_views=self.settings.head_views, members=members
                )
            return model, model.to_bytes()

        model, blob = await loop.run_in_executor(self._pool, fit)
        now = await self._fingerprint(cid)
        if now != fingerprint:  # the catalogue changed during the fit, maybe in another process that
            newer = await self.store.load_classifier(cid, self.model)  # saved a head of the newer state:
            if newer is not None and newer.fingerprint == now and (head := await self._read_head(cid, newer.blob)):
                cat.head = head  # this older one must not overwrite it
                return head
        await self.store.save_classifier(cid, self.model, fingerprint, f"head-{model.classifier.method}", blob)
        cat.head = model
        log.info("catalogue %s: head (%s classifier) over %d items in %.1fs", cid, model.classifier.method,
                 len(rows.pks), time.perf_counter() - t0)  # fmt: skip
        return model

    async def _read_head(self, cid: int, blob: bytes) -> CatalogueHead | None:
        """A saved head, or None (said in the log) when its bytes cannot be read: it is fitted again, never trusted."""
        try:
            return await self.embedder.cpu(head_from_bytes, blob)
        except RecommenderError as e:
            log.warning("saved head of catalogue %s unreadable (%s): not used, a fit replaces it", cid, e)
            return None

    def schedule(self, cid: int, delay: float | None = None) -> None:
        """Debounced: many changes in a row cause one retrain, `retrain_delay_s` after the last. A
        change that comes while a fit runs lets that fit finish (it is never cancelled midway) and
        causes one more after it. Nothing once closing began."""
        if self._closed:
            return
        cat = self._cat(cid)
        if cat.retrain_timer and not cat.retrain_timer.done():
            cat.retrain_timer.cancel()  # still sleeping: start the wait again
        wait = self.settings.retrain_delay_s if delay is None else delay

        async def later() -> None:
            await asyncio.sleep(wait)
            if cat.training is not None and not cat.training.done():
                await asyncio.shield(cat.training)  # the next fit follows the one in progress
            cat.training = asyncio.get_running_loop().create_task(self._retrain_logged(cid), name=f"fit-{cid}")
            await asyncio.shield(cat.training)

        cat.retrain_timer = asyncio.get_running_loop().create_task(later(), name=f"retrain-{cid}")

    async def _retrain_logged(self, cid: int) -> None:
        try:
            await self.retrain(cid, force=False, background=True)
        except Exception:
            log.exception("background retrain of catalogue %s failed", cid)


def _picture(thumbnail: bytes | None) -> Image.Image:
    """A stored thumbnail as an RGB image (a grey square where it cannot be read)."""
    if thumbnail:
        try:
            with Image.open(io.BytesIO(thumbnail)) as im:
                return im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    return Image.new("RGB", (64, 64), (128, 128, 128))
