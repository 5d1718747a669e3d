"""The transformers classifier backend on tiny models made here (random weights, a tokenizer
with a fixed vocabulary): regression and classification heads against a direct forward pass on real
documents, truncation, batching, and the errors a bad model directory or label gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.classify.transformers_backend import TransformersScorer, cpu_allotment
from pipeline.errors import ConfigError
from tests.tiny_models import make_tiny_classifier

LABELS = ["low", "mid", "high"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "regression": make_tiny_classifier(root / "regression", 1),
        "classes": make_tiny_classifier(root / "classes", 3, LABELS, seed=1),
    }


@pytest.fixture(scope="module")
def texts(shared_data: Path) -> list[str]:
    """20 real documents of the DCLM agreement set, 200 to 20,000 characters."""
    with open(shared_data / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f]
    return docs[:20]


def _direct(path: Path, texts: list[str], max_length: int) -> np.ndarray:
    """Logits of each text alone, straight from transformers (the reference)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True).eval()
    rows = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            rows.append(model(**enc).logits[0].numpy())
    return np.stack(rows)


def test_a_regression_head_scores_with_its_output(models, texts) -> None:
    """FineWeb-Edu's layout: one output, the score itself; any label is ignored."""
    scorer = TransformersScorer(str(models["regression"]), label="ignored", max_length=64)
    scores = scorer.predict(texts)
    assert scores.dtype == np.float32 and scores.shape == (20,)
    reference = _direct(models["regression"], texts, 64)[:, 0]
    np.testing.assert_allclose(scores, reference, atol=1e-5)
    assert scores.std() > 0.01  # the documents are told apart
    assert scorer.head == "regression"


def test_a_classification_head_gives_the_named_class_probability(models, texts) -> None:
    logits = _direct(models["classes"], texts, 64)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    by_class = []
    for index, name in enumerate(LABELS):
        by_name = TransformersScorer(str(models["classes"]), label=name, max_length=64)
        by_index = TransformersScorer(str(models["classes"]), label=index, max_length=64)
        scores = by_name.predict(texts)
        np.testing.assert_allclose(scores, probs[:, index], atol=1e-5)
        np.testing.assert_array_equal(scores, by_index.predict(texts))
        by_class.append(scores)
    np.testing.assert_allclose(np.sum(by_class, axis=0), 1.0, atol=1e-5)
    # An index written as text (YAML `label: "2"`) names the same class.
    digits = TransformersScorer(str(models["classes"]), label="2", max_length=64)
    np.testing.assert_array_equal(digits.predict(texts), by_class[2])


def test_a_multi_label_head_gives_the_class_sigmoid(models, texts, tmp_path) -> None:
    multi = tmp_path / "multi"
    shutil.copytree(models["classes"], multi)
    config = json.loads((multi / "config.json").read_text())
    (multi / "config.json").write_text(
        json.dumps(config | {"problem_type": "multi_label_classification"})
    )
    scores = TransformersScorer(str(multi), label="mid", max_length=64).predict(texts)
    logits = _direct(multi, texts, 64)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits[:, 1])), atol=1e-5)


def test_texts_are_truncated_to_max_length(models, texts) -> None:
    """Beyond max_length tokens nothing changes the score; within it, it does."""
    path = str(models["regression"])
    base = texts[5]
    tail = " buy now cheap price discount offer click here" * 20
    short = TransformersScorer(path, max_length=16).predict([base, base + tail])
    assert abs(short[0] - short[1]) < 1e-6  # equal inputs, two rows of one batch
    long = TransformersScorer(path, max_length=128).predict([base[:60], base[:60] + tail])
    assert abs(long[0] - long[1]) > 1e-4


def test_batching_and_order_do_not_change_scores(models, texts) -> None:
    path = str(models["classes"])
    one_by_one = np.array(
        [TransformersScorer(path, "high", 64, batch_size=1).predict([t])[0] for t in texts]
    )
    for batch_size in (1, 7, 32):
        batched = TransformersScorer(path, "high", 64, batch_size=batch_size).predict(texts)
        np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    reversed_scores = TransformersScorer(path, "high", 64, batch_size=7).predict(texts[::-1])
    np.testing.assert_allclose(reversed_scores[::-1], one_by_one, atol=1e-5)
    scorer = TransformersScorer(path, "high", 64)
    assert scorer.predict([]).shape == (0,)
    empty = scorer.predict(["", None])  # type: ignore[list-item]
    assert empty[0] == empty[1] and 0 < empty[0] < 1


def test_bad_model_directories_and_labels_are_config_errors(models, tmp_path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=f"{missing}: not a directory"):
        TransformersScorer(str(missing)).load()
    no_weights = tmp_path / "no-weights"
    shutil.copytree(models["regression"], no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=f"{no_weights}: no weights"):
        TransformersScorer(str(no_weights)).predict(["x"])
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(models["regression"], no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tokenizer / name).unlink()
    with pytest.raises(ConfigError, match=f"{no_tokenizer}: no tokenizer"):
        TransformersScorer(str(no_tokenizer), max_length=64).load()
    broken = tmp_path / "broken"
    shutil.copytree(models["regression"], broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match=f"{broken}: cannot load it with transformers"):
        TransformersScorer(str(broken), max_length=64).load()
    classes = str(models["classes"])
    with pytest.raises(ConfigError, match=r"label 'best' is not a class .*0=low, 1=mid, 2=high"):
        TransformersScorer(classes, label="best", max_length=64).check()
    with pytest.raises(ConfigError, match="label 3 is not a class"):
        TransformersScorer(classes, label=3, max_length=64).check()
    with pytest.raises(ConfigError, match="has 3 classes .*name the one"):
        TransformersScorer(classes, max_length=64).check()
    with pytest.raises(ConfigError, match="max_length 512 exceeds the 128 positions"):
        TransformersScorer(classes, label="high", max_length=512).check()


def test_cpu_threads_follow_the_process_allotment(monkeypatch) -> None:
    import os

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert 1 <= cpu_allotment() <= len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_allotment() == 1
