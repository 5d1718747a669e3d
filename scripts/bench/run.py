"""Side by side with datatrove: the same inputs through both, same workers, alternating runs.

    .venv/bin/python -m scripts.bench [--workloads 1,2,3,4,5] [--workers 1] [--repeat 3] ...

Workloads: 1 WARC -> text (trafilatura), 2 the FineWeb filter chain on extracted text (with
per-document agreement), 3 MinHash signatures and dedup (scripts/bench_dedup.py's corpus and
sides), 4 the FineWeb map chain end to end on replicated WARCs, 5 our Ray runner against a plain
ProcessPoolExecutor (orchestration overhead). datatrove runs as its users run it: its own
LocalPipelineExecutor, its default settings and word tokenizer (spaCy's blank English pipeline;
`--peer-words default,whitespace` adds a labelled row with whitespace words); ours in workload 4
with the defaults a user gets (`executor: auto`). Prints a markdown table of medians and ratios
against datatrove's row (workload 5: the process pool's): speed = their wall / ours on the same
input (> 1: we are faster), CPU = their CPU s / ours (> 1: we need less), RSS = our peak / theirs
(< 1: we use less). Writes everything, raw runs included, to --json. datatrove runs in its own venv,
`.bench-venv-datatrove`, created on first use (see peer.py). Workload 3 always runs one worker
per side (bench_dedup.py's sides); the others use --workers on both sides (ours: in-process with
1, Ray with more; datatrove: LocalPipelineExecutor with that many workers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

WORKLOADS = {
    1: "WARC -> text",
    2: "FineWeb filters",
    3: "MinHash dedup",
    4: "end to end",
    5: "orchestration",
}


def int_list(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]."""
    return [int(x) for x in text.split(",") if x.strip()]


def str_list(text: str) -> list[str]:
    """'default,whitespace' -> ['default', 'whitespace']."""
    return [x.strip() for x in text.split(",") if x.strip()]


def float_list(text: str) -> list[float]:
    """'0.1,1.0' -> [0.1, 1.0]."""
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workloads", type=int_list, default=[1, 2, 3, 4, 5], help="e.g. 1,2,4")
    parser.add_argument("--workers", type=int, default=1, help="workers on both sides")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per side")
    parser.add_argument("--filter-copies", type=int, default=10, help="workload 2 input copies")
    parser.add_argument(
        "--dedup-docs", type=int_list, default=[100_000, 1_000_000], help="workload 3 sizes"
    )
    parser.add_argument("--skip-1m", action="store_true", help="workload 3 without 1M docs")
    parser.add_argument(
        "--e2e-gb",
        type=float_list,
        default=[1.0],
        help="workload 4 input GiB (0: the shared WARCs as they are, 1,145 pages)",
    )
    parser.add_argument(
        "--peer-words",
        type=str_list,
        default=["default"],
        help="datatrove rows of workloads 2 and 4: its default word tokenizer (spaCy) and/or "
        "whitespace words (an extra row), e.g. default,whitespace",
    )
    parser.add_argument(
        "--ours-local",
        action="store_true",
        help="workload 4 adds a row of ours with `executor: local` (the default is auto)",
    )
    parser.add_argument(
        "--ours-cascade",
        action="store_true",
        help="workload 4 adds a row of ours with extract `backend: cascade` (FineWeb's is "
        "trafilatura)",
    )
    parser.add_argument(
        "--overhead-gb", type=float_list, default=[0.1, 1.0], help="workload 5 input GiB"
    )
    parser.add_argument(
        "--overhead-chain",
        choices=("light", "fineweb"),
        default="light",
        help="workload 5 stages: resiliparse extract + langid (light) or workload 4's chain",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: /tmp/bench-h-*")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", type=Path, default=None, help="default: /tmp/bench-h-*.json")
    args = parser.parse_args(argv)
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        parser.error(f"unknown workload(s) {bad}; choose from {sorted(WORKLOADS)}")
    from scripts.bench.workloads import PEER_WORDS

    odd = [w for w in args.peer_words if w not in PEER_WORDS]
    if odd or not args.peer_words:
        parser.error(f"--peer-words {odd or '(none)'}: choose from {', '.join(PEER_WORDS)}")
    if args.workers < 1 or args.repeat < 1:
        parser.error("--workers and --repeat must be >= 1")
    if args.skip_1m:
        args.dedup_docs = [n for n in args.dedup_docs if n < 1_000_000]
    if args.json is None:
        args.json = Path(tempfile.gettempdir()) / f"bench-h-{time.strftime('%Y%m%d-%H%M%S')}.json"
    return args


def ours_versions() -> dict[str, str]:
    pkgs = ("pipeline", "trafilatura", "lxml", "resiliparse", "ray", "pyarrow", "numba")
    return {p: version(p) for p in pkgs} | {"python": platform.python_version()}


def report(results: dict[str, Any]) -> str:
    """The markdown tables and agreement summaries of a finished run."""
    from scripts.bench.table import markdown, summary_markdown

    tables: dict[str, dict[str, Any]] = {}
    bases = {}
    for key, res in results["workloads"].items():
        tables[key] = res["rows"]
        if "signature_rows" in res:
            tables[f"{key} (signature phase)"] = res["signature_rows"]
        if key.startswith("5"):
            bases[key] = "process pool"
    date = time.strftime("%Y-%m-%d", time.gmtime())
    out = [markdown(tables, bases), "", summary_markdown(results["workloads"], date, bases), ""]
    for key, res in results["workloads"].items():
        out.append(f"{key} agreement: {json.dumps(res['agreement'], ensure_ascii=False)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from scripts.bench import peer, workloads

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-h-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    peer.ensure_venv()
    from pipeline.stages.langid import bundled_model_path

    ctx = workloads.Context(
        work,
        args.workers,
        args.repeat,
        str(bundled_model_path()),
        tuple(args.peer_words),
        args.ours_local,
        args.ours_cascade,
    )
    results: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_before": os.getloadavg(),
        "versions": {"ours": ours_versions(), "datatrove": peer.versions()},
        "workloads": {},
    }

    def save() -> None:
        args.json.write_text(json.dumps(results, indent=1, default=str))

    started = time.perf_counter()
    try:
        for w in args.workloads:
            if w == 1:
                results["workloads"]["1 extract"] = workloads.w1_extract(ctx)
            elif w == 2:
                key = f"2 filters x{args.filter_copies}"
                results["workloads"][key] = workloads.w2_filters(ctx, args.filter_copies)
            elif w == 3:
                for n in args.dedup_docs:
                    results["workloads"][f"3 minhash {n:,}"] = workloads.w3_dedup(ctx, n)
            elif w == 4:
                for gb in args.e2e_gb:
                    key = f"4 e2e {gb:g} GiB" if gb > 0 else "4 e2e shared WARCs"
                    results["workloads"][key] = workloads.w4_e2e(ctx, gb)
            elif w == 5:
                for gb in args.overhead_gb:
                    key = f"5 overhead {gb:g} GiB"
                    results["workloads"][key] = workloads.w5_overhead(ctx, gb, args.overhead_chain)
            save()
    finally:
        results["load_after"] = os.getloadavg()
        results["total_s"] = time.perf_counter() - started
        save()
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(report(results))
    print(f"\nresults: {args.json}", file=sys.stderr)
    return 0
