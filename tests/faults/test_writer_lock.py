"""One writer per output directory. Two runs into one directory used to race (the loser failed
with a bare FileNotFoundError, and `--overwrite` deleted a live run's work under it). Now the
second writer is refused at once, naming the holder; a lock left by a dead process is taken
over; a lock held by a live process (another process, or a planted record of this very one) is
never overridden, not even by --overwrite."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from pipeline.cli import main
from pipeline.runner.lock import LOCK_NAME
from tests.conftest import REPO
from tests.faults.helpers import WGET, assert_reconciles, curate, stats_of, write_recipe

HOLD = """
import sys, time
from pipeline.runner.lock import output_lock
with output_lock(sys.argv[1], "curate run"):
    print("held", flush=True)
    sys.stdin.read()
"""


def _hold(out: Path) -> subprocess.Popen[str]:
    """Another process holding the lock of `out` until its stdin closes (prints `held`)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _plant(out: Path, pid: int, **extra: object) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK_NAME
    record = {"command": "curate run", "host": socket.gethostname(), "pid": pid, **extra}
    record.setdefault("started", "2026-01-01 00:00:00 UTC")
    lock.write_text(json.dumps(record))
    return lock


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(proc.stdout)
    assert not psutil.pid_exists(pid)
    return pid


@pytest.fixture(scope="module")
def finished_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output directory of a finished run, made once for the module (`finished` copies it)."""
    tmp = tmp_path_factory.mktemp("finished")
    out = tmp / "out"
    assert main(["run", str(write_recipe(tmp / "r.yaml", [WGET], out))]) == 0
    assert not (out / LOCK_NAME).exists()  # released at the end
    return out


@pytest.fixture
def finished(tmp_path: Path, finished_once: Path) -> tuple[Path, Path]:
    """A finished run (config, output directory) of this test's own: a copy of the module's
    (the output path is no part of a run's config hash, so the copy is the same run)."""
    out = tmp_path / "out"
    shutil.copytree(finished_once, out)
    return write_recipe(tmp_path / "r.yaml", [WGET], out), out


@pytest.mark.timeout(120)
def test_second_writer_and_overwrite_refused_while_another_process_holds_it(
    capsys, finished
) -> None:
    config, out = finished
    before = _snapshot(out)
    holder = _hold(out)
    try:
        for extra in ((), ("--overwrite",)):
            result = curate(capsys, "run", config, *extra)
            assert result.code == 2, result.err
            assert (
                f"is being written by curate run (host {socket.gethostname()}, pid "
                f"{holder.pid}, since " in result.err
            )
            assert "wait for it to finish or choose another --output" in result.err
            assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
        stats = curate(capsys, "stats", out, "--executor", "local", "--no-plots")
        assert stats.code == 0, stats.err  # reading a run is not writing it (stats -> out/stats)
        assert list((out / "stats").iterdir())
        after = _snapshot(out)
        kept = {k: v for k, v in after.items() if not k.startswith(("stats/", LOCK_NAME))}
        assert kept == before
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    assert not (out / LOCK_NAME).exists()
    result = curate(capsys, "run", config, "--overwrite")  # free again
    assert result.code == 0, result.err
    assert_reconciles(stats_of(out))


@pytest.mark.timeout(120)
def test_holder_killed_leaves_a_lock_that_is_taken_over(capsys, caplog, finished) -> None:
    """kill -9 of the holder: its record stays on disk; the next writer takes it over."""
    config, out = finished
    holder = _hold(out)
    holder.kill()
    holder.wait(timeout=30)
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid
    result = curate(capsys, "run", config)
    assert result.code == 0, result.err
    assert f"taking over the lock of curate run (pid {holder.pid} on this host" in caplog.text
    assert not (out / LOCK_NAME).exists()


@pytest.mark.timeout(120)
def test_planted_lock_of_a_dead_pid_is_stale(capsys, caplog, finished) -> None:
    config, out = finished
    pid = _dead_pid()
    _plant(out, pid)
    result = curate(capsys, "run", config, "--overwrite")
    assert result.code == 0, result.err
    assert f"(pid {pid} on this host, no longer running)" in caplog.text
    assert_reconciles(stats_of(out))
    assert not (out / LOCK_NAME).exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["run", "ablate", "stats"])
def test_planted_lock_of_a_live_pid_is_respected(capsys, tmp_path, finished, command) -> None:
    """A record naming a live process (this test's own pid, with its start time) keeps the
    directory for it, for every writer; the planted lock is left as it was."""
    config, out = finished
    me = psutil.Process()
    target = {"run": out, "ablate": tmp_path / "abl", "stats": out / "stats"}[command]
    lock = _plant(target, me.pid, pid_started=me.create_time())
    planted = lock.read_bytes()
    if command == "run":
        result = curate(capsys, "run", config, "--overwrite")
    elif command == "ablate":
        spec = tmp_path / "ablation.yaml"
        spec.write_text(f"base: {config.name}\noutput: {{path: {target}}}\nvariants:\n  a: {{}}\n")
        result = curate(capsys, "ablate", spec)
    else:
        result = curate(capsys, "stats", out, "--executor", "local", "--no-plots")
    assert result.code == 2, result.err
    assert (
        f"{target} is being written by curate run (host {socket.gethostname()}, pid {me.pid}, "
        "since 2026-01-01 00:00:00 UTC)" in result.err
    )
    assert lock.read_bytes() == planted
    assert sorted(p.name for p in target.iterdir()) == [LOCK_NAME] or command == "run"


@pytest.mark.timeout(120)
def test_overwrite_keeps_stats_being_written(capsys, tmp_path, finished) -> None:
    """`run --overwrite` clears the run's stats/ too, but not while `curate stats` writes it."""
    config, out = finished
    me = psutil.Process()
    lock = _plant(out / "stats", me.pid, pid_started=me.create_time(), command="curate stats")
    (out / "stats" / "partial.jsonl").write_text("{}\n")
    before = _snapshot(out)
    result = curate(capsys, "run", config, "--overwrite")
    assert result.code == 2
    assert f"{out}/stats is being written by curate stats (host " in result.err
    assert _snapshot(out) == before
    lock.unlink()
    assert curate(capsys, "run", config, "--overwrite").code == 0
    assert not (out / "stats").exists()


@pytest.mark.timeout(60)
def test_lock_of_another_host_names_the_file_to_delete(capsys, finished) -> None:
    config, out = finished
    lock = _plant(out, 1, host="build-node-7")
    result = curate(capsys, "run", config)
    assert result.code == 2
    assert "curate run (host build-node-7, pid 1, since 2026-01-01 00:00:00 UTC)" in result.err
    assert f"if that process is gone, delete {lock}" in result.err


@pytest.mark.timeout(60)
def test_failed_run_leaves_no_directory_and_no_lock(capsys, tmp_path) -> None:
    """A run refused while planning (input missing) leaves no output directory behind."""
    out = tmp_path / "out"
    config = write_recipe(tmp_path / "r.yaml", [tmp_path / "missing.warc.gz"], out)
    result = curate(capsys, "run", config)
    assert result.code == 2
    assert not out.exists()
