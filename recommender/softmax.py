"""Fitting multinomial logistic regression on chosen rows of a matrix, without copying it.

The classifier's matrix holds every item of a catalogue plus its member-like views: 130 MB for 21,215 items of
1,280 dimensions. Nothing here is that big: the features are standardised by folding the mean and the scale into
the weights (``((x - m) / s) @ W + b = x @ (W / s) + (b - m @ (W / s))``), the rows to fit (the training part of
a split, the categories kept) are chosen by index, and the loss and its gradient are summed over
:data:`TRAIN_ROWS` rows at a time; scattered rows are gathered into one reused buffer. The minimiser is
:mod:`recommender.lbfgs`; torch does the matrix products (its thread count is the caller's to set).
"""

from __future__ import annotations

import logging

import numpy as np

from recommender import lbfgs

log = logging.getLogger(__name__)

TRAIN_ROWS = 1024  # rows per piece: the logits of a piece stay under glibc's 1 MB mmap threshold for ~250 classes


def parts(rows: np.ndarray) -> list[np.ndarray | slice]:
    """``rows`` in pieces of :data:`TRAIN_ROWS`; a piece of consecutive rows as a slice (a view, not a copy)."""
    out: list[np.ndarray | slice] = []
    for s in range(0, len(rows), TRAIN_ROWS):
        part = rows[s : s + TRAIN_ROWS]
        consecutive = int(part[-1]) - int(part[0]) + 1 == len(part) and bool((np.diff(part) == 1).all())
        out.append(slice(int(part[0]), int(part[-1]) + 1) if consecutive else part)
    return out


def standardise(X: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and scale of ``X[rows]``, summed a piece at a time; the scale is shrunk towards the
    average spread so nearly constant dimensions are not blown up into noise."""
    mean = np.zeros(X.shape[1], np.float64)
    for part in parts(rows):
        mean += X[part].sum(axis=0, dtype=np.float64)
    mean /= max(len(rows), 1)
    var, centre = np.zeros(X.shape[1], np.float64), mean.astype(np.float32)
    for part in parts(rows):
        d = X[part] - centre
        var += np.square(d, out=d).sum(axis=0, dtype=np.float64)
    var /= max(len(rows), 1)
    return mean.astype(np.float32), np.sqrt(var + 0.01 * var.mean() + 1e-12).astype(np.float32)


def logits(X: np.ndarray, rows: np.ndarray, W: np.ndarray, b: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``((X[rows] - mean) / scale) @ W + b``, a piece at a time."""
    pieces = [((X[part] - mean) / scale) @ W + b for part in parts(rows)]
    return np.concatenate(pieces) if pieces else np.zeros((0, W.shape[1]), np.float32)


def train(
    X: np.ndarray, rows: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int,
    standard: tuple[np.ndarray, np.ndarray], init: tuple[np.ndarray, np.ndarray] | None = None,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Minimise mean cross-entropy + l2/2 * ||W||^2 over the rows ``X[rows]`` (labels ``y``, codes below
    ``n_classes``) standardised by ``standard`` = (mean, scale); returns (W, b), float32, of the standardised
    features. Starts from ``init`` (W, b), else zero weights and the log class priors (a convex problem).

    ``num_threads`` sets torch's thread count for the fit and restores it afterwards. That setting is
    process-wide, so the default (None) leaves it alone: the engine fits on its own thread while
    another thread embeds images, and must not change that thread's parallelism under it."""
    import torch

    d, C, n = X.shape[1], n_classes, max(len(rows), 1)
    X_t = torch.from_numpy(np.asarray(X, dtype=np.float32))
    codes = torch.from_numpy(np.asarray(y, dtype=np.int64))
    pieces, at = [], 0
    for part in parts(rows):
        size = (part.stop - part.start) if isinstance(part, slice) else len(part)
        index = part if isinstance(part, slice) else torch.from_numpy(part)
        pieces.append((index, codes[at : at + size], torch.arange(size)))
        at += size
    mean, scale = standard
    inv = torch.from_numpy((1.0 / scale).astype(np.float32))[:, None]
    centre = torch.from_numpy(mean.astype(np.float32))
    gathered = torch.empty((TRAIN_ROWS, d))  # a piece of scattered rows is copied here, not into a new tensor
    if init is None:
        prior = np.bincount(y, minlength=C) + 1.0
        init = (np.zeros((d, C), np.float32), np.log(prior / prior.sum()))

    def value_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        W = torch.from_numpy(x[: d * C].reshape(d, C).astype(np.float32))
        b = torch.from_numpy(x[d * C :].astype(np.float32))
        Wx = W * inv  # the weights on raw rows
        bx = b - centre @ Wx
        gWx, gbx, total = torch.zeros(d, C), torch.zeros(C), 0.0
        for index, yp, ar in pieces:
            rows_p = X_t[index] if isinstance(index, slice) else torch.index_select(X_t, 0, index, out=gathered[: len(yp)])
            logp = torch.log_softmax(torch.addmm(bx, rows_p, Wx), dim=1)
            total -= float(logp[ar, yp].sum())
            dz = logp.exp_()  # d(loss)/d(logits) = softmax - one-hot
            dz[ar, yp] -= 1.0
            gWx.addmm_(rows_p.T, dz)
            gbx += dz.sum(dim=0)
        grad_W = (gWx - torch.outer(centre, gbx)) * inv / n + l2 * W  # back through Wx = W / s, bx = b - m @ Wx
        value = total / n + 0.5 * l2 * float(torch.dot(W.ravel(), W.ravel()))
        return value, np.concatenate([grad_W.numpy().ravel(), gbx.numpy() / n]).astype(np.float64)

    x0 = np.concatenate([np.ravel(init[0]), np.ravel(init[1])])
    previous = torch.get_num_threads()
    change = num_threads is not None and num_threads != previous
    if change:
        torch.set_num_threads(num_threads)  # type: ignore[arg-type]
    try:
        result = lbfgs.minimise(value_and_gradient, x0, max_iter=max_iter, history=10)
    finally:
        if change:
            torch.set_num_threads(previous)
    log.debug("L-BFGS: %d iterations, %d evaluations, converged %s", result.iterations, result.evaluations, result.converged)
    W, b = result.x[: d * C].reshape(d, C), result.x[d * C :]
    return W.astype(np.float32), b.astype(np.float32)
