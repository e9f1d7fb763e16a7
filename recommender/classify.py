"""Per-catalogue category classifier over stored (L2-normalised) embeddings.

Two implementations share one interface (:class:`Classifier`):

* :class:`LinearClassifier` -- multinomial logistic regression (softmax) on standardised features, L2 penalty on
  the weights (not the bias), trained full-batch with L-BFGS on the CPU (softmax.py, lbfgs.py). Calibration is temperature
  scaling: a model fitted on a stratified 80 % answers the other 20 %, the ``T`` minimising the NLL of those
  answers (targets lightly smoothed, see :func:`fit_temperature`) is found by golden-section search, and the
  final model is refitted on all the data (warm-started) and gives ``softmax(logits / T)``. The same held-out
  part picks the L2 penalty from a small grid (lowest NLL after scaling). With < 20 held-out items ``T`` stays
  1, the penalty is the default, and the log says so.
* :class:`KnnClassifier` -- for catalogues too small to train (fewer than two categories with ``min_per_class``
  items, or fewer than 20 items). ``predict_proba`` is the similarity-weighted vote of the ``k = min(10, n)``
  nearest stored items, each weighted ``exp(cosine / 0.1)``: "how much of the neighbourhood agrees".
  :meth:`KnnClassifier.predict` multiplies that by the cosine similarity of the nearest stored item (clipped to
  [0, 1]), so a query unlike anything stored is "not sure" even in a single-category catalogue, and only a
  near-duplicate of a stored item gets close to 1.

Both serialise with :func:`numpy.savez` (no pickle) plus JSON metadata; see :func:`classifier_from_bytes`.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from recommender import softmax
from recommender.errors import UNREADABLE_BYTES, BadOption, CatalogEmpty, RecommenderError
from recommender.evaluate import stratified_split

log = logging.getLogger(__name__)

FORMAT = "lookalike-classifier"
VERSION = 1
HOLDOUT_FRACTION = 0.2
MIN_HOLDOUT = 20  # fewer held-out items than this: no temperature fit (T = 1)
MIN_TRAIN = 20  # fewer items than this: kNN
MIN_COVERED = 0.5  # the learnable categories hold less than this share of the items: kNN (it names them all)
KNN_K = 10
KNN_TEMPERATURE = 0.1
L2_GRID = (1e-1, 1e-2, 1e-3)  # L2 penalties tried, strongest first, on standardised features
DEFAULT_L2 = 1e-2


class ClassifierDataError(RecommenderError, ValueError):
    """Stored classifier bytes are corrupt, truncated, of another version, or inconsistent."""


@dataclass(frozen=True)
class Prediction:
    category: str | None  # None when not sure
    probability: float  # calibrated probability of the top category
    ranked: list[tuple[str, float]]  # top categories with probabilities, best first
    method: str  # "linear" or "knn"

    @property
    def sure(self) -> bool:
        return self.category is not None


class Classifier(Protocol):
    @property
    def labels(self) -> list[str]: ...
    @property
    def method(self) -> str: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...  # (n, C), rows sum to 1
    def predict(self, X: np.ndarray, threshold: float = 0.5, top: int = 5) -> list[Prediction]: ...
    def to_bytes(self) -> bytes: ...


# --------------------------------------------------------------------------- helpers


def _matrix(X: np.ndarray, dims: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    X = X[None, :] if X.ndim == 1 else X
    if X.ndim != 2:
        raise BadOption(f"expected embeddings of shape (items, dims), got {X.shape}")
    if dims is not None and X.shape[1] != dims:
        raise BadOption(f"the embeddings have {X.shape[1]} dimensions but the classifier was trained on {dims}; retrain it")
    if not np.isfinite(X).all():
        raise BadOption("the embeddings contain NaN or infinite values")
    return X


def _chosen_rows(X: np.ndarray, rows: np.ndarray | None, n_labels: int) -> np.ndarray:
    """The rows of ``X`` that ``n_labels`` labels describe (None: all of them, in order)."""
    rows = np.arange(len(X)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) != n_labels or (len(rows) and (rows.min() < 0 or rows.max() >= len(X))):
        raise BadOption(f"{len(rows)} embeddings but {n_labels} labels")
    return rows


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float, smoothing: float = 0.0) -> float:
    """Mean cross-entropy of ``softmax(logits / T)`` against one-hot targets ``y`` smoothed by
    ``smoothing`` (mass spread evenly over all classes)."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(len(y)), y]
    if smoothing:
        nll = (1.0 - smoothing) * nll - smoothing * logp.mean(axis=1)
    return float(nll.mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)`` for true classes ``y``.

    The targets are smoothed by ``1 / (n + 2)`` (a Laplace-style pseudo-count): a held-out set
    of ``n`` items, all answered right, is no evidence for more confidence than about that, so
    ``T`` does not collapse towards 0 when a small held-out set happens to be perfect. The loss
    is convex in ``1/T``, hence unimodal in ``log T``: golden-section search on ``log T`` in
    ``[lo, hi]`` (deterministic, float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    eps = 1.0 / (len(y) + 2)
    f = lambda log_t: _nll(logits, y, math.exp(log_t), eps)  # noqa: E731
    a, b, g = math.log(lo), math.log(hi), (math.sqrt(5) - 1) / 2
    for _ in range(50):  # the bracket shrinks by 0.618 a step: 50 steps leave < 1e-9 of it
        c, d = b - g * (b - a), a + g * (b - a)
        a, b = (a, d) if f(c) <= f(d) else (c, b)
    return float(math.exp((a + b) / 2))


def _predictions(P: np.ndarray, labels: list[str], method: str, threshold: float, top: int) -> list[Prediction]:
    if not 0.0 <= threshold <= 1.0:
        raise BadOption(f"threshold must be between 0 and 1, got {threshold}")
    if top < 1:
        raise BadOption(f"top must be at least 1, got {top}")
    out = []
    for row, idx in zip(P, np.argsort(-P, axis=1, kind="stable")[:, : min(top, P.shape[1])]):
        ranked = [(labels[j], float(row[j])) for j in idx]
        out.append(Prediction(ranked[0][0] if ranked[0][1] >= threshold else None, ranked[0][1], ranked, method))
    return out


def _pack(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """``np.savez`` of the arrays plus ``meta``: the JSON metadata as a uint8 array (no pickle)."""
    blob = np.frombuffer(json.dumps({"format": FORMAT, "version": VERSION, **meta}).encode("utf-8"), np.uint8)
    buf = io.BytesIO()
    savez: Any = np.savez  # numpy's stub types **arrays as its keyword options
    savez(buf, meta=blob, **arrays)
    return buf.getvalue()


# --------------------------------------------------------------------------- linear


@dataclass(frozen=True, eq=False)
class LinearClassifier:
    """Softmax regression on standardised embeddings: ``softmax((((x - mean) / scale) @ W + b) / T)``."""

    labels: list[str]
    weights: np.ndarray  # (d, C) float32
    bias: np.ndarray  # (C,) float32
    mean: np.ndarray  # (d,) float32
    scale: np.ndarray  # (d,) float32
    temperature: float = 1.0
    l2: float = 0.0
    dropped: list[str] = field(default_factory=list)  # categories too rare to learn
    method: str = "linear"

    @property
    def dims(self) -> int:
        return int(self.weights.shape[0])

    def logits(self, X: np.ndarray) -> np.ndarray:
        return ((_matrix(X, self.dims) - self.mean) / self.scale) @ self.weights + self.bias

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return _softmax(self.logits(X).astype(np.float64) / self.temperature)

    def predict(self, X: np.ndarray, threshold: float = 0.5, top: int = 5) -> list[Prediction]:
        return _predictions(self.predict_proba(X), self.labels, self.method, threshold, top)

    def to_bytes(self) -> bytes:
        meta = {"method": self.method, "labels": self.labels, "temperature": self.temperature,
                "dims": self.dims, "l2": self.l2, "dropped": self.dropped}  # fmt: skip
        arrays = {"weights": self.weights, "bias": self.bias, "mean": self.mean, "scale": self.scale}
        return _pack(meta, {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})

    @classmethod
    def _from_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LinearClassifier:
        f32 = {k: arrays[k].astype(np.float32) for k in ("weights", "bias", "mean", "scale")}
        clf = cls(labels=[str(v) for v in meta["labels"]], weights=f32["weights"], bias=f32["bias"], mean=f32["mean"],
                  scale=f32["scale"], temperature=float(meta["temperature"]), l2=float(meta.get("l2", 0.0)),
                  dropped=[str(v) for v in meta.get("dropped", [])])  # fmt: skip
        d, C = int(meta["dims"]), len(clf.labels)
        shapes = (clf.weights.shape, clf.bias.shape, clf.mean.shape, clf.scale.shape)
        _require(shapes == ((d, C), (C,), (d,), (d,)) and C >= 2 and bool((clf.scale > 0).all()))
        return clf


def fit_linear(
    X: np.ndarray, y: Sequence[str], *, l2: float | None = None, seed: int = 0, max_iter: int = 200,
    calibrate: bool = True, dropped: Sequence[str] = (), num_threads: int | None = None,
    rows: np.ndarray | None = None,
) -> LinearClassifier:  # fmt: skip
    """Train a :class:`LinearClassifier` on every label in ``y`` (callers drop rare ones first).

    ``rows``: the rows of ``X`` that ``y`` labels (default: all of them, in order); the others are ignored,
    and no copy of the chosen rows is made. With ``l2=None`` the penalty is picked from :data:`L2_GRID` by
    the held-out NLL after temperature scaling (strongest first, each fit warm-started from the previous
    one); without a held-out part it is :data:`DEFAULT_L2`."""
    X = _matrix(X)
    rows = _chosen_rows(X, rows, len(y))
    labels, codes = np.unique(np.asarray(y, dtype=str), return_inverse=True)
    C = len(labels)
    if C < 2:
        raise BadOption("a linear classifier needs at least two categories")
    standard = softmax.standardise(X, rows)
    temperature, init = 1.0, None
    grid = L2_GRID if l2 is None else (float(l2),)
    chosen = DEFAULT_L2 if l2 is None else float(l2)
    tr, va = np.arange(len(codes)), np.empty(0, np.int64)
    if calibrate:
        tr, va = stratified_split([str(v) for v in labels[codes]], HOLDOUT_FRACTION, seed, min_per_class=2)
    if len(va) >= MIN_HOLDOUT:
        best, final_init = math.inf, None
        for penalty in grid:
            init_k = softmax.train(X, rows[tr], codes[tr], C, penalty, max_iter, standard, init, num_threads)
            logits = softmax.logits(X, rows[va], *init_k, *standard)
            t_k = fit_temperature(logits, codes[va])
            nll = _nll(logits.astype(np.float64), codes[va], t_k)
            log.debug("l2 %g: held-out NLL %.4f at T %.3f", penalty, nll, t_k)
            if nll < best - 1e-4:
                best, chosen, temperature, final_init = nll, penalty, t_k, init_k
            init = init_k
        init = final_init
        log.info("l2 %g, temperature %.3f fitted on %d held-out items", chosen, temperature, len(va))
    elif calibrate:
        log.info("only %d held-out items: probabilities left uncalibrated (T = 1)", len(va))
    W, b = softmax.train(X, rows, codes, C, chosen, max_iter, standard, init, num_threads)
    return LinearClassifier([str(v) for v in labels], W, b, *standard, temperature, chosen,
                            sorted(str(v) for v in dropped))  # fmt: skip


# --------------------------------------------------------------------------- kNN


def _normalise(X: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norm > 0, norm, 1.0)


@dataclass(frozen=True, eq=False)
class KnnClassifier:
    """Similarity-weighted vote of the ``k`` nearest stored items (see the module docstring)."""

    labels: list[str]
    vectors: np.ndarray  # (n, d) float32, unit rows
    codes: np.ndarray  # (n,) int64 index into labels
    k: int = KNN_K
    temperature: float = KNN_TEMPERATURE
    method: str = "knn"

    @property
    def dims(self) -> int:
        return int(self.vectors.shape[1])

    def _neighbours(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sims = _normalise(_matrix(X, self.dims)) @ self.vectors.T  # (q, n)
        k = min(self.k, self.vectors.shape[0])
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return idx, np.take_along_axis(sims, idx, axis=1).astype(np.float64)

    def _vote(self, idx: np.ndarray, sims: np.ndarray) -> np.ndarray:
        w = np.exp((sims - sims[:, :1]) / self.temperature)  # shifted: nearest weighs 1
        P = np.zeros((len(idx), len(self.labels)))
        np.add.at(P, (np.repeat(np.arange(len(idx)), idx.shape[1]), self.codes[idx].ravel()), w.ravel())
        return P / P.sum(axis=1, keepdims=True)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._vote(*self._neighbours(X))

    def predict(self, X: np.ndarray, threshold: float = 0.5, top: int = 5) -> list[Prediction]:
        idx, sims = self._neighbours(X)
        closeness = np.clip(sims[:, :1], 0.0, 1.0)
        return _predictions(self._vote(idx, sims) * closeness, self.labels, self.method, threshold, top)

    def to_bytes(self) -> bytes:
        meta = {"method": self.method, "labels": self.labels, "temperature": self.temperature,
                "dims": self.dims, "k": self.k}  # fmt: skip
        return _pack(meta, {"vectors": self.vectors.astype(np.float32), "codes": self.codes.astype(np.int64)})

    @classmethod
    def _from_parts(cls, meta: dict, arrays: dict[str, np.ndarray]) -> KnnClassifier:
        vectors, codes = arrays["vectors"].astype(np.float32), arrays["codes"]
        labels = [str(v) for v in meta["labels"]]
        _require(vectors.ndim == 2 and vectors.shape[1] == int(meta["dims"]) and len(vectors) >= 1)
        _require(codes.shape == (len(vectors),) and codes.dtype.kind in "iu")
        _require(bool(((codes >= 0) & (codes < len(labels))).all()) and int(meta["k"]) >= 1)
        return cls(labels, vectors, codes.astype(np.int64), int(meta["k"]), float(meta["temperature"]))


def fit_knn(X: np.ndarray, y: Sequence[str], k: int = KNN_K) -> KnnClassifier:
    X = _matrix(X)
    labels, codes = np.unique(np.asarray(y, dtype=str), return_inverse=True)
    return KnnClassifier([str(v) for v in labels], _normalise(X), codes.astype(np.int64), max(1, min(k, len(codes))))


# --------------------------------------------------------------------------- entry points


def fit_classifier(
    X: np.ndarray, y: Sequence[str], *, min_per_class: int = 5, seed: int = 0, max_iter: int = 200,
    l2: float | None = None, calibrate: bool = True, num_threads: int | None = None, rows: np.ndarray | None = None,
) -> Classifier:  # fmt: skip
    """Train the category classifier for one catalogue.

    Categories with fewer than ``min_per_class`` items are dropped from the linear head (they
    cannot be learned; ``LinearClassifier.dropped`` lists them). When that leaves fewer than two
    categories, or categories holding less than half of the items (a shop of a few items in many
    categories: a linear head over the few left was "sure" for most photos and right a quarter of the time
    when sure, docs/BENCHMARKS.md), or there are fewer than 20 items, a :class:`KnnClassifier` over all
    items is returned instead. ``l2=None`` picks the penalty on held-out data (see :func:`fit_linear`);
    ``num_threads`` is the torch thread count used for training (see :func:`softmax.train`);
    ``rows``: the rows of ``X`` that ``y`` labels (default: all), read in place, not copied.
    Deterministic for a given ``seed``.
    """
    X = _matrix(X)
    rows = _chosen_rows(X, rows, len(y))
    if len(rows) == 0:
        raise CatalogEmpty("the catalogue has no labelled items to learn categories from")
    if min_per_class < 1 or max_iter < 1 or (num_threads is not None and num_threads < 1) or (l2 is not None and l2 < 0):
        raise BadOption("min_per_class, max_iter and num_threads must be at least 1, l2 non-negative")
    y = [str(v) for v in y]
    counts = Counter(y)
    kept = {c for c, n in counts.items() if n >= min_per_class}
    covered = sum(counts[c] for c in kept) / len(y)
    if len(kept) < 2 or len(y) < MIN_TRAIN or covered < MIN_COVERED:
        log.info("%d items, %d learnable categories holding %.0f%% of them: using kNN", len(y), len(kept), 100 * covered)
        return fit_knn(X[rows], y)  # a small matrix
    dropped = sorted(set(counts) - kept)
    if dropped:
        log.info("dropping %d categories with fewer than %d items", len(dropped), min_per_class)
    keep = np.flatnonzero(np.fromiter((v in kept for v in y), dtype=bool, count=len(y)))
    return fit_linear(X, [y[i] for i in keep], l2=l2, seed=seed, max_iter=max_iter, calibrate=calibrate, dropped=dropped,
                      num_threads=num_threads, rows=rows[keep])  # fmt: skip


def _require(ok: bool, why: str = "the saved classifier's arrays do not match its metadata") -> None:
    if not ok:
        raise ClassifierDataError(why)


def classifier_from_bytes(data: bytes) -> Classifier:
    """Load what ``to_bytes`` wrote; never unpickles. Raises :class:`ClassifierDataError`
    (a :class:`RecommenderError` and a ``ValueError``) on anything else."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        _require(all(isinstance(a, np.ndarray) for a in arrays.values()), "the saved classifier has non-array members")
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
        _require(isinstance(meta, dict) and meta.get("format") == FORMAT, "these bytes are not a saved classifier")
        version = meta.get("version")
        _require(version == VERSION, f"saved classifier version {version!r} is not supported (expected {VERSION})")
        temperature = float(meta["temperature"])
        _require(temperature > 0 and math.isfinite(temperature), f"bad temperature {temperature!r}")
        finite = all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f")
        _require(finite, "the saved classifier contains NaN or infinite values")
        kinds: dict[str, type[LinearClassifier] | type[KnnClassifier]] = {"linear": LinearClassifier, "knn": KnnClassifier}
        _require(meta.get("method") in kinds, f"unknown classifier method {meta.get('method')!r}")
        return kinds[meta["method"]]._from_parts(meta, arrays)
    except ClassifierDataError:
        raise
    except UNREADABLE_BYTES as e:
        raise ClassifierDataError(f"the saved classifier cannot be read ({type(e).__name__}: {e})") from e
