"""Power law y = c * x^gamma by least squares on (log x, log y), with bootstrap intervals.

ALGORITHMS.md 4.4: report gamma, c, R^2 and residuals; 95% intervals are the 2.5-97.5
percentiles of B refits on resampled data. Resampling units are whole curves (`groups`, e.g.
subsample seeds) when there are several, else individual points (pairs bootstrap). Log-OLS is
only right for pure power laws; forms with an offset (L = E + A N^-alpha) use fit_chinchilla.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PowerLawFit:
    """A fitted power law and its bootstrap distribution."""

    gamma: float
    c: float
    r2: float
    n_points: int
    x_range: tuple[float, float]
    residuals: list[float]
    gamma_ci: tuple[float, float] = (float("nan"), float("nan"))
    c_ci: tuple[float, float] = (float("nan"), float("nan"))
    bootstrap: int = 0
    boot: np.ndarray = field(default_factory=lambda: np.empty((0, 2)), repr=False)  # (log c, g)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.c * np.asarray(x, dtype=float) ** self.gamma

    def band(self, x: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise bootstrap band of the fitted curve at x."""
        if self.boot.size == 0:
            y = self.predict(x)
            return y, y
        lx = np.log(np.asarray(x, dtype=float))
        curves = np.exp(self.boot[:, :1] + self.boot[:, 1:] * lx[None, :])
        lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
        return np.percentile(curves, lo, axis=0), np.percentile(curves, hi, axis=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gamma": self.gamma,
            "gamma_ci95": list(self.gamma_ci),
            "c": self.c,
            "c_ci95": list(self.c_ci),
            "r2": self.r2,
            "n_points": self.n_points,
            "x_range": list(self.x_range),
            "bootstrap": self.bootstrap,
            "residuals_log": self.residuals,
        }


def ols_loglog(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(gamma, log c, R^2, residuals) of log y = log c + gamma log x."""
    lx, ly = np.log(x), np.log(y)
    mx, my = lx.mean(), ly.mean()
    sxx = ((lx - mx) ** 2).sum()
    gamma = float(((lx - mx) * (ly - my)).sum() / sxx)
    logc = float(my - gamma * mx)
    resid = ly - (logc + gamma * lx)
    sst = ((ly - my) ** 2).sum()
    r2 = float(1 - (resid**2).sum() / sst) if sst > 0 else 1.0
    return gamma, logc, r2, resid


def fit_power_law(
    x: np.ndarray,
    y: np.ndarray,
    bootstrap: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> PowerLawFit:
    """Fit y = c x^gamma (x, y > 0, at least 3 distinct x) with a bootstrap CI."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    groups = None if groups is None else np.asarray(groups)[ok]
    if np.unique(x).size < 3:
        raise ValueError("a power-law fit needs at least 3 points with distinct positive x")
    gamma, logc, r2, resid = ols_loglog(x, y)
    fit = PowerLawFit(
        gamma=gamma,
        c=float(np.exp(logc)),
        r2=r2,
        n_points=int(x.size),
        x_range=(float(x.min()), float(x.max())),
        residuals=[round(float(r), 6) for r in resid],
    )
    if bootstrap > 0:
        boot = _bootstrap(x, y, bootstrap, seed, groups)
        if len(boot):
            fit.boot = boot
            fit.bootstrap = len(boot)
            g_lo, g_hi = np.percentile(boot[:, 1], [2.5, 97.5])
            c_lo, c_hi = np.exp(np.percentile(boot[:, 0], [2.5, 97.5]))
            fit.gamma_ci = (float(g_lo), float(g_hi))
            fit.c_ci = (float(c_lo), float(c_hi))
    return fit


def _bootstrap(
    x: np.ndarray, y: np.ndarray, b: int, seed: int, groups: np.ndarray | None
) -> np.ndarray:
    """(log c, gamma) of B refits on resampled points, or on resampled groups of points."""
    rng = np.random.default_rng(seed)
    units = np.unique(groups) if groups is not None else None
    out = []
    for _ in range(b):
        if units is not None and units.size > 1:
            pick = rng.choice(units, size=units.size, replace=True)
            idx = np.concatenate([np.flatnonzero(groups == u) for u in pick])
        else:
            idx = rng.integers(0, x.size, size=x.size)
        if np.unique(x[idx]).size < 2:
            continue  # a degenerate resample has no slope
        g, lc, _, _ = ols_loglog(x[idx], y[idx])
        out.append((lc, g))
    return np.array(out, dtype=float).reshape(-1, 2)
