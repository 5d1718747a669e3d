"""Benchmark of minhash_dedup's phase 3: single-task vs distributed connected components, per-task
peak RSS and wall per phase, on a candidate-edge graph with MinHash LSH's structure.

The graph is what phase 2 writes for N documents: a fraction `--dup-rate` of documents are copies
in clusters with Zipf sizes (exponent 2, capped at `--max-cluster`), and, per band, each member of
a cluster lands in the cluster's bucket with probability `--band-hit` (an edited copy misses some
bands) and gets the star edge (member, smallest member of that bucket). Edges are deduplicated and
split over P edge files as phase 2 leaves them. Both modes then run the stage's own phase-3 code
(`_components`) with keep: first; every task runs in a fresh process (a forkserver pool with one
task per child), whose peak RSS (ru_maxrss) is reported with the empty worker's RSS; a phase's
wall includes starting its processes (~1 s each here), `task_s` is the tasks' own time.

    .venv/bin/python scripts/bench_components.py --docs 1000000 10000000 --memory 256MiB
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.dedup.components_distributed import plan  # noqa: E402
from pipeline.dedup.minhash import MinHashDedupConfig, _components  # noqa: E402
from pipeline.runner.progress import phase_name  # noqa: E402

SHARD_DOCS = 100_000
BANDS = 14


def candidate_edges(
    docs: int, dup_rate: float, band_hit: float, max_cluster: int, seed: int
) -> np.ndarray:
    """(n, 2) int64 star edges (member, bucket's smallest member) of a MinHash-like graph."""
    rng = np.random.default_rng(seed)
    want = int(docs * dup_rate)
    sizes: list[np.ndarray] = []
    total = 0
    while total < want:
        s = np.minimum(rng.zipf(2.0, 100_000) + 1, max_cluster)
        sizes.append(s)
        total += int(s.sum())
    size = np.concatenate(sizes)
    size = size[: int(np.searchsorted(np.cumsum(size), want)) + 1]
    members = rng.choice(docs, int(size.sum()), replace=False).astype(np.int64)
    cluster = np.repeat(np.arange(len(size)), size)
    codes = []  # edge (a, b) of document numbers as a * docs + b: one int64, a fast unique
    for _ in range(BANDS):
        hit = rng.random(len(members)) < band_hit
        smallest = np.full(len(size), np.iinfo(np.int64).max)
        np.minimum.at(smallest, cluster[hit], members[hit])
        src, dst = members[hit], smallest[cluster[hit]]
        codes.append(src[src != dst] * docs + dst[src != dst])
    code = np.unique(np.concatenate(codes))
    del codes
    src, dst = code // docs, code % docs
    return np.stack([((d // SHARD_DOCS) << 32) | (d % SHARD_DOCS) for d in (src, dst)], axis=1)


def _measured(fn: Callable[[Any], Any], item: Any) -> tuple[Any, int, int, float, float]:
    """fn(item) in this worker: (result, peak RSS, RSS before, wall seconds, CPU seconds)."""
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(item)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return out, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, base, wall, cpu


class MeasuredContext:
    """A GlobalContext whose map runs every task in a fresh process and records, per phase (named
    as the run log names it), the tasks, the largest peak RSS and the phase's wall time."""

    def __init__(self, work_dir: str, num_partitions: int, workers: int) -> None:
        import fsspec

        self.fs, self.work_dir = fsspec.core.url_to_fs(work_dir)
        self.num_partitions = num_partitions
        self.workers = workers
        self.phases: dict[str, dict[str, float]] = defaultdict(
            lambda: {
                "calls": 0,
                "tasks": 0,
                "wall_s": 0.0,
                "task_s_sum": 0.0,
                "task_s_max": 0.0,
                "task_cpu_s": 0.0,
                "peak_rss": 0,
                "worker_rss": 0,
            }
        )

    def map(self, fn: Callable, items: Sequence[Any], *, num_gpus: float | None = 0) -> list:
        name = phase_name(fn)
        t0 = time.perf_counter()
        mp = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(self.workers, mp_context=mp, max_tasks_per_child=1) as pool:
            got = list(pool.map(_measured, [fn] * len(items), items))
        phase = self.phases[name]
        phase["calls"] += 1
        phase["tasks"] += len(items)
        phase["wall_s"] += time.perf_counter() - t0
        for _, peak, base, wall, cpu in got:
            phase["peak_rss"] = max(phase["peak_rss"], peak)
            phase["worker_rss"] = max(phase["worker_rss"], base)
            phase["task_s_sum"] += wall
            phase["task_cpu_s"] += cpu
            phase["task_s_max"] = max(phase["task_s_max"], wall)
        return [g[0] for g in got]


def run_mode(
    pairs: np.ndarray, mode: str, memory: int, partitions: int, workers: int, root: Path
) -> dict:
    """Phase 3 over `pairs` (written as phase 2 would) in one mode: per-phase figures."""
    work = root / mode
    shutil.rmtree(work, ignore_errors=True)
    (work / "edges").mkdir(parents=True)
    for p, chunk in enumerate(np.array_split(pairs, partitions)):
        np.save(work / "edges" / f"part-{p:05d}.npy", chunk)
    shard_ids = list(range(int(pairs.max() >> 32) + 1 if len(pairs) else 0))
    ctx = MeasuredContext(str(work), partitions, workers)
    cfg = MinHashDedupConfig(components=mode, components_memory=memory)
    t0 = time.perf_counter()
    summary = _components(ctx, cfg, shard_ids, len(pairs), partitions)
    wall = time.perf_counter() - t0
    disk = sum(f.stat().st_size for f in work.rglob("*") if f.is_file())
    return {
        "wall_s": round(wall, 2),
        "clusters": summary["clusters"],
        "documents_in_clusters": summary["documents_in_clusters"],
        "largest_cluster": summary["largest_cluster"],
        "rounds": summary["components_rounds"],
        "partitions": summary["components_partitions"],
        "work_bytes_at_end": disk,
        "phases": {
            k: {
                **v,
                **{t: round(v[t], 2) for t in ("wall_s", "task_s_sum", "task_s_max", "task_cpu_s")},
            }
            for k, v in sorted(ctx.phases.items())
        },
    }


DUPS = np.dtype([("f1", "<u4"), ("d1", "<u4"), ("f2", "<u4"), ("d2", "<u4")])


def write_dups(pairs: np.ndarray, folder: Path) -> None:
    """The (member, smallest member) key pairs as MinhashDedupBuckets' output: one
    `{band:05d}_00.dups` file per band, records (file, doc, file, doc) of little-endian uint32."""
    folder.mkdir(parents=True, exist_ok=True)
    rec = np.empty(len(pairs), dtype=DUPS)
    for (file, doc), column in (("f1", "d1"), 1), (("f2", "d2"), 0):
        rec[file], rec[doc] = pairs[:, column] >> 32, pairs[:, column] & 0xFFFFFFFF
    for band, chunk in enumerate(np.array_split(rec, BANDS)):
        chunk.tofile(folder / f"{band:05d}_00.dups")


def run_datatrove(pairs: np.ndarray, root: Path) -> dict:
    """datatrove's MinhashDedupCluster (one task, its defaults) over the same edges (`write_dups`:
    file = shard, doc = row), measured as a process tree (scripts/bench/measure.py)."""
    from scripts.bench import peer

    work = root / "datatrove"
    shutil.rmtree(work, ignore_errors=True)
    write_dups(pairs, work / "dups")
    peer.ensure_venv()
    spec = {
        "mode": "cluster",
        "input": str(work / "dups"),
        "output": str(work / "remove"),
        "buckets": BANDS,
        "tasks": 1,
        "workers": 1,
        "logs": str(work / "logs"),
    }
    measured = peer.run(spec, work)
    removed = sum(f.stat().st_size for f in (work / "remove").glob("*.remove")) // 4
    steps = (measured["result"] or {}).get("steps", [])
    return {
        "wall_s": round(measured["wall_s"], 2),
        "cpu_s": round(measured["cpu_s"], 2),
        "peak_rss_mib": round(measured["peak_rss_mib"], 1),
        "removed": int(removed),
        "step_stats": steps[0]["stats"] if steps else {},
        "step_time": steps[0]["time"] if steps else {},
    }


def same_clusters(root: Path) -> bool:
    """The per-shard cluster files of both modes hold the same arrays."""
    single = sorted((root / "single" / "clusters").glob("*.npz"))
    dist = sorted((root / "distributed" / "clusters").glob("*.npz"))
    if [p.name for p in single] != [p.name for p in dist]:
        return False
    for a, b in zip(single, dist, strict=True):
        da, db = np.load(a), np.load(b)
        if any(not np.array_equal(da[k], db[k]) for k in ("rows", "cluster_id", "size", "is_rep")):
            return False
    return True


def parse_bytes(text: str) -> int:
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, scale in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * scale)
    return int(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--dup-rate", type=float, default=0.3, help="fraction of documents clustered")
    ap.add_argument("--band-hit", type=float, default=0.8, help="P(a copy shares a band bucket)")
    ap.add_argument("--max-cluster", type=int, default=100_000)
    ap.add_argument("--memory", default="256MiB", help="components_memory of the distributed run")
    ap.add_argument("--partitions", type=int, default=8, help="P: edge files, fewest tasks")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--modes", nargs="+", default=["single", "distributed"], help="and/or datatrove"
    )
    ap.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()
    memory = parse_bytes(args.memory)
    results = []
    for docs in args.docs:
        root = Path(args.work or tempfile.mkdtemp(prefix="bench-components-")) / str(docs)
        t0 = time.perf_counter()
        pairs = candidate_edges(docs, args.dup_rate, args.band_hit, args.max_cluster, seed=1)
        row: dict[str, Any] = {
            "docs": docs,
            "edges": len(pairs),
            "generate_s": round(time.perf_counter() - t0, 1),
            "memory": memory,
            "auto_picks": plan(len(pairs), "auto", memory, args.partitions),
        }
        for mode in args.modes:
            if mode == "datatrove":
                row[mode] = run_datatrove(pairs, root)
            else:
                row[mode] = run_mode(pairs, mode, memory, args.partitions, args.workers, root)
            print(json.dumps({"docs": docs, mode: row[mode]}), flush=True)
        if {"single", "distributed"} <= set(args.modes):
            row["identical_clusters"] = same_clusters(root)
        if "datatrove" in args.modes and "single" in args.modes:  # it removes all but one
            ours = row["single"]["documents_in_clusters"] - row["single"]["clusters"]
            row["datatrove_removes_as_many"] = row["datatrove"]["removed"] == ours
        row["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in args.modes}), flush=True)
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
