"""Is a refinedweb run on the shared WARCs the same on a loaded machine as on an idle one?

Runs the refinedweb recipe (configs/refinedweb.yaml) on ../shared/data/warc/*.warc.gz twice: first as is,
then with every core saturated by busy-loop processes (one per CPU, started before the run and
killed after it). Compares the outputs: the ids and text hashes of data/, the (id, reason) pairs
under rejected/, and the extract stage's time-limit figures in stats.json (`extract_timeout`
rejections, `pages_near_time_limit`). Prints the figures; exits 0 when the outputs are identical.

The extractor's limit counts a page's CPU time (pipeline/stages/sandbox.py), so the busy loops
slow the run down without changing which pages time out. `--timeout-s` overrides
extract.timeout_s to put pages near the limit on purpose.

    .venv/bin/python scripts/check_load_repro.py --workdir /tmp/load-repro
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "refinedweb.yaml"
WARCS = REPO.parent / "shared" / "data" / "warc"
BUSY_LOOP = "while True: pass"


def _recipe(workdir: Path, timeout_s: float | None) -> Path:
    """The refinedweb recipe, with extract.timeout_s overridden when asked."""
    recipe = yaml.safe_load(RECIPE.read_text())
    if timeout_s is not None:
        for stage in recipe["stages"]:
            if stage["stage"] == "extract":
                stage["timeout_s"] = timeout_s
    path = workdir / "refinedweb.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _run(recipe: Path, out: Path, executor: str) -> float:
    """`curate run` into `out` (this checkout's code); returns its wall seconds."""
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "run",
        str(recipe),
        "--input",
        str(WARCS / "*.warc.gz"),
    ]
    cmd += ["--output", str(out), "--executor", executor, "--overwrite"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _busy_loops(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]


def _stop(procs: list[subprocess.Popen[bytes]]) -> float:
    """Kill the busy loops (by their own pids); returns the CPU seconds they used."""
    import psutil

    cpu = 0.0
    for proc in procs:
        try:
            t = psutil.Process(proc.pid).cpu_times()
            cpu += t.user + t.system
        except psutil.Error:
            pass
        proc.kill()
        proc.wait()
    return cpu


def _summary(out: Path) -> dict[str, Any]:
    """What must not change with load, and the figures to print."""
    data = ds.dataset(str(out / "data"), format="parquet").to_table(columns=["id", "text"])
    kept = sorted(
        (i, hashlib.sha256(t.encode("utf-8")).hexdigest())
        for i, t in zip(data.column("id").to_pylist(), data.column("text").to_pylist(), strict=True)
    )
    rejected: list[tuple[str, str]] = []
    for folder in sorted((out / "rejected").iterdir()):
        table = ds.dataset(str(folder), format="parquet").to_table(columns=["id", "reason"])
        ids, why = table.column("id").to_pylist(), table.column("reason").to_pylist()
        rejected += zip(ids, why, strict=True)
    stats = json.loads((out / "stats.json").read_text())
    (extract,) = [s for s in stats["stages"] if s["name"] == "extract"]
    return {
        "kept": kept,
        "rejected": sorted(rejected),
        "docs_in": extract["docs_in"],
        "timeouts": extract["removed_by_reason"].get("extract_timeout", 0),
        "near_limit": extract.get("metrics", {}).get("pages_near_time_limit", 0),
        "backstops": extract.get("metrics", {}).get("time_limit_wall_backstops", 0),
        "extract_cpu_s": extract["cpu_s"],
        "extract_wall_s": extract["wall_s"],
        "warnings": extract.get("warnings", []),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="scratch directory (emptied)")
    parser.add_argument("--executor", choices=["local", "ray"], default="local")
    parser.add_argument("--timeout-s", type=float, default=None, help="override extract.timeout_s")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy-loop processes")
    args = parser.parse_args(argv)
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True)
    recipe = _recipe(args.workdir, args.timeout_s)

    idle_s = _run(recipe, args.workdir / "unloaded", args.executor)
    procs = _busy_loops(args.busy)
    try:
        loaded_s = _run(recipe, args.workdir / "loaded", args.executor)
    finally:
        busy_cpu = _stop(procs)
    a, b = _summary(args.workdir / "unloaded"), _summary(args.workdir / "loaded")

    same_kept = a["kept"] == b["kept"]
    same_rejected = a["rejected"] == b["rejected"]
    reasons = Counter(r for _, r in a["rejected"])
    print(f"recipe: {RECIPE.name}, extract.timeout_s: {args.timeout_s or 'as in the recipe'}")
    print(f"input: {WARCS} ({a['docs_in']} pages reach extract), executor: {args.executor}")
    print(f"busy loops while loaded: {args.busy}, {busy_cpu:.0f} CPU s used by them")
    print(f"{'':28}{'unloaded':>12}{'loaded':>12}")
    rows = [
        ("run wall s", f"{idle_s:.1f}", f"{loaded_s:.1f}"),
        ("extract wall s", f"{a['extract_wall_s']:.1f}", f"{b['extract_wall_s']:.1f}"),
        ("extract CPU s", f"{a['extract_cpu_s']:.1f}", f"{b['extract_cpu_s']:.1f}"),
        ("kept documents", len(a["kept"]), len(b["kept"])),
        ("rejected documents", len(a["rejected"]), len(b["rejected"])),
        ("extract_timeout", a["timeouts"], b["timeouts"]),
        ("pages_near_time_limit", a["near_limit"], b["near_limit"]),
        ("wall-clock backstops", a["backstops"], b["backstops"]),
    ]
    for name, x, y in rows:
        print(f"{name:28}{x!s:>12}{y!s:>12}")
    print(f"rejections by reason (unloaded): {dict(sorted(reasons.items()))}")
    for w in sorted(set(a["warnings"]) | set(b["warnings"])):
        print(f"warning: {w}")
    print(f"data/ ids and text hashes identical: {same_kept}")
    print(f"rejected/ ids and reasons identical: {same_rejected}")
    if not (same_kept and same_rejected):
        only_a = set(a["kept"]) ^ set(b["kept"])
        only_r = set(a["rejected"]) ^ set(b["rejected"])
        print(f"differences: {len(only_a)} kept entries, {len(only_r)} rejected entries")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
