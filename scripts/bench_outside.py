"""Every CPU second of a run, by process and by phase: where it goes outside the stages (issue 24).

    .venv/bin/python -m scripts.bench_outside --input /tmp/bench-w4/warcs-0.05 \
        --sides auto,local --repeat 2 [--keep-rejected] [--json out.json]
    .venv/bin/python -m scripts.bench_outside --sides auto@/tmp/before,auto,pool ...
    .venv/bin/python -m scripts.bench_outside --sides auto,auto+RAY_foo=1 ...

Runs workload 4's recipe (configs/fineweb.yaml's map stages after url_filter, as scripts/bench
runs them) over a folder of WARCs, each side a fresh process tree (scripts/bench/ours_driver.py),
the sides alternating from one repeat to the next. A side is KIND[@CHECKOUT][+VAR=VALUE...]:
KIND `auto` (the default executor: Ray above 16 MB), `ray`, `local` (one process) or `pool` (a
spawn process pool over the same tasks); CHECKOUT another worktree (a before); VAR=VALUE added
to the run's environment. Per run it records:

- per process: /proc/PID/stat utime+stime of every process of the tree, sampled every 0.1 s
  (the last sample before each exits), grouped by kind (driver, Ray workers, raylet, GCS, each
  other Ray process, extractor sandboxes), against the root's wait4 rusage (what was reaped);
- per phase inside the processes that run tasks (scripts/cpu_probe: reading, record conversion,
  decoding, each stage's score, the kernel around it, writing, committing, the marker);
- the stages' CPU from stats.json (extract's includes its sandbox's), documents in and kept,
  and the 1-minute load before and after.

Prints one block per run and the best-of-N per side; --json keeps everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.bench.workloads import E2E_STAGES, fineweb_stages, recipe

REPO = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).resolve().parent / "cpu_probe"
TICK = os.sysconf("SC_CLK_TCK")

# (substring of the command line, kind), first match wins; the root process is "driver".
KINDS = (
    ("ray::DashboardAgent", "dashboard agent"),
    ("ray::RuntimeEnvAgent", "runtime_env agent"),
    ("ray-dashboard-", "dashboard head"),
    ("dashboard/dashboard.py", "dashboard head"),
    ("ray::", "ray worker"),
    ("default_worker.py", "ray worker"),
    ("multiprocessing", "pool worker"),
    ("raylet", "raylet"),
    ("gcs_server", "gcs_server"),
    ("dashboard/agent.py", "dashboard agent"),
    ("runtime_env/agent", "runtime_env agent"),
    ("log_monitor.py", "log monitor"),
    ("autoscaler/_private/monitor.py", "autoscaler monitor"),
    ("ray_reaper.py", "reaper"),
    ("pipeline", "sandbox"),
)

# Kinds a process may leave by retitling itself (Ray's workers and agents) or exec-ing.
RETITLED = ("ray worker", "other python", "sandbox")


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime+stime in s) from /proc/PID/stat; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def main_thread_s(pid: int) -> float:
    """utime+stime of the process's main thread (its other threads: Ray's core worker)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def kind_of(pid: int, root: int, line: str) -> str:
    if pid == root:
        return "driver"
    for needle, kind in KINDS:
        if needle in line:
            return kind
    return "other " + os.path.basename(line.split()[0] if line else "?")


def measured(cmd: list[str], work: Path, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """`cmd` as a fresh process tree, every process's CPU sampled from /proc every 0.1 s."""
    load0 = os.getloadavg()[0]
    seen: dict[int, dict[str, Any]] = {}
    with open(work / "log.txt", "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            tree = {proc.pid}
            stats = {}
            for entry in os.listdir("/proc"):
                if entry.isdigit() and (st := proc_stat(int(entry))) is not None:
                    stats[int(entry)] = st
            grew = True
            while grew:  # descendants of the root (the reaper's own session included)
                grew = False
                for p, (ppid, _) in stats.items():
                    if ppid in tree and p not in tree:
                        tree.add(p)
                        grew = True
            for p in tree:
                if p not in stats:
                    continue
                if p not in seen:
                    line = cmdline(p)
                    seen[p] = {"kind": kind_of(p, proc.pid, line), "cpu_s": 0.0, "cmd": line[:300]}
                elif seen[p]["kind"] in RETITLED:
                    line = cmdline(p)  # a worker or agent retitles itself, a child re-execs
                    if line:
                        seen[p].update(kind=kind_of(p, proc.pid, line), cmd=line[:300])
                seen[p]["cpu_s"] = stats[p][1]
                if seen[p]["kind"] in ("ray worker", "driver"):
                    seen[p]["main_thread_s"] = main_thread_s(p)
            time.sleep(0.1)
        wall = time.perf_counter() - t0
    text = (work / "log.txt").read_text(errors="replace")
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{cmd[:4]} failed:\n{text[-3000:]}")
    by_kind: dict[str, float] = {}
    threads: dict[str, float] = {}
    for p in seen.values():
        by_kind[p["kind"]] = by_kind.get(p["kind"], 0.0) + p["cpu_s"]
        if "main_thread_s" in p:
            key = f"{p['kind']}: other threads"
            threads[key] = threads.get(key, 0.0) + p["cpu_s"] - p["main_thread_s"]
    result = next(json.loads(x) for x in reversed(text.splitlines()) if x.startswith("{"))
    return {
        "wall_s": wall,
        "cpu_s": sum(by_kind.values()),
        "rusage_cpu_s": usage.ru_utime + usage.ru_stime if usage else None,
        "cpu_by_kind": by_kind,
        "other_threads_s": threads,
        "processes": {str(p): v for p, v in seen.items()},
        "load_before": load0,
        "load_after": os.getloadavg()[0],
        "result": result,
    }


def phases(probe_dir: Path, processes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The probe's phase totals per kind of process: main-thread CPU s, process CPU s, the main
    thread's system CPU s and minor page faults, calls."""
    out: dict[str, dict[str, Any]] = {}
    for f in probe_dir.glob("*.json"):
        data = json.loads(f.read_text())
        kind = processes.get(f.stem, {}).get("kind", "driver")
        rows = out.setdefault(kind, {})
        whole = {"thread_s": data["thread_s"], "process_s": data["process_s"]}
        for name, v in [*data["phases"].items(), ("main thread, whole process", whole)]:
            row = rows.setdefault(name, {})
            for k, x in v.items():
                row[k] = row.get(k, 0) + x
    return out


def run_side(side: str, inputs: Path, args: argparse.Namespace, n: int) -> dict[str, Any]:
    head, *assigns = side.split("+")
    kind, _, checkout = head.partition("@")
    repo = Path(checkout) if checkout else REPO
    work = args.workdir / f"{n}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "probe").mkdir(parents=True)
    executor = "local" if kind == "pool" else kind
    stages = fineweb_stages(E2E_STAGES)
    rec = recipe(stages, inputs, work / "out", executor, args.workers, args.keep_rejected)
    mode = "pool" if kind == "pool" else "run"
    spec = {"mode": mode, "recipe": rec, "executor": executor, "workers": args.workers}
    spec["ray_tmp"] = None  # Ray started by the run, as `curate run` starts it
    (work / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = f"{repo}:{PROBE}" if args.probe else str(repo)
    if args.probe:
        env["CURATE_PHASE_PROBE"] = str(work / "probe")
    env.update(a.split("=", 1) for a in assigns)
    cmd = [sys.executable, "-m", "scripts.bench.ours_driver", str(work / "spec.json")]
    res = measured(cmd, work, env, repo)
    res["phases"] = phases(work / "probe", res["processes"])
    res["side"] = side
    return res


def show(res: dict[str, Any], r: int) -> None:
    out = res["result"]
    print(
        f"\n{res['side']} run {r + 1}: wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s "
        f"(rusage {res['rusage_cpu_s']:.1f}), docs {out['documents']} kept {out['output_docs']}, "
        f"load {res['load_before']:.2f} -> {res['load_after']:.2f}"
    )
    print(
        "  processes: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(res["cpu_by_kind"].items()))
    )
    print("  of which " + ", ".join(f"{k} {v:.2f}" for k, v in res["other_threads_s"].items()))
    if "stage_cpu_s" in out:
        stages = sum(out["stage_cpu_s"].values())
        print(
            f"  stages (stats.json) {stages:.2f}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in out["stage_cpu_s"].items())
        )
        print(f"  outside the stages: {res['cpu_s'] - stages:.2f}")
    for kind, rows in res["phases"].items():
        print(f"  phases in {kind}: main thread CPU s (system), process CPU s, minor faults")
        for k, v in sorted(rows.items(), key=lambda kv: -kv[1]["thread_s"]):
            print(
                f"    {k:34s} {v['thread_s']:8.2f} ({v.get('sys_s', 0):6.2f}) "
                f"{v['process_s']:8.2f} {v.get('minflt', 0):9d}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, default=Path("/tmp/bench-w4/warcs-0.05"))
    parser.add_argument("--sides", default="auto,local")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep-rejected", action="store_true", help="as fineweb.yaml has it")
    parser.add_argument("--no-probe", dest="probe", action="store_false")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench-outside"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    sides = args.sides.split(",")
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    n = 0
    for r in range(args.repeat):
        for side in sides if r % 2 == 0 else list(reversed(sides)):
            res = run_side(side, args.input, args, n)
            n += 1
            runs[side].append(res)
            show(res, r)
            if args.json:
                args.json.write_text(json.dumps(runs, indent=1))
    print()
    for s, rs in runs.items():
        best = min(rs, key=lambda x: x["cpu_s"])
        print(
            f"best {s}: CPU {best['cpu_s']:.1f} s (runs "
            + ", ".join(f"{x['cpu_s']:.1f}" for x in rs)
            + "), wall "
            + ", ".join(f"{x['wall_s']:.1f}" for x in rs)
        )


if __name__ == "__main__":
    main()
