"""Output format and content: dolma-style JSONL shards (output.format), chosen columns
(output.columns) and per-stage token counts (output.tokenizer), on refinedweb runs of a shared WARC."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.config import load_recipe, recipe_from_dict
from pipeline.errors import ConfigError, CurateError
from pipeline.inspect import inspect_path
from pipeline.io.dolma_jsonl import JsonlShardWriter
from pipeline.runner.plan import check_plan
from pipeline.runner.run import run_recipe
from pipeline.stats.compute import StatsOptions, compute_stats
from tests.conftest import REPO

pytestmark = pytest.mark.e2e

WARC = "warc/bl-govuk-2014.warc.gz"  # 32 documents, about half removed along the chain


def _refinedweb(shared_data: Path, out: Path, **output: object):
    return load_recipe(REPO / "configs" / "refinedweb.yaml").with_overrides(
        input={"paths": [str(shared_data / WARC)]},
        output={"path": str(out), **output},
        runtime={"executor": "local", "progress": "off"},
    )


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory) -> dict[str, Path]:
    """The same refinedweb run written as Parquet and as zstd JSONL (rejects kept)."""
    base = tmp_path_factory.mktemp("outfmt")
    out = {}
    for fmt in ("parquet", "jsonl"):
        out[fmt] = base / fmt
        run_recipe(_refinedweb(shared_data, out[fmt], format=fmt))
    return out


def _jsonl(path: Path) -> list[dict]:
    with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as f:
        return [json.loads(line) for line in f.read().decode().splitlines()]


def test_jsonl_loads_with_datasets_and_holds_the_parquet_documents(runs, tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    files = sorted(str(p) for p in (runs["jsonl"] / "data").glob("*"))
    assert [Path(f).name for f in files] == ["part-00000.jsonl.zst"]
    loaded = datasets.load_dataset(
        "json", data_files=files, split="train", cache_dir=str(tmp_path / "hf")
    )
    parquet = pq.read_table(runs["parquet"] / "data").to_pylist()
    assert len(parquet) >= 10
    assert loaded.num_rows == len(parquet)
    assert loaded["id"] == [r["id"] for r in parquet]
    assert loaded["text"] == [r["text"] for r in parquet]
    assert loaded["source"] == [r["source"] for r in parquet]
    assert set(loaded.column_names) == {"id", "text", "source", "metadata"}
    # Every other column is under metadata, with its value (floats as written by JSON).
    for row, want in zip(loaded, parquet, strict=True):
        meta = row["metadata"]
        assert meta["url"] == want["url"] and meta["lang"] == want["lang"] == "en"
        assert meta["lang_score"] == pytest.approx(want["lang_score"])
        assert set(meta) >= set(want) - {"id", "text", "source", "metadata"}
    stats = json.loads((runs["jsonl"] / "stats.json").read_text())
    assert stats["output"]["files"] == ["data/part-00000.jsonl.zst"]
    assert stats["output"]["format"] == "jsonl"
    assert stats["output"]["documents"] == len(parquet)


def test_rejected_jsonl_keeps_reasons(runs) -> None:
    rejected = sorted((runs["parquet"] / "rejected").glob("*/*.parquet"))
    assert rejected
    for p in rejected:
        stage = p.parent.name
        want = {r["id"]: r["reason"] for r in pq.read_table(p).to_pylist()}
        got = _jsonl(runs["jsonl"] / "rejected" / stage / "part-00000.jsonl.zst")
        assert {r["id"]: r["reason"] for r in got} == want
        assert all(r["reason"] for r in got)


def test_resume_after_a_failed_commit_gives_identical_jsonl(
    runs, shared_data, tmp_path, monkeypatch
) -> None:
    """A run whose data shard fails while committing (as if killed) leaves no shard and no
    temporary file; the rerun resumes at the last segment and writes the same bytes as an
    uninterrupted run. A finished run reruns nothing."""
    out = tmp_path / "run"
    real_close = JsonlShardWriter.close

    def failing_close(self: JsonlShardWriter) -> int:
        if "/data/" in self.path:
            raise OSError("disk gone")
        return real_close(self)

    monkeypatch.setattr(JsonlShardWriter, "close", failing_close)
    with pytest.raises(CurateError, match="disk gone"):
        run_recipe(_refinedweb(shared_data, out, format="jsonl"))
    assert not [p for p in (out / "data").rglob("*") if p.is_file()]
    monkeypatch.setattr(JsonlShardWriter, "close", real_close)
    rerun = run_recipe(_refinedweb(shared_data, out, format="jsonl"))
    assert (rerun.units_run, rerun.units_skipped) == (1, 2)  # three segments, one unit
    want = (runs["jsonl"] / "data" / "part-00000.jsonl.zst").read_bytes()
    assert (out / "data" / "part-00000.jsonl.zst").read_bytes() == want
    assert rerun.stats["accounting"] == "ok"
    again = run_recipe(_refinedweb(shared_data, out, format="jsonl"))
    assert (again.units_run, again.units_skipped) == (0, 3)


def test_stats_of_the_jsonl_run_equal_the_parquet_run(runs, tmp_path) -> None:
    results = {}
    for fmt, run in runs.items():
        results[fmt] = compute_stats(
            StatsOptions(
                str(run),
                output=str(tmp_path / fmt),
                ngrams=(1, 3),
                windows=(),
                subsamples=2,
                per_stage=True,
                executor="local",
                plots=False,
            )
        )
    a, b = results["parquet"], results["jsonl"]
    assert a.source.sets == b.source.sets
    assert [f.format for f in b.source.files] == ["dolma"] * len(b.source.files)
    for key in a.totals:
        assert (a.totals[key] == b.totals[key]).all(), key
    for key in a.distinct:
        assert (a.distinct[key] == b.distinct[key]).all(), key
    assert a.totals["documents"][0, 0] > a.totals["documents"][-1, 0] > 0


def test_inspect_reads_a_jsonl_run(runs) -> None:
    text = inspect_path(str(runs["jsonl"]), sample=1)
    n = json.loads((runs["jsonl"] / "stats.json").read_text())["output"]["documents"]
    assert f"jsonl: 1 files, {n:,} rows" in text
    assert "  lang" in text and "    text: " in text


def test_minimal_columns(runs, shared_data, tmp_path) -> None:
    """`minimal` keeps id, url, text, lang, source in the kept shards; rejected shards carry
    the ones they have plus reason; JSONL puts url and lang under metadata."""
    run_recipe(_refinedweb(shared_data, tmp_path / "p", columns="minimal"))
    kept = pq.read_table(tmp_path / "p" / "data")
    assert kept.column_names == ["id", "url", "text", "lang", "source"]
    assert kept.num_rows > 0
    langid = pq.read_table(tmp_path / "p" / "rejected" / "langid")
    assert langid.column_names == ["id", "url", "text", "lang", "source", "reason"]
    for stage in ("extract", "gopher_quality"):  # the minimal columns each one has, + reason
        full = pq.read_schema(runs["parquet"] / "rejected" / stage / "part-00000.parquet").names
        want = [c for c in ["id", "url", "text", "lang", "source"] if c in full] + ["reason"]
        got = pq.read_table(tmp_path / "p" / "rejected" / stage).column_names
        assert got == want
    run_recipe(_refinedweb(shared_data, tmp_path / "j", columns="minimal", format="jsonl"))
    rows = _jsonl(tmp_path / "j" / "data" / "part-00000.jsonl.zst")
    assert [r["id"] for r in rows] == kept.column("id").to_pylist()
    assert all(set(r) == {"id", "text", "source", "metadata"} for r in rows)
    assert all(set(r["metadata"]) == {"url", "lang"} for r in rows)


def test_column_list_and_unknown_column_refused_before_work(shared_data, tmp_path) -> None:
    run_recipe(
        _refinedweb(
            shared_data, tmp_path / "ok", columns=["text", "id", "gopher_rep_dup_line_frac"]
        )
    )
    assert pq.read_table(tmp_path / "ok" / "data").column_names == [
        "text",
        "id",
        "gopher_rep_dup_line_frac",
    ]
    out = tmp_path / "bad"
    # A name nothing can produce: refused when the recipe is read.
    with pytest.raises(ConfigError, match=r"unknown column 'langauge'.*known: .*lang"):
        _refinedweb(shared_data, out, columns=["id", "text", "langauge"])
    # `html` is read from WARC but extract drops it: the plan check refuses it, before any work.
    recipe = _refinedweb(shared_data, out, columns=["id", "html"])
    with pytest.raises(ConfigError, match=r"output.columns names 'html'.*warc input.*available"):
        run_recipe(recipe)
    assert not out.exists()  # nothing written, not even the run record


def test_output_keys_validated_at_config_time(tmp_path) -> None:
    def recipe(**output: object):
        return recipe_from_dict(
            {"output": {"path": str(tmp_path), **output}, "stages": [{"stage": "langid"}]}
        )

    with pytest.raises(ConfigError, match="snappy"):
        recipe(format="jsonl", compression="snappy")
    with pytest.raises(ConfigError, match="needs the column 'id'"):
        recipe(format="jsonl", columns=["text"])
    with pytest.raises(ConfigError, match="listed twice"):
        recipe(columns=["id", "id"])
    with pytest.raises(ConfigError, match="reason"):
        recipe(columns=["id", "reason"])
    with pytest.raises(ConfigError, match="not a tokenizer.json"):
        recipe(tokenizer=str(tmp_path / "missing.json"))
    assert recipe(format="jsonl", compression="gzip").output.format == "jsonl"
    # New keys at their defaults leave the config hash as it was before they existed.
    base = recipe()
    assert "format" not in base.fingerprint_dict()["output"]
    assert recipe(format="jsonl").config_hash() != base.config_hash()


@pytest.fixture(scope="module")
def bpe(shared_data, tmp_path_factory) -> Path:
    """A small byte-level BPE (2,000 ids) trained on shared text, saved as tokenizer.json."""
    tokenizers = pytest.importorskip("tokenizers")
    lines = (shared_data / "quality" / "dclm-agreement.jsonl").read_text().splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=2000, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(str(path))
    return path


TOKEN_STAGES = [
    {"stage": "url_filter"},
    {"stage": "extract", "backend": "trafilatura"},
    {"stage": "langid", "languages": ["en"], "threshold": 0.65},
    {"stage": "gopher_repetition"},
    {"stage": "gopher_quality"},
    {"stage": "exact_dedup"},
]


def test_token_counts_per_stage(bpe, shared_data, tmp_path) -> None:
    """tokens_in of every stage after extract = the encoded lengths of the documents entering
    it (the kept ones plus those rejected at it or later, none of these stages rewrites text);
    each stage's tokens out are the next one's tokens in; report.md shows them."""
    from tokenizers import Tokenizer

    out = tmp_path / "run"
    recipe = recipe_from_dict(
        {
            "input": {"paths": [str(shared_data / WARC)]},
            "output": {"path": str(out), "keep_rejected": True, "tokenizer": str(bpe)},
            "runtime": {"executor": "local", "progress": "off"},
            "stages": TOKEN_STAGES,
        }
    )
    stats = run_recipe(recipe).stats
    assert stats["accounting"] == "ok"
    tok = Tokenizer.from_file(str(bpe))

    def tokens(paths: list[Path]) -> int:
        texts = [t for p in paths for t in pq.read_table(p).column("text").to_pylist() if t]
        return sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))

    names = [s["name"] for s in stats["stages"]]
    data = sorted((out / "data").glob("*.parquet"))
    rejected = {n: sorted((out / "rejected" / n).glob("*.parquet")) for n in names}
    for k, s in enumerate(stats["stages"]):
        if k >= 2:  # after extract: stored texts are the texts each stage saw
            entering = data + [p for n in names[k:] for p in rejected[n]]
            assert s["tokens_in"] == tokens(entering), s["name"]
            kept = data + [p for n in names[k + 1 :] for p in rejected[n]]
            assert s["tokens_out"] == tokens(kept), s["name"]
        if k:
            assert s["tokens_in"] == stats["stages"][k - 1]["tokens_out"]
    assert stats["stages"][-1]["tokens_out"] == tokens(data) > 0
    by_name = {s["name"]: s for s in stats["stages"]}
    # url_filter (HTML in and out) and exact_dedup removed nothing here: tokens in == out.
    for name in ("url_filter", "exact_dedup"):
        assert by_name[name]["docs_rejected"] == 0
        assert by_name[name]["tokens_in"] == by_name[name]["tokens_out"] > 0
    assert by_name["extract"]["tokens_in"] > 5 * by_name["extract"]["tokens_out"]  # HTML -> text
    lid = by_name["langid"]
    assert f"tokens {lid['tokens_in']:,} -> {lid['tokens_out']:,}" in inspect_path(str(out))
    report = (out / "report.md").read_text()
    assert "tokens in | tokens out | kept % of input tokens" in report
    assert f"| {by_name['langid']['tokens_in']:,} | {by_name['langid']['tokens_out']:,} |" in report


def test_tokenizer_is_part_of_the_config_hash_by_content(bpe, tmp_path) -> None:
    """A copy of the same file elsewhere keeps the hash; another file changes it; a file that
    does not load is refused before any work."""

    def recipe(path: Path):
        return recipe_from_dict(
            {
                "output": {"path": str(tmp_path / "o"), "tokenizer": str(path)},
                "runtime": {"executor": "local"},
                "stages": [{"stage": "langid"}],
            }
        )

    copy = tmp_path / "copy.json"
    copy.write_bytes(bpe.read_bytes())
    assert recipe(copy).config_hash() == recipe(bpe).config_hash()
    other = tmp_path / "other.json"
    other.write_text(bpe.read_text().replace('"vocab"', '"vocab" ', 1))
    assert recipe(other).config_hash() != recipe(bpe).config_hash()
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    with pytest.raises(ConfigError, match="output.tokenizer: cannot load tokenizer"):
        check_plan(recipe(broken), {"jsonl"})


ABLATION_BASE = """\
input:
  paths: [{warc}]
output:
  path: unused
  keep_rejected: true
  format: jsonl
  {extra}
runtime:
  executor: local
  progress: "off"
stages:
  - stage: extract
  - stage: langid
    languages: [en]
  - stage: gopher_quality
"""


def _ablation(tmp_path: Path, warc: Path, extra: str = "") -> Path:
    (tmp_path / "base.yaml").write_text(ABLATION_BASE.format(warc=warc, extra=extra))
    path = tmp_path / "abl.yaml"
    path.write_text(
        f"name: t\nbase: base.yaml\noutput:\n  path: {tmp_path / 'out'}\nvariants:\n"
        "  t65: {}\n  t95: {set: {langid.threshold: 0.95}}\n"
    )
    return path


def test_ablation_with_jsonl_outputs(shared_data, tmp_path, bpe) -> None:
    """Variants write JSONL shards holding the documents of their direct Parquet runs; the
    comparison reads them. output.tokenizer is refused before any work."""
    from pipeline.ablate.run import run_ablation, variant_output_ids
    from pipeline.ablate.spec import load_ablation

    ablation = load_ablation(_ablation(tmp_path, shared_data / WARC))
    result = run_ablation(ablation)
    for name, recipe in ablation.variants.items():
        shards = sorted((tmp_path / "out" / "variants" / name / "data").iterdir())
        assert [p.name for p in shards] == ["part-00000.jsonl.zst"]
        direct = tmp_path / "direct" / name
        run_recipe(recipe.with_overrides(output={"path": str(direct), "format": "parquet"}))
        want = pq.read_table(direct / "data").column("id").to_pylist()
        assert variant_output_ids(recipe) == want
        assert result.variants[name]["output"]["documents"] == len(want)
    assert len(variant_output_ids(ablation.variants["t65"])) > len(
        variant_output_ids(ablation.variants["t95"])
    )
    assert "t95" in (tmp_path / "out" / "report.md").read_text()
    refused = tmp_path / "refused"
    refused.mkdir()
    with pytest.raises(ConfigError, match="output.tokenizer is not supported by `curate ablate`"):
        run_ablation(load_ablation(_ablation(refused, shared_data / WARC, f"tokenizer: {bpe}")))
    assert not (refused / "out" / "_cache").exists()
