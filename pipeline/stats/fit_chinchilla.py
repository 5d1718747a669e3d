"""Chinchilla-form fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, approach 3).

With theta = (a, b, e, alpha, beta), A = e^a, B = e^b, E = e^e, the model in log space is
LSE(a - alpha log N, b - beta log D, e), and the loss is sum_i Huber_delta(model_i - log L_i)
with delta = 1e-3, minimised by L-BFGS with an analytic gradient. Starts: the grid alpha, beta in
{0, .5, ..., 2}, e in {-1, -.5, ..., 1}, a, b in {0, 5, ..., 25} (4,500 points) is evaluated
at once and L-BFGS runs from the `starts` best of them (all of them with starts=None); the best
optimum wins. Following the Epoch AI critique, the objective is rescaled (divided by delta * n,
so gradients are O(1)) and the tolerances are tight. Bootstrap CIs refit resampled points from
the best optimum and the best start that reached another optimum.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PARAMS = ("E", "A", "B", "alpha", "beta")
DELTA = 1e-3


def _terms(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> np.ndarray:
    """The three log-space terms, shape (..., 3, points), for one or many thetas."""
    a, b, e, alpha, beta = (theta[..., i, None] for i in range(5))
    return np.stack(
        [a - alpha * log_n, b - beta * log_d, np.broadcast_to(e, (a - alpha * log_n).shape)],
        axis=-2,
    )


def _lse(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = t.max(axis=-2, keepdims=True)
    ex = np.exp(t - m)
    s = ex.sum(axis=-2, keepdims=True)
    return (m + np.log(s))[..., 0, :], ex / s


def huber(r: np.ndarray, delta: float = DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Rescaled Huber loss and its gradient at one theta."""
    pred, w = _lse(_terms(theta, log_n, log_d))
    r = pred - log_l
    scale = 1.0 / (delta * r.size)
    g = np.clip(r, -delta, delta)  # Huber derivative
    grad = np.array(
        [
            (g * w[0]).sum(),
            (g * w[1]).sum(),
            (g * w[2]).sum(),
            -(g * w[0] * log_n).sum(),
            -(g * w[1] * log_d).sum(),
        ]
    )
    return float(huber(r, delta).sum() * scale), grad * scale


def grid() -> np.ndarray:
    """The initialisation grid of Hoffmann et al. (4,500 points of (a, b, e, alpha, beta))."""
    alphas = np.arange(0, 2.01, 0.5)
    es = np.arange(-1, 1.01, 0.5)
    ab = np.arange(0, 25.1, 5)
    return np.array(list(itertools.product(ab, ab, es, alphas, alphas)), dtype=float)


@dataclass
class ChinchillaFit:
    """Fitted constants, the objective value, and bootstrap intervals."""

    params: dict[str, float]
    theta: np.ndarray
    loss: float
    n_points: int
    converged: bool
    starts: int
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    bootstrap: int = 0
    boot: np.ndarray = field(default_factory=lambda: np.empty((0, 5)), repr=False)

    def predict(self, N: np.ndarray, D: np.ndarray) -> np.ndarray:
        p = self.params
        return (
            p["E"]
            + p["A"] / np.asarray(N, float) ** p["alpha"]
            + p["B"] / np.asarray(D, float) ** p["beta"]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "ci95": {k: list(v) for k, v in self.ci.items()},
            "objective": self.loss,
            "n_points": self.n_points,
            "converged": self.converged,
            "lbfgs_starts": self.starts,
            "bootstrap": self.bootstrap,
        }


def _params(theta: np.ndarray) -> dict[str, float]:
    a, b, e, alpha, beta = (float(v) for v in theta)
    return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": beta}


def _minimise(theta0: np.ndarray, data: tuple, delta: float) -> tuple[np.ndarray, float, bool]:
    from scipy.optimize import minimize

    res = minimize(
        objective,
        theta0,
        args=(*data, delta),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-9},
    )
    return res.x, float(res.fun), bool(res.success)


def _best_starts(data: tuple, delta: float, starts: int | None) -> np.ndarray:
    g = grid()
    if starts is None or starts >= len(g):
        return g
    log_n, log_d, log_l = data
    pred, _ = _lse(_terms(g, log_n, log_d))
    values = huber(pred - log_l, delta).sum(axis=-1)
    return g[np.argsort(values, kind="stable")[:starts]]


def fit_chinchilla(
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    delta: float = DELTA,
    starts: int | None = 100,
    bootstrap: int = 200,
    seed: int = 0,
) -> ChinchillaFit:
    """Fit E + A/N^alpha + B/D^beta to losses L at (N, D); see the module docstring."""
    with _one_blas_thread():
        return _fit(N, D, L, delta, starts, bootstrap, seed)


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """L-BFGS-B on 5 parameters is ~40x slower when OpenBLAS spins threads on a busy machine."""
    import scipy.optimize  # noqa: F401  (load scipy's own OpenBLAS before limiting it)

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def _fit(
    N: np.ndarray,
    D: np.ndarray,
    L: np.ndarray,
    delta: float,
    starts: int | None,
    bootstrap: int,
    seed: int,
) -> ChinchillaFit:
    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    if N.size < 5:
        raise ValueError("a Chinchilla fit needs at least 5 (N, D, loss) points")
    if (N <= 0).any() or (D <= 0).any() or (L <= 0).any():
        raise ValueError("N, D and loss must all be positive")
    data = (np.log(N), np.log(D), np.log(L))
    inits = _best_starts(data, delta, starts)
    found = [_minimise(t, data, delta) for t in inits]
    order = sorted(range(len(found)), key=lambda i: found[i][1])
    theta, loss, ok = found[order[0]]
    fit = ChinchillaFit(_params(theta), theta, loss, int(N.size), ok, len(inits))
    if bootstrap > 0:
        seeds = [theta]
        for i in order[1:]:  # plus the best start that reached a different optimum
            if np.abs(found[i][0] - theta).max() > 1e-3:
                seeds.append(found[i][0])
                break
        rng = np.random.default_rng(seed)
        boot = []
        for _ in range(bootstrap):
            idx = rng.integers(0, N.size, size=N.size)
            sub = tuple(v[idx] for v in data)
            best = min((_minimise(s, sub, delta) for s in seeds), key=lambda t: t[1])
            boot.append(best[0])
        fit.boot = np.array(boot)
        fit.bootstrap = len(boot)
        table = np.array([[*_params(t).values()] for t in boot])
        for i, name in enumerate(PARAMS):
            lo, hi = np.percentile(table[:, i], [2.5, 97.5])
            fit.ci[name] = (float(lo), float(hi))
    return fit
