"""ResumableContext (runner/resumable.py): a prepare's finished tasks are reused by a rerun over
the same inputs, never over changed ones, and every global stage's task results resume."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from pipeline.dedup.minhash import MinHashDedupConfig
from pipeline.prune.local import write_shards
from pipeline.registry import available_stages, stage_class
from pipeline.runner.resumable import ResumableContext, stable_digest, stage_fingerprint
from pipeline.stages.global_base import LocalContext, ShardRef
from tests.conftest import REPO

CALLS: list[Any] = []  # what _square ran, in this process


def _square(x: int, *, offset: int = 0) -> dict[str, Any]:
    CALLS.append(x)
    return {"x": x, "square": np.int64(x * x + offset), "arr": np.arange(x), "set": {x}}


def _context(work: Path, inputs: str = "inputs-A") -> ResumableContext:
    return ResumableContext(LocalContext(str(work)), inputs)


def test_a_rerun_reuses_finished_tasks_and_reruns_changed_ones(tmp_path) -> None:
    CALLS.clear()
    first = _context(tmp_path).map(partial(_square, offset=1), [1, 2, 3])
    assert CALLS == [1, 2, 3]
    CALLS.clear()
    again = _context(tmp_path)
    out = again.map(partial(_square, offset=1), [1, 2, 4])  # item 2 changed: only it runs
    assert CALLS == [4] and again.counts() == {"tasks": 3, "tasks_resumed": 2}
    assert [r["square"] for r in out] == [2, 5, 17]
    for got, want in zip(out[:2], first[:2], strict=True):  # read back from the records
        assert np.array_equal(got["arr"], want["arr"]) and got["set"] == want["set"]
        assert type(got["square"]) is np.int64
    CALLS.clear()
    _context(tmp_path).map(partial(_square, offset=2), [1, 2, 4])  # a changed bound argument
    assert CALLS == [1, 2, 4]


def test_second_phase_call_is_keyed_apart_from_the_first(tmp_path) -> None:
    CALLS.clear()
    ctx = _context(tmp_path)
    ctx.map(_square, [5])
    ctx.map(_square, [5])  # same function and item, another phase of prepare
    assert CALLS == [5, 5]
    CALLS.clear()
    again = _context(tmp_path)
    again.map(_square, [5])
    again.map(_square, [5])
    assert CALLS == [] and again.counts() == {"tasks": 2, "tasks_resumed": 2}


def test_other_inputs_empty_the_work_dir_and_rerun_everything(tmp_path) -> None:
    _context(tmp_path).map(_square, [1, 2])
    (tmp_path / "stale.bin").write_bytes(b"from the old inputs")
    CALLS.clear()
    ctx = _context(tmp_path, "inputs-B")
    assert not (tmp_path / "stale.bin").exists()
    ctx.map(_square, [1, 2])
    assert CALLS == [1, 2] and ctx.counts()["tasks_resumed"] == 0


class _Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch pwned",))


def test_a_tampered_or_broken_record_reruns_the_task_and_runs_no_code(tmp_path) -> None:
    _context(tmp_path).map(_square, [1, 2])
    records = sorted((tmp_path / "_tasks" / "001").glob("*.pkl"))
    records[0].write_bytes(pickle.dumps(_Boom()))
    records[1].write_bytes(b"\x80\x04 not a pickle")
    CALLS.clear()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        ctx = _context(tmp_path)
        out = ctx.map(_square, [1, 2])
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "pwned").exists()
    assert CALLS == [1, 2] and ctx.counts()["tasks_resumed"] == 0
    assert [r["square"] for r in out] == [1, 4]


def test_digest_is_the_same_in_another_process() -> None:
    """Sets of strings pickle in hash order, which changes per process; the digest must not."""
    code = (
        "from functools import partial\n"
        "from pipeline.dedup.minhash import MinHashDedupConfig\n"
        "from pipeline.runner.resumable import stable_digest\n"
        "from pipeline.stages.global_base import ShardRef\n"
        "import fsspec, numpy as np\n"
        "from tests.test_resumable import _square\n"
        "print(stable_digest((partial(_square, offset=3), MinHashDedupConfig(verify='jaccard'),"
        " {'a', 'bb', 'ccc', 'dddd'}, ShardRef(2, '/x/part-00002.parquet', 7),"
        " np.arange(5), fsspec.filesystem('file'))))\n"
    )
    got = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        got.add(proc.stdout.strip())
    import fsspec

    here = stable_digest(
        (
            partial(_square, offset=3),
            MinHashDedupConfig(verify="jaccard"),
            {"a", "bb", "ccc", "dddd"},
            ShardRef(2, "/x/part-00002.parquet", 7),
            np.arange(5),
            fsspec.filesystem("file"),
        )
    )
    assert got == {here}
    assert stable_digest(MinHashDedupConfig(verify="signature")) != stable_digest(
        MinHashDedupConfig(verify="jaccard")
    )
    assert stable_digest([1]) != stable_digest(["1"]) != stable_digest((1,))


def _tables(shared_data: Path) -> list[pa.Table]:
    """60 real DCLM texts in 3 shards, 6 of them copied into the next shard; a score column."""
    with open(shared_data / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][:60]
    shards: list[list[str]] = [texts[i::3] for i in range(3)]
    for i in range(3):
        shards[(i + 1) % 3] += shards[i][:2]
    return [
        pa.table(
            {
                "id": [f"s{i}-{j}" for j in range(len(t))],
                "text": t,
                "score": [len(x) / 1000 for x in t],
            }
        )
        for i, t in enumerate(shards)
    ]


def _configs(tmp: Path, shared_data: Path) -> dict[str, dict[str, Any]]:
    with open(shared_data / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as f:
        words = json.loads(f.readline())["text"].split()
    line = " ".join(words[10:40])  # a benchmark item quoted by the first document
    bench = tmp / "bench.jsonl"
    bench.write_text(json.dumps({"id": "q0", "question": line}) + "\n")
    light = {"embedder": "light", "n_clusters": 4, "embeddings": "column"}
    return {
        "exact_dedup": {},
        "minhash_dedup": {"verify": "jaccard"},
        "line_dedup": {},
        "substring_dedup": {},
        "decontaminate": {
            "benchmarks": [{"name": "b", "paths": [str(bench)], "fields": ["question"]}],
        },
        "semdedup": light,
        "d4": {**light, "proto_n_clusters": 3},
        "top_fraction": {"column": "score", "keep_top_fraction": 0.5},
    }


TIMINGS = ("timings", "wall_s", "_s")


def _untimed(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if not k.endswith(TIMINGS)}


GLOBAL_STAGES = sorted(n for n, cls in available_stages().items() if cls.kind == "global")


@pytest.mark.parametrize("name", GLOBAL_STAGES)
def test_every_global_stage_resumes_all_its_tasks(name, shared_data, tmp_path) -> None:
    """A second prepare over the same work dir reuses every task's recorded result (so each
    phase's results read back through the restricted unpickler) and sums to the same summary."""
    cls = stage_class(name)
    configs = _configs(tmp_path, shared_data)  # a new global stage: add its config there
    cfg = cls.config_cls(**configs[name])  # type: ignore[attr-defined]
    shards = write_shards(_tables(shared_data), str(tmp_path / "input"))
    fingerprint = stage_fingerprint("hash", 1, name, shards)
    runs = []
    for _ in range(2):
        ctx = ResumableContext(LocalContext(str(tmp_path / "work"), 3), fingerprint)
        runs.append((_untimed(cls(cfg).prepare(ctx, shards)), ctx.counts()))
    (first, counts1), (second, counts2) = runs
    assert counts1["tasks"] > 0 and counts1["tasks_resumed"] == 0
    assert counts2 == {"tasks": counts1["tasks"], "tasks_resumed": counts1["tasks"]}
    assert second == first


def test_a_changed_benchmark_file_changes_decontaminate_prepare_inputs(
    shared_data, tmp_path
) -> None:
    """The benchmarks are read by prepare() but are not shards: their identity is part of the
    stage fingerprint, so an edited benchmark file never resumes the old index or matches."""
    cfg = _configs(tmp_path, shared_data)["decontaminate"]
    stage = stage_class("decontaminate")(stage_class("decontaminate").config_cls(**cfg))
    before = stage.prepare_inputs()
    assert stage.prepare_inputs() == before and len(before) == 1
    with open(tmp_path / "bench.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "q1", "question": "one more item for the benchmark"}) + "\n")
    assert stage.prepare_inputs() != before
    assert stage_fingerprint("h", 1, "d", [], before) != stage_fingerprint(
        "h", 1, "d", [], stage.prepare_inputs()
    )
    assert stage_class("minhash_dedup")(MinHashDedupConfig()).prepare_inputs() is None
