"""The spine end to end: recipe -> readers -> stages -> Parquet, on Ray and locally, with resume."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline.cli import main
from pipeline.config import recipe_from_dict
from pipeline.errors import AccountingError, OutputError
from pipeline.runner.accounting import StageStats, check_run
from pipeline.runner.kernel import run_stage
from pipeline.runner.run import run_recipe
from pipeline.stages.base import Stage, StageConfig


def _recipe(inputs: list[str], out: Path, executor: str = "local", **runtime) -> object:
    return recipe_from_dict(
        {
            "input": {"paths": inputs},
            "output": {"path": str(out), "keep_rejected": True, "rows_per_row_group": 4},
            "runtime": {"executor": executor, "batch_size": 5, **runtime},
            "stages": [
                {"stage": "extract", "backend": "trafilatura"},
                {"stage": "langid", "languages": ["en", "de", "fr", "es", "ja"]},
            ],
        }
    )


def read_output(out: Path) -> pa.Table:
    """All kept documents of a run, sorted by id."""
    return ds.dataset(str(out / "data"), format="parquet").to_table().sort_by("id")


@pytest.mark.e2e
def test_demo_run_local_accounting_and_outputs(demo_warc, tmp_path) -> None:
    out = tmp_path / "run"
    result = run_recipe(_recipe([str(demo_warc)], out))
    stats = json.loads((out / "stats.json").read_text())
    assert stats == result.stats
    r = stats["reader"]
    assert r["records"] == 22
    assert r["records"] == r["documents"] + sum(r["skipped"].values())
    assert r["skipped"]["request"] == 7
    assert r["documents"] == 11
    extract, langid = stats["stages"]
    assert extract["docs_in"] == 11
    assert extract["removed_by_reason"] == {"extract_empty": 1}
    assert langid["docs_in"] == extract["docs_kept"] == 10
    assert langid["docs_kept"] + langid["docs_rejected"] == langid["docs_in"]
    table = read_output(out)
    assert table.num_rows == stats["output"]["documents"] == langid["docs_kept"]
    assert {"id", "url", "text", "lang", "lang_score", "source"} <= set(table.column_names)
    assert "html" not in table.column_names
    langs = dict(
        zip(table.column("url").to_pylist(), table.column("lang").to_pylist(), strict=True)
    )
    assert langs["https://wandern.example.de/touren/hoehenweg"] == "de"
    assert langs["https://tabi.example.jp/column/onsen-euc"] == "ja"  # EUC-JP via meta charset
    texts = dict(
        zip(table.column("url").to_pylist(), table.column("text").to_pylist(), strict=True)
    )
    assert "温泉" in texts["https://tabi.example.jp/column/onsen-euc"]
    assert "Privacy policy" not in texts["https://garden.example.org/blog/composting-basics"]
    rejected = ds.dataset(str(out / "rejected" / "extract"), format="parquet").to_table()
    assert rejected.column("reason").to_pylist() == ["extract_empty"]
    assert rejected.column("url").to_pylist() == ["https://garden.example.org/tags"]
    report = (out / "report.md").read_text()
    assert "| extract | 11 | 10 | 1 |" in report
    assert "accounting: **ok**" in report


@pytest.mark.e2e
def test_ray_executor_gives_the_same_output_as_local(demo_warc, tmp_path, ray_session) -> None:
    local = tmp_path / "local"
    on_ray = tmp_path / "ray"
    run_recipe(_recipe([str(demo_warc)], local))
    run_recipe(_recipe([str(demo_warc)], on_ray, executor="ray"))
    assert read_output(local).equals(read_output(on_ray))


@pytest.mark.e2e
def test_resume_runs_only_unfinished_units(shared_data, tmp_path, ray_session) -> None:
    inputs = [
        str(shared_data / "warc" / "wget-2024-sample-0000.warc.gz"),
        str(shared_data / "warc" / "wget-2024-sample-0001.warc.gz"),
        str(shared_data / "warc" / "cc-main-2024-22-whirlwind.warc.gz"),
    ]
    out = tmp_path / "run"
    first = run_recipe(_recipe(inputs, out, executor="ray"))
    assert (first.units_run, first.units_skipped) == (3, 0)
    expected = read_output(out)
    # Simulate a crash that lost unit 1: its marker and shard are gone, a temp file is left.
    (out / "_run" / "units" / "seg00" / "part-00001.json").unlink()
    (out / "data" / "part-00001.parquet").rename(out / "data" / "part-00001.parquet.tmp-dead")
    second = run_recipe(_recipe(inputs, out, executor="ray"))
    assert (second.units_run, second.units_skipped) == (1, 2)
    assert read_output(out).equals(expected)
    assert not list(out.rglob("*.tmp-*"))
    assert second.stats["output"] == first.stats["output"]


@pytest.mark.e2e
def test_other_config_in_output_dir_is_refused_unless_overwrite(demo_warc, tmp_path) -> None:
    out = tmp_path / "run"
    run_recipe(_recipe([str(demo_warc)], out))
    other = recipe_from_dict(
        {
            **_recipe([str(demo_warc)], out).to_dict(),
            "stages": [{"stage": "extract", "backend": "resiliparse"}],
        }
    )
    with pytest.raises(OutputError, match="holds a run of a different config"):
        run_recipe(other)
    result = run_recipe(other, overwrite=True)
    assert [s["name"] for s in result.stats["stages"]] == ["extract"]
    assert not (out / "rejected" / "langid").exists()


@pytest.mark.e2e
def test_cli_runs_every_shared_warc_and_accounting_adds_up(
    shared_data, tmp_path, ray_session
) -> None:
    """The CLI over every file of shared/data/warc: records == documents + each counted reason."""
    out = tmp_path / "all"
    config = tmp_path / "recipe.yaml"
    config.write_text(
        "input:\n  paths: [PLACEHOLDER]\noutput:\n  path: unused\nstages:\n"
        "  - stage: extract\n  - stage: langid\n    threshold: 0.5\n"
    )
    files = sorted(str(p) for p in (shared_data / "warc").glob("*.warc*.gz"))
    wet = [f for f in files if f.endswith(".wet.gz")]
    warcs = [f for f in files if f not in wet]
    args = ["run", str(config), "--output", str(out), "--keep-rejected", "--input"]
    assert wet and main([*args, *files]) == 2  # extract on WET text: refused before any work
    assert not out.exists()
    code = main([*args, *warcs])
    assert code == 0
    stats = json.loads((out / "stats.json").read_text())
    per_unit = {Path(u["path"]).name: u for u in stats["units"]}
    assert set(per_unit) == {Path(w).name for w in warcs}
    for marker in (out / "_run" / "units" / "seg00").glob("*.json"):
        unit = json.loads(marker.read_text())
        r = unit["reader"]
        assert r["records"] == r["documents"] + sum(r["skipped"].values()), unit["unit"]["path"]
        upstream = r["documents"]
        for s in unit["stages"]:
            assert s["docs_in"] == upstream == s["docs_kept"] + s["docs_rejected"]
            assert sum(s["removed_by_reason"].values()) == s["docs_rejected"]
            upstream = s["docs_kept"]
        assert unit["output_docs"] == upstream
    r = stats["reader"]
    assert r["records"] == r["documents"] + sum(r["skipped"].values())
    assert stats["output"]["documents"] == read_output(out).num_rows
    assert stats["accounting"] == "ok"


class _Explodes(StageConfig):
    stage: str = "explodes"


class _ExplodingStage(Stage):
    """Fails on any batch containing the word 'boom'."""

    config_cls = _Explodes

    def score(self, batch: pa.Table) -> pa.Table:
        if any("boom" in t for t in batch.column("text").to_pylist()):
            raise ValueError("boom")
        return batch

    def keep(self, batch: pa.Table) -> pa.Array:
        return pa.nulls(batch.num_rows, pa.string())


def test_a_document_that_crashes_a_stage_is_rejected_not_fatal() -> None:
    batch = pa.table({"id": ["a", "b", "c"], "text": ["fine", "boom here", "also fine"]})
    stats = StageStats("explodes")
    kept, rejected = run_stage(_ExplodingStage(_Explodes()), batch, stats)
    assert kept.column("id").to_pylist() == ["a", "c"]
    assert rejected.column("id").to_pylist() == ["b"]
    assert rejected.column("reason").to_pylist() == ["explodes_error"]
    assert stats.reasons == {"explodes_error": 1} and (stats.docs_in, stats.docs_kept) == (3, 2)
    assert stats.first_error == "ValueError: boom"


class _HelperProcessStage(_ExplodingStage):
    """Reports 2.5 CPU seconds of a helper process per call (as the extract sandbox would)."""

    def __init__(self, config: StageConfig) -> None:
        super().__init__(config)
        self.helper = 0.0

    def score(self, batch: pa.Table) -> pa.Table:
        self.helper += 2.5
        return super().score(batch)

    def helper_cpu_s(self) -> float:
        return self.helper


def test_a_stage_is_charged_the_cpu_of_its_helper_processes() -> None:
    stats = StageStats("explodes")
    batch = pa.table({"id": ["a"], "text": ["fine"]})
    run_stage(_HelperProcessStage(_Explodes()), batch, stats)
    run_stage(_HelperProcessStage(_Explodes()), batch, stats)
    assert 5.0 <= stats.cpu_s < 5.5


def test_accounting_violation_is_loud() -> None:
    reader = {"records": 3, "documents": 3, "skipped": {}}
    stage = {"name": "s", "docs_in": 3, "docs_kept": 2, "docs_rejected": 0, "removed_by_reason": {}}
    with pytest.raises(AccountingError, match="in 3 != kept 2 \\+ rejected 0"):
        check_run(reader, [stage], 2)


def test_over_max_chars_matches_counting_every_text(shared_texts: pa.Table) -> None:
    """The texts over a stage's max_chars: skipping the count when no chunk holds that many
    bytes finds what counting each text's characters finds, on the shared texts (whole,
    sliced, rechunked, as large_string, with nulls) at limits around their real lengths, and
    on multi-byte text whose bytes exceed the limit but characters do not."""
    import numpy as np
    import pyarrow.compute as pc

    from pipeline.runner.kernel import over_max_chars
    from pipeline.stages.base import TextStageConfig

    class _Bounded(TextStageConfig):
        stage: str = "explodes"

    def reference(batch: pa.Table, limit: int) -> list[int]:
        lengths = pc.utf8_length(batch.column("text")).fill_null(0)
        return np.flatnonzero(pc.greater(lengths, limit).to_numpy(zero_copy_only=False)).tolist()

    texts = shared_texts.select(["id", "text"])
    lengths = sorted(pc.utf8_length(texts.column("text")).to_pylist())
    limits = [1, lengths[len(lengths) // 2], lengths[-2], lengths[-1], 10_000_000]
    nulls = pa.table({"id": ["n1", "n2"], "text": pa.array([None, "ab"], pa.string())})
    batches = [
        texts,
        texts.slice(10, 40),
        pa.concat_tables([texts.slice(0, 7), nulls, texts.slice(7)]),
        texts.cast(pa.schema([("id", pa.string()), ("text", pa.large_string())])),
        pa.table({"id": ["ja"], "text": ["日本語" * 10]}),  # 30 characters, 90 bytes
    ]
    checked = 0
    for batch in batches:
        for limit in [*limits, 30, 89]:
            stage = _ExplodingStage(_Bounded(max_chars=limit))
            assert over_max_chars(stage, batch).tolist() == reference(batch, limit), limit
            checked += len(reference(batch, limit))
    assert checked > 100
    assert over_max_chars(_ExplodingStage(_Bounded(max_chars=30)), batches[-1]).tolist() == []


def test_split_with_every_row_kept_is_what_filtering_gives() -> None:
    """Nothing rejected: the scored table itself, the same values and chunks as filtering it
    with an all-true mask, and an empty rejected table with a `reason` column."""
    import numpy as np

    from pipeline.runner.kernel import Scored, split

    table = pa.concat_tables(
        [pa.table({"id": ["a", "b"], "text": ["x", "y"]}), pa.table({"id": ["c"], "text": ["z"]})]
    )
    scored = Scored(table, np.arange(3), np.zeros(0, np.int64), None)
    kept, rejected = split(table, scored, np.full(3, None, dtype=object))
    filtered = table.filter(pa.array([True] * 3))
    assert kept.equals(filtered)
    assert (
        [c.num_chunks for c in kept.columns] == [c.num_chunks for c in filtered.columns] == [2, 2]
    )
    assert rejected.num_rows == 0 and rejected.column_names == ["id", "text", "reason"]
    kept, rejected = split(table, scored, np.array([None, "r", None], dtype=object))
    assert kept.column("id").to_pylist() == ["a", "c"]
    assert rejected.column("reason").to_pylist() == ["r"]
