"""Photos pooled where a learned scorer sees the garment, for bench/street2shop.py ``--pooling garment``.

The bench pastes the member-like views itself (``augment.member_view_and_mask``: the same views as the engine's,
with the mask of where the product went), so it knows which cells of the backbone's last convolutional maps show
the garment. A logistic regression on a cell's channels (standardised; fitted on the cells of
:data:`SCORER_VIEWS` views, target: the share of the cell the garment covers) then scores every cell of any
picture, and the picture's vector is the maps' average weighted by ``score ** POWER``. Views and photos are pooled
so, and the head is fitted on those views; catalogue items keep their stored average-pooled vectors.

Everything goes through ``Backbone.feature_maps`` (PyTorch eager): a measurement, not the engine's path.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from recommender import augment, head, lbfgs
from recommender.backbones import Backbone

SCORER_VIEWS = 2500  # views whose cells fit the scorer (122,500 cells for a 7x7 map)
POWER = 2.0  # weight of a cell: its garment score ** POWER (1 and 2 were tried, 2026-12-07)
DECAY = 1e-3  # L2 penalty on the scorer's weights
BATCH = 64


class Scorer:
    """Garment probability of each cell of ``(n, C, h, w)`` maps: a logistic regression on its standardised channels."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, w: np.ndarray, b: float) -> None:
        self.mean, self.scale, self.w, self.b = mean, scale, w, b

    def __call__(self, maps: np.ndarray) -> np.ndarray:
        z = np.einsum("nchw,c->nhw", np.asarray(maps, np.float32), (self.w / self.scale).astype(np.float32))
        return 1 / (1 + np.exp(-(z + self.b - float(self.w @ (self.mean / self.scale)))))

    def pool(self, maps: np.ndarray, power: float = POWER) -> np.ndarray:
        """Unit vectors: each map averaged with weights ``score ** power``."""
        wt = self(maps) ** power + 1e-12  # a picture with no garment-like cell at all is averaged plainly
        wt /= wt.sum(axis=(1, 2), keepdims=True)
        v = np.einsum("nchw,nhw->nc", np.asarray(maps, np.float32), wt)
        return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def cover(mask: Image.Image, h: int, w: int) -> np.ndarray:
    """The share of each of ``h x w`` cells that a mask (255 = garment) covers."""
    a = np.asarray(mask.resize((w * 8, h * 8), Image.Resampling.BOX), np.float32) / 255
    return a.reshape(h, 8, w, 8).mean(axis=(1, 3))


def fit_scorer(maps: np.ndarray, covers: np.ndarray) -> Scorer:
    """Logistic regression (soft targets: the cells' garment cover) on the cells of ``maps`` (n, C, h, w)."""
    X = np.asarray(maps, np.float32).transpose(0, 2, 3, 1).reshape(-1, maps.shape[1])
    y = covers.reshape(-1).astype(np.float32)
    mean, scale = X.mean(0), X.std(0) + 1e-3
    X = (X - mean) / scale

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = x[:-1].astype(np.float32), float(x[-1])
        z = X @ w + b
        loss = float(np.mean(np.logaddexp(0, z) - y * z) + DECAY * float(w @ w))
        r = (1 / (1 + np.exp(-z)) - y) / len(y)
        return loss, np.append(X.T @ r + 2 * DECAY * w, r.sum()).astype(np.float64)

    x = lbfgs.minimise(fg, np.zeros(X.shape[1] + 1), max_iter=200).x
    return Scorer(mean, scale, x[:-1].astype(np.float32), float(x[-1]))


def garment_head(
    bb: Backbone, G: np.ndarray, types: Sequence[str] | np.ndarray, load: Callable[[list[int]], list[Image.Image]], *,
    max_views: int, per_item: int, seed: int,
) -> tuple[head.CatalogueHead, Callable[[Sequence[Image.Image]], np.ndarray], np.ndarray]:  # fmt: skip
    """The head fitted on the engine's views pooled by a scorer learned from them: (head, photos -> vectors, views)."""
    owners = augment.view_plan(list(types), max_views=max_views, per_item=per_item, seed=seed)
    rng, t0 = random.Random(seed), time.time()  # one stream, as head.train_head draws it: the same views
    maps, covers = [], []
    for s in range(0, len(owners), BATCH):
        need = sorted(set(owners[s : s + BATCH]))
        pics = dict(zip(need, load(need)))
        made = [augment.member_view_and_mask(pics[o], rng) for o in owners[s : s + BATCH]]
        m = bb.feature_maps([v for v, _ in made])
        maps.append(m.astype(np.float16))
        covers += [cover(where, *m.shape[2:]) for _, where in made]
        if s % (BATCH * 20) == 0:
            print(f"views {s}/{len(owners)} ({time.time() - t0:.0f}s)", file=sys.stderr)
    M, C = np.concatenate(maps), np.stack(covers)
    pick = np.sort(np.random.default_rng(seed).choice(len(M), min(SCORER_VIEWS, len(M)), replace=False))
    scorer = fit_scorer(M[pick], C[pick])
    V = np.concatenate([scorer.pool(M[s : s + 500]) for s in range(0, len(M), 500)])
    hd = head.fit_head(G, list(types), V, owners, seed=seed)
    return hd, lambda pics: scorer.pool(bb.feature_maps(pics)), V
