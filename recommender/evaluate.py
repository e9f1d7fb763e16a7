"""Evaluation metrics computed from plain arrays: retrieval, classification, calibration.

Everything here works on numpy arrays and label sequences, so the same code scores a stored
catalogue, a held-out split, or a hand-made example in a test. Nothing is plotted here; see
``recommender.report`` for the pictures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recommender.errors import BadOption, CatalogEmpty

log = logging.getLogger(__name__)

NOT_SURE = "(not sure)"


# --------------------------------------------------------------------------- neighbours


def _as_matrix(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise BadOption(f"expected a 2-D array of embeddings (items x dims), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise BadOption("the embeddings contain NaN or infinite values")
    return X


def top_k_neighbours(X: np.ndarray, k: int, *, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar other items of every item, by dot product (cosine for unit vectors).

    Returns ``(indices, scores)``, both of shape ``(n, k)``, best first; an item is never its own
    neighbour. Rows are scored ``batch`` at a time, so memory is ``batch x n``, never ``n x n``.
    Among the selected neighbours, equal scores are ordered by index.
    """
    X = _as_matrix(X)
    n = X.shape[0]
    if n < 2:
        raise CatalogEmpty("need at least two items to find neighbours")
    if not 1 <= k <= n - 1:
        raise BadOption(f"k must be between 1 and {n - 1} (items minus one), got {k}")
    if batch < 1:
        raise BadOption(f"batch must be at least 1, got {batch}")
    indices = np.empty((n, k), dtype=np.int64)
    scores = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        sims = X[start:stop] @ X.T  # (b, n)
        rows = np.arange(stop - start)
        sims[rows, np.arange(start, stop)] = -np.inf  # exclude self
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(sims, part, axis=1)
        # sort the k candidates: by score descending, then index ascending
        order = np.lexsort((part, -part_scores), axis=1)
        indices[start:stop] = np.take_along_axis(part, order, axis=1)
        scores[start:stop] = np.take_along_axis(part_scores, order, axis=1)
    return indices, scores


def retrieval_metrics(
    X: np.ndarray, labels: Sequence[str], ks: Sequence[int] = (1, 10), *, batch: int = 1024
) -> dict[str, float]:
    """Leave-one-out retrieval quality: every item queries all the others; relevant = same label.

    * ``precision@k``: share of the top ``k`` results that have the query's label (denominator
      ``k``, or ``n - 1`` when the catalogue has fewer other items than ``k``).
    * ``map@K`` (``K = max(ks)``): mean over queries of the average precision at ``K``::

          AP@K = (1 / min(K, R)) * sum_{i=1..K} precision@i * rel(i)

      where ``rel(i)`` is 1 when result ``i`` is relevant and ``R`` is the number of relevant
      items available to that query (same label, itself excluded). A perfect ranking scores 1
      even when ``R < K``.
    * ``queries``: the number of queries scored. Items whose label no other item has cannot
      retrieve anything relevant and are left out (``skipped`` counts them).

    Similarities are computed ``batch`` rows at a time (see :func:`top_k_neighbours`).
    """
    X = _as_matrix(X)
    n = X.shape[0]
    if len(labels) != n:
        raise BadOption(f"{n} embeddings but {len(labels)} labels")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise BadOption(f"ks must be positive integers, got {ks}")
    _, codes, counts = np.unique(np.asarray(labels, dtype=str), return_inverse=True, return_counts=True)
    relevant_available = counts[codes] - 1
    keep = relevant_available > 0
    if n < 2 or not keep.any():
        raise CatalogEmpty("no item shares its label with another item: nothing to retrieve")
    kmax = min(ks[-1], n - 1)
    idx, _ = top_k_neighbours(X, kmax, batch=batch)
    rel = (codes[idx] == codes[:, None])[keep]  # (q, kmax) bool
    r_avail = relevant_available[keep]
    out: dict[str, float] = {}
    for k in ks:
        kk = min(k, kmax)
        out[f"precision@{k}"] = float(rel[:, :kk].sum(axis=1).mean() / kk)
    hits = np.cumsum(rel, axis=1)
    prec_at_i = hits / np.arange(1, kmax + 1)
    ap = (prec_at_i * rel).sum(axis=1) / np.minimum(kmax, r_avail)
    out[f"map@{ks[-1]}"] = float(ap.mean())
    out["queries"] = int(keep.sum())
    out["skipped"] = int(n - keep.sum())
    return out


# --------------------------------------------------------------------------- splitting


def stratified_split(
    labels: Sequence[str], test_fraction: float = 0.25, seed: int = 0, min_per_class: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Split item indices into ``(train, test)`` keeping every label's share.

    Each label with at least ``min_per_class`` items puts ``round(test_fraction * count)`` of
    them (at least one, and never all) into the test part; rarer labels stay entirely in
    train. Deterministic for a given ``seed``. Both index arrays are sorted.
    """
    if not 0.0 < test_fraction < 1.0:
        raise BadOption(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if min_per_class < 2:
        raise BadOption(f"min_per_class must be at least 2, got {min_per_class}")
    arr = np.asarray(labels, dtype=str)
    rng = np.random.default_rng(seed)
    uniq, codes = np.unique(arr, return_inverse=True)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c in range(len(uniq)):
        members = np.flatnonzero(codes == c)
        if len(members) < min_per_class:
            train.append(members)
            continue
        members = rng.permutation(members)
        n_test = int(np.clip(round(test_fraction * len(members)), 1, len(members) - 1))
        test.append(members[:n_test])
        train.append(members[n_test:])
    cat = lambda parts: np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)  # noqa: E731
    return cat(train).astype(np.int64), cat(test).astype(np.int64)


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class ClassMetrics:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationReport:
    """Scores of a set of category predictions.

    ``confusion`` has one row per label (true) and one column per label (predicted) plus a
    last column counting "not sure" (``None``) predictions, which also count as wrong.
    """

    labels: list[str]
    accuracy: float
    macro_f1: float
    coverage: float  # share of predictions that were sure (not None)
    sure_accuracy: float  # accuracy among the sure predictions (0 when there are none)
    per_class: dict[str, ClassMetrics] = field(default_factory=dict)
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.int64))

    @property
    def n(self) -> int:
        return int(self.confusion.sum())

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly summary (the confusion matrix as nested lists)."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "coverage": self.coverage,
            "sure_accuracy": self.sure_accuracy,
            "labels": list(self.labels),
            "per_class": {k: vars(v) for k, v in self.per_class.items()},
            "confusion": self.confusion.tolist(),
        }


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str | None], labels: Sequence[str]) -> ClassificationReport:
    """Accuracy, macro-F1, per-class precision/recall/F1, confusion matrix and coverage.

    ``labels`` fixes the order of the matrix; true or predicted labels missing from it (for
    example a rare category the classifier dropped) are appended in sorted order. A ``None``
    prediction means "not sure": it is wrong, lowers coverage, and lands in the extra last
    column of the confusion matrix. Macro-F1 averages over the labels present in ``y_true``;
    a label that is never predicted has precision 0 and F1 0.
    """
    if len(y_true) != len(y_pred):
        raise BadOption(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise CatalogEmpty("no predictions to score")
    names = list(dict.fromkeys(str(x) for x in labels))
    extra = sorted(({str(t) for t in y_true} | {str(p) for p in y_pred if p is not None}) - set(names))
    if extra:
        log.info("labels not in the label list, appended: %s", extra[:10])
        names += extra
    pos = {name: i for i, name in enumerate(names)}
    L = len(names)
    t = np.fromiter((pos[str(v)] for v in y_true), dtype=np.int64, count=len(y_true))
    p = np.fromiter((L if v is None else pos[str(v)] for v in y_pred), dtype=np.int64, count=len(y_pred))
    cm = np.zeros((L, L + 1), dtype=np.int64)
    np.add.at(cm, (t, p), 1)

    tp = np.diag(cm[:, :L]).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm[:, :L].sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(L), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(L), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(L), where=denom > 0)
    present = support > 0
    sure = p < L
    n_sure = int(sure.sum())
    per_class = {
        name: ClassMetrics(name, float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
        for i, name in enumerate(names)
    }
    return ClassificationReport(
        labels=names,
        accuracy=float(tp.sum() / len(t)),
        macro_f1=float(f1[present].mean()),
        coverage=n_sure / len(t),
        sure_accuracy=float((t[sure] == p[sure]).mean()) if n_sure else 0.0,
        per_class=per_class,
        confusion=cm,
    )


# --------------------------------------------------------------------------- calibration


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins
    weighted by how many predictions fall in each (0 = perfectly calibrated)."""
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    ok = np.asarray(correct, dtype=np.float64).ravel()
    if conf.shape != ok.shape or conf.size == 0:
        raise BadOption("confidence and correct must be non-empty and of the same length")
    which = np.clip((conf * bins).astype(np.int64), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(conf[sel].mean() - ok[sel].mean())
    return float(ece)


# --------------------------------------------------------------------------- street to shop


def street_metrics(
    shown: Sequence[Sequence[str]],
    predicted: Sequence[str | None],
    nothing: Sequence[bool],
    kinds: Sequence[str],
    accept: dict[str, set[str]],
) -> dict[str, float]:
    """Members' photos of known kinds against a catalogue: ``shown[i]`` the categories of the results shown for
    photo ``i`` (best first), ``predicted[i]`` its category (None: not sure), ``nothing[i]`` whether it was judged
    "nothing like this", ``kinds[i]`` what it shows and ``accept[kind]`` the categories a person accepts for it.

    ``precision@10`` and ``first acceptable`` over the shown results (fewer than 10 shown count as missing),
    ``category accuracy`` (not sure = wrong), ``coverage`` (share given a category), ``accuracy when sure`` and
    ``answered`` (share not judged "nothing like this")."""
    n = len(kinds)
    if not (len(shown) == len(predicted) == len(nothing) == n) or n == 0:
        raise BadOption("street_metrics needs one entry per photo in each sequence, and at least one photo")
    missing = sorted({k for k in kinds if k not in accept})
    if missing:
        raise BadOption(f"no accepted categories for: {', '.join(missing)}")
    ok = np.array([[i < len(s) and s[i] in accept[k] for i in range(10)] for s, k in zip(shown, kinds)])
    right = np.array([p is not None and p in accept[k] for p, k in zip(predicted, kinds)])
    sure = np.array([p is not None for p in predicted])
    return {
        "precision@10": float(ok.mean()),
        "first acceptable": float(ok[:, 0].mean()),
        "category accuracy": float(right.mean()),
        "coverage": float(sure.mean()),
        "accuracy when sure": float(right[sure].mean()) if sure.any() else 0.0,
        "answered": float(1 - np.mean(nothing)),
    }


def open_set_metrics(predicted: Sequence[str | None], nothing: Sequence[bool]) -> dict[str, float]:
    """Photos that show nothing the catalogue sells: share given a sure category, share judged "nothing like this"."""
    if len(predicted) != len(nothing) or not len(nothing):
        raise BadOption("open_set_metrics needs one entry per photo, and at least one photo")
    return {"sure category": float(np.mean([p is not None for p in predicted])), "nothing like this": float(np.mean(nothing))}
