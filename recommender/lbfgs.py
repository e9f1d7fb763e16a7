"""Limited-memory BFGS for the classifier's fits: smooth convex objectives over a numpy vector.

``torch.optim.LBFGS`` served before. Creating any torch optimizer imports ``torch._dynamo`` (sympy, triton,
about 900 modules): 147 MB more resident memory, and a 1.2 s import that held the bot's event loop 301 ms at a
catalogue's first query, whose quick head it fitted (docs/BENCHMARKS.md). This is the textbook method (Nocedal & Wright, *Numerical
Optimization*, 2nd ed., algorithms 7.4 and 7.5): the two-loop recursion over the last ``history`` steps, and a
backtracking line search under the Armijo condition, each trial step the minimiser of the quadratic through
what is known, kept within [0.1, 0.5] of the last. On a convex objective every step has ``s . y >= 0``, so no
Wolfe search is needed to keep the curvature pairs usable; a pair with ``s . y`` too small is skipped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ARMIJO = 1e-4  # sufficient decrease: f(x + t d) <= f(x) + ARMIJO * t * (g . d)

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]  # x -> (value, gradient)


@dataclass(frozen=True)
class Result:
    x: np.ndarray
    value: float
    iterations: int
    evaluations: int
    converged: bool  # the gradient or the progress fell under its tolerance (not out of iterations)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """a . b without BLAS: numpy's BLAS keeps its own threads, which would fight the objective's (torch's) over
    the cores between evaluations (a third of a fit's time went to threads waiting on each other)."""
    return float(np.einsum("i,i->", a, b))


def _direction(g: np.ndarray, pairs: deque[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """-H g, H the inverse-Hessian estimate from ``pairs`` (s, y, 1 / s.y), oldest first."""
    q = g.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * _dot(s, q)
        q -= a * y
        alphas.append(a)
    if pairs:
        s, y, _ = pairs[-1]
        q *= _dot(s, y) / _dot(y, y)  # the initial estimate's scale, from the latest pair
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        q += (a - rho * _dot(y, q)) * s
    return -q


def minimise(
    fg: Objective, x0: np.ndarray, *, max_iter: int = 200, max_eval: int | None = None, history: int = 10,
    tolerance_grad: float = 1e-5, tolerance_change: float = 1e-9,
) -> Result:  # fmt: skip
    """Minimise ``fg`` (value and gradient at x) from ``x0``. Stops when the largest gradient entry is at most
    ``tolerance_grad``, when a step or the change of the value is under ``tolerance_change``, after ``max_iter``
    iterations, or after ``max_eval`` evaluations (default ``max_iter * 5 / 4``)."""
    max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
    x = np.array(x0, dtype=np.float64).ravel()
    f, g = fg(x)
    evals, it = 1, 0
    pairs: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=history)
    if not np.isfinite(f) or np.abs(g).max(initial=0.0) <= tolerance_grad:
        return Result(x, f, 0, evals, bool(np.isfinite(f)))
    for it in range(1, max_iter + 1):
        d = _direction(g, pairs)
        gtd = _dot(g, d)
        if not gtd < 0:  # not a descent direction (rounding): start the estimate again
            pairs.clear()
            d, gtd = -g, -_dot(g, g)
        t = 1.0 if pairs else min(1.0, 1.0 / float(np.abs(g).sum()))  # the first step: scaled to the gradient
        while True:
            x_new = x + t * d
            f_new, g_new = fg(x_new)
            evals += 1
            accepted = bool(np.isfinite(f_new) and f_new <= f + ARMIJO * t * gtd)
            if accepted or evals >= max_eval:
                break
            curvature = 2.0 * (f_new - f - gtd * t)
            guess = -gtd * t * t / curvature if np.isfinite(f_new) and curvature > 0 else 0.5 * t
            t = min(max(guess, 0.1 * t), 0.5 * t)
        if not (np.isfinite(f_new) and f_new < f):  # no lower point: out of evaluations, or (accepted) at the
            return Result(x, f, it, evals, accepted)  # floor that rounding leaves
        s, y = x_new - x, g_new - g
        sy = _dot(s, y)
        if sy > 1e-10 * _dot(y, y):
            pairs.append((s, y, 1.0 / sy))
        change, step = f - f_new, float(np.abs(s).max())
        x, f, g = x_new, float(f_new), g_new
        if np.abs(g).max() <= tolerance_grad or change < tolerance_change or step <= tolerance_change:
            return Result(x, f, it, evals, True)
        if evals >= max_eval:
            break
    return Result(x, f, it, evals, False)
