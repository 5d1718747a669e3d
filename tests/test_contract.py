"""The stage contract: declarations, the plan check before any work, no silent empty runs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import recipe_from_dict
from pipeline.errors import ConfigError
from pipeline.registry import STAGES, available_stages
from pipeline.runner.plan import check_plan
from pipeline.stages.contract import stage_name_of
from pipeline.stages.extract import ExtractStage
from tests.faults.helpers import FAST_EXTRACT, WGET, curate, stats_of, write_recipe


def _recipe(stages: list[dict]) -> object:
    return recipe_from_dict({"output": {"path": "/tmp/unused"}, "stages": stages})


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _no_output(out: Path) -> None:
    """Nothing was written: no shard, no run record."""
    assert not out.exists() or not any(out.rglob("*.parquet"))
    assert not (out / "_run").exists()


GLOBAL = {
    "exact_dedup",
    "minhash_dedup",
    "line_dedup",
    "substring_dedup",
    "decontaminate",
    "semdedup",
    "d4",
    "top_fraction",
}


def test_every_stage_declares_itself_and_its_name_comes_from_its_config() -> None:
    assert set(STAGES) == set(available_stages())
    for name, cls in available_stages().items():
        assert cls.name == name == stage_name_of(cls.config_cls)
        assert cls.kind == ("global" if name in GLOBAL else "map")
        # The defaults, unvalidated: decontaminate's `benchmarks` has none.
        c = cls.contract(cls.config_cls.model_construct())
        assert c.name == name and c.requires and c.produces == cls.score_columns


def test_a_stage_name_that_differs_from_its_config_is_refused() -> None:
    from pipeline.stages.base import Stage, StageConfig

    class Cfg(StageConfig):
        stage: str = "right"

    with pytest.raises(TypeError, match="differs from its config"):

        class Wrong(Stage):  # noqa: F841
            name = "wrong"
            config_cls = Cfg


def test_declarations_follow_the_config() -> None:
    sandboxed = ExtractStage.contract(ExtractStage.config_cls())
    in_process = ExtractStage.contract(ExtractStage.config_cls(timeout_s=None))
    assert (sandboxed.requires, sandboxed.drops) == (("html",), ("html",))
    assert (sandboxed.resources.helper_processes, in_process.resources.helper_processes) == (1, 0)
    exact = available_stages()["exact_dedup"]
    assert exact.contract(exact.config_cls(column="html")).requires == ("html",)
    sem = available_stages()["semdedup"]
    cfg = sem.config_cls(embeddings="none", embedder="light", device="cpu")
    assert "semdedup_embedding" not in sem.contract(cfg).produces
    assert sem.contract(cfg).resources.gpus == 0
    assert sem.contract(sem.config_cls()).resources.gpus is None  # auto


def test_a_misordered_recipe_names_stage_column_and_producer() -> None:
    recipe = _recipe([{"stage": "gopher_quality"}, {"stage": "extract"}])
    with pytest.raises(ConfigError) as e:
        check_plan(recipe, ["warc"])
    assert "stages[0] (gopher_quality) needs column `text`" in str(e.value)
    assert "extract (stages[1]) produces it: put it before gopher_quality" in str(e.value)
    check_plan(_recipe([{"stage": "extract"}, {"stage": "gopher_quality"}]), ["warc"])


def test_html_dedup_after_extract_is_refused() -> None:
    recipe = _recipe([{"stage": "extract"}, {"stage": "exact_dedup", "column": "html"}])
    with pytest.raises(ConfigError, match=r"exact_dedup\) needs column `html`.*extract removes"):
        check_plan(recipe, ["warc"])
    check_plan(
        _recipe([{"stage": "exact_dedup", "column": "html"}, {"stage": "extract"}]), ["warc"]
    )


@pytest.mark.usefixtures("shared_data")
def test_misordered_recipe_exits_2_before_any_output(capsys, tmp_path) -> None:
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [WGET], out, [{"stage": "langid"}, FAST_EXTRACT])
    result = curate(capsys, "run", recipe)
    assert result.code == 2
    assert "stages[0] (langid) needs column `text`" in result.err
    assert result.err.count("\n") == 1  # one line, no traceback
    _no_output(out)


def test_extract_on_text_jsonl_exits_2_naming_the_column(capsys, tmp_path) -> None:
    data = _jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "Some text here."}])
    out = tmp_path / "out"
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [data], out))
    assert result.code == 2
    assert "stages[0] (extract) needs column `html`, which jsonl input does not have" in result.err
    assert "remove extract for jsonl input" in result.err
    _no_output(out)


def test_wrong_text_field_exits_2_naming_key_and_fields_seen(capsys, tmp_path) -> None:
    rows = [{"id": str(i), "content": f"Document number {i}.", "lang": "en"} for i in range(71)]
    data = _jsonl(tmp_path / "docs.jsonl", rows)
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [data], out, [{"stage": "gopher_quality"}])
    result = curate(capsys, "run", recipe)
    assert result.code == 2
    assert "no record was usable (71 missing_text)" in result.err
    assert "fields seen: id, content, lang" in result.err
    assert "set input.text_field" in result.err
    _no_output(out)
    stats = curate(capsys, "stats", str(data), "--executor", "local", "--output", tmp_path / "s")
    assert stats.code == 2 and "no document has text to count" in stats.err
    assert "fields seen: id, content, lang" in stats.err


def test_a_later_unit_with_the_wrong_field_fails_the_run(capsys, tmp_path) -> None:
    """The preflight reads the first file only; the worker checks every unit."""
    good = _jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "fine"}])
    bad = _jsonl(tmp_path / "b.jsonl", [{"id": "b", "body": "misnamed"}])
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [good, bad], out, [{"stage": "gopher_quality"}])
    result = curate(capsys, "run", recipe)
    assert result.code == 2
    assert f"{bad}: no record was usable (1 missing_text); fields seen: id, body" in result.err
    assert not (out / "stats.json").exists()
    assert not (out / "data" / "part-00001.parquet").exists()


def test_parquet_without_the_text_column_is_a_config_error(capsys, tmp_path) -> None:
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "body": ["x", "y"]}), path)
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [path], out, [{"stage": "gopher_quality"}])
    result = curate(capsys, "run", recipe)
    assert result.code == 2
    assert "2 missing_text_column" in result.err and "fields seen: id, body" in result.err


def test_some_missing_text_is_counted_not_fatal(capsys, tmp_path) -> None:
    rows = [{"id": "a", "text": "Kept text."}, {"id": "b", "body": "no text"}]
    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "r.yaml", [_jsonl(tmp_path / "d.jsonl", rows)], out, [{"stage": "langid"}]
    )
    assert curate(capsys, "run", recipe).code == 0
    assert stats_of(out)["reader"]["skipped"] == {"missing_text": 1}


@pytest.mark.e2e
@pytest.mark.usefixtures("shared_data")
def test_extract_failing_on_every_page_fails_the_run(capsys, tmp_path, monkeypatch) -> None:
    """A broken extractor is not a filter: the run fails through runtime.max_error_fraction."""
    stage_cls = available_stages()["extract"]

    def score(self, batch):
        raise RuntimeError("extractor exploded")

    monkeypatch.setattr(stage_cls, "score", score)
    out = tmp_path / "out"
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [WGET], out))
    assert result.code == 2
    assert "stage extract failed on 22 of 22 documents (100.0% > runtime.max_error_fraction" in (
        result.err
    )
    assert "first error: RuntimeError: extractor exploded" in result.err
    stats = stats_of(out)  # accounting was done and written first
    assert stats["accounting"] == "ok"
    assert stats["stages"][0]["removed_by_reason"] == {"extract_error": 22}
    assert stats["stages"][0]["first_error"] == "RuntimeError: extractor exploded"


@pytest.mark.e2e
@pytest.mark.usefixtures("shared_data")
def test_max_error_fraction_one_never_fails(capsys, tmp_path, monkeypatch) -> None:
    def score(self, batch):
        raise RuntimeError("extractor exploded")

    monkeypatch.setattr(available_stages()["extract"], "score", score)
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [WGET], out, max_error_fraction=1.0)
    assert curate(capsys, "run", recipe).code == 0
    assert stats_of(out)["stages"][0]["removed_by_reason"] == {"extract_error": 22}


def test_curate_stages_shows_declarations_and_refuses_unknown_names(capsys) -> None:
    result = curate(capsys, "stages", "extract")
    assert result.code == 0
    assert "Requires: `html`. Produces: `text`, `html_bytes`, `extract_status`. Drops: `html`." in (
        result.out
    )
    assert "helper processes 1" in result.out
    bad = curate(capsys, "stages", "nosuchstage")
    assert bad.code == 2 and bad.err.startswith("curate: error: unknown stage 'nosuchstage'")
    assert "Traceback" not in bad.err


@pytest.mark.e2e
@pytest.mark.usefixtures("shared_data")
def test_an_extractor_raising_on_every_page_names_its_error(capsys, tmp_path, monkeypatch) -> None:
    """Extraction failing inside the extractor (not the stage) is `extract_error` per page, and
    the run fails through max_error_fraction naming the extractor's first error."""
    from pipeline.stages import extract as extract_module

    real = extract_module.in_process

    def raising(*args: object) -> str:
        raise RuntimeError("selector returned nothing")

    monkeypatch.setattr(extract_module, "in_process", lambda fn, items: real(raising, items))
    out = tmp_path / "out"
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [WGET], out))
    assert result.code == 2
    assert "stage extract failed on 22 of 22 documents" in result.err
    assert "first error: http" in result.err and "selector returned nothing" in result.err
    assert stats_of(out)["stages"][0]["removed_by_reason"] == {"extract_error": 22}


def test_a_corrupt_fasttext_model_is_a_config_error_before_work(capsys, tmp_path) -> None:
    """Issue 22 item 6: a fastText header followed by random bytes used to hang the loader."""
    import os
    import struct

    from pipeline.stages.fasttext_check import check_fasttext_model
    from pipeline.stages.langid import bundled_model_path

    bad = tmp_path / "bad.ftz"
    bad.write_bytes(struct.pack("<2i", 793712314, 12) + os.urandom(200_000))
    data = _jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "Hello there, world."}])
    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "r.yaml", [data], out, [{"stage": "langid", "model_path": str(bad)}]
    )
    result = curate(capsys, "run", recipe)
    assert result.code == 2
    assert f"stages[0] (langid).model_path: {bad}: corrupt fastText" in result.err
    _no_output(out)
    not_a_model = tmp_path / "x.bin"
    not_a_model.write_bytes(b"just some bytes, not a model" * 10)
    with pytest.raises(ConfigError, match="bad magic number"):
        check_fasttext_model(str(not_a_model), "k")
    real = str(bundled_model_path())
    check_fasttext_model(real, "k")  # the packaged lid.176.ftz passes and loads
    with pytest.raises(ConfigError, match=r"k: .* did not load within 0.001 s"):
        check_fasttext_model(real, "k", limit_s=0.001)


def test_a_hf_model_path_that_is_not_a_model_is_refused(tmp_path) -> None:
    from pipeline.prune.embed import minilm_path

    sem = available_stages()["semdedup"]
    empty = tmp_path / "model"
    empty.mkdir()
    cfg = sem.config_cls(embedder="hf", model_path=str(empty))
    with pytest.raises(ConfigError, match=r"k.model_path: .*config.json missing"):
        sem.verify(cfg, "k", None)
    (empty / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ConfigError, match="no weights"):
        sem.verify(cfg, "k", None)
    sem.verify(sem.config_cls(embedder="hf", model_path=minilm_path()), "k", None)  # a real model


def test_an_ablation_over_a_later_file_without_text_fails(capsys, tmp_path) -> None:
    """The ablation's score cache reads units as `curate run` does: no silent empty variant."""
    good = _jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "The first text is fine here."}])
    bad = _jsonl(tmp_path / "b.jsonl", [{"id": "b", "body": "misnamed"}])
    base = write_recipe(
        tmp_path / "base.yaml", [good, bad], tmp_path / "unused", [{"stage": "gopher_quality"}]
    )
    spec = tmp_path / "abl.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": "t",
                "base": str(base),
                "output": {"path": str(tmp_path / "abl")},
                "variants": {"a": {}, "b": {"set": {"gopher_quality.min_doc_words": 10}}},
            }
        )
    )
    result = curate(capsys, "ablate", spec, "--executor", "local")
    assert result.code == 2
    assert f"{bad}: no record was usable (1 missing_text); fields seen: id, body" in result.err


def test_in_process_extraction_needs_the_cpu_guard(capsys, tmp_path) -> None:
    """Issue 22 item 6: in-process extraction keeps a time guard or is refused."""
    recipe = recipe_from_dict(
        {
            "output": {"path": str(tmp_path / "out")},
            "runtime": {"stage_cpu_s_per_doc": None},
            "stages": [FAST_EXTRACT],
        }
    )
    with pytest.raises(ConfigError, match=r"stages\[0\] \(extract\).timeout_s: null extracts"):
        check_plan(recipe, ["warc"])
    sandboxed = {**FAST_EXTRACT, "timeout_s": 5}
    check_plan(recipe_from_dict({**recipe.to_dict(), "stages": [sandboxed]}), ["warc"])


def test_an_input_that_gives_no_document_fails_the_run(capsys, tmp_path) -> None:
    """An empty file reconciles (0 = 0 + 0) but is not a successful curation."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "out"
    result = curate(
        capsys, "run", write_recipe(tmp_path / "r.yaml", [empty], out, [{"stage": "langid"}])
    )
    assert result.code == 2
    assert "the input gave no document: 1 file(s), 0 record(s) read (skipped: none)" in result.err
    assert stats_of(out)["accounting"] == "ok"  # written first, as for max_error_fraction
