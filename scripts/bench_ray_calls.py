"""What Ray costs per actor call and at a run's exit (issue 24, round five).

    .venv/bin/python -m scripts.bench_ray_calls --tasks 1000 --sleep 0.02 [--repo /tmp/before]
    .venv/bin/python -m scripts.bench_ray_calls --exit [--repo /tmp/before] [--repeat 3]

Default mode: a RayPool (pipeline.runner.executors, of the checkout `--repo`) with 2 warm
actors runs `--tasks` tasks that each sleep `--sleep` seconds; a sleep uses no CPU, so every CPU
second the node's processes spend meanwhile (the driver, its raylet, GCS, agents, monitors and
the actors, main and other threads alike) is Ray's cost of moving the tasks and their results.
Prints wall against the ideal (tasks x sleep / 2) and CPU seconds by process kind.

`--exit`: a fresh process starts an embedded Ray as `curate run` does (ensure_ray), runs two
tasks on a RayPool and returns; prints the seconds from its last line to the process's end
(Ray's shutdown, the interpreter's exit), best of `--repeat`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

_CALLS = """
import json, time
import psutil
from pipeline.config import RuntimeConfig
from pipeline.runner.executors import RayPool, ensure_ray
from pipeline.runner.ray_reaper import node_processes
from scripts.bench_ray import kind_of


class SleepJob:
    def setup(self): pass
    def run(self, task, worker):
        time.sleep(SLEEP)
        return {"task": task, "stats": {"numbers": list(range(50))}}
    def close(self): pass


def node_cpu(node, raylets):  # CPU s by process: this driver's tree and its node's others
    me = psutil.Process()
    out = {}
    for p in {*me.children(recursive=True), *node_processes(node, raylets), me}:
        try:
            t = p.cpu_times()
            out[p.pid] = (kind_of(p, me.pid), t.user + t.system)
        except psutil.Error:
            continue
    return out


ensure_ray(None)
import ray
node = ray.get_runtime_context().get_node_id()
raylets = [c.pid for c in psutil.Process().children() if c.name() == "raylet"]
pool = RayPool(RuntimeConfig(executor="ray", num_workers=2))
list(pool.run(SleepJob(), list(range(4))))  # actors started and set up
before = node_cpu(node, raylets)
start = time.perf_counter()
results = list(pool.run(SleepJob(), list(range(TASKS))))
wall = time.perf_counter() - start
after = node_cpu(node, raylets)
assert sorted(r["task"] for r in results) == list(range(TASKS))
by_kind = {}
for pid, (kind, cpu) in after.items():
    by_kind[kind] = by_kind.get(kind, 0.0) + cpu - before.get(pid, ("", 0.0))[1]
print(json.dumps({"wall_s": wall, "cpu_by_kind": by_kind}))
"""

_EXIT = """
import time
from pipeline.config import RuntimeConfig
from pipeline.runner.executors import RayPool, ensure_ray

ensure_ray(None)
pool = RayPool(RuntimeConfig(executor="ray", num_workers=2))
assert pool.map(abs, [-1, -2]) == [1, 2]
pool.close()
print("done", flush=True)
"""


def _env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return env | {"PYTHONPATH": str(repo)}


def calls(repo: Path, tasks: int, sleep: float) -> dict[str, Any]:
    code = _CALLS.replace("SLEEP", repr(sleep)).replace("TASKS", str(tasks))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=_env(repo), capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def exit_seconds(repo: Path) -> float:
    """Seconds from the child's `done` line to its exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _EXIT],
        cwd=repo,
        env=_env(repo),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("done"):
            break
    start = time.perf_counter()
    proc.wait()
    if proc.returncode:
        raise RuntimeError(f"exited {proc.returncode}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to measure")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--sleep", type=float, default=0.02)
    parser.add_argument("--exit", action="store_true", help="measure the exit instead")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    if args.exit:
        seconds = [exit_seconds(args.repo) for _ in range(args.repeat)]
        print(
            f"{args.repo}: exit after the last line {min(seconds):.2f} s best of "
            f"{len(seconds)} ({', '.join(f'{s:.2f}' for s in seconds)}), load {load:.2f}"
        )
        return
    for _ in range(args.repeat):
        res = calls(args.repo, args.tasks, args.sleep)
        kinds = {k: round(v, 2) for k, v in sorted(res["cpu_by_kind"].items()) if v >= 0.005}
        print(
            f"{args.repo}: {args.tasks} tasks of {args.sleep} s: wall {res['wall_s']:.2f} s "
            f"(ideal {args.tasks * args.sleep / 2:.2f}), Ray's CPU "
            f"{sum(res['cpu_by_kind'].values()):.2f} s {kinds}, load {load:.2f}"
        )


if __name__ == "__main__":
    main()
