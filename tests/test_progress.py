"""Progress by files, bytes and documents with an ETA; global phases; the run log; the done line;
`executor: auto`."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.config import RuntimeConfig, load_recipe, recipe_from_dict
from pipeline.runner import executors, progress
from pipeline.runner.executors import (
    AUTO_LOCAL_MAX_BYTES,
    global_context,
    ray_connect_problem,
    resolve_executor,
)
from pipeline.runner.progress import PhaseLog, Progress, format_eta, phase_name
from pipeline.runner.run import run_recipe
from pipeline.stages.global_base import LocalContext


class Clock:
    """A perf_counter the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _result(docs: int, kept: int, wall_s: float) -> dict:
    return {
        "reader": {"documents": docs},
        "input_docs": None,
        "output_docs": kept,
        "wall_s": wall_s,
    }


def test_rate_counts_from_the_first_document_and_eta_from_bytes(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    p = Progress("curate", total=4, total_bytes=4_000_000, mode="off")
    assert p.rate() is None and p.eta() is None
    assert p.summary().endswith("0 docs in, 0 kept, ? docs/s, ETA ?")
    clock.now += 30.0  # start-up (Ray) costs nothing in the rate...
    p.advance(_result(100, 40, wall_s=10.0), size=1_000_000)  # ...its task read for 10 s
    assert p.rate() == pytest.approx(10.0)  # 100 docs over the 10 s since the first document
    assert p.eta() == pytest.approx(30.0)  # 3 MB left at 1 MB per 10 s
    clock.now += 10.0
    p.advance(_result(100, 60, wall_s=10.0), size=1_000_000)
    assert p.rate() == pytest.approx(10.0) and p.eta() == pytest.approx(20.0)
    assert p.summary() == ("2/4 files, 2.0/4.0 MB, 200 docs in, 100 kept, 10 docs/s, ETA 0:20")


def test_in_process_batches_move_documents_before_a_file_ends(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    p = Progress("curate", total=1, total_bytes=500, done=0, mode="off")
    p.read(64)
    assert p.rate() is None  # within MIN_RATE_S of the first document
    clock.now += 2.0
    p.read(36)
    assert p.rate() == pytest.approx(50.0)
    assert "0/1 files, 0.0/0.5 kB, 100 docs in, 0 kept, 50 docs/s, ETA ?" in p.summary()
    clock.now += 2.0
    p.advance(_result(100, 7, wall_s=4.0), size=500)  # finished: counted once, not twice
    assert (p.docs_in, p.docs_out, p.done_bytes) == (100, 7, 500)
    assert p.eta() == 0.0


def test_resumed_progress_starts_at_the_finished_files(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        p = Progress("curate", total=11, total_bytes=5_000, done=2, done_bytes=1_000, mode="log")
    assert p.summary().startswith("2/11 files, 1.0/5.0 kB")
    assert "curate: resuming, 2 of 11 files already finished" in caplog.text


def test_format_eta() -> None:
    assert [format_eta(s) for s in (None, 0, 59.6, 65, 3725)] == [
        "?",
        "0:00",
        "1:00",
        "1:05",
        "1:02:05",
    ]


def _sign_task(item: int, scale: int) -> int:
    return item * scale


def test_phase_log_names_each_prepare_phase_as_it_runs(tmp_path, caplog) -> None:
    assert phase_name(functools.partial(_sign_task, scale=2)) == "sign"
    ctx = PhaseLog(LocalContext(str(tmp_path / "w"), 3), "minhash_dedup")
    assert ctx.num_partitions == 3 and ctx.work_dir.endswith("/w")
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        assert ctx.map(functools.partial(_sign_task, scale=2), [1, 2, 3]) == [2, 4, 6]
    assert [(name, n) for name, n, _ in ctx.phases] == [("sign", 3)]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "global stage minhash_dedup: phase 1 (sign), 3 task(s)"
    assert lines[1].startswith("global stage minhash_dedup: phase 1 (sign) done in ")


def test_auto_runs_small_inputs_in_process_and_large_or_clustered_on_ray(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    auto = RuntimeConfig()
    assert auto.executor == "auto"
    assert resolve_executor(auto, [1_000, 2_000]).executor == "local"
    assert resolve_executor(auto, [AUTO_LOCAL_MAX_BYTES, 1]).executor == "ray"
    assert resolve_executor(auto, [1_000, None]).executor == "ray"  # a remote dataset
    assert resolve_executor(RuntimeConfig(ray_address="h:6379"), [10]).executor == "ray"
    monkeypatch.setenv("RAY_ADDRESS", "h:6379")
    assert resolve_executor(auto, [10]).executor == "ray"
    explicit = RuntimeConfig(executor="local")
    assert resolve_executor(explicit, [AUTO_LOCAL_MAX_BYTES * 2]) is explicit


def test_a_small_prepare_runs_in_process_on_ray_when_auto_chose_ray(tmp_path) -> None:
    recipe = recipe_from_dict(
        {
            "output": {"path": str(tmp_path / "o")},
            "runtime": {"executor": "ray"},
            "stages": [{"stage": "exact_dedup"}],
        }
    )
    small = executors.PREPARE_LOCAL_MAX_DOCS
    assert isinstance(global_context(recipe, str(tmp_path / "w"), small), LocalContext)


def test_ray_connection_problems_are_one_line() -> None:
    class AuthenticationError(Exception):
        pass

    msg = ray_connect_problem("10.0.0.1:6379", RuntimeError("Failed to connect to GCS"), "")
    assert msg.startswith("could not connect to the Ray cluster at 10.0.0.1:6379: Failed to")
    msg = ray_connect_problem(None, OSError("No space left on device\ntraceback..."), "")
    assert msg == (
        "could not start an embedded Ray: No space left on device; or run in-process with "
        "--executor local"
    )
    for exc, log_text in (
        (AuthenticationError("RPC error"), ""),
        (RuntimeError("Failed to connect"), "gcs_client.cc: InvalidAuthToken: missing"),
    ):
        msg = ray_connect_problem("10.0.0.1:6379", exc, log_text)
        assert "\n" not in msg
        assert msg.startswith("the Ray cluster at 10.0.0.1:6379 refused this process's auth")
        assert "RAY_AUTH_TOKEN" in msg and "RAY_AUTH_MODE=disabled" in msg


def _demo_recipe(demo_warc: Path, out: Path) -> Path:
    config = out.parent / f"{out.name}.yaml"
    config.write_text(
        "input:\n"
        f"  paths: [{demo_warc}, {demo_warc.parent / 'copy.warc.gz'}]\n"
        f"output:\n  path: {out}\n"
        "runtime:\n  batch_size: 4\n  progress: log\n"
        "stages:\n  - stage: extract\n  - stage: exact_dedup\n"
    )
    return config


@pytest.mark.e2e
def test_a_small_run_reports_files_phases_and_logs_to_its_run_log(
    demo_warc, tmp_path, capsys, caplog
) -> None:
    """The demo WARC twice under the default executor (auto -> in-process): progress moves
    within a file, each prepare phase is shown, the done line counts the two input files and
    the run log holds the run's lines."""
    (demo_warc.parent / "copy.warc.gz").write_bytes(demo_warc.read_bytes())
    out = tmp_path / "run"
    config = _demo_recipe(demo_warc, out)
    with caplog.at_level(logging.INFO):
        assert cli.main(["run", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "done: 22 documents in, 8 kept from 2 input file(s) (2 processed, 0 resumed; local" in (
        printed
    )
    size = 2 * demo_warc.stat().st_size / 1e3
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.progress"]
    # the first batch of 4, before the first file is finished
    assert (
        lines[0] == f"segment 0/1: 0/2 files, 0.0/{size:.1f} kB, 4 docs in, 0 kept, ? docs/s, ETA ?"
    )
    assert any(
        line.startswith(f"segment 0/1: 2/2 files, {size:.1f}/{size:.1f} kB, 22 docs in, 20 kept")
        for line in lines
    )
    phases = [line for line in lines if line.startswith("global stage exact_dedup: phase")]
    assert phases[0] == "global stage exact_dedup: phase 1 (hash_shard), 2 task(s)"
    assert phases[2] == "global stage exact_dedup: phase 2 (dedup_partition), 4 task(s)"
    log_text = (out / "_run" / "run.log").read_text()
    assert "executor auto: local" in log_text and "segment 1/1: 2/2 shards" in log_text
    rerun = run_recipe(load_recipe(str(config)))
    assert (rerun.files, rerun.files_run, rerun.units_run, rerun.units_skipped) == (2, 0, 0, 4)
