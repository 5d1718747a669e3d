"""PNG plots of `curate fit`: data, fitted law and bootstrap band, with reference laws."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.stats import laws
from pipeline.stats.fit_chinchilla import ChinchillaFit
from pipeline.stats.plots import legend, pyplot, save_png


def plot_fits(
    fits: list[Any],
    chin: ChinchillaFit | None,
    kap: dict[str, Any] | None,
    loss: dict[str, np.ndarray] | None,
    muennighoff: dict[str, Any] | None,
    output: str,
) -> dict[str, str]:
    """powerlaw.png (last set's curves + gamma vs the Kausik band), and the loss-law plots."""
    paths: dict[str, str] = {}
    if fits:
        paths["powerlaw_png"] = save_png(_powerlaw_figure(fits), output, "powerlaw.png")
    if chin is not None and loss is not None:
        paths["chinchilla_png"] = save_png(_chinchilla_figure(chin, loss), output, "chinchilla.png")
    if kap is not None:
        paths["kaplan_png"] = save_png(_kaplan_figure(kap), output, "kaplan.png")
    if muennighoff:
        paths["muennighoff_png"] = save_png(
            _muennighoff_figure(muennighoff), output, "muennighoff.png"
        )
    return paths


def _label(cf: Any) -> str:
    if cf.metric == "distinct_documents":
        return "distinct docs"
    return f"{'windows' if cf.metric == 'unique_windows' else 'n-grams'} n={cf.n}"


def _powerlaw_figure(fits: list[Any]) -> Any:
    plt = pyplot()
    stages = list(dict.fromkeys(cf.stage for cf in fits))
    final = [cf for cf in fits if cf.stage == stages[-1]]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    for i, cf in enumerate(final):
        color = f"C{i % 10}"
        xs = np.geomspace(cf.x.min(), cf.x.max(), 60)
        lo, hi = cf.fit.band(xs)
        ax.fill_between(xs, lo, hi, color=color, alpha=0.2, lw=0)
        ax.loglog(cf.x, cf.y, "o", color=color, ms=4)
        g = cf.fit.gamma
        ax.loglog(
            xs, cf.fit.predict(xs), "-", color=color, lw=1, label=f"{_label(cf)}: gamma={g:.3f}"
        )
    ax.set_xlabel("D (tokens)")
    ax.set_ylabel("distinct count U")
    ax.set_title(f"U = c D^gamma with 95% bootstrap band ({stages[-1]})")
    ax.grid(True, which="both", alpha=0.3)
    legend(ax, fontsize=7)
    band = laws.KAUSIK["band"]
    bx.axhspan(band[0], band[1], color="orange", alpha=0.25, label="Kausik band 0.44-0.72")
    bx.axhline(laws.KAUSIK["gamma"], color="orange", lw=1.5, label="Kausik N ~ D^0.44")
    h = laws.HEAPS_BETA_RANGE
    bx.axhspan(h[0], h[1], color="grey", alpha=0.12, label="Heaps beta, English words")
    y = np.arange(len(final))
    gam = np.array([cf.fit.gamma for cf in final])
    err = np.array(
        [[cf.fit.gamma - cf.fit.gamma_ci[0], cf.fit.gamma_ci[1] - cf.fit.gamma] for cf in final]
    ).T
    bx.errorbar(y, gam, yerr=np.nan_to_num(err), fmt="o", color="k", capsize=3)
    bx.set_xticks(y, [_label(cf) for cf in final], rotation=40, ha="right", fontsize=7)
    bx.set_ylabel("gamma (95% CI)")
    top = max(
        [1.05, *(cf.fit.gamma_ci[1] + 0.05 for cf in final if np.isfinite(cf.fit.gamma_ci[1]))]
    )
    bx.set_ylim(0, min(top, 2.5))
    bx.set_title("Fitted exponents vs references")
    legend(bx, fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _chinchilla_figure(chin: ChinchillaFit, loss: dict[str, np.ndarray]) -> Any:
    plt = pyplot()
    N, D, L = loss["N"], loss["D"], loss["loss"]
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = np.geomspace(D.min(), D.max(), 80)
    for i, n in enumerate(np.unique(N)):
        sel = np.equal(N, n)
        color = f"C{i % 10}"
        ax.semilogx(D[sel], L[sel], "o", color=color, ms=4, label=f"N={n:.3g}")
        ax.semilogx(xs, chin.predict(np.full_like(xs, n), xs), "-", color=color, lw=1)
        if chin.boot.size:
            curves = np.array(
                [_predict_theta(t, n, xs) for t in chin.boot[: min(len(chin.boot), 300)]]
            )
            lo, hi = np.percentile(curves, [2.5, 97.5], axis=0)
            ax.fill_between(xs, lo, hi, color=color, alpha=0.15, lw=0)
        ax.semilogx(xs, laws.chinchilla_loss(n, xs), ":", color=color, lw=1)
    p = chin.params
    ax.set_title(
        f"L = E + A/N^a + B/D^b: E={p['E']:.3f} A={p['A']:.4g} B={p['B']:.4g} "
        f"a={p['alpha']:.3f} b={p['beta']:.3f}\n(dotted: Hoffmann et al. 2022 constants)",
        fontsize=9,
    )
    ax.set_xlabel("D (tokens)")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    legend(ax, fontsize=7, ncol=2)
    return fig


def _predict_theta(theta: np.ndarray, n: float, d: np.ndarray) -> np.ndarray:
    a, b, e, alpha, beta = theta
    return np.exp(e) + np.exp(a) / n**alpha + np.exp(b) / d**beta


def _kaplan_figure(kap: dict[str, Any]) -> Any:
    plt = pyplot()
    fit = kap["_fit"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    lo_x, hi_x = fit.x_range
    xs = np.geomspace(lo_x, hi_x, 60)
    lo, hi = fit.band(xs)
    ax.fill_between(xs, lo, hi, color="C0", alpha=0.2, lw=0, label="95% bootstrap band")
    ax.loglog(
        xs, fit.predict(xs), "C0-", label=f"fit: alpha_D={kap['alpha_D']:.3f}, D_c={kap['D_c']:.3g}"
    )
    ax.loglog(xs, laws.kaplan_loss_d(xs), "k:", label="Kaplan et al. 2020 L(D)")
    ax.set_xlabel("D (tokens)")
    ax.set_ylabel("loss")
    ax.set_title("L(D) = (D_c / D)^alpha_D")
    ax.grid(True, which="both", alpha=0.3)
    legend(ax, fontsize=7)
    return fig


def _muennighoff_figure(m: dict[str, Any]) -> Any:
    plt = pyplot()
    rows = m["table"]
    ep = np.array([r["epochs"] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.loglog(ep, [r["D_tokens"] for r in rows], "k--", label="D = epochs x U_D (all unique)")
    ax.loglog(ep, [r["D_effective"] for r in rows], "C1o-", label="effective D' (Muennighoff)")
    ax.set_xlabel("epochs over the unique tokens")
    ax.set_ylabel("tokens")
    ax.set_title(
        f"U_D = {m['unique_tokens']:.3g} tokens; R*_D = {laws.MUENNIGHOFF['R_D_star']:.2f}"
    )
    ax.grid(True, which="both", alpha=0.3)
    legend(ax, fontsize=8)
    return fig
