"""Adaptation to members' photos: per (catalogue, model), where the photos members post sit in feature space.

Members' photos are another domain than the catalogue's product shots (a bed, a floor, room light): their
vectors share an offset the product shots lack. :class:`DomainState` keeps the running mean of the vectors of
the member photos a catalogue has answered (their vectors only, never the photos, never their labels),
bounded to a window of the last :data:`WINDOW`, and :meth:`DomainState.align` moves a query by the difference
of the two domains' means (per-domain centring: ``q - member_mean + catalogue_mean``, renormalised) before it
is searched and classified. Below :data:`MIN_COUNT` photos the mean is too noisy and a query is left as it is.

Saved with ``np.savez`` (no pickle); :func:`domain_from_bytes` refuses anything else with
:class:`AdaptDataError`. Whether the engine aligns at all is a setting, decided by the street-to-shop
benchmark (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from .errors import UNREADABLE_BYTES, BadOption, RecommenderError

FORMAT, VERSION = "lookalike-domain", 1
WINDOW = 500  # the mean follows about the last WINDOW photos (an exponential average once it is full)
MIN_COUNT = 20  # fewer photos than this: align is the identity


class AdaptDataError(RecommenderError, ValueError):
    """Saved domain-state bytes are corrupt, truncated, of another version, or inconsistent."""


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True, eq=False)
class DomainState:
    count: int  # photos seen, capped at WINDOW
    mean: np.ndarray  # float32 (dim,): running mean of their unit vectors

    @classmethod
    def empty(cls, dim: int) -> DomainState:
        if dim < 1:
            raise BadOption(f"a domain state needs a dimension of at least 1, got {dim}")
        return cls(0, np.zeros(dim, np.float32))

    @property
    def dim(self) -> int:
        return len(self.mean)

    def update(self, vectors: np.ndarray) -> DomainState:
        """The state after seeing ``vectors`` ((n, dim) or (dim,)): each moves the mean by ``1 / min(count, WINDOW)``
        of its difference, so it is the exact mean of the first WINDOW photos and then forgets the oldest."""
        V = np.asarray(vectors, np.float32)
        V = V[None, :] if V.ndim == 1 else V
        if V.ndim != 2 or V.shape[1] != self.dim:
            raise BadOption(f"expected vectors of dimension {self.dim}, got shape {np.shape(vectors)}")
        V = V[np.isfinite(V).all(axis=1)]
        mean, count = self.mean.astype(np.float64), self.count
        for v in _unit(V):
            count = min(count + 1, WINDOW)
            mean += (v - mean) / count
        return DomainState(count, mean.astype(np.float32))

    def align(self, query: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """``query`` ((dim,) or (n, dim)) moved from the members' domain to the catalogue's, whose mean vector is
        ``reference``: ``q - mean + reference``, renormalised. Identity below :data:`MIN_COUNT` photos."""
        q = np.asarray(query, np.float32)
        ref = np.asarray(reference, np.float32)
        if q.shape[-1] != self.dim or ref.shape != (self.dim,):
            raise BadOption(f"query and reference must have dimension {self.dim}")
        if self.count < MIN_COUNT:
            return q
        return _unit(q - self.mean + ref)

    def to_bytes(self) -> bytes:
        meta = {"format": FORMAT, "version": VERSION, "count": self.count, "window": WINDOW}
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8), mean=self.mean.astype(np.float32))
        return buf.getvalue()


def domain_from_bytes(data: bytes) -> DomainState:
    """Load what :meth:`DomainState.to_bytes` wrote; never unpickles. Raises :class:`AdaptDataError`."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if "meta" not in z.files or "mean" not in z.files:
                raise AdaptDataError("these bytes are not a saved domain state")
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            mean = z["mean"]
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise AdaptDataError("these bytes are not a saved domain state")
        if meta.get("version") != VERSION:
            raise AdaptDataError(f"saved domain state version {meta.get('version')!r} is not supported (expected {VERSION})")
        count = meta.get("count")
        if not isinstance(count, int) or not 0 <= count <= WINDOW:
            raise AdaptDataError(f"the saved domain state's count {count!r} is out of range")
        if mean.dtype != np.float32 or mean.ndim != 1 or len(mean) < 1 or not np.isfinite(mean).all():
            raise AdaptDataError("the saved domain state's mean is not a finite float32 vector")
        return DomainState(count, mean.copy())
    except AdaptDataError:
        raise
    except UNREADABLE_BYTES as e:
        raise AdaptDataError(f"the saved domain state cannot be read ({type(e).__name__}: {e})") from e
