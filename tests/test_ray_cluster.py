"""`curate run --ray-address HOST:PORT` against a real cluster started by `ray start --head`.

The cluster runs on localhost with its own ports and temporary directory, so it cannot meet
another Ray on the machine. `ray stop` would end every Ray of this user on the machine, so the
cluster is stopped by its own processes only: those whose command line names its temporary
directory (GCS, raylet, monitors) and those started for its node (agents and workers, found by
the node id in their environment, as pipeline/runner/ray_reaper.py finds them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipeline.runner.ray_reaper import node_processes

BIN = Path(sys.executable).parent
NAMED_PORTS = (
    "--port",
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)
WORKER_PORTS = 40  # a block of free ports for the cluster's workers
STOP_GRACE_S = 2.0  # SIGTERM to SIGKILL when the cluster is stopped


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_block(n: int) -> int:
    """The first port of `n` consecutive ports that are free now."""
    for _ in range(50):
        base = _free_port()
        if base + n < 65_000 and all(_port_free(base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_processes(temp_dir: str) -> list[psutil.Process]:
    """The processes of the cluster whose files live in `temp_dir` (and only those)."""
    named = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            mine = proc.pid == os.getpid()
            if not mine and any(temp_dir in arg for arg in proc.info["cmdline"] or ()):
                named.append(proc)
    raylets = [p for p in named if "raylet" in Path((p.info["cmdline"] or [""])[0]).name]
    found = {p.pid: p for p in named}
    for raylet in raylets:
        ids = [a.split("=", 1)[1] for a in raylet.info["cmdline"] if a.startswith("--node_id=")]
        for node_id in ids:
            found.update({p.pid: p for p in node_processes(node_id, [raylet.pid])})
    return list(found.values())


def stop_cluster(temp_dir: str) -> None:
    """`ray stop` for this cluster only: end its processes, then wait for them. The GCS server
    and the autoscaler monitor outlive SIGTERM by 15 s and more, so whatever is left after a
    short grace is killed, as Ray's own node shutdown does after 1 s."""
    procs = _cluster_processes(temp_dir)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=STOP_GRACE_S)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=15)


@contextlib.contextmanager
def head_cluster() -> Iterator[str]:
    """A `ray start --head` cluster of 2 CPUs on localhost; yields its HOST:PORT."""
    temp_dir = tempfile.mkdtemp(prefix="rayh", dir="/tmp")  # short: Ray's socket paths are bound
    ports = {flag: _free_port() for flag in NAMED_PORTS}
    workers = _free_block(WORKER_PORTS)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    cmd = [str(BIN / "ray"), "start", "--head", "--num-cpus", "2", "--temp-dir", temp_dir]
    cmd += ["--include-dashboard", "false", "--disable-usage-stats"]
    cmd += [f"{flag}={port}" for flag, port in ports.items()]
    cmd += [f"--min-worker-port={workers}", f"--max-worker-port={workers + WORKER_PORTS - 1}"]
    try:
        started = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
        assert started.returncode == 0, started.stderr[-3000:]
        yield f"127.0.0.1:{ports['--port']}"
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def head_address() -> Iterator[str]:
    """One `ray start --head` cluster for the module's tests (each start costs seconds)."""
    with head_cluster() as address:
        yield address


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.e2e
def test_run_against_a_ray_start_head_cluster_by_address(
    demo_warc, tmp_path, head_address: str
) -> None:
    """The demo WARC through extract and exact dedup on the cluster, by address: it runs on the
    cluster (its node id in the markers), Ray's token notice goes to the run log, not the
    terminal (on an embedded Ray too), and the result matches the embedded run's."""
    inputs = [str(demo_warc)]
    recipe = {
        "input": {"paths": inputs},
        "runtime": {"progress": "log"},
        "stages": [{"stage": "extract"}, {"stage": "exact_dedup"}],
    }
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    local_cfg = tmp_path / "local.yaml"
    local_cfg.write_text(json.dumps({**recipe, "output": {"path": str(tmp_path / "local")}}))
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(json.dumps({**recipe, "output": {"path": str(tmp_path / "cluster")}}))
    curate = [str(BIN / "curate"), "run"]
    # an embedded Ray first: its token notice, too, goes to the run log only
    embedded = [*curate, str(local_cfg), "--executor", "ray"]
    local = subprocess.run(embedded, capture_output=True, text=True, timeout=400, env=env)
    assert local.returncode == 0, local.stderr[-3000:]
    assert "Token authentication" not in local.stderr and "Traceback" not in local.stderr
    assert "Token authentication is enabled" in (tmp_path / "local/_run/run.log").read_text()
    proc = subprocess.run(
        [*curate, str(cfg), "--ray-address", head_address],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "from 1 input file(s) (1 processed, 0 resumed; ray," in proc.stdout
    marker = json.loads((tmp_path / "cluster/_run/units/seg00/part-00000.json").read_text())
    assert marker["worker"]["node"] != "local"  # a Ray node id
    assert "Traceback" not in proc.stderr and "Token authentication" not in proc.stderr
    log_text = (tmp_path / "cluster/_run/run.log").read_text()
    assert f"executor auto: ray (a Ray cluster is named ({head_address}))" in log_text
    assert "Token authentication is enabled" in log_text
    done = [line for line in proc.stdout.splitlines() if line.startswith("done:")]
    assert done[0].split(" from ")[0] == local.stdout.split(" from ")[0]
    assert done[0].startswith("done: 11 documents in, 8 kept")


@pytest.mark.ray
@pytest.mark.slow
def test_a_refused_token_is_one_line(demo_warc, tmp_path, head_address: str) -> None:
    """A driver holding another token than the cluster's gets one line naming the setting."""
    cfg = tmp_path / "r.yaml"
    cfg.write_text(
        json.dumps(
            {
                "input": {"paths": [str(demo_warc)]},
                "output": {"path": str(tmp_path / "out")},
                "stages": [{"stage": "extract"}],
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env["RAY_AUTH_TOKEN"] = "0" * 64
    cmd = [str(BIN / "curate"), "run", str(cfg), "--ray-address", head_address]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("curate: error:")]
    assert errors == [
        f"curate: error: the Ray cluster at {head_address} refused this process's authentication "
        "token: give it the cluster's token (RAY_AUTH_TOKEN=..., or RAY_AUTH_TOKEN_PATH / "
        "~/.ray/auth_token as on the head node: `ray get-auth-token`), or use a cluster started "
        "with RAY_AUTH_MODE=disabled"
    ]
    assert "Traceback" not in proc.stderr and "InvalidAuthToken" not in proc.stderr
