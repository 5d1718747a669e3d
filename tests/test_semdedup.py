"""SemDeDup against a brute-force reference of ALGORITHMS.md 1.2, blocking, and re-thresholding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.prune import phases, semdedup
from pipeline.prune.local import rethreshold, run_local
from pipeline.prune.semdedup import SemDeDupConfig, SemDeDupStage, max_sim_earlier

# --- the brute-force reference (plain loops over full matrices; shared with test_d4) -------------


def reference_assign(emb: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid by cosine (lowest index on ties) and the similarity to it."""
    s = emb.astype(np.float64) @ centroids.astype(np.float64).T
    cluster = s.argmax(axis=1)
    return cluster, s[np.arange(len(s)), cluster]


def reference_max_sim(emb: np.ndarray, cluster: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """M per document: sort each cluster farthest-first (ties by position), S = X X^T, keep
    i < j, M[j] = max_i S[i, j]; NaN for the first member."""
    x = emb.astype(np.float64)
    m = np.full(len(x), np.nan)
    for c in np.unique(cluster):
        members = sorted(np.flatnonzero(cluster == c), key=lambda i: (sim[i], i))
        s = x[members] @ x[members].T
        for j in range(1, len(members)):
            m[members[j]] = max(s[i, j] for i in range(j))
    return m


def reference_ratio_removed(values: np.ndarray, keep: float) -> np.ndarray:
    """Remove all but the round-half-down(keep x n) lowest values (NaN lowest, ties by position)."""
    n = len(values)
    n_keep = int(np.ceil(keep * n - 0.5))
    order = sorted(range(n), key=lambda i: (-np.inf if np.isnan(values[i]) else values[i], i))
    removed = np.ones(n, dtype=bool)
    removed[order[:n_keep]] = False
    return removed


def fp16_column(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name).combine_chunks()
    return col.values.to_numpy().reshape(len(col), -1)


# --- data ------------------------------------------------------------------------------------------


def gold_texts(shared_data: Path, limit: int | None = None) -> list[str]:
    """Real page texts: the extraction gold sets and the DCLM agreement sample."""
    texts = []
    for name in ("extraction/scrapinghub.gold.jsonl", "extraction/cleaneval.gold.jsonl"):
        with open(shared_data / name, encoding="utf-8") as f:
            texts += [json.loads(line)["gold"] for line in f]
    with open(shared_data / "quality/dclm-agreement.jsonl", encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in f]
    texts = [t for t in texts if t.strip()]
    return texts[:limit] if limit else texts


def small_set(shared_data: Path) -> list[pa.Table]:
    """~150 real texts plus exact copies and one-word edits, in 3 shards."""
    base = gold_texts(shared_data, 130)
    extra = base[:10] + [t.replace(" the ", " a ", 1) for t in base[10:20]]
    texts = base + extra
    ids = [f"doc-{i}" for i in range(len(texts))]
    return [pa.table({"id": ids[i::3], "text": texts[i::3]}) for i in range(3)]


LIGHT = {"embedder": "light", "n_clusters": 6, "embeddings": "column"}


@pytest.fixture(scope="module")
def small_run(shared_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("semdedup")
    stage = SemDeDupStage(SemDeDupConfig(**LIGHT, eps=0.2, block_size=3))
    scored, summary = run_local(stage, small_set(shared_data), str(work), num_partitions=3)
    return scored, summary, work


# --- tests --------------------------------------------------------------------------------------------


def test_kernel_blocks_equal_brute_force() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
    x[20] = x[5]  # an exact copy: similarity of a vector with itself
    x[30] = x[5]
    s = x.astype(np.float64) @ x.astype(np.float64).T
    expected = np.array([-np.inf] + [s[:j, j].max() for j in range(1, len(x))])
    for block in (1, 2, 3, 5, 16, 36, 37, 1000):
        assert np.array_equal(max_sim_earlier(x, block), expected), block
    assert max_sim_earlier(x[:1], 4).tolist() == [-np.inf]
    assert max_sim_earlier(x[:0], 4).size == 0


def test_semdedup_equals_reference(small_run) -> None:
    scored, summary, work = small_run
    n = scored.num_rows
    assert summary["documents"] == n == 150 and summary["clusters"] == 6
    emb = fp16_column(scored, "semdedup_embedding")
    centroids = np.load(phases.centroids_path(f"{work}/stage"))
    cluster, sim = reference_assign(emb, centroids)
    assert np.array_equal(scored.column("semdedup_cluster").to_numpy(), cluster)
    dist = scored.column("semdedup_centroid_distance").to_numpy()
    assert np.array_equal(dist, (1.0 - sim).astype(np.float32))
    m_ref = reference_max_sim(emb, cluster, sim)
    m = scored.column("semdedup_max_sim").to_numpy(zero_copy_only=False)
    assert np.array_equal(m, m_ref, equal_nan=True)  # bit-identical, blocks of 3
    # Decisions: by eps and by ratio.
    removed = scored.column("reason").is_valid().to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        assert np.array_equal(removed, m_ref > 1 - 0.2)
    # Of each exact copy pair, exactly one is removed: the later one in global position.
    ids = scored.column("id").to_pylist()
    for i in range(10):
        a, b = ids.index(f"doc-{i}"), ids.index(f"doc-{130 + i}")
        assert not removed[min(a, b)] and removed[max(a, b)] and m[max(a, b)] > 0.99
    for r in (0.6, 0.75, 0.9):
        other = SemDeDupStage(SemDeDupConfig(**LIGHT, r_dedup=r))
        got = rethreshold(other, scored).is_valid().to_numpy(zero_copy_only=False)
        assert np.array_equal(got, reference_ratio_removed(m_ref, r)), r


def test_block_size_does_not_change_results(small_run, shared_data, tmp_path, monkeypatch) -> None:
    scored, _, _ = small_run
    monkeypatch.setattr(semdedup, "MEMMAP_BYTES", 0)  # gather partitions in a disk memmap
    stage = SemDeDupStage(SemDeDupConfig(**LIGHT, eps=0.2, block_size=4096))
    unblocked, _ = run_local(stage, small_set(shared_data), str(tmp_path), num_partitions=3)
    assert unblocked.equals(scored)


@pytest.mark.parametrize("change", [{"eps": 0.35}, {"eps": 0.05}, {"r_dedup": 0.8}])
def test_rethreshold_equals_recompute(small_run, shared_data, tmp_path, change) -> None:
    scored, _, _ = small_run
    assert set(change) <= SemDeDupStage.threshold_keys
    stage = SemDeDupStage(SemDeDupConfig(**LIGHT, block_size=3, **change))
    recomputed, _ = run_local(stage, small_set(shared_data), str(tmp_path), num_partitions=3)
    assert rethreshold(stage, scored).equals(recomputed.column("reason").combine_chunks())
    assert recomputed.drop_columns(["reason"]).equals(scored.drop_columns(["reason"]))


def test_side_file_and_no_embedding(shared_data, tmp_path) -> None:
    side = tmp_path / "emb"
    cfg = {**LIGHT, "eps": 0.2, "embeddings": "side_file", "embeddings_dir": str(side)}
    scored, _ = run_local(
        SemDeDupStage(SemDeDupConfig(**cfg)), small_set(shared_data), str(tmp_path)
    )
    assert "semdedup_embedding" not in scored.column_names
    files = sorted(side.glob("part-*.parquet"))
    assert len(files) == 3
    table = pa.concat_tables([pa.parquet.read_table(f) for f in files])
    assert sorted(table.column("id").to_pylist()) == sorted(scored.column("id").to_pylist())
    assert table.column("embedding").type.value_type == pa.float16()
    with pytest.raises(ValueError, match="embeddings_dir"):
        SemDeDupConfig(embedder="light", embeddings="side_file")


def test_config_rules() -> None:
    assert SemDeDupConfig().r_dedup == 0.75 and SemDeDupConfig().eps is None
    only_eps = SemDeDupConfig(eps=0.1)
    assert only_eps.r_dedup is None and only_eps.eps == 0.1
    with pytest.raises(ValueError, match="not both"):
        SemDeDupConfig(eps=0.1, r_dedup=0.5)
    with pytest.raises(ValueError, match="model_path"):
        SemDeDupConfig(embedder="hf")
    with pytest.raises(ValueError):
        SemDeDupConfig(which_to_keep="median")
