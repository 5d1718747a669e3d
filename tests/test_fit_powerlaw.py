"""Power-law fits recover known exponents within their bootstrap CIs; reference-law formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.stats import laws
from pipeline.stats.fit_powerlaw import fit_power_law


def test_gamma_recovered_from_noisy_power_law():
    """U = 3 D^0.6 x lognormal(0.05) on D_k = 1e8 * 2^-k: truth inside the 95% CI."""
    rng = np.random.default_rng(0)
    x = 1e8 * 2.0 ** -np.arange(11)
    y = 3 * x**0.6 * np.exp(rng.normal(0, 0.05, x.size))
    fit = fit_power_law(x, y, bootstrap=1000, seed=0)
    assert fit.gamma_ci[0] <= 0.6 <= fit.gamma_ci[1]
    assert fit.gamma == pytest.approx(0.6, abs=0.02)
    assert fit.c_ci[0] <= 3 <= fit.c_ci[1]
    assert fit.r2 > 0.99 and fit.n_points == 11 and fit.bootstrap == 1000


def test_ci_coverage_over_many_datasets():
    """Pairs-bootstrap 95% intervals cover the true gamma in >= 85% of 40 noisy datasets."""
    hits = 0
    for s in range(40):
        rng = np.random.default_rng(100 + s)
        x = np.geomspace(1e3, 1e7, 12)
        y = 0.5 * x**0.44 * np.exp(rng.normal(0, 0.1, x.size))
        lo, hi = fit_power_law(x, y, bootstrap=400, seed=s).gamma_ci
        hits += lo <= 0.44 <= hi
    assert hits >= 34


def _pitman_yor_tables(n: int, discount: float, seed: int, checkpoints: list[int]) -> list[int]:
    """Distinct values after each checkpoint of a Pitman-Yor(discount, 0) sequence.

    With concentration 0, E[K_n] = Gamma(n + d) / (Gamma(1 + d) Gamma(n)) ~ n^d / Gamma(1 + d):
    a Heaps process whose exponent is exactly the discount d.
    """
    u = np.random.default_rng(seed).random(n)
    k, out, it = 1, [], iter(checkpoints)
    nxt = next(it)
    for i in range(1, n):
        if u[i] * i < discount * k:
            k += 1
        if i + 1 == nxt:
            out.append(k)
            nxt = next(it, None)
    return out


def test_heaps_exponent_of_a_pitman_yor_process():
    """8 independent nested curves (seed groups, cluster bootstrap): d = 0.6 inside the CI."""
    checkpoints = [2**j for j in range(8, 19)]
    x, y, groups = [], [], []
    for s in range(8):
        y += _pitman_yor_tables(2**18, 0.6, s, checkpoints)
        x += checkpoints
        groups += [s] * len(checkpoints)
    fit = fit_power_law(np.array(x), np.array(y), bootstrap=1000, seed=0, groups=np.array(groups))
    assert fit.gamma_ci[0] <= 0.6 <= fit.gamma_ci[1]
    assert fit.gamma_ci[1] - fit.gamma_ci[0] < 0.1


def test_fit_needs_three_distinct_sizes():
    with pytest.raises(ValueError, match="at least 3"):
        fit_power_law(np.array([1.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]), bootstrap=0)


def test_kaplan_formulas_by_hand():
    # (D_c / D)^alpha_D with D = D_c / 100: 100^0.095 = e^(0.095 ln 100) = 1.54882
    assert laws.kaplan_loss_d(5.4e11) == pytest.approx(math.exp(0.095 * math.log(100)))
    assert float(laws.kaplan_loss_d(5.4e11)) == pytest.approx(1.54882, abs=1e-5)
    assert laws.kaplan_loss_d(5.4e13) == pytest.approx(1.0)
    # L(N) at N = N_c / 1000: 1000^0.076 = 1.69044
    assert float(laws.kaplan_loss_n(8.8e10)) == pytest.approx(1.69044, abs=1e-5)
    # L(N, D) with D -> infinity is L(N)
    assert float(laws.kaplan_loss_nd(8.8e10, 1e40)) == pytest.approx(1.69044, abs=1e-5)


def test_chinchilla_and_compute_optimal_by_hand():
    # 1.69 + 406.4 / 10^3.06 + 410.7 / 10^3.08 = 1.69 + 0.35395 + 0.34160
    got = float(laws.chinchilla_loss(1e9, 1e11))
    assert got == pytest.approx(1.69 + 406.4 / 1e9**0.34 + 410.7 / 1e11**0.28)
    assert got == pytest.approx(2.38556, abs=1e-4)
    opt = laws.compute_optimal(5.76e23)  # Chinchilla's own budget
    assert opt["a"] == pytest.approx(0.28 / 0.62) and opt["b"] == pytest.approx(0.34 / 0.62)
    assert 6 * opt["N"] * opt["D"] == pytest.approx(5.76e23)
    assert laws.optimal_params_for_tokens(opt["D"]) == pytest.approx(opt["N"], rel=1e-9)


def test_muennighoff_effective_data_by_hand():
    u, r = 1e9, laws.MUENNIGHOFF["R_D_star"]
    assert laws.effective_data(u, 1) == pytest.approx(u)  # one epoch: no repetition
    # 4 epochs: R_D = 3; D' = U (1 + R* (1 - e^(-0.19496))) = U (1 + 15.3878 * 0.17713) = 3.72567 U
    want = u * (1 + r * (1 - math.exp(-3 / r)))
    assert laws.effective_data(u, 4) == pytest.approx(want)
    assert laws.effective_data(u, 4) == pytest.approx(3.72567e9, rel=1e-5)
    # many epochs saturate at U (1 + R*)
    assert laws.effective_data(u, 1e4) == pytest.approx(u * (1 + r), rel=1e-6)
    # N' with N below the compute-optimal size for U_D is N itself
    assert laws.effective_params(1e6, 1e12) == pytest.approx(1e6)
