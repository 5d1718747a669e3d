"""pii (mask), decontaminate (remove_spans) and line_dedup (keep: none) through the runner: the driver is
SIGKILLed in every phase of a local run and the rerun's output is identical to an uninterrupted
run's; a Ray run gives the same output and summaries as a local one."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import recipe_from_dict
from pipeline.runner.run import run_recipe
from tests.conftest import SHARED_DATA
from tests.faults.helpers import dclm_lines, read_output, stats_of, write_recipe
from tests.faults.test_crashes import SEED, _killer, assert_same_output

FOOTER = "Share this page on Facebook, Twitter and e-mail"
SMALL = {"rows_per_row_group": 4}


def _questions() -> list[str]:
    lines = (SHARED_DATA / "langid" / "lingua-sentences" / "en.txt").read_text().splitlines()
    return [s for s in lines if len(s.split()) >= 16][:20]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Any]:
    """Three JSONL files of real DCLM texts; every 9th holds a benchmark question, every 5th a
    shared footer line; and the benchmark (the questions as JSONL)."""
    tmp = tmp_path_factory.mktemp("decontam-inputs")
    questions = _questions()
    records = [json.loads(line) for line in dclm_lines()[:90]]
    for i, rec in enumerate(records):
        rec["id"] = f"doc{i}"
        if i % 9 == 0:
            rec["text"] = f"{rec['text'][:600]}\n{questions[i // 9]}\n{rec['text'][600:]}"
        if i % 5 == 0:
            rec["text"] += f"\n{FOOTER}\n"
    files = []
    for k in range(3):
        path = tmp / f"part-{k}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records[k::3]), encoding="utf-8")
        files.append(path)
    bench = tmp / "bench.jsonl"
    bench.write_text(
        "".join(json.dumps({"id": f"q{i}", "question": q}) + "\n" for i, q in enumerate(questions))
    )
    return {"files": files, "bench": bench}


def _stages(bench: Path) -> list[dict[str, Any]]:
    return [
        {"stage": "pii", "mode": "mask"},  # a map stage that rewrites text, resumed like the rest
        {
            "stage": "decontaminate",
            "mode": "remove_spans",
            "margin_chars": 50,
            "benchmarks": [{"name": "en", "paths": [str(bench)], "fields": ["question"]}],
        },
        {"stage": "line_dedup", "keep": "none", "min_length": 50},
    ]


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("decontam-reference")
    out = tmp / "out"
    config = write_recipe(
        tmp / "r.yaml", inputs["files"], out, _stages(inputs["bench"]), output_options=SMALL
    )
    proc = _killer("count", 0, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    stats = stats_of(out)
    found = stats["global"]["decontaminate"]
    assert found["en_items_found"] == 10 and found["en_documents_touched"] == 10
    texts = read_output(out).column("text").to_pylist()
    assert texts and not any(FOOTER in t for t in texts)
    assert not any(q in t for q in _questions() for t in texts)
    return {"out": out, "counts": counts}


@pytest.mark.slow
def test_kill_in_every_phase_then_rerun_is_identical(inputs, reference, tmp_path) -> None:
    rng = random.Random(SEED)
    out = tmp_path / "out"
    config = write_recipe(
        tmp_path / "r.yaml", inputs["files"], out, _stages(inputs["bench"]), output_options=SMALL
    )
    phases = [p for p in reference["counts"] if p != "start"]
    assert {"prepare:decontaminate", "prepare:line_dedup"} <= set(phases)
    for phase in phases:
        n = rng.randint(1, reference["counts"][phase])
        proc = _killer(phase, n, config)
        assert proc.returncode == -signal.SIGKILL, f"{phase} event {n}: {proc.stderr[-3000:]}"
    proc = _killer("none", 0, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_output(out, reference["out"])


def test_ray_gives_the_local_output(inputs, reference, tmp_path, ray_session) -> None:
    out = tmp_path / "ray"
    config = write_recipe(
        tmp_path / "r.yaml",
        inputs["files"],
        out,
        _stages(inputs["bench"]),
        output_options=SMALL,
        executor="ray",
        num_partitions=3,
    )
    run_recipe(recipe_from_dict(json.loads(config.read_text())))
    assert_same_output(out, reference["out"])
    # Every count is the same (partition counts and sizes follow runtime.num_partitions).
    same = ("documents", "items", "ngrams", "en_items_found", "en_documents_touched")
    same += ("lines", "lines_dropped")
    got, want = stats_of(out)["global"], stats_of(reference["out"])["global"]
    for stage in ("decontaminate", "line_dedup"):
        for key in same:
            assert got[stage].get(key) == want[stage].get(key), (stage, key)
