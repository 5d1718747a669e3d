"""Global stages in the runner: segments, prepare once, per-shard apply, accounting, resume."""

from __future__ import annotations

import json
from functools import partial
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline import config as config_module
from pipeline import registry
from pipeline.config import recipe_from_dict
from pipeline.errors import CurateError
from pipeline.runner.run import run_recipe
from pipeline.stages.base import StageConfig
from pipeline.stages.global_base import GlobalContext, GlobalStage, ShardRef
from tests.faults.helpers import IN_PROCESS_EXTRACT
from tests.test_runner import read_output


class SameTextConfig(StageConfig):
    stage: Literal["same_text"] = "same_text"


def _texts_of(fs: Any, shard: ShardRef) -> list[tuple[str, int, int]]:
    if shard.path is None:
        return []
    texts = shard.read(fs, columns=["text"]).column("text").to_pylist()
    return [(t, shard.index, row) for row, t in enumerate(texts)]


class SameTextStage(GlobalStage):
    """A minimal global stage for the runner tests: drops later copies of an identical text."""

    config_cls = SameTextConfig
    prepared = 0
    fail_on_shard: int | None = None

    def prepare(self, ctx: GlobalContext, shards: list[ShardRef]) -> dict[str, Any]:
        SameTextStage.prepared += 1
        first: dict[str, tuple[int, int]] = {}
        for rows in ctx.map(partial(_texts_of, ctx.fs), shards):
            for text, shard, row in rows:
                first.setdefault(text, (shard, row))
        keep = sorted(first.values())
        with ctx.fs.open(f"{ctx.work_dir}/keep.json", "w") as f:
            json.dump(keep, f)
        return {"distinct": len(keep)}

    def score_shard(self, ctx: GlobalContext, shard: ShardRef, table: pa.Table) -> pa.Table:
        if shard.index == SameTextStage.fail_on_shard:
            raise RuntimeError("disk on fire")
        with ctx.fs.open(f"{ctx.work_dir}/keep.json", "r") as f:
            keep = {tuple(k) for k in json.load(f)}
        flags = [(shard.index, row) in keep for row in range(table.num_rows)]
        return table.append_column("same_text_first", pa.array(flags))

    def keep(self, table: pa.Table) -> pa.Array:
        first = table.column("same_text_first")
        return pc.if_else(first, pa.scalar(None, pa.string()), "same_text_duplicate")


@pytest.fixture
def with_test_stage(monkeypatch):
    monkeypatch.setitem(registry.STAGES, "same_text", f"{__name__}:SameTextStage")
    registry.stage_class.cache_clear()
    config_module._recipe_model.cache_clear()
    yield
    registry.stage_class.cache_clear()
    config_module._recipe_model.cache_clear()


def _recipe(inputs: list[str], out, stages: list[dict]) -> Any:
    return recipe_from_dict(
        {
            "input": {"paths": inputs},
            "output": {"path": str(out), "keep_rejected": True},
            "runtime": {"executor": "local", "batch_size": 4},
            "stages": stages,
        }
    )


@pytest.mark.e2e
def test_global_stage_between_map_stages(with_test_stage, demo_warc, shared_data, tmp_path) -> None:
    inputs = [str(demo_warc), str(demo_warc.parent / "copy.warc.gz")]
    (demo_warc.parent / "copy.warc.gz").write_bytes(demo_warc.read_bytes())
    out = tmp_path / "run"
    stages = [
        IN_PROCESS_EXTRACT,
        {"stage": "same_text"},
        {"stage": "langid", "languages": ["en"]},
    ]
    SameTextStage.prepared = 0
    result = run_recipe(_recipe(inputs, out, stages))
    stats = result.stats
    extract, same, langid = stats["stages"]
    assert extract["docs_kept"] == 20  # 10 per copy of the demo WARC
    # The second file is a full copy, and the demo holds a mirrored page and the same Japanese
    # page in UTF-8 and EUC-JP: 8 distinct texts.
    assert same["docs_in"] == 20 and same["docs_kept"] == 8
    assert same["removed_by_reason"] == {"same_text_duplicate": 12}
    assert langid["docs_in"] == 8
    assert stats["global"]["same_text"]["distinct"] == 8
    assert SameTextStage.prepared == 1
    table = read_output(out)
    assert table.num_rows == stats["output"]["documents"] == langid["docs_kept"]
    assert set(table.column("lang").to_pylist()) == {"en"}
    assert "same_text_first" in table.column_names
    assert not (out / "_work").exists()
    rejected = (out / "rejected" / "same_text").glob("*.parquet")
    assert sum(pq.read_table(p).num_rows for p in rejected) == 12
    # Per unit across segments: segment 1's input is segment 0's output.
    seg0 = json.loads((out / "_run" / "units" / "seg00" / "part-00001.json").read_text())
    seg1 = json.loads((out / "_run" / "units" / "seg01" / "part-00001.json").read_text())
    assert seg1["input_docs"] == seg0["output_docs"] == 10
    assert seg1["stages"][0]["docs_kept"] == 0  # every text of the copy was seen in unit 0

    # Rerun: everything is finished, nothing is prepared or processed again.
    again = run_recipe(_recipe(inputs, out, stages))
    assert (again.units_run, again.units_skipped) == (0, 4)
    assert SameTextStage.prepared == 1
    assert read_output(out).equals(table)


@pytest.mark.e2e
def test_resume_after_a_crash_inside_the_second_segment(
    with_test_stage, demo_warc, tmp_path
) -> None:
    inputs = [str(demo_warc), str(demo_warc.parent / "copy2.warc.gz")]
    (demo_warc.parent / "copy2.warc.gz").write_bytes(demo_warc.read_bytes())
    stages = [IN_PROCESS_EXTRACT, {"stage": "same_text"}]
    clean = tmp_path / "clean"
    run_recipe(_recipe(inputs, clean, stages))
    out = tmp_path / "crashed"
    SameTextStage.prepared = 0
    SameTextStage.fail_on_shard = 1
    try:
        with pytest.raises(CurateError, match="run failed: RuntimeError: disk on fire"):
            run_recipe(_recipe(inputs, out, stages))
    finally:
        SameTextStage.fail_on_shard = None
    assert (out / "_work").exists()  # kept for the resume
    assert not (out / "data" / "part-00001.parquet").exists()
    again = run_recipe(_recipe(inputs, out, stages))
    assert (again.units_run, again.units_skipped) == (1, 3)
    assert SameTextStage.prepared == 1  # prepare is not repeated
    assert read_output(out).equals(read_output(clean))
    assert again.stats["stages"] == [
        {
            **s,
            "wall_s": again.stats["stages"][i]["wall_s"],
            "cpu_s": again.stats["stages"][i]["cpu_s"],
        }
        for i, s in enumerate(run_recipe(_recipe(inputs, clean, stages)).stats["stages"])
    ]


@pytest.mark.e2e
def test_exact_dedup_on_ray_matches_local_and_counts_reasons(demo_warc, tmp_path, ray_session):
    """A real global stage through both executors: same kept set, same accounting."""
    copy = demo_warc.parent / "copy3.warc.gz"
    copy.write_bytes(demo_warc.read_bytes())
    stages = [IN_PROCESS_EXTRACT, {"stage": "exact_dedup"}, {"stage": "langid"}]
    runs = {}
    for executor in ("local", "ray"):
        recipe = recipe_from_dict(
            {
                "input": {"paths": [str(demo_warc), str(copy)]},
                "output": {"path": str(tmp_path / executor), "keep_rejected": True},
                "runtime": {"executor": executor, "num_partitions": 3},
                "stages": stages,
            }
        )
        runs[executor] = run_recipe(recipe).stats
    local, on_ray = runs["local"], runs["ray"]
    dedup = local["stages"][1]
    assert dedup["docs_in"] == 20
    assert dedup["removed_by_reason"] == {"exact_duplicate": 12}  # 8 distinct texts
    assert [s["removed_by_reason"] for s in on_ray["stages"]] == [
        s["removed_by_reason"] for s in local["stages"]
    ]
    # Score histograms merge per unit in any order: Ray's equal the local run's.
    assert local["stages"][2]["histograms"]["lang_score"]["bins"]
    assert on_ray["stages"][2]["histograms"] == local["stages"][2]["histograms"]
    assert read_output(tmp_path / "ray").equals(read_output(tmp_path / "local"))


@pytest.mark.e2e
def test_minhash_s_curve_is_in_the_report(demo_warc, tmp_path) -> None:
    recipe = recipe_from_dict(
        {
            "input": {"paths": [str(demo_warc)]},
            "output": {"path": str(tmp_path / "mh")},
            "runtime": {"executor": "local"},
            "stages": [IN_PROCESS_EXTRACT, {"stage": "minhash_dedup", "preset": "fineweb"}],
        }
    )
    stats = run_recipe(recipe).stats
    summary = stats["global"]["minhash_dedup"]
    assert (summary["num_bands"], summary["rows_per_band"]) == (14, 8)
    assert summary["s_curve"]["0.80"] == pytest.approx(1 - (1 - 0.8**8) ** 14, abs=1e-4)
    # Near-duplicates in the demo: the mirrored page, the EUC-JP copy of the Japanese page, and
    # the page holding 3 of the 4 paragraphs of the night-train article.
    assert stats["stages"][1]["removed_by_reason"] == {"minhash_duplicate": 3}
    report = (tmp_path / "mh" / "report.md").read_text()
    assert "## Global stages" in report and "P(s) = 1 - (1 - s^r)^b with b = 14, r = 8" in report
