"""One catalogue's derived state in memory (catalogues.py keeps one per catalogue), and the order of its index's writes."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from .adapt import DomainState
from .head import CatalogueHead, Members
from .index import VectorIndex

Write = Callable[[VectorIndex], Any]


class CatalogueState:
    """One catalogue's derived state."""

    def __init__(self) -> None:
        self.index: VectorIndex | None = None
        self.index_lock = threading.Lock()  # guards the index across pool threads
        self.load_lock = asyncio.Lock()
        self.train_lock = asyncio.Lock()
        self.head: CatalogueHead | None = None
        self.retrain_timer: asyncio.Task[None] | None = None
        self.training: asyncio.Task[Any] | None = None  # a background fit in progress (never cancelled midway)
        self.pending: list[Write] = []  # writes that landed while the index was loading
        self.writes: deque[tuple[VectorIndex, Write, list[BaseException | None]]] = deque()  # made, not yet applied
        self.made = 0  # writes made (applied, queued or pending): a change feed's read compares it before and after
        self.refreshes = 0  # refresh() calls: one that lands while the index loads makes the load read again
        self.version: int | None = None  # the store's version the index reflects (SQLite; None: unknown, reload)
        self.checked_at = 0.0  # when the store was last compared with it
        self.revision = 0  # changes of the loaded index: the key of `reference`
        self.reference: tuple[int, np.ndarray] | None = None  # (revision, mean item vector) for adapt.align
        self.domain: tuple[float, DomainState] | None = None  # (when loaded, members' domain state)
        self.members: dict[int, tuple[float, Members | None]] = {}  # guild -> (when loaded, its labelled photos)

    def write(self, index: VectorIndex, fn: Write) -> Callable[[], None]:
        """Queue ``fn(index)`` (on the event loop, in the order the writes were made) and return the pool job
        that applies it. Two pool threads may start in either order, so whichever takes the index lock first
        applies every queued write, oldest first; the job raises its own write's error, if any."""
        done: list[BaseException | None] = []  # [None] once applied, or [its error]
        self.writes.append((index, fn, done))

        def job() -> None:
            with self.index_lock:
                while self.writes:
                    ix, op, box = self.writes.popleft()
                    try:
                        op(ix)
                        box.append(None)
                    except BaseException as e:  # raised by the job of the write that made it
                        box.append(e)
            if done[0] is not None:
                raise done[0]

        return job
