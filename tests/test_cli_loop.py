"""The everyday loop of `curate run`: --set, --dry-run, --limit / input.limit, the refused rerun
naming the changed keys, and recipe paths resolved against the recipe file's directory."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipeline.ablate.spec import load_ablation
from pipeline.config import load_recipe
from pipeline.errors import ConfigError
from pipeline.io import sources
from pipeline.io.sources import plan_units
from tests.faults.helpers import curate, stats_of

REPO = Path(__file__).resolve().parents[1]
GOLD = "extraction/scrapinghub.gold.jsonl"  # 181 real pages: text in `gold`, id in `key`


def _recipe(directory: Path, jsonl: str | Path, *stages: str, out: str = "out") -> Path:
    """A recipe file over JSONL input with the gold text, relative paths as a user writes them."""
    directory.mkdir(parents=True, exist_ok=True)
    body = "".join(f"  - stage: {s}\n" for s in stages or ("gopher_quality",))
    path = directory / "recipe.yaml"
    path.write_text(
        f"input:\n  paths: [{jsonl}]\n  text_field: gold\n  id_field: key\n"
        f"output:\n  path: {out}\nruntime:\n  executor: local\n  progress: 'off'\n"
        f"stages:\n{body}"
    )
    return path


def _gold_copy(shared_data: Path, target: Path, lines: slice = slice(None)) -> Path:
    """Some lines of the real gold JSONL written to `target`."""
    text = (shared_data / GOLD).read_text(encoding="utf-8").splitlines(keepends=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(text[lines]), encoding="utf-8")
    return target


# --- --set ------------------------------------------------------------------------------------


def test_set_addresses_sections_stages_and_repeats(tmp_path: Path, shared_data: Path) -> None:
    recipe = _recipe(tmp_path, shared_data / GOLD, "gopher_quality", "langid", "gopher_quality")
    r = load_recipe(
        recipe,
        [
            "gopher_quality.2.min_doc_words=7",
            "stages[0].min_doc_words=9",
            "langid.languages=[en, de]",
            "langid.threshold=0.25",
            "input.limit=12",
            "output.keep_rejected=true",
            "runtime.batch_size=64",
            "gopher_quality.1.max_doc_words=null",
        ],
    )
    stages = r.to_dict()["stages"]
    assert [s.get("min_doc_words") for s in stages] == [9, None, 7]
    assert stages[0]["max_doc_words"] is None and stages[2]["max_doc_words"] == 100_000
    assert stages[1]["languages"] == ["en", "de"] and stages[1]["threshold"] == 0.25
    assert (r.input.limit, r.output.keep_rejected, r.runtime.batch_size) == (12, True, 64)
    assert r.source == f"{recipe} with --set"

    def error(*settings: str) -> str:
        with pytest.raises(ConfigError) as exc:
            load_recipe(recipe, settings)
        return str(exc.value)

    assert error("gopher_quality.min_doc_words=5") == (
        "--set 'gopher_quality.min_doc_words=5': stage 'gopher_quality' occurs 2 times "
        "(stages[0], stages[2]); address one as gopher_quality.1 / gopher_quality.2 ... or "
        "stages[I]"
    )
    assert error("langdi.threshold=0.5") == (
        "--set 'langdi.threshold=0.5': no section or stage 'langdi' (did you mean 'langid'?); "
        "choose from input, output, runtime, gopher_quality, langid, gopher_quality.2"
    )
    assert error("stages[5].threshold=0.5") == (
        "--set 'stages[5].threshold=0.5': the recipe has no stages[5] (it has 3 stages)"
    )
    assert "write KEY=VALUE" in error("langid.threshold")
    # validated exactly as the YAML is: type, bound and unknown key, with the key named
    assert error("langid.threshold=high").endswith(
        "stages[1] (langid).threshold: Input should be a valid number, unable to parse string "
        "as a number (got 'high')"
    )
    assert "stages[1] (langid).threshold: Input should be less than or equal to 1" in error(
        "langid.threshold=1.5"
    )
    assert error("langid.treshold=0.5").endswith(
        "stages[1] (langid).treshold: unknown key (did you mean 'threshold'?); "
        "allowed: languages, max_chars, model_path, stage, threshold"
    )
    assert "input.limit: Input should be greater than 0 (got 0)" in error("input.limit=0")
    assert "invalid YAML" in error("langid.languages=[en")


def test_set_is_recorded_and_a_changed_rerun_names_the_keys(
    tmp_path: Path, shared_data: Path, capsys
) -> None:
    recipe = _recipe(tmp_path, shared_data / GOLD)
    out = tmp_path / "out"
    first = curate(capsys, "run", recipe, "--set", "gopher_quality.min_doc_words=5", "--limit", 20)
    assert first.code == 0, first.err
    record = (out / "_run" / "config.yaml").read_text()
    assert record.startswith(
        f"# the resolved recipe of {recipe} with --set\n"
        "# --set gopher_quality.min_doc_words=5\n# --set input.limit=20\n"
    )
    saved = yaml.safe_load(record)
    assert saved["stages"][0]["min_doc_words"] == 5 and saved["input"]["limit"] == 20
    assert json.loads((out / "_run" / "config.json").read_text())["recipe"] == saved
    again = curate(
        capsys, "run", recipe, "--set", "gopher_quality.min_doc_words=6", "--set", "input.limit=20"
    )
    assert again.code == 2 and again.err.count("\n") == 1
    assert again.err.startswith(
        f"curate: error: {out} holds a run of a different config: "
        "stages[0].min_doc_words: 5 -> 6 (hash "
    )
    assert again.err.endswith("); choose another --output or pass --overwrite\n")
    plain = curate(capsys, "run", recipe)
    assert "config: input.limit: 20 -> None; stages[0].min_doc_words: 5 -> 50 (hash" in plain.err


# --- --dry-run ----------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_writes_nothing(
    tmp_path: Path, shared_data: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not the repository: the recipe's paths resolve against configs/
    warcs = sorted((shared_data / "warc").glob("*.warc.gz"))
    result = curate(capsys, "run", REPO / "configs" / "refinedweb.yaml", "--dry-run")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    mib = sum(p.stat().st_size for p in warcs) / 2**20
    assert lines[1] == f"input: {len(warcs)} unit(s) ({len(warcs)} warc), {mib:,.1f} MiB"
    extract = (
        "  [1] extract            map     needs html; produces text, html_bytes, extract_status; "
        "drops html"
    )
    assert extract in lines
    assert lines[-5:-1] == [
        "global phases (each waits for every unit of the phase before it):",
        "  seg00: read each unit -> url_filter, extract, langid, gopher_repetition, "
        "gopher_quality, line_corrections",
        "  seg01: minhash_dedup prepare over all units' shards, then per shard",
        "  seg02: substring_dedup prepare over all units' shards, then per shard",
    ]
    assert lines[-1].startswith(f"output: {REPO / 'out' / 'refinedweb'} (")
    out = tmp_path / "dry"
    limited = curate(
        capsys,
        "run",
        REPO / "configs" / "refinedweb.yaml",
        "--output",
        "dry",
        "--limit",
        "5",
        "--dry-run",
    )
    assert limited.code == 0, limited.err
    assert (
        f"  limit 5 documents: the first 1 of {len(warcs)} unit(s) in order, the last one cut "
        "at 5 documents"
    ) in limited.out
    assert limited.out.rstrip().endswith("output: dry (new)")  # --output: the working directory's
    assert not out.exists()
    assert os.listdir(tmp_path) == []  # no output directory, no lock file, nothing
    bad = curate(
        capsys, "run", REPO / "configs" / "refinedweb.yaml", "--dry-run", "--set", "langid.x=1"
    )
    assert bad.code == 2 and "stages[2] (langid).x: unknown key" in bad.err


# --- --limit / input.limit ----------------------------------------------------------------------


def _rchar() -> int:
    """Bytes this process has read through read() calls so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Rows the readers produce from now on, by input file name, however often a file is read."""
    produced: Counter[str] = Counter()
    real = sources.get_reader

    def get_reader(fmt: str, cfg: object) -> object:
        reader = real(fmt, cfg)  # type: ignore[arg-type]
        read = reader.read

        def counted(unit, stats, batch_size):  # type: ignore[no-untyped-def]
            for batch in read(unit, stats, batch_size):
                produced[Path(unit.path).name] += batch.num_rows
                yield batch

        reader.read = counted  # type: ignore[method-assign]
        return reader

    monkeypatch.setattr(sources, "get_reader", get_reader)
    return produced


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_limit_reads_no_more_than_needed(tmp_path: Path, shared_data: Path, capsys) -> None:
    gold = (shared_data / "extraction" / "cleaneval.gold.jsonl").read_bytes()
    big = tmp_path / "big.jsonl"
    with big.open("wb") as f:
        for _ in range(12):  # ~143 MB of real pages, repeated
            f.write(gold)
    size = big.stat().st_size
    recipe = _recipe(tmp_path, big)
    warm = curate(capsys, "run", recipe, "--limit", "3", "--output", tmp_path / "warm")
    assert warm.code == 0, warm.err  # imports and first-use set-up done before measuring
    before = _rchar()
    result = curate(capsys, "run", recipe, "--limit", "100")
    read = _rchar() - before
    assert result.code == 0, result.err
    reader = stats_of(tmp_path / "out")["reader"]
    assert (reader["records"], reader["documents"], reader["skipped"]) == (100, 100, {})
    # 100 pages of ~16 KB, read once (where to stop; kept for the checks and the run) and a
    # buffer: measured 2.1 MB (6.3 MB when the checks and the run read them again)
    assert size > 130 * 2**20 and read < 4 * 2**20, (size, read)


def test_limit_over_several_units_balances_and_resumes(
    tmp_path: Path, shared_data: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = [
        _gold_copy(shared_data, tmp_path / "in" / f"p{i}.jsonl", slice(i * 40, i * 40 + 40))
        for i in range(4)
    ]
    recipe = _recipe(tmp_path, "in")
    args = ("run", recipe, "--limit", "100", "--set", "runtime.batch_size=16")
    reads = _count_reads(monkeypatch)
    result = curate(capsys, *args)
    assert result.code == 0, result.err
    # Each document read once: to find where to stop, kept for the check and the run (the third
    # file's reader stops in its second batch of 16: 32 rows read, 20 used)
    assert reads == {"p0.jsonl": 40, "p1.jsonl": 40, "p2.jsonl": 32}
    stats = stats_of(tmp_path / "out")
    assert stats["inputs"] == {"units": 3, "formats": ["jsonl"], "limit": 100, "units_planned": 4}
    assert [u["documents_in"] for u in stats["units"]] == [40, 40, 20]
    assert [Path(u["path"]).name for u in stats["units"]] == [p.name for p in parts[:3]]
    # the third unit's reader stopped in its second batch of 16: 12 rows past the limit counted
    assert stats["reader"]["records"] == 112 and stats["reader"]["documents"] == 100
    assert stats["reader"]["skipped"] == {"over_limit": 12}
    kept = stats["output"]["documents"]
    assert stats["stages"][0]["docs_in"] == 100
    assert kept == stats["stages"][0]["docs_kept"] == 100 - stats["stages"][0]["docs_rejected"]
    again = curate(capsys, *args)
    assert again.code == 0 and "from 3 input file(s) (0 processed, 3 resumed; " in again.out
    assert stats_of(tmp_path / "out")["output"]["documents"] == kept


# --- paths relative to the recipe file ----------------------------------------------------------


def test_recipe_paths_resolve_against_the_recipe_file(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for config in sorted((REPO / "configs").glob("*.yaml")):
        r = load_recipe(config)
        assert r.output.path.startswith(str(REPO / "out") + "/"), config
        assert all(p.startswith(str(REPO.parent) + "/") for p in r.input.paths), config
        if config.name == "quickstart.yaml":  # its demo WARC is made by `make demo`
            assert r.input.paths == [str(REPO / "demo-data" / "demo.warc.gz")]
        else:
            assert plan_units(r.input), config  # the shared WARCs, found from anywhere
    for ablation in sorted((REPO / "configs" / "ablations").glob("*.yaml")):
        a = load_ablation(ablation)
        assert a.output == str(REPO / "out" / "ablations" / ablation.stem)
        assert all(plan_units(v.input) for v in a.variants.values())
    _gold_copy(shared_data, tmp_path / "recipes" / "data" / "g.jsonl", slice(0, 3))
    recipe = _recipe(tmp_path / "recipes", "data/g.jsonl", out="../runs/x")
    r = load_recipe(recipe, ["output.tokenizer=null", "input.text_field=gold"])
    assert r.input.paths == [str(tmp_path / "recipes" / "data" / "g.jsonl")]
    assert r.output.path == str(tmp_path / "runs" / "x")
    # a --set path is the user's, relative to the working directory; URLs are never touched
    r = load_recipe(recipe, ["input.paths=[other.jsonl, 's3://b/k.jsonl']", "output.path=o"])
    assert r.input.paths == ["other.jsonl", "s3://b/k.jsonl"] and r.output.path == "o"


def test_ablate_takes_set_and_limit_and_resolves_its_paths(
    tmp_path: Path, shared_data: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "abl"
    _gold_copy(shared_data, d / "data" / "g.jsonl", slice(0, 60))
    _recipe(d, "data/g.jsonl", "gopher_quality", "gopher_repetition")
    (d / "lists").mkdir()
    (d / "lists" / "blocked.txt").write_text("example.com\n")
    (d / "sweep.yaml").write_text(
        "base: recipe.yaml\noutput: {path: ../runs/sweep}\nvariants:\n"
        "  few: {set: {gopher_quality.min_doc_words: 20}}\n  plain: {}\n"
        "  url: {add: [{stage: url_filter, blocked_domains_files: [lists/blocked.txt]}]}\n"
    )
    monkeypatch.chdir(tmp_path / "abl" / "data")  # anywhere else
    a = load_ablation(d / "sweep.yaml", settings=["gopher_repetition.dup_line_frac=0.5"])
    assert a.output == str(tmp_path / "runs" / "sweep")
    assert a.variants["url"].stages[0].blocked_domains_files == (str(d / "lists" / "blocked.txt"),)
    for v in a.variants.values():
        assert v.input.paths == [str(d / "data" / "g.jsonl")]
        assert v.to_dict()["stages"][-1]["dup_line_frac"] == 0.5
    assert [s.get("min_doc_words") for s in a.variants["few"].to_dict()["stages"]] == [20, None]
    with pytest.raises(
        ConfigError, match=r"write <stage>.<key> \(did you mean 'gopher_quality'\?\)"
    ):
        (d / "bad.yaml").write_text(
            "base: recipe.yaml\noutput: {path: o}\nvariants:\n  x: {set: {gopher_qualty.x: 1}}\n"
        )
        load_ablation(d / "bad.yaml")
    reads = _count_reads(monkeypatch)
    result = curate(capsys, "ablate", d / "sweep.yaml", "--limit", "25")
    assert result.code == 0, result.err
    assert reads == {"g.jsonl": 25}  # once: for the scoring, the check and the three variants
    for name in ("few", "plain", "url"):
        stats = stats_of(tmp_path / "runs" / "sweep" / "variants" / name)
        assert stats["reader"]["documents"] == 25 and stats["inputs"]["limit"] == 25


def test_curate_stages_suggests_the_closest_name(capsys) -> None:
    result = curate(capsys, "stages", "langd")
    assert result.code == 2
    assert result.err.startswith("curate: error: unknown stage 'langd' (did you mean 'langid'?); ")
