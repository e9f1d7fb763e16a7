"""The classifier's L-BFGS: it finds minima it can be checked against, and fitting stays off torch.optim."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from recommender.lbfgs import minimise

from helpers import ROOT


def test_an_ill_conditioned_quadratic_is_solved_to_its_known_minimum() -> None:
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    A = Q @ np.diag(np.logspace(0, 3, 40)) @ Q.T  # condition number 1,000
    b = rng.normal(size=40)
    result = minimise(
        lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b), np.zeros(40), max_iter=500, tolerance_grad=1e-8, tolerance_change=0.0
    )
    assert result.converged and result.iterations < 1000
    np.testing.assert_allclose(result.x, np.linalg.solve(A, b), rtol=1e-6, atol=1e-7)


def test_rosenbrock_valley_is_followed_to_its_minimum() -> None:
    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = x
        return (1 - a) ** 2 + 100 * (b - a * a) ** 2, np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])

    result = minimise(f, np.array([-1.2, 1.0]), max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-14)
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-5)


def test_a_start_at_the_minimum_evaluates_once_and_steps_that_overflow_are_shortened() -> None:
    result = minimise(lambda x: (float(x @ x), 2 * x), np.zeros(3))
    assert (result.iterations, result.evaluations, result.converged) == (0, 1, True)

    def steep(x: np.ndarray) -> tuple[float, np.ndarray]:  # inf beyond |x| > 2: a line search must back off
        if np.abs(x).max() > 2:
            return float("inf"), np.full_like(x, np.nan)
        return float(np.sum(np.cosh(3 * x))), 3 * np.sinh(3 * x)

    result = minimise(steep, np.full(4, 1.5), max_iter=200, tolerance_grad=1e-8)
    assert result.converged and np.isfinite(result.value)
    np.testing.assert_allclose(result.x, 0.0, atol=1e-6)


@pytest.mark.parametrize("max_iter", [1, 3])
def test_iterations_and_evaluations_stay_within_their_limits(max_iter: int) -> None:
    A = np.diag(np.logspace(0, 3, 20))
    result = minimise(lambda x: (0.5 * x @ A @ x, A @ x), np.ones(20), max_iter=max_iter)
    assert result.iterations <= max_iter and result.evaluations <= max_iter * 5 // 4 + 1
    assert not result.converged and result.value < 0.5 * np.ones(20) @ A @ np.ones(20)


def test_fitting_a_classifier_does_not_import_torch_dynamo() -> None:
    """torch.optim.LBFGS imported torch._dynamo (sympy, triton, ~900 modules): 147 MB more memory, and an
    import that held the bot's event loop 127-140 ms at its first head fit."""
    code = (
        "import sys, numpy as np, torch\n"
        "from recommender.classify import fit_classifier\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.normal(size=(300, 16)).astype(np.float32)\n"
        "clf = fit_classifier(X, [str(i % 3) for i in range(300)], max_iter=5)\n"
        "assert clf.method == 'linear'\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
