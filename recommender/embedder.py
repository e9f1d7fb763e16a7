"""The embedder: the process's one backbone and everything that feeds it.

Owns the image limits, the bounded thread pool that decodes (and that the rest of the recommender
borrows for search and other CPU work), and the model's thread behind the micro-batcher (one per
core for light models, `Backbone.lanes`, each running its own batch), so requests that arrive
together share one forward pass. The event loop only awaits.

Interactive queries (`embed`, `embed_input`) go first and get `Busy` when their queue stays full;
bulk work (`embed_bulk`) queues behind them and waits for room.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from . import images
from .backbones import Backbone
from .batcher import Batcher
from .config import Settings

T = TypeVar("T")


class Embedder:
    def __init__(self, backbone: Backbone, settings: Settings) -> None:
        self.backbone = backbone
        self.model = backbone.name
        self.dim = backbone.dim
        self.limits = images.ImageLimits(
            settings.max_image_bytes, settings.max_image_pixels, settings.decode_side, settings.max_decode_bytes
        )
        self.thumbnail_side = settings.thumbnail_side
        self.workers = settings.workers
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="lookalike-cpu")
        self._model_pool = ThreadPoolExecutor(backbone.lanes, thread_name_prefix="lookalike-model")
        self._batcher: Batcher[np.ndarray, np.ndarray] = Batcher(
            lambda batch: list(backbone.embed_prepared(batch)),
            self._model_pool,
            max_batch=settings.batch_size,
            max_wait_s=settings.batch_wait_ms / 1000,
            max_queue=settings.queue_size,
            lanes=backbone.lanes,
        )

    async def close(self) -> None:
        await self._batcher.close()
        for pool in (self._pool, self._model_pool):
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    @property
    def batches(self) -> int:
        """Forward passes run so far."""
        return self._batcher.batches

    @property
    def embedded(self) -> int:
        """Images embedded so far."""
        return self._batcher.items

    async def cpu(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """fn(*args, **kw) in the CPU pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kw))

    # -- synchronous steps (run them in the pool) -------------------------------------------------

    def decode(self, source: Any) -> tuple[Image.Image, str]:
        """Image (bytes/path/file) -> (RGB image within the limits, content hash)."""
        return images.load_image(source, self.limits)

    def prepare(self, source: Any) -> tuple[np.ndarray, str, bytes]:
        """For a catalogue item, in one go: the network's input, the content hash, the stored thumbnail."""
        img, digest = self.decode(source)
        return self.backbone.prepare(img), digest, images.make_thumbnail(img, self.thumbnail_side)

    def prepare_new(self, source: Any, known: str | None) -> tuple[str, tuple[np.ndarray, bytes] | None]:
        """An import's one trip to the pool: (content hash, (network input, thumbnail)), the image read,
        hashed and decoded once; (content hash, None) when the hash is `known` (nothing decoded)."""
        data = images.read_source(source() if callable(source) else source, self.limits)
        digest = images.content_hash(data)
        if digest == known:
            return digest, None
        img = images.decode_image(data, self.limits)
        del data
        return digest, (self.backbone.prepare(img), images.make_thumbnail(img, self.thumbnail_side))

    def prepare_many(self, jobs: list[tuple[Any, str | None]]) -> list[tuple[str, tuple[np.ndarray, bytes] | None] | Exception]:
        """`prepare_new` for several (source, known hash) in one trip to the pool; a failure is returned
        in its item's place."""
        out: list[tuple[str, tuple[np.ndarray, bytes] | None] | Exception] = []
        for source, known in jobs:
            try:
                out.append(self.prepare_new(source, known))
            except Exception as e:  # kept for its words only: its traceback's frames hold the file's bytes (up to 20 MB)
                e.__traceback__ = e.__context__ = e.__cause__ = None
                out.append(e)
        return out

    # -- async ------------------------------------------------------------------------------------

    def _decode_input(self, source: Any) -> tuple[np.ndarray, str]:
        img, digest = self.decode(source)
        return self.backbone.prepare(img), digest

    async def embed(self, source: Any) -> tuple[np.ndarray, str]:
        """Image (bytes/path/file) -> (vector, content hash). Decoding and the network's input made in the
        pool, the forward pass batched in the model's thread."""
        x, digest = await self.cpu(self._decode_input, source)
        return await self._batcher.submit(x), digest

    async def embed_input(self, x: np.ndarray) -> np.ndarray:
        """Interactive (a moderator adding an item), for an input made by prepare()."""
        return await self._batcher.submit(x)

    async def embed_views(self, imgs: list[Image.Image]) -> list[np.ndarray]:
        """Bulk, several at once (a head's member-like views): behind interactive queries."""
        inputs = await self.cpu(lambda: [self.backbone.prepare(img) for img in imgs])
        return await self.embed_bulk_many(inputs)

    async def embed_bulk_many(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Several inputs made by prepare(), queued at once behind interactive queries."""
        return await self._batcher.submit_many(inputs)

    async def embed_bulk(self, x: np.ndarray) -> np.ndarray:
        """For imports (x from prepare()): queued behind interactive queries; waits for room, never Busy."""
        return await self._batcher.submit(x, wait=True)
