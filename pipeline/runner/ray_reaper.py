"""Ends an embedded Ray node's processes when the driver that started it exits, however it exits.

    python -I ray_reaper.py NODE_ID        (stdin: a pipe whose write end only the driver holds)

Ray gives the head processes it starts (GCS, raylet, monitors) the kernel's parent-death signal,
but the agents the raylet starts (dashboard and runtime-env agent) find out only by polling, and
then wait on the dead GCS for a minute or more before they exit. This process reads its stdin
until EOF, which comes when the driver is gone (kill -9 included), then kills every process of
this user whose environment names the node. Standard library and psutil only, run isolated
(`-I`), so it never imports anything from the working directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence

import psutil


def node_processes(node_id: str, raylet_pids: Sequence[int] = ()) -> list[psutil.Process]:
    """This user's processes started for Ray node `node_id`: agents carry RAY_NODE_ID, workers
    RAY_RAYLET_PID (one of `raylet_pids`, the driver's raylet children seen at start).

    The environment is read raw from /proc (Linux): Ray retitles its processes, which can
    leave a leading empty entry that psutil's environ() stops at.
    """
    uid = os.getuid()
    needles = {f"RAY_NODE_ID={node_id}".encode()}
    needles |= {f"RAY_RAYLET_PID={pid}".encode() for pid in raylet_pids}
    found = []
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info["uids"]
        if proc.pid == os.getpid() or uids is None or uids.real != uid:
            continue
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        if needles.intersection(environ):
            found.append(proc)
    return found


def main(node_id: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the driver's exit ends the wait
    try:
        driver = psutil.Process(os.getppid())
        raylets = [p.pid for p in driver.children() if p.name() == "raylet"]
    except psutil.Error:
        raylets = []
    while sys.stdin.buffer.read(4096):
        pass
    for proc in node_processes(node_id, raylets):
        with contextlib.suppress(psutil.Error):
            proc.kill()


if __name__ == "__main__":
    main(sys.argv[1])
