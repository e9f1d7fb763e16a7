"""One catalogue's vectors in memory: exact cosine search with filters applied before ranking.

Derived data, always rebuildable from the store. Adds and removals touch only the affected rows
(amortised growth, swap-with-last removal), so no query ever triggers a full reload.
Not thread-safe by itself: the engine serialises mutations and searches per index with a lock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


def _h64(content_hash: str) -> int:
    return int(content_hash[:16], 16) - (1 << 63) if content_hash else 0


class Hit(NamedTuple):
    pk: int
    score: float
    category: str = ""  # as first spelt in the catalogue (categories compare case-insensitively)


@dataclass(frozen=True)
class SearchFilter:
    category: str | None = None  # case-insensitive exact match
    min_price: float | None = None
    max_price: float | None = None
    exclude_pks: frozenset[int] = frozenset()
    exclude_hash: str | None = None  # the query's own content hash: the item itself and exact copies


class VectorIndex:
    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self._vecs = np.zeros((max(capacity, 16), dim), dtype=np.float32)
        self._pks = np.zeros(len(self._vecs), dtype=np.int64)
        self._prices = np.full(len(self._vecs), np.nan)
        self._cats = np.zeros(len(self._vecs), dtype=np.int32)  # codes into self._cat_codes
        self._h64 = np.zeros(len(self._vecs), dtype=np.int64)  # first 64 bits of the content hash
        self._cat_codes: dict[str, int] = {}
        self._cat_names: list[str] = []  # code -> the category's first spelling
        self._row: dict[int, int] = {}  # pk -> row
        self.n = 0

    @classmethod
    def build(
        cls, pks: np.ndarray, vectors: np.ndarray, categories: Sequence[str], prices: np.ndarray, hashes: Sequence[str], dim: int
    ) -> VectorIndex:
        idx = cls(dim, capacity=int(len(pks) * 1.25) + 16)
        n = len(pks)
        if n:
            idx._vecs[:n] = vectors
        idx._pks[:n] = pks
        idx._prices[:n] = prices
        idx._cats[:n] = [idx._code(c) for c in categories]
        idx._h64[:n] = [_h64(h) for h in hashes]
        idx._row = {int(p): i for i, p in enumerate(pks)}
        idx.n = n
        return idx

    def __len__(self) -> int:
        return self.n

    def __contains__(self, pk: int) -> bool:
        return pk in self._row

    def _grow(self) -> None:
        cap = len(self._vecs) * 2
        for name, fill in (("_vecs", 0.0), ("_pks", 0), ("_prices", np.nan), ("_cats", 0), ("_h64", 0)):
            old = getattr(self, name)
            new = np.full((cap, *old.shape[1:]), fill, dtype=old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def upsert(self, pk: int, vector: np.ndarray, category: str, price: float | None, content_hash: str) -> None:
        row = self._row.get(pk)
        if row is None:
            if self.n == len(self._vecs):
                self._grow()
            row = self.n
            self.n += 1
            self._row[pk] = row
        self._vecs[row] = vector
        self._pks[row] = pk
        self._prices[row] = math.nan if price is None else price
        self._cats[row] = self._code(category)
        self._h64[row] = _h64(content_hash)

    def update_meta(self, pk: int, category: str, price: float | None) -> None:
        row = self._row.get(pk)
        if row is not None:
            self._cats[row] = self._code(category)
            self._prices[row] = math.nan if price is None else price

    def remove(self, pk: int) -> bool:
        row = self._row.pop(pk, None)
        if row is None:
            return False
        last = self.n - 1
        if row != last:  # move the last row into the hole
            self._vecs[row] = self._vecs[last]
            self._pks[row] = self._pks[last]
            self._prices[row] = self._prices[last]
            self._cats[row] = self._cats[last]
            self._h64[row] = self._h64[last]
            self._row[int(self._pks[row])] = row
        self.n = last
        return True

    def mean(self) -> np.ndarray:
        """The mean of the catalogue's vectors (zeros when it is empty)."""
        return self._vecs[: self.n].mean(axis=0) if self.n else np.zeros(self.dim, np.float32)

    def vector(self, pk: int) -> np.ndarray | None:
        row = self._row.get(pk)
        return None if row is None else self._vecs[row].copy()

    def _code(self, category: str) -> int:
        code = self._cat_codes.setdefault(category.lower(), len(self._cat_codes))
        if code == len(self._cat_names):
            self._cat_names.append(category)
        return code

    def _mask(self, f: SearchFilter) -> np.ndarray | None:
        n = self.n
        mask: np.ndarray | None = None

        def both(m: np.ndarray) -> None:
            nonlocal mask
            mask = m if mask is None else (mask & m)

        if f.category:
            both(self._cats[:n] == self._cat_codes.get(f.category.lower(), -1))
        if f.min_price is not None:
            both(self._prices[:n] >= f.min_price)  # unknown prices (nan) never pass a price filter
        if f.max_price is not None:
            both(self._prices[:n] <= f.max_price)
        if f.exclude_hash:
            both(self._h64[:n] != _h64(f.exclude_hash))
        excluded = [self._row[p] for p in f.exclude_pks if p in self._row]
        if excluded:
            m = np.ones(n, dtype=bool)
            m[excluded] = False
            both(m)
        return mask

    def search(self, query: np.ndarray, k: int, flt: SearchFilter = SearchFilter()) -> list[Hit]:
        """Top-k by cosine similarity (vectors are L2-normalised). One result per content hash."""
        n = self.n
        if n == 0 or k <= 0:
            return []
        scores = self._vecs[:n] @ np.asarray(query, dtype=np.float32)
        mask = self._mask(flt)
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        want = min(n, k * 2 + 8)  # head-room for duplicates removed below
        while True:
            top = np.argpartition(-scores, want - 1)[:want] if want < n else np.arange(n)
            top = top[np.argsort(-scores[top], kind="stable")]
            hits: list[Hit] = []
            seen: set[int] = set()
            for i in top:
                s = float(scores[i])
                if s == -np.inf:
                    break
                h = int(self._h64[i])
                if h in seen:
                    continue
                seen.add(h)
                hits.append(Hit(int(self._pks[i]), s, self._cat_names[self._cats[i]]))
                if len(hits) == k:
                    return hits
            if want >= n or (len(top) and scores[top[-1]] == -np.inf):
                return hits
            want = min(n, want * 4)  # many exact copies ranked first: look further
