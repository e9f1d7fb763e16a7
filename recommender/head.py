"""The catalogue-tuned head: how a catalogue answers a member's photo, fitted on member-like views of itself.

Fitted per catalogue over the frozen backbone vectors (the raw vectors stay stored and searched) and the
vectors of augmented "member photo" views of its items (``augment.member_view``: product shots pasted on
backgrounds, relit, blurred, cropped). It holds four things, all chosen on those views, never on real queries:

* ``classifier`` -- ``classify.fit_classifier`` over items *and* views, so it has seen garments out of their
  white studio (calibrated by temperature scaling on a held-out part of both).
* ``rerank`` -- weight ``w`` of the category prior in the search order: a candidate scores
  ``cosine + w * log P(its category | query)``. Chosen from :data:`RERANK_GRID` by the precision@10 of the
  views searching the items (each view's own item left out), with classifiers fitted on the other half of the
  items (2-fold cross-fitting), so the views it is chosen on were never trained on.
* ``mix`` -- share of the neighbours' category vote in the predicted category:
  ``P = (1 - mix) * P_classifier + mix * P_neighbours``, chosen from :data:`MIX_GRID` by the cross-fitted
  views' log-likelihood, so "not sure" (``P < threshold``) keeps meaning what it says on member-like photos.
* ``open_threshold`` -- "nothing like this in the catalogue": the query's closeness (mean cosine of its
  :data:`OPEN_K` nearest items) is below the ``1 - answer_rate`` quantile of the views' closeness to the other
  items. With ``answer_rate = 0.9`` nine member-like photos in ten get an answer; what lies further from the
  catalogue than that is not in it.

A catalogue of one category cannot tell kinds apart: its category's probability is the share of the views no
closer to it than the photo (``typical``), so only photos as close as its typical member-like views are named it.

A catalogue too small for a linear classifier (see ``classify.fit_classifier``) gets a kNN classifier, no
rerank and no mix; its threshold still comes from the views. Product shots on white are closer to each other
than any member's photo is to them, so a threshold from the items' leave-one-out closeness told most members'
garments "nothing like this" in a shop of tens of items (docs/BENCHMARKS.md); only a head fitted without
views falls back on it. :meth:`CatalogueHead.decide` is the
one function the engine and bench/street2shop.py both call per query. Saved with ``np.savez`` (no pickle).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import classify
from .augment import member_view, view_plan
from .errors import UNREADABLE_BYTES, BadOption, CatalogEmpty, RecommenderError
from .evaluate import stratified_split

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

FORMAT, VERSION = "lookalike-head", 3  # 2: kNN heads take the views' threshold; kNN when few categories are learnable;
# 3: a catalogue of one category is sure of it only as far as the photo is typical of its views (``typical``)
RERANK_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
MIX_GRID = (0.0, 0.25, 0.5, 0.75)
OPEN_K = 10
TYPICAL_STEPS = 100
ANSWER_RATE = 0.9
CANDIDATES = 100  # the engine searches this many raw neighbours and reorders them
VOTE_K, VOTE_TEMPERATURE = 10, 0.1  # the neighbours' vote, as classify.KnnClassifier weighs it
NEIGHBOUR_ROWS = 128  # queries per similarity slice: with 21,215 items a slice and its sort take ~45 MB, not 170
MAX_FIT_VIEWS = 3000  # views used to choose rerank and mix (a seeded sample; all views train the classifier)
EPS = 1e-6
NEAR_COPY = 0.98  # cosine of a re-encoded, mirrored or resized copy of a catalogue picture: never reordered below others
# Labelled member photos of the asking guild (see decide): the MEMBER_K nearest vote, each weighing
# exp((cosine - best catalogue cosine) / MEMBER_TEMPERATURE); their share of P is total / (total + MEMBER_PRIOR).
MEMBER_K, MEMBER_TEMPERATURE, MEMBER_PRIOR = 10, 0.05, 1.0
MEMBER_REPEAT = 5  # a labelled member photo counts as this many training examples in the head's classifier

Members = tuple[np.ndarray, Sequence[str]]  # labelled member photos: their vectors (n, dim) and labels


class HeadDataError(RecommenderError, ValueError):
    """Saved head bytes are corrupt, truncated, of another version, or inconsistent."""


@dataclass(frozen=True)
class Decision:
    order: list[int]  # indices into the candidates, best first, at most k
    prediction: classify.Prediction  # .category is None when not sure (always None when nothing_like_this)
    nothing_like_this: bool
    closeness: float  # mean cosine of the OPEN_K nearest items


@dataclass(frozen=True, eq=False)
class CatalogueHead:
    classifier: classify.Classifier
    rerank: float
    mix: float
    open_threshold: float
    open_k: int = OPEN_K
    info: dict = field(default_factory=dict)  # how it was fitted: counts, chosen values, view figures, seconds
    typical: tuple[float, ...] = ()  # one category only: the views' closeness at quantiles 0, 1/TYPICAL_STEPS, ..., 1

    @functools.cached_property
    def _pos(self) -> dict[str, int]:
        """The classifier's labels by lower-cased name (categories compare case-insensitively, as in the index)."""
        return {c.lower(): i for i, c in enumerate(self.classifier.labels)}

    def _vote(self, scores: np.ndarray, categories: Sequence[str]) -> np.ndarray:
        pos = self._pos
        top = np.asarray(scores[:VOTE_K], dtype=np.float64)
        P = np.zeros(len(self.classifier.labels))
        for s, c in zip(top, categories[:VOTE_K]):
            if c.lower() in pos:
                P[pos[c.lower()]] += math.exp((s - top[0]) / VOTE_TEMPERATURE)
        return P / P.sum() if P.sum() > 0 else np.full(len(P), 1.0 / len(P))

    def member_vote(self, query: np.ndarray, members: Members | None, best: float) -> tuple[np.ndarray, float]:
        """The labelled member photos' kNN vote over the classifier's labels and its share of the category
        (0 without any): the :data:`MEMBER_K` nearest whose label the classifier knows vote with weight
        ``exp((cosine - best) / MEMBER_TEMPERATURE)``, ``best`` being the nearest catalogue item's cosine, so a
        labelled photo counts when it is as close to the query as the catalogue is; the share is
        ``total / (total + MEMBER_PRIOR)``: it grows with how many there are and how close they are."""
        pos = self._pos
        vote = np.zeros(len(self.classifier.labels))
        if members is None or len(members[0]) == 0:
            return vote, 0.0
        M, labels = np.asarray(members[0], np.float32), [str(c).lower() for c in members[1]]
        if M.ndim != 2 or len(M) != len(labels) or M.shape[1] != len(query):
            raise BadOption("members must be (vectors (n, dim), n labels) of the query's dimension")
        known = np.array([c in pos for c in labels], bool)
        if not known.any():
            return vote, 0.0
        codes = np.array([pos[c] for c, ok in zip(labels, known) if ok], dtype=np.int64)
        sims = _unit(M[known]) @ (np.asarray(query, np.float32) / max(float(np.linalg.norm(query)), 1e-12))
        near = np.argsort(-sims, kind="stable")[:MEMBER_K]
        np.add.at(vote, codes[near], np.exp((sims[near].astype(np.float64) - best) / MEMBER_TEMPERATURE))
        total = float(vote.sum())
        return (vote / total, total / (total + MEMBER_PRIOR)) if total > 0 else (vote, 0.0)

    def decide(
        self, query: np.ndarray, scores: np.ndarray, categories: Sequence[str], k: int, threshold: float = 0.5, top: int = 5,
        members: Members | None = None,
    ) -> Decision:  # fmt: skip
        """One member photo: ``query`` its vector, ``scores``/``categories`` the cosine similarities and
        categories of its nearest items (best first, ideally :data:`CANDIDATES` of them). Returns the order in
        which to show them (the first ``k``), the predicted category and whether the catalogue has nothing
        like it. ``members``: the asking guild's labelled member photos, whose vote (:meth:`member_vote`)
        joins the predicted category and the category prior of the order; labels the catalogue lacks are
        ignored."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1 or len(scores) != len(categories):
            raise BadOption("scores and categories must be two sequences of the same length")
        if len(scores) == 0:
            raise CatalogEmpty("no catalogue items to answer with")
        P_clf = self.classifier.predict_proba(np.asarray(query, np.float32)[None, :])[0]
        closeness = float(scores[: self.open_k].mean())
        if self.typical and len(P_clf) == 1:  # one category: its probability is how typical the photo's closeness is
            P_clf = np.array([np.interp(closeness, self.typical, np.linspace(0.0, 1.0, len(self.typical)))])
        m_vote, m_share = self.member_vote(query, members, float(scores[0]))
        P = (1 - self.mix) * P_clf + self.mix * self._vote(scores, categories)
        P = (1 - m_share) * P + m_share * m_vote
        P_clf = (1 - m_share) * P_clf + m_share * m_vote  # the category prior of the order hears them too
        nothing = closeness < self.open_threshold
        ranked = sorted(zip(self.classifier.labels, P.tolist()), key=lambda kv: -kv[1])[:top]
        sure = ranked[0][1] >= threshold and not nothing
        prediction = classify.Prediction(ranked[0][0] if sure else None, ranked[0][1], ranked, self.classifier.method)
        order = np.arange(len(scores))
        if self.rerank > 0:
            codes = np.array([self._pos.get(c.lower(), -1) for c in categories])
            floor = float(P_clf.min())  # a category too rare for the classifier: as unlikely as its least likely one
            prior = np.log(np.where(codes >= 0, P_clf[np.maximum(codes, 0)], floor) + EPS)
            order = np.argsort(-(scores + self.rerank * prior), kind="stable")
            copies = [int(i) for i in np.flatnonzero(scores >= NEAR_COPY)]  # sorted: scores come best first
            if copies:  # a near-copy of the photo (the product's own picture, re-encoded) stays first
                order = np.concatenate([copies, [i for i in order if scores[i] < NEAR_COPY]])
        return Decision([int(i) for i in order[:k]], prediction, nothing, closeness)

    def to_bytes(self) -> bytes:
        meta = {"format": FORMAT, "version": VERSION, "rerank": self.rerank, "mix": self.mix,
                "open_threshold": self.open_threshold, "open_k": self.open_k, "info": self.info,
                "typical": list(self.typical)}  # fmt: skip
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8),
                 classifier=np.frombuffer(self.classifier.to_bytes(), np.uint8))  # fmt: skip
        return buf.getvalue()


def head_from_bytes(data: bytes) -> CatalogueHead:
    """Load what :meth:`CatalogueHead.to_bytes` wrote; never unpickles. Raises :class:`HeadDataError`."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT or "classifier" not in z.files:
                raise HeadDataError("these bytes are not a saved catalogue head")
            clf_bytes = z["classifier"].tobytes()
        if meta.get("version") != VERSION:
            raise HeadDataError(f"saved head version {meta.get('version')!r} is not supported (expected {VERSION})")
        values = [float(meta["rerank"]), float(meta["mix"]), float(meta["open_threshold"])]
        typical = tuple(float(v) for v in meta["typical"])
        shapes = int(meta["open_k"]) >= 1 and len(typical) in (0, TYPICAL_STEPS + 1) and list(typical) == sorted(typical)
        if not shapes or not all(math.isfinite(v) for v in values + list(typical)) or values[0] < 0 or not 0 <= values[1] <= 1:
            raise HeadDataError("the saved head's values are out of range")
        return CatalogueHead(classify.classifier_from_bytes(clf_bytes), rerank=values[0], mix=values[1],
                             open_threshold=values[2], open_k=int(meta["open_k"]), info=dict(meta["info"]),
                             typical=typical)  # fmt: skip
    except HeadDataError:
        raise
    except classify.ClassifierDataError as e:
        raise HeadDataError(f"the saved head's classifier cannot be read ({e})") from e
    except UNREADABLE_BYTES as e:
        raise HeadDataError(f"the saved head cannot be read ({type(e).__name__}: {e})") from e


# --------------------------------------------------------------------------- fitting


def _neighbours(Q: np.ndarray, G: np.ndarray, exclude: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` items of each query by cosine, ``exclude[i]`` (an item index, or -1) left out."""
    idx_all, sc_all = [], []
    for s in range(0, len(Q), NEIGHBOUR_ROWS):
        S = Q[s : s + NEIGHBOUR_ROWS] @ G.T
        if exclude is not None:
            ex = exclude[s : s + NEIGHBOUR_ROWS]
            S[np.flatnonzero(ex >= 0), ex[ex >= 0]] = -np.inf
        m = min(n, G.shape[0] - (exclude is not None))
        idx = np.argpartition(-S, m - 1, axis=1)[:, :m]
        sc = np.take_along_axis(S, idx, axis=1)
        o = np.argsort(-sc, axis=1, kind="stable")
        idx_all.append(np.take_along_axis(idx, o, 1))
        sc_all.append(np.take_along_axis(sc, o, 1))
    return np.concatenate(idx_all), np.concatenate(sc_all)


def _unit(X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows scaled to unit length (into ``out`` when given: no new matrix)."""
    X = np.asarray(X, np.float32)
    return np.divide(X, np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12), out=out)


def _typical(closeness: np.ndarray) -> tuple[float, ...]:
    """The views' closeness at quantiles 0, 1/TYPICAL_STEPS, ..., 1 (see ``CatalogueHead.typical``)."""
    return tuple(float(v) for v in np.quantile(np.asarray(closeness, np.float64), np.linspace(0.0, 1.0, TYPICAL_STEPS + 1)))


def _spellings(categories: Sequence[str]) -> dict[str, str]:
    """Each lower-cased category's spelling: its most common one (the first seen of equals)."""
    best: dict[str, str] = {}
    for c, _ in Counter(categories).most_common():  # equal counts come in the order first seen
        best.setdefault(c.lower(), c)
    return best


def _known_members(members: Members | None, known: dict[str, str], dim: int) -> tuple[np.ndarray, list[str]]:
    """The labelled member photos whose label is one of the catalogue's (``known``: by lower-cased name), as
    unit vectors and the catalogue's spelling of their labels."""
    if members is None or len(members[0]) == 0:
        return np.zeros((0, dim), np.float32), []
    M, labels = np.asarray(members[0], np.float32), [str(c).lower() for c in members[1]]
    if M.ndim != 2 or len(M) != len(labels) or M.shape[1] != dim:
        raise BadOption("members must be (vectors (n, dim), n labels) of the catalogue's dimension")
    keep = [i for i, c in enumerate(labels) if c in known]
    return _unit(M[keep]) if keep else np.zeros((0, dim), np.float32), [known[labels[i]] for i in keep]


def _cross_fitted_proba(X, n_items, y, view_rows, owner, labels, seed, num_threads) -> np.ndarray:
    """P(category | view) from classifiers that never saw the view's item (2 folds over the items).
    ``X``: the head's matrix, its first ``n_items`` rows the items; ``view_rows``: the views' rows in it
    (``owner``: their items). Each fold's classifier reads its rows of ``X`` in place."""
    _, half = stratified_split(list(y), 0.5, seed)
    in_b = np.zeros(n_items, bool)
    in_b[half] = True
    P = np.zeros((len(view_rows), len(labels)))
    pos = {c: i for i, c in enumerate(labels)}
    for fold in (False, True):
        train_items, test_views = np.flatnonzero(in_b == fold), in_b[owner] != fold
        train_views = in_b[owner] == fold
        rows = np.concatenate([train_items, view_rows[train_views]])
        ytr = list(y[train_items]) + list(y[owner[train_views]])
        clf = classify.fit_classifier(X, ytr, seed=seed, l2=classify.DEFAULT_L2, calibrate=False, max_iter=100,
                                      num_threads=num_threads, rows=rows)  # fmt: skip
        # a fold's classifier may know categories the full one dropped (a kNN keeps every label): those stay out
        known = np.array([j for j, c in enumerate(clf.labels) if c in pos], dtype=np.int64)
        cols = np.array([pos[clf.labels[j]] for j in known], dtype=np.int64)
        P[np.ix_(np.flatnonzero(test_views), cols)] = clf.predict_proba(X[view_rows[test_views]])[:, known]
    return P


def fit_head(
    vectors: np.ndarray, categories: Sequence[str], view_vectors: np.ndarray | None = None,
    view_owner: Sequence[int] | np.ndarray | None = None, *, answer_rate: float = ANSWER_RATE, seed: int = 0,
    num_threads: int | None = None, members: Members | None = None,
) -> CatalogueHead:  # fmt: skip
    """Fit a catalogue's head from its items' raw vectors and categories and the vectors of member-like views
    (``view_owner[i]`` = the item view ``i`` was made from). Without views, or for a catalogue too small for a
    linear classifier, the head is a kNN classifier with no rerank or mix (see the module docstring).
    ``members``: labelled member photos (vectors, labels), extra training examples of the classifier, each
    counted :data:`MEMBER_REPEAT` times; labels that are not among ``categories`` are ignored."""
    t0 = time.perf_counter()
    spelt = _spellings([str(c) for c in categories])  # "Dress" and "dress" are one category, as in the index
    items, y = np.asarray(vectors, np.float32), np.asarray([spelt[str(c).lower()] for c in categories])
    if len(items) == 0:
        raise CatalogEmpty("the catalogue has no items to fit a head on")
    if items.ndim != 2:
        raise BadOption("vectors must be a matrix, one row per item")
    if len(y) != len(items) or not 0 < answer_rate < 1:
        raise BadOption("one category per vector, and 0 < answer_rate < 1")
    dim = items.shape[1]
    V = _unit(view_vectors) if view_vectors is not None and len(view_vectors) else np.zeros((0, dim), np.float32)
    owner = np.asarray(view_owner if view_owner is not None else [], dtype=np.int64)
    if len(owner) != len(V) or (len(owner) and (owner.min() < 0 or owner.max() >= len(items))):
        raise BadOption("view_owner must give, for every view, the index of its item")
    M, m_labels = _known_members(members, spelt, dim)
    # the classifier's rows, written once: items (unit), views, member photos; G is a view of the first part
    X = np.empty((len(items) + len(V) + MEMBER_REPEAT * len(M), dim), np.float32)
    G = _unit(items, out=X[: len(items)])
    np.concatenate([V] + [M] * MEMBER_REPEAT, out=X[len(items) :])
    clf = classify.fit_classifier(X, list(y) + list(y[owner]) + m_labels * MEMBER_REPEAT, seed=seed, num_threads=num_threads)
    if clf.method != "linear" and len(M):  # a kNN classifier: each member photo is one neighbour, not MEMBER_REPEAT
        clf = classify.fit_knn(np.vstack([G, V, M]), list(y) + list(y[owner]) + m_labels)
    info: dict = {"items": len(G), "views": len(V), "members": len(M), "classifier": clf.method, "answer_rate": answer_rate}
    one = len(set(y.tolist())) == 1  # its probability comes from how typical a photo's closeness is (``typical``)
    if len(G) < 2:  # one item: every photo is answered with it; sure of its category as close as its own views are
        return CatalogueHead(clf, 0.0, 0.0, -1.0, OPEN_K, info, _typical(V @ G[0]) if len(V) else ())
    if len(V) == 0:  # closeness of each item to the others stands in for members' photos
        _, sc = _neighbours(G, G, np.arange(len(G)), OPEN_K)
        closeness = sc[:, :OPEN_K].mean(axis=1)  # one category: product shots are closer to each other than members'
        threshold, typical = float(np.quantile(closeness, 1 - answer_rate)), _typical(closeness) if one else ()
        info.update(seconds=round(time.perf_counter() - t0, 1), threshold_from="items")  # photos: sure more seldom
        return CatalogueHead(clf, 0.0, 0.0, threshold, OPEN_K, info, typical)

    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(V), size=min(MAX_FIT_VIEWS, len(V)), replace=False))
    Vf, of = V[pick], owner[pick]
    idx, sc = _neighbours(Vf, G, of, CANDIDATES)
    closeness = sc[:, :OPEN_K].mean(axis=1)
    threshold, typical = float(np.quantile(closeness, 1 - answer_rate)), _typical(closeness) if one else ()
    if clf.method != "linear":  # a kNN classifier: no search order or mix to fit, the open set from the views
        info.update(seconds=round(time.perf_counter() - t0, 1), threshold_from="views")
        return CatalogueHead(clf, 0.0, 0.0, threshold, OPEN_K, info, typical)
    labels = list(clf.labels)
    P = _cross_fitted_proba(X, len(G), y, len(G) + pick, of, labels, seed, num_threads)
    pos = {c: i for i, c in enumerate(labels)}
    cand_codes = np.vectorize(lambda c: pos.get(c, -1))(y[idx])
    floor = P.min(axis=1, keepdims=True)  # as in decide: a category the classifier dropped
    prior = np.log(np.where(cand_codes >= 0, np.take_along_axis(P, np.maximum(cand_codes, 0), 1), floor) + EPS)
    relevant = y[idx] == y[of][:, None]
    p10 = {}
    for w in RERANK_GRID:
        order = np.argsort(-(sc + w * prior), axis=1, kind="stable")[:, :10]
        p10[w] = float(np.take_along_axis(relevant, order, 1).mean())
    rerank = max(RERANK_GRID, key=lambda w: (round(p10[w], 4), -w))
    truth = np.array([pos.get(c, -1) for c in y[of]])
    known = truth >= 0
    vote = np.zeros_like(P)
    kv = min(VOTE_K, sc.shape[1])  # a catalogue smaller than VOTE_K + 1 items has fewer neighbours
    w8 = np.exp((sc[:, :kv] - sc[:, :1]) / VOTE_TEMPERATURE)
    np.add.at(vote, (np.repeat(np.arange(len(idx)), kv), np.maximum(cand_codes[:, :kv], 0).ravel()),
              (w8 * (cand_codes[:, :kv] >= 0)).ravel())  # fmt: skip
    vote /= np.maximum(vote.sum(1, keepdims=True), 1e-12)
    nll = {m: float(-np.log(((1 - m) * P + m * vote)[known, truth[known]] + EPS).mean()) for m in MIX_GRID}
    mix = min(MIX_GRID, key=lambda m: (round(nll[m], 4), m))
    info.update(
        rerank_p10={str(k): round(v, 4) for k, v in p10.items()},
        mix_nll={str(k): round(v, 4) for k, v in nll.items()},
        seconds=round(time.perf_counter() - t0, 1),
        threshold_from="views",
    )
    log.info("head: rerank %g, mix %g, open threshold %.3f (%d items, %d views, %.0fs)", rerank, mix, threshold,
             len(G), len(V), info["seconds"])  # fmt: skip
    return CatalogueHead(clf, rerank, mix, threshold, OPEN_K, info, typical)


def train_head(
    vectors: np.ndarray, categories: Sequence[str], images: Callable[[list[int]], list[Image.Image]],
    embed: Callable[[list[Image.Image]], np.ndarray], *, max_views: int = 4000, per_item: int = 2, seed: int = 0,
    batch: int = 64, num_threads: int | None = None, members: Members | None = None,
) -> CatalogueHead:  # fmt: skip
    """The whole per-catalogue fit, as the engine runs it after catalogue changes: choose items
    (``augment.view_plan``), fetch their pictures (``images(indices)``: stored thumbnails or source images),
    make member-like views, embed them ``batch`` at a time with ``embed`` (the backbone's), and fit
    (``members``: labelled member photos, see :func:`fit_head`)."""
    cats = [str(c) for c in categories]
    owners = view_plan(cats, max_views=max_views, per_item=per_item, seed=seed) if len(cats) else []
    rng = random.Random(seed)  # one stream: the same views whatever the batch size
    chunks = []
    for s in range(0, len(owners), batch):  # a batch's pictures at a time: thousands of thumbnails at once weigh GBs
        need = sorted(set(owners[s : s + batch]))
        pics = dict(zip(need, images(need)))
        views_ = [member_view(pics[o], rng) for o in owners[s : s + batch]]
        chunks.append(np.asarray(embed(views_), dtype=np.float32))
    views = np.concatenate(chunks) if chunks else None
    return fit_head(vectors, cats, views, owners, seed=seed, num_threads=num_threads, members=members)
