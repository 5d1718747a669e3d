"""Where the Ray runner's time goes against a plain process pool (issue 24, workload 5).

    .venv/bin/python -m scripts.bench_ray --gb 0.2 --repeat 2 [--workers 2] [--chain light]
    .venv/bin/python -m scripts.bench_ray --gb 0.05 --sides ray,ray-nice15,pool --busy 1
    .venv/bin/python -m scripts.bench_ray --refinedweb auto,ray,ray@/tmp/before --repeat 2

Runs the same recipe over the same replicated WARCs (scripts/soak.py's pieces, as
scripts/bench's workload 5) two ways, alternating their order from one repeat to the next:
`ray` (`run_recipe` with `executor: ray`, the embedded Ray that `curate run` starts itself,
through pipeline.runner.executors.ensure_ray) and `pool` (the same RecipeJob / process_task on a
spawn ProcessPoolExecutor, scripts/bench/ours_driver.py). Each run is a fresh process tree,
sampled every 0.2 s: wall, CPU seconds of the whole tree split by process kind (driver, Ray
workers, raylet, GCS, Ray's agents and monitors, extractor sandboxes), each kind's niceness, and
the 1-minute load before and after. Side `ray-nice15` is `ray` with Ray's own worker niceness
(RAY_worker_niceness=15, what an embedded Ray ran before issue 24); `--busy N` runs N busy loops
at niceness 0 in this session beside every run (a machine doing other work). Prints one table row per run and the best-of-N summary; --json keeps it all.
With --refinedweb: `curate run configs/refinedweb.yaml` on the shared WARCs instead, per
executor (and checkout), with each global stage's prepare and phase wall times.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from scripts.bench.workloads import E2E_STAGES, LIGHT_STAGES, fineweb_stages, recipe, replicated

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

# Ray's two native daemons, by executable: the raylet's command line names default_worker.py
# (the command it starts workers with), so a substring match would call it a worker.
EXECUTABLES = {"raylet": "raylet", "gcs_server": "gcs"}
# (substring of the command line, kind), first match wins; the root process is "driver".
KINDS = (
    ("ray::DashboardAgent", "agents"),  # the agents retitle themselves once started
    ("ray::RuntimeEnvAgent", "agents"),
    ("ray::", "workers"),
    ("default_worker.py", "workers"),
    ("multiprocessing", "workers"),
    ("raylet", "raylet"),
    ("gcs_server", "gcs"),
    ("dashboard/agent.py", "agents"),
    ("runtime_env/agent", "agents"),
    ("log_monitor.py", "monitors"),
    ("autoscaler/_private/monitor.py", "monitors"),
    ("ray_reaper.py", "monitors"),
)


def kind_of(proc: psutil.Process, root: int) -> str:
    if proc.pid == root:
        return "driver"
    try:
        line = " ".join(proc.cmdline()) or proc.name()
    except psutil.Error:
        return "other"
    exe = os.path.basename(line.split()[0]) if line.strip() else ""
    if exe in EXECUTABLES:
        return EXECUTABLES[exe]
    for needle, kind in KINDS:
        if needle in line:
            return kind
    if "pipeline" in line:
        return "sandbox"
    scripts = [a for a in line.split() if a.endswith(".py")]
    return "other " + os.path.basename(scripts[0] if scripts else line.split()[0])


def run_side(
    spec: dict[str, Any], work: Path, repo: Path = REPO, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """ours_driver.py of the checkout `repo` on `spec` in a fresh process (`env` added to its
    environment), measured."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "spec.json").write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "scripts.bench.ours_driver", str(work / "spec.json")]
    res = measured(cmd, work, repo, env)
    res["result"] = next(
        json.loads(x) for x in reversed(res.pop("log").splitlines()) if x.startswith("{")
    )
    return res


def busy_share(output: Path, workers: int) -> float:
    """Share of the workers' time spent inside tasks over a run's task phase: the tasks' own wall
    times (their completion markers) over `workers` x the span from the first task's start to the
    last marker written. What is missing is time a worker waited for its next task (or the tail)."""
    spans, busy = [], 0.0
    for marker in (output / "_run" / "units").glob("seg*/*.json"):
        wall = float(json.loads(marker.read_text())["wall_s"])
        end = marker.stat().st_mtime
        spans += [end - wall, end]
        busy += wall
    return busy / (workers * (max(spans) - min(spans))) if spans else 0.0


def measured(
    cmd: list[str], work: Path, repo: Path, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """`cmd` run in the checkout `repo` as a fresh process tree, sampled every 0.2 s: wall,
    CPU s by process kind (Ray workers' split into main and other threads), the niceness seen
    per kind, load before and after, and its output (`log`)."""
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {"PYTHONPATH": str(repo), **(extra_env or {})}
    load0 = os.getloadavg()[0]
    cpu: dict[int, tuple[str, float]] = {}
    nice: dict[int, int] = {}
    threads: dict[tuple[int, int], float] = {}  # (worker pid, thread id) -> CPU s
    timeline: list[tuple[float, float, float]] = []  # (s since start, machine busy s, tree s)
    with open(work / "log.txt", "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=repo)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = [root]
            for p in procs:
                try:
                    t = p.cpu_times()
                    kind = cpu[p.pid][0] if p.pid in cpu else kind_of(p, root.pid)
                    cpu[p.pid] = (kind, t.user + t.system)
                    nice[p.pid] = p.nice()  # the last seen: a Ray worker renices itself
                    if kind == "workers":
                        for th in p.threads():
                            threads[p.pid, th.id] = th.user_time + th.system_time
                except psutil.Error:
                    continue
            busy = machine_busy_s()
            timeline.append((time.perf_counter() - t0, busy, sum(c for _, c in cpu.values())))
            time.sleep(0.2)
        wall = time.perf_counter() - t0
    text = (work / "log.txt").read_text(errors="replace")
    if proc.returncode:
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}:\n{text[-3000:]}")
    by_kind: dict[str, float] = {}
    for kind, seconds in cpu.values():
        by_kind[kind] = by_kind.get(kind, 0.0) + seconds
    main = sum(v for (pid, tid), v in threads.items() if pid == tid)
    by_kind["workers (main thread)"] = main
    by_kind["workers (other threads)"] = sum(threads.values()) - main
    return {
        "wall_s": wall,
        "cpu_s": sum(v for k, v in by_kind.items() if not k.startswith("workers (")),
        "cpu_by_kind": by_kind,
        "nice_by_kind": {
            k: sorted({nice[pid] for pid, (kind, _) in cpu.items() if kind == k and pid in nice})
            for k in {kind for kind, _ in cpu.values()}
        },
        "timeline": timeline,
        "load_before": load0,
        "load_after": os.getloadavg()[0],
        "log": text,
    }


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting on I/O) since boot:
    a run's timeline shows where cores went idle."""
    t = psutil.cpu_times()  # guest time is inside user and nice already
    return t.user + t.nice + t.system + t.irq + t.softirq + t.steal


@contextlib.contextmanager
def busy_loops(n: int) -> Iterator[None]:
    """`n` processes spinning at niceness 0 in this session for the block (other work on the
    machine, in the same scheduling autogroup as the measured run)."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def refinedweb(executor: str, out: Path, repo: Path) -> dict[str, Any]:
    """`curate run configs/refinedweb.yaml` of checkout `repo` on the shared WARCs with
    `executor`, measured; with each global stage's prepare wall time and its phases' (from the
    run log)."""
    warcs = sorted(str(p) for p in (SHARED / "warc").glob("*.warc.gz"))
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(repo / "configs" / "refinedweb.yaml")]
    cmd += ["--input", *warcs, "--output", str(out / "out"), "--executor", executor]
    cmd += ["--overwrite"]
    res = measured(cmd, out, repo)
    del res["log"]
    stats = json.loads((out / "out" / "stats.json").read_text())
    res["documents"] = stats["reader"]["documents"]
    res["output_docs"] = stats["output"]["documents"]
    res["prepare_wall_s"] = {k: v.get("prepare_wall_s") for k, v in stats["global"].items()}
    run_log = (out / "out" / "_run" / "run.log").read_text(errors="replace")
    res["phases"] = re.findall(
        r"global stage (\S+): phase \d+ \((\w+)\) done in ([\d.]+) s", run_log
    )
    return res


def main_refinedweb(args: argparse.Namespace) -> None:
    """The refinedweb rows: every side (EXECUTOR or EXECUTOR@CHECKOUT), alternating."""
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in args.refinedweb.split(",")}
    for r in range(args.repeat):
        for side in list(runs) if r % 2 == 0 else list(reversed(runs)):
            executor, _, repo = side.partition("@")
            out = args.workdir / f"refinedweb-{executor}{'-other' if repo else ''}"
            res = refinedweb(executor, out, Path(repo) if repo else REPO)
            runs[side].append(res)
            phases = ", ".join(f"{st} {ph} {s} s" for st, ph, s in res["phases"])
            print(
                f"{side} run {r + 1}: wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s, "
                f"docs {res['documents']} -> {res['output_docs']}, prepare "
                f"{res['prepare_wall_s']} ({phases}), load {res['load_before']:.2f} -> "
                f"{res['load_after']:.2f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chain", choices=("light", "fineweb"), default="light")
    parser.add_argument(
        "--sides",
        default="ray,pool",
        help="ray, ray-nice15 (Ray's own worker niceness), pool, and ray@PATH: the Ray side "
        "run from another checkout (a before)",
    )
    parser.add_argument("--busy", type=int, default=0, help="busy loops (nice 0) beside each run")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench-ray")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--refinedweb",
        default=None,
        help="instead: configs/refinedweb.yaml on the shared WARCs, sides EXECUTOR[@CHECKOUT],...",
    )
    args = parser.parse_args(argv)
    if args.refinedweb:
        main_refinedweb(args)
        return
    inputs = replicated(args.workdir / f"warcs-{args.gb:g}", args.gb)
    stages = LIGHT_STAGES if args.chain == "light" else fineweb_stages(E2E_STAGES)
    sides = args.sides.split(",")
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    for r in range(args.repeat):
        for side in sides if r % 2 == 0 else list(reversed(sides)):
            kind, _, repo = side.partition("@")
            out = args.workdir / f"out-{kind}{'-other' if repo else ''}"
            executor = "local" if kind == "pool" else "ray"
            rec = recipe(stages, inputs, out / "out", executor, args.workers)
            mode = "pool" if kind == "pool" else "run"
            spec = {"mode": mode, "recipe": rec, "executor": executor, "workers": args.workers}
            spec["ray_tmp"] = None  # run_recipe starts Ray itself, as `curate run` does
            env = {"RAY_worker_niceness": "15"} if kind == "ray-nice15" else {}
            with busy_loops(args.busy):
                res = run_side(spec, out / "run", Path(repo) if repo else REPO, env)
            res["busy_share"] = busy_share(out / "out", args.workers)
            runs[side].append(res)
            kinds = " ".join(f"{k} {v:.1f}" for k, v in sorted(res["cpu_by_kind"].items()))
            nices = " ".join(f"{k} {v}" for k, v in sorted(res["nice_by_kind"].items()))
            print(
                f"{side} run {r + 1}: wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s "
                f"({kinds}), docs {res['result']['documents']} kept "
                f"{res['result']['output_docs']}, workers busy {res['busy_share']:.1%}, "
                f"load {res['load_before']:.2f} -> "
                f"{res['load_after']:.2f}; niceness: {nices}",
                flush=True,
            )
    best = {s: min(rs, key=lambda x: x["wall_s"]) for s, rs in runs.items()}
    best_cpu = {s: min(x["cpu_s"] for x in rs) for s, rs in runs.items()}
    for s in sides:
        print(f"best {s}: wall {best[s]['wall_s']:.1f} s, CPU {best_cpu[s]:.1f} s")
    if "ray" in best and "pool" in best:
        print(
            f"ray speed vs pool (best wall): {best['pool']['wall_s'] / best['ray']['wall_s']:.3f}x;"
            f" CPU: {best_cpu['pool'] / best_cpu['ray']:.3f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
