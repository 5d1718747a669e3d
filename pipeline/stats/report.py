"""Write a StatsResult: JSON-lines records (ALGORITHMS.md 4.2), summary, CSV curves, Markdown.

Every number is a record `{stage, source, tokenizer, metric, n, D_tokens, value, stderr, method,
seed, commit}` plus `k` (subsample level, D_k = D * 2^-k), `fraction` (2^-k) and `documents`
(documents of the set in D_k). `stage` names the last stage applied ("input" = before the first
stage; "data" for plain data); `D_tokens` counts tokens of the first tokenizer in that set and
subsample. Exact counts have stderr 0; HLL++ estimates carry value * 1.04 / sqrt(2^p).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from pipeline import __version__
from pipeline.io.atomic import atomic_write, write_json_atomic
from pipeline.io.pathnames import display_path, json_safe
from pipeline.stats.compute import StatsResult

RECORDS, SUMMARY, CURVES, REPORT = "stats.jsonl", "summary.json", "curves.csv", "report.md"
FIELDS = ("stage", "source", "tokenizer", "metric", "n", "D_tokens", "value", "stderr", "method")
FIELDS += ("seed", "commit")  # ALGORITHMS.md 4.2 order; extras (k, fraction, documents, ...) follow
CURVE_METRICS = ("distinct_documents", "unique_ngrams", "unique_windows")


def code_commit() -> str:
    """The git commit of this package's checkout (or the package version outside git)."""
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"v{__version__}"


def build_records(res: StatsResult) -> list[dict[str, Any]]:
    """All records of a result: totals and distinct counts per (set, k), extras at k = 0."""
    cfg, opts = res.config, res.options
    method = "hll++" if cfg.approx else "exact"
    primary = res.tokenizers[0]["name"]
    commit = code_commit()
    extra = (
        {"hll_precision": cfg.precision, "relative_stderr": round(res.stderr_rel, 6)}
        if cfg.approx
        else {"hash_bits": cfg.hash_bits}
    )
    out: list[dict[str, Any]] = []
    for s, stage in enumerate(res.source.sets):
        for k in range(cfg.levels):
            d_tokens = int(res.totals["tokens"][0, s, k])
            base = {
                "stage": stage,
                "source": "all",
                "tokenizer": primary,
                "D_tokens": d_tokens,
                "seed": opts.seed,
                "commit": commit,
                "k": k,
                "fraction": 2.0**-k,
                "documents": int(res.totals["documents"][s, k]),
            }

            rec = partial(_append, out, base)
            exact = {"method": "exact"}
            for key in ("documents", "documents_with_text", "characters", "bytes"):
                rec(key, None, int(res.totals[key][s, k]), **exact)
            for t, info in enumerate(res.tokenizers):
                rec(
                    "tokens",
                    None,
                    int(res.totals["tokens"][t, s, k]),
                    tokenizer=info["name"],
                    method="exact",
                )
            _distinct(res, s, k, rec, method, extra)
            if k == 0:
                _full_set(res, s, rec, extra)
    return out


def _append(
    out: list[dict[str, Any]],
    base: dict[str, Any],
    metric: str,
    n: int | None,
    value: float,
    err: float = 0.0,
    **kw: Any,
) -> None:
    """One record: the shared fields of its (set, k), then the metric's own."""
    rec = {**base, "metric": metric, "n": n, "value": value, "stderr": err, **kw}
    out.append({k: rec[k] for k in FIELDS if k in rec} | rec)


def _value(res: StatsResult, key: str, s: int, k: int) -> tuple[float, float]:
    v = res.distinct[key][s, k]
    if res.config.approx:
        return round(float(v), 1), round(float(v) * res.stderr_rel, 1)
    return int(v), 0.0


def _distinct(res: StatsResult, s: int, k: int, rec: Any, method: str, extra: dict) -> None:
    docs, err = _value(res, "docs", s, k)
    text_docs = int(res.totals["documents_with_text"][s, k])
    rec("distinct_documents", None, docs, err, method=method, **extra)
    if text_docs:
        rec(
            "duplicate_rate_documents",
            None,
            round(1 - docs / text_docs, 6),
            round(err / text_docs, 6),
            method=method,
            **extra,
        )
    tokens = int(res.totals["tokens"][0, s, k])
    if res.distinct_doc_tokens is not None and tokens:
        uniq = int(res.distinct_doc_tokens[s, k])
        rec("distinct_document_tokens", None, uniq, method=method, **extra)
        rec("duplicate_rate_tokens", None, round(1 - uniq / tokens, 6), method=method, **extra)
    for n in res.config.sizes:
        value, err = _value(res, str(n), s, k)
        for metric in _metrics_of(res, n):
            rec(metric, n, value, err, method=method, **extra)


def _metrics_of(res: StatsResult, n: int) -> list[str]:
    names = []
    if n in res.options.ngrams:
        names.append("unique_ngrams")
    if n in res.options.windows:
        names.append("unique_windows")
    return names


def _full_set(res: StatsResult, s: int, rec: Any, extra: dict) -> None:
    """Records only for the whole set (k = 0): repetition and cluster histograms."""
    tokens = int(res.totals["tokens"][0, s, 0])
    for n in res.config.sizes:
        key = str(n)
        if key in res.occurrences:
            occ = int(res.occurrences[key][s])
            rep = int(res.repeated_occurrences[key][s])
            rec("ngram_occurrences", n, occ, method="exact", **extra)
            if occ:
                rec("repeated_occurrence_fraction", n, round(rep / occ, 6), method="exact", **extra)
        if key in res.covered_tokens and tokens:
            frac = int(res.covered_tokens[key][s]) / tokens
            rec("repeated_token_fraction", n, round(frac, 6), method="exact", **extra)
    if res.exact_clusters is not None:
        for b, clusters in enumerate(res.exact_clusters[s].tolist()):
            if clusters:
                rec(
                    "exact_hash_cluster_hist",
                    1 << b,
                    clusters,
                    method="exact",
                    bin=[1 << b, (1 << (b + 1)) - 1],
                )
    for col, per_set in res.dedup_clusters.items():
        for b, (docs, clusters) in sorted(_dedup_hist(per_set, s).items()):
            rec(
                "cluster_size_hist",
                1 << b,
                clusters,
                method="exact",
                column=col,
                cluster_documents=docs,
                bin=[1 << b, (1 << (b + 1)) - 1],
            )


def _dedup_hist(per_set: list[dict[int, int]], s: int) -> dict[int, tuple[int, float]]:
    """Log2-binned (documents, clusters) by a dedup stage's cluster-size column, for set s.

    Sets up to the dedup stage's input hold every member (clusters = documents / size); later
    sets hold one kept member per cluster (clusters = documents). The dedup stage is the
    earliest set holding the column (its rejected copies carry it).
    """
    present = [r for r, d in enumerate(per_set) if d]
    if not present:
        return {}
    whole = s <= min(present)
    docs: dict[int, int] = {}
    for r in range(s, len(per_set)):
        for size, n in per_set[r].items():
            docs[size] = docs.get(size, 0) + n
    bins: dict[int, tuple[int, float]] = {}
    for size, n in docs.items():
        b = max(0, int(size).bit_length() - 1)
        d, c = bins.get(b, (0, 0.0))
        bins[b] = (d + n, c + (n / max(size, 1) if whole else n))
    return {b: (d, round(c, 3)) for b, (d, c) in bins.items()}


def summary(res: StatsResult, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A nested, human-readable digest: per set totals, distinct counts and curves."""
    cfg, opts = res.config, res.options
    sets = {}
    for name in res.source.sets:
        rows = [r for r in records if r["stage"] == name and r["k"] == 0]
        entry: dict[str, Any] = {}
        for r in rows:
            key = r["metric"] if r["n"] is None else f"{r['metric']}[{r['n']}]"
            if r["metric"] == "tokens":
                key = f"tokens[{r['tokenizer']}]"
            if r["metric"].endswith("_hist"):
                col = r.get("column", "exact_hash")
                entry.setdefault(f"{col}_hist", {})[f"{r['bin'][0]}-{r['bin'][1]}"] = r["value"]
                continue
            entry[key] = r["value"]
        sets[name] = entry
    total_tokens = int(res.totals["tokens"][0, 0, 0])
    cpu = res.cpu_s
    return {
        "input": res.source.root,
        "kind": res.source.kind,
        "sets": res.source.sets,
        "set_meaning": "stage = last stage applied; 'input' = documents entering the first stage",
        "tokenizers": res.tokenizers,
        "ngrams": list(opts.ngrams),
        "windows": list(opts.windows),
        "subsamples": {"levels": cfg.levels, "seed": cfg.seed, "fraction": "2^-k by id hash"},
        "method": (
            {
                "mode": "hll++",
                "precision": cfg.precision,
                "relative_stderr": res.stderr_rel,
                "note": "estimates are within +-1 stderr ~68% and +-3 stderr ~99.7% of the time",
            }
            if cfg.approx
            else {
                "mode": "exact",
                "hash_bits": cfg.hash_bits,
                "partitions": cfg.partitions,
                "expected_hash_collisions": _collisions(res),
            }
        ),
        "memory_bounds": res.bounds,
        "timings_s": {k: round(v, 3) for k, v in res.timings.items()},
        "phase1_cpu_s": round(cpu, 3),
        "tokens_per_cpu_second_phase1": round(total_tokens / cpu) if cpu else None,
        "errors": res.errors,
        "by_stage": sets,
    }


def _collisions(res: StatsResult) -> float:
    """Expected colliding pairs n^2 / 2^(b+1) for the largest distinct count."""
    n = max(float(v.max()) for v in res.distinct.values()) if res.distinct else 0.0
    return float(f"{n * n / 2 ** (res.config.hash_bits + 1):.3g}")


def write_outputs(res: StatsResult, output: str) -> dict[str, str]:
    """Write records, summary, curves and report (and plots); returns name -> path."""
    fs, root = fsspec.core.url_to_fs(output)
    fs.makedirs(root, exist_ok=True)
    records = json_safe(build_records(res))  # file names escaped: the files are UTF-8
    paths = {}
    with atomic_write(fs, f"{root}/{RECORDS}", "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    paths["records"] = f"{output}/{RECORDS}"
    digest = json_safe(summary(res, records))
    write_json_atomic(fs, f"{root}/{SUMMARY}", digest, indent=2, ensure_ascii=False)
    paths["summary"] = f"{output}/{SUMMARY}"
    with atomic_write(fs, f"{root}/{CURVES}", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "stage",
                "metric",
                "n",
                "k",
                "fraction",
                "documents",
                "D_tokens",
                "value",
                "stderr",
                "method",
            ]
        )
        for r in records:
            if r["metric"] in CURVE_METRICS:
                w.writerow(
                    [
                        r["stage"],
                        r["metric"],
                        r["n"],
                        r["k"],
                        r["fraction"],
                        r["documents"],
                        r["D_tokens"],
                        r["value"],
                        r["stderr"],
                        r["method"],
                    ]
                )
    paths["curves"] = f"{output}/{CURVES}"
    with atomic_write(fs, f"{root}/{REPORT}", "w") as f:
        f.write(markdown(res, records, digest))
    paths["report"] = f"{output}/{REPORT}"
    if res.options.plots:
        from pipeline.stats.plots import plot_stats

        paths |= plot_stats(records, res.source.sets, output)
    return paths


def _fmt(v: Any) -> str:
    if isinstance(v, float) and not math.isnan(v):
        return f"{v:.4g}" if abs(v) < 1 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def markdown(res: StatsResult, records: list[dict[str, Any]], digest: dict[str, Any]) -> str:
    """A short Markdown report: one table of the sets, then the method and its bounds."""
    sets = res.source.sets
    full = [r for r in records if r["k"] == 0]
    keys: list[tuple[str, int | None]] = []
    for r in full:
        key = (r["metric"], r["n"])
        if r["metric"].endswith("_hist") or r["metric"] == "tokens" or key in keys:
            continue
        keys.append(key)
    table = {(r["stage"], r["metric"], r["n"]): r["value"] for r in full}
    method = digest["method"]
    how = (
        f"HyperLogLog++ p={method['precision']}, relative stderr {method['relative_stderr']:.2%}"
        if method["mode"] == "hll++"
        else f"exact ({method['hash_bits']}-bit hashes, {method['partitions']} partitions)"
    )
    lines = [
        f"# Statistics of `{display_path(res.source.root)}`",
        "",
        f"Tokenizer for n-grams: `{res.tokenizers[0]['name']}` ({res.tokenizers[0]['kind']}). "
        f"Distinct counts: {how}. Nested subsamples D_k = D * 2^-k, k = 0..{res.config.max_level}"
        f", seed {res.config.seed}.",
        "",
        "| metric | " + " | ".join(sets) + " |",
        "|---|" + "---|" * len(sets),
    ]
    for t in res.tokenizers:
        vals = [
            _fmt(r["value"])
            for s in sets
            for r in full
            if r["stage"] == s and r["metric"] == "tokens" and r["tokenizer"] == t["name"]
        ]
        lines.append(f"| tokens ({t['name']}) | " + " | ".join(vals) + " |")
    for metric, n in keys:
        label = metric if n is None else f"{metric} n={n}"
        vals = [_fmt(table.get((s, metric, n), "")) for s in sets]
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    lines += ["", "Memory bounds:", ""]
    lines += [f"- {k}: {v}" for k, v in digest["memory_bounds"].items()]
    lines += ["", f"Timings (s): {digest['timings_s']}", ""]
    return "\n".join(lines)


def as_array(records: list[dict[str, Any]], **match: Any) -> np.ndarray:
    """(D_tokens, value) pairs of the records matching `match`, sorted by D_tokens."""
    rows = [
        (r["D_tokens"], r["value"]) for r in records if all(r.get(k) == v for k, v in match.items())
    ]
    return np.array(sorted(rows), dtype=float).reshape(-1, 2)
