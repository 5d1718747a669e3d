"""`curate fit`: scaling-law fits on `curate stats` output and on user-supplied loss points.

- Every distinct-count curve (distinct documents, unique n-grams, unique length-L windows) of
  every set: U = c D^gamma by log-log OLS with a bootstrap CI (fit_powerlaw), compared with
  Kausik's N ~ D^0.44 (band 0.44-0.72; the proxy U_L(D) of ALGORITHMS.md 4.1) and, for
  unigrams, with Heaps' law V = K D^beta.
- A loss CSV (columns N/params, D/tokens, loss): the Chinchilla form (fit_chinchilla) when N
  varies, and Kaplan L(D) = (D_c/D)^alpha_D by log-log OLS on the points of the largest N.
- Muennighoff's effective data D' for planned epochs over the unique tokens (from the stats:
  tokens of the final set's distinct documents, or --unique-tokens).
Writes fit.json, fit.csv and PNG plots.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from pipeline.errors import InputError
from pipeline.io.atomic import atomic_write, write_json_atomic
from pipeline.stats import laws
from pipeline.stats.fit_chinchilla import ChinchillaFit, fit_chinchilla
from pipeline.stats.fit_powerlaw import PowerLawFit, fit_power_law

CURVE_METRICS = ("distinct_documents", "unique_ngrams", "unique_windows")
DEFAULT_EPOCHS = (1, 2, 4, 8, 16, 40)
_N_NAMES = ("n", "params", "parameters", "n_params", "model_size", "non_embedding_params")
_D_NAMES = ("d", "tokens", "data", "n_tokens", "train_tokens", "d_tokens")
_L_NAMES = ("loss", "l", "eval_loss", "val_loss", "test_loss")


@dataclass
class FitOptions:
    """Options of `curate fit` (see the CLI)."""

    stats: tuple[str, ...] = ()
    output: str | None = None
    loss_csv: str | None = None
    epochs: tuple[float, ...] = ()
    unique_tokens: float | None = None
    params: float | None = None
    bootstrap: int = 1000
    chinchilla_bootstrap: int = 200
    starts: int | None = 20
    seed: int = 0
    min_docs: int = 10
    plots: bool = True


@dataclass
class CurveFit:
    """One fitted curve and where it came from."""

    stage: str
    tokenizer: str
    metric: str
    n: int | None
    fit: PowerLawFit
    x: np.ndarray
    y: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        g, (lo, hi) = self.fit.gamma, self.fit.gamma_ci
        band = laws.KAUSIK["band"]
        out: dict[str, Any] = {
            "stage": self.stage,
            "tokenizer": self.tokenizer,
            "metric": self.metric,
            "n": self.n,
            **self.fit.to_dict(),
            "kausik": {
                "reference_gamma": laws.KAUSIK["gamma"],
                "band": list(band),
                "gamma_in_band": band[0] <= g <= band[1],
                "ci_overlaps_band": bool(lo <= band[1] and hi >= band[0]),
                "ci_contains_reference": bool(lo <= laws.KAUSIK["gamma"] <= hi),
            },
        }
        if self.metric == "unique_ngrams" and self.n == 1:
            rng = laws.HEAPS_BETA_RANGE
            out["heaps"] = {
                "K": self.fit.c,
                "beta": g,
                "beta_ci95": [lo, hi],
                "typical_beta_range": list(rng),
                "in_typical_range": rng[0] <= g <= rng[1],
            }
        return out


def load_records(paths: tuple[str, ...]) -> list[dict[str, Any]]:
    """Records of one or more stats outputs (a directory holding stats.jsonl, or the file)."""
    records: list[dict[str, Any]] = []
    for p in paths:
        fs, path = fsspec.core.url_to_fs(p)
        if fs.isdir(path):
            path = f"{path.rstrip('/')}/stats.jsonl"
        if not fs.exists(path):
            raise InputError(f"{p}: no stats.jsonl (make one with `curate stats`)")
        lineno = 0
        try:
            with fs.open(path, "r", encoding="utf-8") as f:
                for line in f:
                    lineno += 1
                    if line.strip():
                        record = json.loads(line)
                        if not isinstance(record, dict):
                            raise ValueError("not a JSON object")
                        records.append(record)
        except UnicodeDecodeError as exc:
            raise InputError(f"{p}: stats.jsonl is not UTF-8 text ({exc})") from exc
        except ValueError as exc:
            raise InputError(f"{p}: line {lineno} is not a stats record: {exc}") from exc
    return records


def curve_fits(records: list[dict[str, Any]], opts: FitOptions) -> list[CurveFit]:
    """Fit every distinct-count curve with at least 3 subsample sizes of >= min_docs docs."""
    curves: dict[tuple, list[tuple[float, float, Any]]] = {}
    for r in records:
        if r.get("metric") not in CURVE_METRICS or r.get("D_tokens", 0) <= 0:
            continue
        if r.get("value", 0) <= 0 or r.get("documents", opts.min_docs) < opts.min_docs:
            continue
        key = (r["stage"], r["tokenizer"], r["metric"], r["n"])
        curves.setdefault(key, []).append((r["D_tokens"], r["value"], r.get("seed")))
    out = []
    for (stage, tok, metric, n), pts in curves.items():
        x = np.array([p[0] for p in pts], dtype=float)
        y = np.array([p[1] for p in pts], dtype=float)
        seeds = np.array([str(p[2]) for p in pts])
        if np.unique(x).size < 3:
            continue
        groups = seeds if np.unique(seeds).size > 1 else None
        fit = fit_power_law(x, y, opts.bootstrap, opts.seed, groups)
        out.append(CurveFit(stage, tok, metric, n, fit, x, y))
    return out


def read_loss_csv(path: str) -> dict[str, np.ndarray]:
    """Columns N (optional), D and loss of a CSV, matched by common names (case-insensitive)."""
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        raise InputError(f"--loss-csv {path}: no such file")
    try:
        with fs.open(p, "r", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError, csv.Error) as exc:  # not UTF-8 text, a broken quote
        raise InputError(f"--loss-csv {path}: not a readable CSV file: {exc}") from exc
    if not rows:
        raise InputError(f"--loss-csv {path}: no rows")
    cols = {c.strip().lower(): c for c in rows[0]}

    def column(names: tuple[str, ...], required: bool) -> np.ndarray | None:
        for name in names:
            if name in cols:
                try:
                    return np.array([float(r[cols[name]]) for r in rows])
                except (TypeError, ValueError) as exc:
                    raise InputError(f"--loss-csv {path}: column {name!r}: {exc}") from exc
        if required:
            raise InputError(
                f"--loss-csv {path}: needs a column named one of {list(names)} (found {list(cols)})"
            )
        return None

    out = {"D": column(_D_NAMES, True), "loss": column(_L_NAMES, True)}
    n = column(_N_NAMES, False)
    if n is not None:
        out["N"] = n
    return out  # type: ignore[return-value]


def kaplan_fit(D: np.ndarray, L: np.ndarray, opts: FitOptions) -> dict[str, Any]:
    """L(D) = (D_c/D)^alpha_D: log-log OLS (slope -alpha_D), bootstrap CI on alpha_D."""
    fit = fit_power_law(D, L, opts.bootstrap, opts.seed)
    alpha = -fit.gamma
    d_c = fit.c ** (1 / alpha) if alpha > 0 else float("nan")
    lo, hi = fit.gamma_ci
    return {
        "alpha_D": alpha,
        "alpha_D_ci95": [-hi, -lo],
        "D_c": d_c,
        "r2": fit.r2,
        "n_points": fit.n_points,
        "reference": {"alpha_D": laws.KAPLAN["alpha_D"], "D_c": laws.KAPLAN["D_c"]},
        "_fit": fit,
    }


def unique_tokens_of(records: list[dict[str, Any]]) -> tuple[float | None, str]:
    """Unique tokens U_D of the final set: the tokens of its distinct documents when known."""
    full = [r for r in records if r.get("k") == 0]
    if not full:
        return None, "no stats"
    stages = list(dict.fromkeys(r["stage"] for r in full))
    final = stages[-1]
    tok = [r for r in full if r["stage"] == final and r["metric"] == "tokens"]
    if not tok:
        return None, "no token counts"
    uniq = [
        r["value"]
        for r in full
        if r["stage"] == final and r["metric"] == "distinct_document_tokens"
    ]
    if uniq:
        return float(uniq[0]), f"tokens of the distinct documents of set {final!r}"
    return float(tok[0]["value"]), f"all tokens of set {final!r} (no exact duplicate count)"


def muennighoff_table(u: float, epochs: tuple[float, ...], params: float | None) -> list[dict]:
    """D' (and N', predicted loss with the paper's constants when N is given) per epoch count."""
    rows = []
    m = laws.MUENNIGHOFF
    for e in sorted({float(x) for x in (*epochs, *DEFAULT_EPOCHS)}):
        d = e * u
        d_eff = laws.effective_data(u, e)
        row: dict[str, Any] = {
            "epochs": e,
            "D_tokens": d,
            "D_effective": d_eff,
            "value_per_token": d_eff / d if d else float("nan"),
        }
        if params:
            n_eff = laws.effective_params(params, u)
            row["N_effective"] = n_eff
            row["loss_predicted"] = float(laws.chinchilla_loss(n_eff, d_eff, m))
            row["loss_if_unique"] = float(laws.chinchilla_loss(params, d, m))
        rows.append(row)
    return rows


def _clean(v: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items() if not str(k).startswith("_")}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def run_fit(opts: FitOptions) -> dict[str, Any]:
    """Do every fit the inputs allow; write fit.json, fit.csv and plots. Returns the result."""
    if not opts.stats and not opts.loss_csv:
        raise InputError("give a stats output (curate stats) and/or --loss-csv")
    records = load_records(opts.stats) if opts.stats else []
    output = opts.output or (f"{opts.stats[0].rstrip('/')}/fit" if opts.stats else "curate-fit")
    result: dict[str, Any] = {"inputs": {"stats": list(opts.stats), "loss_csv": opts.loss_csv}}
    fits = curve_fits(records, opts)
    result["power_laws"] = [f.to_dict() for f in fits]
    if opts.stats and not fits:
        result["power_laws_note"] = (
            f"no curve had 3 subsample sizes with >= {opts.min_docs} documents; "
            "use more data, more --subsamples in `curate stats`, or a lower --min-docs"
        )
    u, how = (
        (opts.unique_tokens, "--unique-tokens") if opts.unique_tokens else unique_tokens_of(records)
    )
    if u:
        result["muennighoff"] = {
            "unique_tokens": u,
            "unique_tokens_from": how,
            "constants": laws.MUENNIGHOFF,
            "params": opts.params,
            "table": muennighoff_table(u, opts.epochs, opts.params),
        }
    chin: ChinchillaFit | None = None
    kap: dict[str, Any] | None = None
    loss: dict[str, np.ndarray] | None = None
    if opts.loss_csv:
        loss = read_loss_csv(opts.loss_csv)
        chin, kap = _loss_fits(loss, opts, result)
    result["warnings"] = fit_warnings(result)
    fs, root = fsspec.core.url_to_fs(output)
    fs.makedirs(root, exist_ok=True)
    write_json_atomic(fs, f"{root}/fit.json", _clean(result), indent=2)
    _write_csv(fs, f"{root}/fit.csv", fits)
    paths = {"json": f"{output}/fit.json", "csv": f"{output}/fit.csv"}
    if opts.plots:
        from pipeline.stats.plots_fit import plot_fits

        paths |= plot_fits(fits, chin, kap, loss, result.get("muennighoff"), output)
    result["paths"] = paths
    return result


MIN_POINTS = 5  # fewer points than this: a fit is shown with a warning


def fit_warnings(result: dict[str, Any]) -> list[str]:
    """One line per fit too weak to rely on: fewer than MIN_POINTS points, or a 95% interval
    wider than the estimate itself."""
    out = []
    for f in result.get("power_laws", []):
        what = f"{f['stage']} {f['metric']}" + (f" n={f['n']}" if f["n"] is not None else "")
        out += _weak(what, f["n_points"], {"gamma": (f["gamma"], f["gamma_ci95"])})
    if "chinchilla" in result:
        c = result["chinchilla"]
        params = {k: (v, c["ci95"][k]) for k, v in c["params"].items() if k in c["ci95"]}
        out += _weak("chinchilla", c["n_points"], params)
    return out


def _weak(what: str, n_points: int, estimates: dict[str, tuple[float, list[float]]]) -> list[str]:
    out = []
    if n_points < MIN_POINTS:
        out.append(
            f"{what}: fitted on {n_points} points (fewer than {MIN_POINTS}); indicative only"
        )
    for name, (value, (lo, hi)) in estimates.items():
        if np.isfinite(lo) and np.isfinite(hi) and hi - lo > abs(value):
            out.append(
                f"{what}: the 95% interval of {name} [{lo:.4g}, {hi:.4g}] is wider than the "
                f"estimate {value:.4g}; more points or a wider range of D would narrow it"
            )
    return out


def _loss_fits(
    loss: dict[str, np.ndarray], opts: FitOptions, result: dict[str, Any]
) -> tuple[ChinchillaFit | None, dict[str, Any] | None]:
    D, L = loss["D"], loss["loss"]
    N = loss.get("N")
    chin = None
    if N is not None and np.unique(N).size >= 2:
        try:
            chin = fit_chinchilla(
                N, D, L, starts=opts.starts, bootstrap=opts.chinchilla_bootstrap, seed=opts.seed
            )
        except ValueError as exc:
            raise InputError(f"--loss-csv: {exc}") from exc
        p = chin.params
        opt = laws.compute_optimal(6e21, p)
        result["chinchilla"] = {
            **chin.to_dict(),
            "compute_optimal_exponents": {"a": opt["a"], "b": opt["b"], "G": opt["G"]},
            "published": laws.CHINCHILLA,
            "epoch_refit": laws.CHINCHILLA_EPOCH,
        }
        sel = np.equal(N, N.max())
    else:
        sel = np.ones(D.size, dtype=bool)
    kap = None
    if np.unique(D[sel]).size >= 3:
        try:
            kap = kaplan_fit(D[sel], L[sel], opts)
        except ValueError as exc:
            raise InputError(f"--loss-csv: {exc}") from exc
        kap["points_used"] = "largest N" if N is not None else "all"
        result["kaplan"] = kap
    return chin, kap


def _write_csv(fs: Any, path: str, fits: list[CurveFit]) -> None:
    with atomic_write(fs, path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "stage",
                "tokenizer",
                "metric",
                "n",
                "gamma",
                "gamma_lo",
                "gamma_hi",
                "c",
                "r2",
                "n_points",
                "D_min",
                "D_max",
                "kausik_in_band",
                "kausik_ci_overlaps",
            ]
        )
        for cf in fits:
            d = cf.to_dict()
            w.writerow(
                [
                    cf.stage,
                    cf.tokenizer,
                    cf.metric,
                    cf.n,
                    f"{cf.fit.gamma:.6g}",
                    f"{cf.fit.gamma_ci[0]:.6g}",
                    f"{cf.fit.gamma_ci[1]:.6g}",
                    f"{cf.fit.c:.6g}",
                    f"{cf.fit.r2:.6g}",
                    cf.fit.n_points,
                    cf.fit.x_range[0],
                    cf.fit.x_range[1],
                    d["kausik"]["gamma_in_band"],
                    d["kausik"]["ci_overlaps_band"],
                ]
            )
