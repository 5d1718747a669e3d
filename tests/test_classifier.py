"""fastText classifiers: training (`curate train-classifier`), the shared preprocessing, the
scorer, and the `classifier` stage (config errors, scores, reasons, ablation threshold sweeps)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import fasttext
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline.ablate.run import run_ablation
from pipeline.ablate.spec import load_ablation
from pipeline.classify import fasttext_backend
from pipeline.classify.fasttext_backend import FastTextScorer, label_name
from pipeline.classify.metrics import binary_metrics, roc_auc
from pipeline.classify.preprocess import Preprocess
from pipeline.cli import main
from pipeline.config import recipe_from_dict
from pipeline.errors import ConfigError
from pipeline.registry import stage_class
from pipeline.runner.plan import check_plan
from pipeline.runner.run import run_recipe
from pipeline.schema import TEXT
from pipeline.stages.classifier import ClassifierConfig, ClassifierStage
from tests.test_runner import read_output
from tests.tiny_models import make_tiny_classifier

SMALL = ["--dim", "16", "--bucket", "20000", "--epoch", "20", "--lr", "0.5", "--seed", "1"]
# For tests of what training counts and records, not of what it learns: one epoch.
ONE_EPOCH = [*SMALL[:4], "--epoch", "1", *SMALL[6:]]


def gold_articles(shared_data: Path, folder: Path) -> Path:
    """The ScrapingHub benchmark's gold article texts (181 real articles) as JSONL `text`."""
    out = folder / "articles.jsonl"
    with open(shared_data / "extraction" / "scrapinghub.gold.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    out.write_text(
        "".join(json.dumps({"id": r["key"], "text": r["gold"]}) + "\n" for r in rows),
        encoding="utf-8",
    )
    return out


def low_quality(shared_data: Path, folder: Path) -> Path:
    """DCLM's human-labelled low-quality web texts (label 0, 129 documents) as JSONL."""
    out = folder / "low.jsonl"
    with open(shared_data / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    low = [r for r in rows if r["label"] == 0]
    out.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in low), encoding="utf-8")
    return out


def train_small_model(shared_data: Path, folder: Path) -> Path:
    """A small fastText quality model (16 dims, 20k buckets) trained on shared data: real
    articles against DCLM's low-quality texts. Used here and by tests/test_ablate_keys.py."""
    model = folder / "quality.bin"
    args = ["train-classifier", "--positive", str(gold_articles(shared_data, folder))]
    args += ["--negative", str(low_quality(shared_data, folder)), "--output", str(model), *SMALL]
    assert main(args) == 0
    return model


@pytest.fixture
def model(small_quality_model: Path) -> Path:
    """train_small_model's model, trained once per session (conftest.py)."""
    return small_quality_model


# ---------------------------------------------------------------------------------------------
# Preprocessing and metrics


def test_preprocessing_is_dclms_newlines_to_spaces_with_options() -> None:
    text = "  Title\r\nFirst line\n\nSecond\u2028line  \n"
    assert Preprocess().line(text) == " ".join(text.strip().splitlines())
    assert Preprocess().line(text) == "Title First line  Second line"
    assert Preprocess(collapse_whitespace=True).line(text) == "Title First line Second line"
    assert Preprocess(lowercase=True).line("ÉTÉ\nOK") == "été ok"
    assert Preprocess().line(None) == Preprocess().line("") == ""
    assert Preprocess.from_dict(Preprocess(lowercase=True).to_dict()) == Preprocess(True)
    with pytest.raises(ValueError, match="unknown preprocessing option.*stem"):
        Preprocess.from_dict({"stem": True})


def test_metrics_on_hand_made_scores() -> None:
    truth = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    scores = np.array([0.9, 0.6, 0.4, 0.7, 0.3, 0.1])
    # Pairs (pos, neg) ranked right: 0.9 beats all 3, 0.6 beats 2, 0.3 beats 1 -> 6 of 9.
    assert roc_auc(truth, scores) == pytest.approx(6 / 9)
    assert roc_auc(truth, np.ones(6)) == 0.5  # ties count half
    assert roc_auc(np.ones(3, dtype=bool), np.arange(3)) is None
    m = binary_metrics(truth, scores, threshold=0.5)
    assert (m["precision"], m["recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(4 / 6)
    assert binary_metrics(truth, np.zeros(6))["precision"] is None


# ---------------------------------------------------------------------------------------------
# Training


def test_training_writes_the_model_and_its_metadata(model: Path, shared_data: Path) -> None:
    meta = json.loads(model.with_suffix(".json").read_text())
    assert meta["labels"] == {"positive": "__label__hq", "negative": "__label__cc"}
    assert meta["counts"] == {
        "__label__hq": {"documents": 181, "train": 163, "validation": 18},
        "__label__cc": {"documents": 129, "train": 116, "validation": 13},
    }
    assert [s["documents"] for s in meta["sources"]["negative"]] == [129]
    assert meta["params"] == {
        "epoch": 20,
        "lr": 0.5,
        "wordNgrams": 2,
        "dim": 16,
        "minCount": 1,
        "bucket": 20000,
        "seed": 1,
        "thread": 1,
        "validation": 0.1,
        "balance": False,
    }
    assert meta["preprocess"] == {"lowercase": False, "collapse_whitespace": False}
    held = meta["validation"]
    assert held["documents"] == 31 and held["positives"] == 18
    # Whole articles against low-quality snippets, 31 held out: mostly ranked right.
    assert held["roc_auc"] >= 0.8 and held["f1"] >= 0.7
    assert meta["fasttext"]["fasttext-community"].startswith("0.11")
    assert meta["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    # Nothing else left beside the model (the training file lived in a removed work folder).
    assert sorted(p.name for p in model.parent.iterdir() if p.name.startswith(".")) == []


def test_training_is_repeatable_for_a_seed(model: Path, shared_data: Path, tmp_path: Path) -> None:
    again = train_small_model(shared_data, tmp_path)
    assert again.read_bytes() == model.read_bytes()


def test_balance_downsamples_the_larger_class(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.bin"
    args = ["train-classifier", "--positive", str(gold_articles(shared_data, tmp_path))]
    args += ["--negative", str(low_quality(shared_data, tmp_path)), "--output", str(out)]
    assert main([*args, *ONE_EPOCH, "--balance"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    # 181 articles read, 129 of them used: as many as the low-quality texts.
    assert meta["counts"]["__label__hq"] == {"documents": 181, "train": 116, "validation": 13}
    assert meta["counts"]["__label__cc"] == {"documents": 129, "train": 116, "validation": 13}
    assert meta["params"]["balance"] is True


def test_a_runs_rejected_directory_is_a_source(shared_data: Path, tmp_path: Path) -> None:
    """Negatives straight from a run: the documents gopher_quality rejected from DCLM's set."""
    run = tmp_path / "run"
    recipe = recipe_from_dict(
        {
            "input": {"paths": [str(shared_data / "quality" / "dclm-agreement.jsonl")]},
            "output": {"path": str(run), "keep_rejected": True},
            "runtime": {"executor": "local"},
            "stages": [{"stage": "gopher_quality"}],
        }
    )
    stats = run_recipe(recipe).stats
    rejected = stats["stages"][0]["docs_rejected"]
    assert rejected >= 10  # 18 of 281 today
    out = tmp_path / "m.bin"
    args = ["train-classifier", "--positive", str(gold_articles(shared_data, tmp_path))]
    args += ["--negative", str(run / "rejected" / "gopher_quality"), "--output", str(out)]
    assert main([*args, *ONE_EPOCH, "--validation", "0"]) == 0
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["counts"]["__label__cc"] == {
        "documents": rejected,
        "train": rejected,
        "validation": 0,
    }
    assert meta["validation"] is None


def test_bad_training_input_exits_2_naming_it_and_writes_no_model(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pos = str(gold_articles(shared_data, tmp_path))
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"text": "  "}\n{"text": ""}\n')
    out = tmp_path / "out" / "m.bin"

    def fails(*extra: str) -> str:
        args = ["train-classifier", "--output", str(out), *SMALL, *extra]
        assert main(args) == 2
        assert not out.exists() and not out.with_suffix(".json").exists()
        return capsys.readouterr().err

    missing = str(tmp_path / "nope.jsonl")
    assert f"--negative {missing}: input path not found" in fails(
        "--positive", pos, "--negative", missing
    )
    err = fails("--positive", pos, "--negative", pos, "--text-field", "body")
    assert f"--positive {pos}:" in err and "set --text-field" in err
    err = fails("--positive", pos, "--negative", str(blank))
    assert f"--negative {blank}: no document with text in field 'text'" in err
    assert "--validation: 1.5" in fails("--positive", pos, "--negative", pos, "--validation", "1.5")
    err = fails("--positive", pos, "--negative", pos, "--label-negative", "hq")
    assert "--label-positive and --label-negative are both '__label__hq'" in err
    warc = str(shared_data / "warc" / "cc-main-2020-34-excerpt.warc.gz")
    assert "without text (HTML)" in fails("--positive", pos, "--negative", warc)
    assert not out.parent.exists()  # every check fails before the output folder is made


# ---------------------------------------------------------------------------------------------
# The scorer


def test_scorer_gives_the_probability_of_the_label(model: Path, shared_data: Path) -> None:
    with open(shared_data / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][:50]
    hq = FastTextScorer(str(model), "hq")
    scores = hq.predict(texts)
    assert scores.dtype == np.float32 and scores.shape == (50,)
    assert ((scores >= 0) & (scores <= 1)).all() and scores.std() > 0.05
    cc = FastTextScorer(str(model), "__label__cc").predict(texts)
    np.testing.assert_allclose(scores + cc, 1.0, atol=1e-4)  # two labels: they sum to one
    # The same text gives the same score whatever its neighbours; None reads as "".
    assert hq.predict([texts[3]])[0] == scores[3]
    assert hq.predict([None])[0] == hq.predict([""])[0]  # type: ignore[list-item]
    # Lone surrogates (from broken input) are scored, not raised.
    assert 0 <= hq.predict(["broken \ud800 text"])[0] <= 1
    assert label_name("hq") == label_name("__label__hq") == "__label__hq"
    with pytest.raises(ValueError, match="label '__label__nsfw' is not a label.*__label__hq"):
        FastTextScorer(str(model), "nsfw").load()


# ---------------------------------------------------------------------------------------------
# The stage


def _recipe(inputs: list[str], out: Path, *stages: dict) -> dict:
    return {
        "input": {"paths": inputs},
        "output": {"path": str(out), "keep_rejected": True},
        "runtime": {"executor": "local", "batch_size": 64},
        "stages": list(stages),
    }


def test_config_errors_come_before_any_work(model: Path, tmp_path: Path) -> None:
    def plan_error(**keys: object) -> str:
        recipe = recipe_from_dict(_recipe(["x.jsonl"], tmp_path, {"stage": "classifier", **keys}))
        with pytest.raises(ConfigError) as info:
            check_plan(recipe, ["jsonl"])
        return str(info.value)

    assert "stages[0] (classifier).model_path: not set" in plan_error()
    missing = str(tmp_path / "missing.bin")
    assert f"model_path: {missing}: no such file" in plan_error(model_path=missing)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model at all, just bytes" * 10)
    assert "bad magic number" in plan_error(model_path=str(junk))
    vectors = tmp_path / "vectors.bin"
    (tmp_path / "words.txt").write_text("the cat sat on the mat\n" * 50)
    fasttext.train_unsupervised(
        str(tmp_path / "words.txt"), dim=4, bucket=100, minCount=1, epoch=1, thread=1
    ).save_model(str(vectors))
    assert "not a fastText classifier (no labels" in plan_error(model_path=str(vectors))
    err = plan_error(model_path=str(model), label="nsfw")
    assert "classifier).label: 'nsfw' is not a label" in err and "__label__cc" in err
    err = plan_error(model_path=str(model), lowercase=True)
    assert "trained with preprocessing" in err and "'lowercase': False" in err
    err = plan_error(backend="transformers", model_path=str(tmp_path))
    assert "config.json missing" in err
    tiny = make_tiny_classifier(tmp_path / "tiny", num_labels=2, labels=["low", "high"])
    err = plan_error(backend="transformers", model_path=str(tiny), label="hq")
    assert err.startswith("stages[0] (classifier): ") and "'hq'" in err and "high" in err
    err = plan_error(backend="transformers", model_path=str(tiny), label="high", max_length=512)
    assert "max_length 512 exceeds the 128 positions" in err
    with pytest.raises(ValueError, match="column"):
        ClassifierConfig(model_path=str(model), column="text")
    with pytest.raises(ValueError, match="keep"):
        ClassifierConfig(model_path=str(model), keep="middle")  # type: ignore[arg-type]


def test_contract_follows_the_config() -> None:
    cls = stage_class("classifier")
    assert cls is ClassifierStage and cls.threshold_keys == {"threshold", "keep"}
    c = cls.contract(ClassifierConfig(column="edu_score"))
    assert c.produces == ("edu_score",) and c.requires == (TEXT,) and c.resources.gpus == 0
    gpu = cls.contract(ClassifierConfig(backend="transformers", device="cuda"))
    assert gpu.resources.gpus == 1
    assert cls.contract(ClassifierConfig(backend="transformers")).resources.gpus is None
    assert cls.contract(ClassifierConfig(backend="transformers", device="cpu")).resources.gpus == 0


def test_stage_scores_and_rejects_by_threshold(
    model: Path, shared_data: Path, tmp_path: Path
) -> None:
    """Two classifiers in one recipe on DCLM's labelled set: one keeps high scores, one (on
    its own column) rejects high scores; the reasons name the columns."""
    data = str(shared_data / "quality" / "dclm-agreement.jsonl")
    out = tmp_path / "run"
    recipe = recipe_from_dict(
        _recipe(
            [data],
            out,
            {"stage": "classifier", "model_path": str(model), "column": "hq_prob"},
            {
                "stage": "classifier",
                "model_path": str(model),
                "label": "cc",
                "column": "cc_prob",
                "threshold": 0.9,
                "keep": "below",
            },
        )
    )
    stats = run_recipe(recipe).stats
    first, second = stats["stages"]
    assert first["docs_in"] == 281
    assert set(first["removed_by_reason"]) == {"hq_prob_below_threshold"}
    assert set(second["removed_by_reason"]) <= {"cc_prob_above_threshold"}
    # The report's score histogram follows the configured column and threshold.
    assert first["histograms"]["hq_prob"]["thresholds"] == {"threshold": 0.5}
    assert second["histograms"]["cc_prob"]["thresholds"] == {"threshold": 0.9}
    assert (out / "figures").is_dir() and len(list((out / "figures").glob("*.svg"))) == 2
    kept = read_output(out)
    hq = np.array(kept.column("hq_prob").to_pylist())
    cc = np.array(kept.column("cc_prob").to_pylist())
    assert kept.schema.field("hq_prob").type == pa.float32()
    assert (hq >= 0.5).all() and (cc <= 0.9).all()
    np.testing.assert_allclose(hq + cc, 1.0, atol=1e-4)
    # The scores are the scorer's own, document by document.
    direct = FastTextScorer(str(model), "hq").predict(kept.column(TEXT).to_pylist())
    np.testing.assert_array_equal(hq.astype(np.float32), direct)
    rejected = ds.dataset(str(out / "rejected" / "classifier"), format="parquet").to_table()
    assert rejected.num_rows == first["docs_rejected"] > 0
    assert set(rejected.column("reason").to_pylist()) == {"hq_prob_below_threshold"}
    assert (np.array(rejected.column("hq_prob").to_pylist()) < 0.5).all()


def test_threshold_sweep_recomputes_no_classifier_score(
    model: Path, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scores are computed by the first ablation; a sweep of threshold and keep over the same
    output re-applies cuts to the cached column and never calls the model."""
    data = str(shared_data / "quality" / "dclm-agreement.jsonl")
    stage = {"stage": "classifier", "model_path": str(model), "column": "quality"}
    (tmp_path / "base.yaml").write_text(json.dumps(_recipe([data], tmp_path / "unused", stage)))
    spec = {"name": "sweep", "base": "base.yaml", "output": {"path": str(tmp_path / "out")}}

    def ablation(variants: dict) -> object:
        path = tmp_path / f"sweep-{len(variants)}.yaml"
        path.write_text(json.dumps({**spec, "variants": variants}))
        return load_ablation(path)

    first = run_ablation(ablation({"t50": {}}))
    assert first.computed == {"t50": ["classifier"]}
    calls: list[int] = []
    real = fasttext_backend.label_probabilities

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fasttext_backend, "label_probabilities", counted)
    variants = {
        "t30": {"set": {"classifier.threshold": 0.3}},
        "t50": {},
        "t90": {"set": {"classifier.threshold": 0.9}},
        "low": {"set": {"classifier.keep": "below"}},
    }
    sweep = run_ablation(ablation(variants))
    assert sweep.computed == dict.fromkeys(variants, []) and calls == []
    kept = {n: s["output"]["documents"] for n, s in sweep.variants.items()}
    assert kept["t50"] == first.variants["t50"]["output"]["documents"]
    assert kept["t30"] > kept["t50"] > kept["t90"]
    assert kept["t50"] + kept["low"] >= 281  # >= 0.5 and <= 0.5 cover every document
    # threshold null: scored, nothing rejected (a later global cut may use the column).
    stage = ClassifierStage(ClassifierConfig(model_path=str(model), threshold=None))
    kept_all, rejected = stage.apply(pa.table({"text": ["a b c", "", "spam spam"]}))
    assert kept_all.num_rows == 3 and rejected.num_rows == 0
    assert kept_all.column("classifier_score").null_count == 0
    reasons = sweep.variants["low"]["stages"][0]["removed_by_reason"]
    assert set(reasons) == {"quality_above_threshold"}


def test_shipped_sweep_shares_one_classifier_score() -> None:
    """configs/ablations/classifier-sweep.yaml: top fractions and fixed cuts, and every variant
    shares the cache nodes of every stage up to and including the classifier's score."""
    from pipeline.ablate.cache import variant_nodes
    from tests.conftest import REPO

    ablation = load_ablation(REPO / "configs" / "ablations" / "classifier-sweep.yaml")
    cuts = {}
    for name, recipe in ablation.variants.items():
        by_stage = {s.stage: s for s in recipe.stages}
        top = by_stage.get("top_fraction")
        cuts[name] = (by_stage["classifier"].threshold, top and top.keep_top_fraction)
    assert cuts == {
        "top-5": (None, 0.05),
        "top-10": (None, 0.1),
        "top-20": (None, 0.2),
        "top-30": (None, 0.3),
        "hq-0.5": (0.5, None),
        "hq-0.9": (0.9, None),
    }
    # the map stages' cache nodes (URL filter through the classifier's score): one set for all
    keys = {tuple(n.key for n in variant_nodes(r)) for r in ablation.variants.values()}
    assert len(keys) == 1 and len(next(iter(keys))) == 7
