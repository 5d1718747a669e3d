"""The Chinchilla fit recovers the published constants from noisy points of the published law."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stats.fit_chinchilla import fit_chinchilla, grid, objective
from pipeline.stats.laws import CHINCHILLA, chinchilla_loss


def _points(sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8 x 8 (N, D) points over Chinchilla's range, loss x lognormal(sigma) noise."""
    n_grid, d_grid = np.geomspace(4e7, 1.6e10, 8), np.geomspace(5e9, 5e11, 8)
    N, D = (a.ravel() for a in np.meshgrid(n_grid, d_grid))
    rng = np.random.default_rng(seed)
    return N, D, chinchilla_loss(N, D) * np.exp(rng.normal(0, sigma, N.size))


def test_published_constants_recovered():
    """0.2% noise. Tolerances are ~4 standard deviations measured over 10 noise seeds
    (E 0.0076, A 3.5%, B 11%, alpha 0.0021, beta 0.0051; B trades off against beta, so it is
    the least identified), and the truth must lie inside every bootstrap interval."""
    N, D, L = _points(0.002, seed=0)
    fit = fit_chinchilla(N, D, L, starts=20, bootstrap=40, seed=0)
    p = fit.params
    assert fit.converged
    assert p["E"] == pytest.approx(CHINCHILLA["E"], abs=0.03)
    assert p["alpha"] == pytest.approx(CHINCHILLA["alpha"], abs=0.01)
    assert p["beta"] == pytest.approx(CHINCHILLA["beta"], abs=0.02)
    assert p["A"] == pytest.approx(CHINCHILLA["A"], rel=0.15)
    assert p["B"] == pytest.approx(CHINCHILLA["B"], rel=0.4)
    for name, (lo, hi) in fit.ci.items():
        assert lo <= CHINCHILLA[name] <= hi, (name, lo, hi)


def test_noiseless_points_give_the_exact_constants():
    N, D, L = _points(0.0, seed=0)
    fit = fit_chinchilla(N, D, L, starts=10, bootstrap=0)
    for name, value in CHINCHILLA.items():
        assert fit.params[name] == pytest.approx(value, rel=2e-3), name


def test_gradient_matches_finite_differences():
    N, D, L = _points(0.01, seed=1)
    data = (np.log(N), np.log(D), np.log(L))
    theta = np.array([6.0, 6.0, 0.5, 0.34, 0.28])
    _, grad = objective(theta, *data, 1e-3)
    eps = 1e-7
    for i in range(5):
        step = np.zeros(5)
        step[i] = eps
        num = objective(theta + step, *data, 1e-3)[0] - objective(theta - step, *data, 1e-3)[0]
        assert grad[i] == pytest.approx(num / (2 * eps), rel=1e-4, abs=1e-6), i


def test_grid_is_the_papers():
    g = grid()
    assert g.shape == (4500, 5)
    assert set(np.unique(g[:, 3])) == {0.0, 0.5, 1.0, 1.5, 2.0}
    assert set(np.unique(g[:, 0])) == {0.0, 5.0, 10.0, 15.0, 20.0, 25.0}


def test_too_few_points():
    with pytest.raises(ValueError, match="at least 5"):
        fit_chinchilla(np.ones(3), np.ones(3), np.ones(3))
