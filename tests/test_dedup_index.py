"""Incremental dedup (dedup/index.py): run 1 over half the shared WARCs builds an index, run 2
over all of them removes what duplicates it; parameters checked; an interrupted update is harmless."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipeline.config import recipe_from_dict, recipe_from_yaml
from pipeline.dedup.exact import ExactDedupConfig, ExactDedupStage, value_hashes
from pipeline.dedup.index import DedupIndex, DedupIndexError
from pipeline.dedup.minhash import CLUSTER_ID, MinHashDedupConfig, MinHashDedupStage
from pipeline.runner.resumable import ResumableContext, stage_fingerprint
from pipeline.runner.run import run_recipe
from pipeline.stages.global_base import GlobalStage, LocalContext, ShardRef
from tests.faults.helpers import FAST_EXTRACT, IN_PROCESS_EXTRACT


@pytest.fixture(scope="module")
def warcs(shared_data: Path, tmp_path_factory) -> list[Path]:
    """The shared WARCs' extracted documents, one Parquet file per WARC (rows sorted by id)."""
    tmp = tmp_path_factory.mktemp("warcs")
    paths = sorted(str(p) for p in (shared_data / "warc").glob("*.warc.gz"))
    recipe = {
        "input": {"paths": paths},
        "output": {"path": str(tmp / "extract")},
        "runtime": {"executor": "local"},
        "stages": [FAST_EXTRACT],  # any extractor's real documents: resiliparse, the fastest
    }
    run_recipe(recipe_from_dict(recipe))
    table = ds.dataset(str(tmp / "extract" / "data"), format="parquet").to_table()
    files = []
    for i, source in enumerate(sorted(set(table.column("source").to_pylist()))):
        rows = table.filter(pa.compute.equal(table.column("source"), source)).sort_by("id")
        files.append(tmp / f"warc-{i}.parquet")
        pq.write_table(rows.select(["id", "text"]), files[-1])
    return files


def refs_of(files: list[Path]) -> list[ShardRef]:
    return [ShardRef(i, str(f), pq.read_metadata(f).num_rows) for i, f in enumerate(files)]


def run(
    stage: GlobalStage, files: list[Path], work: Path, resumable: bool = False
) -> tuple[dict, list[dict]]:
    """prepare() then apply_shard() over `files`: (summary, every row with its reason, in order);
    `resumable`: through the runner's task records (runner/resumable.py)."""
    refs = refs_of(files)
    ctx: Any = LocalContext(str(work), num_partitions=3)
    if resumable:
        ctx = ResumableContext(ctx, stage_fingerprint("hash", 1, "dedup", refs))
    summary = stage.prepare(ctx, refs)
    rows = []
    for ref in refs:
        scored = stage.score_shard(ctx, ref, ref.read(ctx.fs))
        reasons = stage.keep(scored).to_pylist()
        rows += [{**r, "reason": x} for r, x in zip(scored.to_pylist(), reasons, strict=True)]
    return (summary | ctx.counts() if resumable else summary), rows


def exact(index: Path, mode: str = "update", **kw) -> ExactDedupStage:
    return ExactDedupStage(ExactDedupConfig(index=str(index), index_mode=mode, **kw))


def minhash(index: Path | None, mode: str = "update", **kw) -> MinHashDedupStage:
    path = None if index is None else str(index)
    return MinHashDedupStage(MinHashDedupConfig(index=path, index_mode=mode, **kw))


def texts(files: list[Path]) -> list[str | None]:
    return [t for f in files for t in pq.read_table(f).column("text").to_pylist()]


def test_exact_index_read_rejects_indexed_copies_and_in_run_duplicates(warcs, tmp_path) -> None:
    half = warcs[::2]
    index = tmp_path / "index"
    first, rows1 = run(exact(index), half, tmp_path / "w1")
    # Independently: the hashes run 1 saw, then run 2's copies of them or of its own earlier rows.
    seen = {h for h in value_hashes(texts(half), "nfc_strip") if h is not None}
    expected, own, matched = [], set(), 0
    for h in value_hashes(texts(warcs), "nfc_strip"):
        expected.append(h is not None and (h in seen or h in own))
        matched += h in seen
        if h is not None and h not in seen:
            own.add(h)
    assert first["index_documents_before"] == 0 and first["index_appended"] == len(seen)
    assert first["index_matched"] == 0 and first["index_version"] == 1

    second, rows2 = run(exact(index, "read"), warcs, tmp_path / "w2")
    assert [r["reason"] == "exact_duplicate" for r in rows2] == expected
    # every hashed run-1 document comes back in run 2, among others that copy one of them
    hashed1 = sum(r["exact_dup_hash"] is not None for r in rows1)
    assert second["index_matched"] == matched >= hashed1
    assert second["duplicates_in_run"] == sum(expected) - matched > 0
    assert second["index_appended"] == 0 and second["index_version"] == 1
    assert json.loads((index / "manifest.json").read_text())["version"] == 1

    # update appends run 2's new distinct hashes; a third run then finds everything indexed
    third, _ = run(exact(index, "update"), warcs, tmp_path / "w3")
    assert third["index_appended"] == len(own) and third["index_version"] == 2
    manifest = json.loads((index / "manifest.json").read_text())
    assert [s["documents"] for s in manifest["segments"]] == [len(seen), len(own)]
    fourth, rows4 = run(exact(index, "read"), warcs, tmp_path / "w4")
    assert fourth["index_documents_before"] == len(seen) + len(own)
    assert (
        fourth["index_matched"] == fourth["hashed"] == sum(r["reason"] is not None for r in rows4)
    )


def test_minhash_index_read_equals_one_combined_run(warcs, tmp_path) -> None:
    """Run 2 with run 1's index rejects exactly what one run over run 1's documents followed
    by run 2's rejects among run 2's (the indexed documents winning)."""
    half = warcs[::2]
    index = tmp_path / "index"
    first, _ = run(minhash(index), half, tmp_path / "w1")
    second, rows2 = run(minhash(index, "read"), warcs, tmp_path / "w2")
    _, combined = run(minhash(None), half + warcs, tmp_path / "w3")
    reference = combined[len(combined) - len(rows2) :]
    assert [r["id"] for r in reference] == [r["id"] for r in rows2]
    assert [r["reason"] for r in rows2] == [r["reason"] for r in reference]
    tainted = [r[CLUSTER_ID] < 0 for r in rows2]
    assert second["index_matched"] == sum(tainted) > 0
    assert all(r["reason"] == "minhash_duplicate" for r, t in zip(rows2, tainted, strict=True) if t)
    # every signed run-1 document is in the index, so all of them come back as its copies
    assert second["index_documents_before"] == first["index_appended"]
    in_half = [f in half for f in warcs for _ in range(pq.read_metadata(f).num_rows)]
    assert sum(t for t, h in zip(tainted, in_half, strict=True) if h) == first["index_appended"]
    assert second["duplicates_in_run"] == sum(r["reason"] is not None for r in rows2) - sum(tainted)


def test_minhash_indexed_document_wins_under_any_keep(warcs, tmp_path) -> None:
    index = tmp_path / "index"
    run(minhash(index, keep="longest"), warcs[:1], tmp_path / "w1")
    second, rows = run(minhash(index, "read", keep="longest"), warcs[:2], tmp_path / "w2")
    n = len(pq.read_table(warcs[0]))
    assert second["index_matched"] >= n - first_empty(rows[:n])
    assert all(r["reason"] == "minhash_duplicate" for r in rows if r[CLUSTER_ID] < 0)


def first_empty(rows: list[dict]) -> int:
    """Documents without any word (no shingle, never indexed)."""
    return sum(1 for r in rows if not (r["text"] or "").split())


@pytest.mark.parametrize(
    ("stage", "changed", "key"),
    [
        ("exact", {"normalization": "lowercase"}, "normalization.lowercase"),
        ("exact", {"column": "html"}, "column"),
        ("minhash", {"num_bands": 16, "rows_per_band": 8}, "num_bands"),
        ("minhash", {"seed": 7}, "seed"),
        ("minhash", {"lowercase": False}, "normalization.lowercase"),
    ],
)
def test_index_built_with_other_params_is_refused(tmp_path, stage, changed, key) -> None:
    make = exact if stage == "exact" else minhash
    file = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["one two three", "one two three"]}), file)
    run(make(tmp_path / "index"), [file], tmp_path / "w1")
    if "column" in changed:
        pq.write_table(pa.table({"id": ["a"], "text": ["x"], "html": ["<p>x</p>"]}), file)
    with pytest.raises(
        DedupIndexError, match=rf"built with {re.escape(key)}=.*this run has {re.escape(key)}="
    ):
        run(make(tmp_path / "index", "read", **changed), [file], tmp_path / "w2")


def test_read_without_index_and_verify_with_index_are_refused(tmp_path) -> None:
    file = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": ["one two three"]}), file)
    with pytest.raises(DedupIndexError, match="no index there .index_mode: read needs one"):
        run(exact(tmp_path / "none", "read"), [file], tmp_path / "w")
    with pytest.raises(ValidationError, match="verify needs signatures the index does not keep"):
        MinHashDedupConfig(index=str(tmp_path / "i"), verify="signature")


@pytest.mark.parametrize("make", [exact, minhash])
def test_killed_update_leaves_the_old_index_and_a_rerun_replaces_its_own_segment(
    warcs, tmp_path, monkeypatch, make
) -> None:
    index = tmp_path / "index"
    first, _ = run(make(index), warcs[:1], tmp_path / "w1")
    before = (index / "manifest.json").read_text()
    _, reference = run(make(index, "read"), warcs[:2], tmp_path / "ref")

    def killed(self, records: int, documents: int) -> dict:
        raise KeyboardInterrupt  # the update's segment is written, its manifest is not

    with monkeypatch.context() as m:
        m.setattr(DedupIndex, "commit", killed)
        with pytest.raises(KeyboardInterrupt):
            run(make(index, "update"), warcs[:2], tmp_path / "w2")
    assert (index / "segments" / "000002").is_dir()  # the orphan segment
    assert (index / "manifest.json").read_text() == before
    _, again = run(make(index, "read"), warcs[:2], tmp_path / "ref2")
    assert [r["reason"] for r in again] == [r["reason"] for r in reference]

    # The update rerun commits segment 2; rerun in the same work directory (a prepare resumed
    # after its commit), it replaces its own segment instead of matching itself.
    second, rows = run(make(index, "update"), warcs[:2], tmp_path / "w2")
    redo, rows_redo = run(make(index, "update"), warcs[:2], tmp_path / "w2")
    assert [r["reason"] for r in rows_redo] == [r["reason"] for r in rows]
    assert redo["index_matched"] == second["index_matched"]
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["version"] == 3
    assert [s["id"] for s in manifest["segments"]] == ["000001", "000002"]
    # the same work directory over other shards (an overwritten output) is another run: it appends
    shutil.rmtree(tmp_path / "w2")  # as the runner empties a work dir stamped for other inputs
    other, _ = run(make(index, "update"), warcs[2:3], tmp_path / "w2")
    assert other["index_documents_before"] == first["index_appended"] + second["index_appended"]
    assert len(json.loads((index / "manifest.json").read_text())["segments"]) == 3


@pytest.mark.parametrize("make", [exact, minhash])
def test_update_killed_in_a_partition_task_resumes_its_finished_tasks(
    warcs, tmp_path, monkeypatch, make
) -> None:
    """Killed while writing partition 1 of its segment, the resumed update reruns only the
    unfinished tasks and commits the same index as an uninterrupted update."""
    files = warcs[:3]
    whole, rows = run(make(tmp_path / "whole"), files, tmp_path / "w-whole", resumable=True)
    write = DedupIndex.write

    def killed(self, part: int, records) -> None:
        if part == 1:
            raise KeyboardInterrupt
        write(self, part, records)

    with monkeypatch.context() as m:
        m.setattr(DedupIndex, "write", killed)
        with pytest.raises(KeyboardInterrupt):
            run(make(tmp_path / "index"), files, tmp_path / "w", resumable=True)
    assert not (tmp_path / "index" / "manifest.json").exists()
    resumed, rows2 = run(make(tmp_path / "index"), files, tmp_path / "w", resumable=True)
    assert resumed["tasks_resumed"] == 3 + 1  # the shard tasks and partition 0's
    assert rows2 == rows
    assert {
        k: v for k, v in resumed.items() if not k.startswith(("index", "tasks", "timings"))
    } == {k: v for k, v in whole.items() if not k.startswith(("index", "tasks", "timings"))}
    for name in ("whole", "index"):
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert manifest["version"] == 1
        assert manifest["segments"][0]["documents"] == whole["index_appended"] > 0
    parts = [(tmp_path / n / "segments" / "000001").glob("part-*.bin") for n in ("whole", "index")]
    a, b = (sorted(p.read_bytes() for p in ps) for ps in parts)
    assert a == b


@pytest.mark.e2e
@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_runner_reports_index_matches_vs_new_duplicates(
    demo_warc, tmp_path, request, executor
) -> None:
    """stats.json "global" and report.md say how many documents matched the index (the index
    travels to Ray tasks and is written by them)."""
    if executor == "ray":
        request.getfixturevalue("ray_session")
    index = tmp_path / "index"
    for out, mode in (("run1", "update"), ("run2", "read")):
        recipe = {
            "input": {"paths": [str(demo_warc)]},
            "output": {"path": str(tmp_path / out)},
            "runtime": {"executor": executor},
            "stages": [
                IN_PROCESS_EXTRACT,
                {"stage": "exact_dedup", "index": str(index), "index_mode": mode},
            ],
        }
        stats = run_recipe(recipe_from_dict(recipe)).stats
    summary = stats["global"]["exact_dedup"]
    assert summary["index_documents_before"] == 8  # the demo's 8 distinct texts
    assert summary["index_matched"] == stats["stages"][1]["docs_in"] == 10
    assert summary["duplicates_in_run"] == 0
    assert stats["stages"][1]["removed_by_reason"] == {"exact_duplicate": 10}
    report = (tmp_path / "run2" / "report.md").read_text()
    assert "index_matched 10" in report and "duplicates_in_run 0" in report


def test_index_path_resolves_against_the_recipe(tmp_path) -> None:
    text = "input: {paths: [a.warc.gz]}\noutput: {path: out}\nstages:\n"
    text += (
        "  - {stage: exact_dedup, index: idx/exact}\n  - {stage: minhash_dedup, index: s3://b/i}\n"
    )
    recipe = recipe_from_yaml(text, base_dir=tmp_path)
    assert recipe.stages[0].index == str(tmp_path / "idx" / "exact")
    assert recipe.stages[1].index == "s3://b/i"
