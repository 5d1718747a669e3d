"""Run one command in a fresh process tree and measure it the same way for both sides.

Wall time is the child's lifetime. Peak RSS is the largest sum of RSS over the child and all its
descendants, sampled with psutil every `interval` seconds (a Ray run's raylet, GCS and workers,
datatrove's pool and extractor processes alike; pages shared between processes count once per
process). CPU time is the larger of the summed last-seen CPU times of every process sampled and
the root's rusage from wait4 (which includes descendants it reaped).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def run_measured(
    cmd: list[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    interval: float = 0.2,
) -> dict[str, Any]:
    """Run `cmd`; stdout+stderr go to `log`. Returns wall_s, cpu_s, peak_rss_mib and `result`,
    the JSON object on the last line of stdout that starts with '{' (None if absent).
    Raises RuntimeError with the log's tail when the command fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        root = psutil.Process(proc.pid)
        peak = 0
        cpu_seen: dict[int, float] = {}
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = 0
            for p in _tree(root):
                try:
                    rss += p.memory_info().rss
                    t = p.cpu_times()
                    cpu_seen[p.pid] = t.user + t.system
                except psutil.Error:
                    continue
            peak = max(peak, rss)
            time.sleep(interval)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if proc.returncode:
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}:\n{text[-3000:]}")
    cpu_wait = usage.ru_utime + usage.ru_stime if usage is not None else 0.0
    result = None
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            break
    return {
        "wall_s": wall,
        "cpu_s": max(sum(cpu_seen.values()), cpu_wait),
        "peak_rss_mib": peak / 2**20,
        "result": result,
    }
