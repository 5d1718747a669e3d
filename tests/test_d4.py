"""D4 (SemDeDup then SSL prototypes) against a brute-force reference, keep ratios on real text,
re-thresholding, config rules, and a run through the runner."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import config as config_module
from pipeline import registry
from pipeline.config import load_recipe, recipe_from_dict
from pipeline.prune import phases
from pipeline.prune.d4 import D4Config, D4Stage
from pipeline.prune.local import rethreshold, run_local
from pipeline.runner.run import run_recipe
from tests.conftest import REPO
from tests.test_semdedup import (
    fp16_column,
    gold_texts,
    reference_assign,
    reference_max_sim,
    reference_ratio_removed,
    small_set,
)

LIGHT = {"embedder": "light", "n_clusters": 6, "proto_n_clusters": 5}


def reference_proto_removed(dist: np.ndarray, groups: np.ndarray | None, keep: float) -> np.ndarray:
    """Drop round-half-down((1 - keep) n) closest of each group (all one group when None)."""
    groups = np.zeros(len(dist), dtype=int) if groups is None else groups
    removed = np.zeros(len(dist), dtype=bool)
    for g in np.unique(groups):
        members = sorted(np.flatnonzero(groups == g), key=lambda i: (dist[i], i))
        n_drop = int(np.ceil((1 - keep) * len(members) - 0.5))
        removed[members[:n_drop]] = True
    return removed


@pytest.fixture(scope="module")
def d4_run(shared_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("d4")
    stage = D4Stage(D4Config(**LIGHT, r_dedup=0.8, keep_ratio=0.5, block_size=4))
    scored, summary = run_local(stage, small_set(shared_data), str(work), num_partitions=2)
    return scored, summary, work


@pytest.mark.parametrize("ranking", ["global", "cluster"])
def test_d4_equals_reference(d4_run, ranking) -> None:
    scored, summary, work = d4_run
    n = scored.num_rows
    emb = fp16_column(scored, "d4_embedding")
    cluster, sim = reference_assign(emb, np.load(phases.centroids_path(f"{work}/stage")))
    m = reference_max_sim(emb, cluster, sim)
    assert np.array_equal(scored.column("d4_max_sim").to_numpy(zero_copy_only=False), m, True)
    dedup = reference_ratio_removed(m, 0.8)
    survivors = np.flatnonzero(~dedup)
    proto_c = np.load(phases.centroids_path(f"{work}/stage", "proto"))
    p_cluster, p_sim = reference_assign(emb[survivors], proto_c)
    got_cluster = scored.column("d4_proto_cluster").to_numpy(zero_copy_only=False)
    assert np.array_equal(got_cluster[survivors], p_cluster)
    assert scored.column("d4_proto_cluster").null_count == n - len(survivors)
    proto = np.zeros(n, dtype=bool)
    groups = None if ranking == "global" else p_cluster
    proto[survivors] = reference_proto_removed(1.0 - p_sim, groups, 0.5 / 0.8)
    expected = np.where(dedup, "d4_semdedup", np.where(proto, "d4_prototype", None))
    stage = D4Stage(D4Config(**LIGHT, r_dedup=0.8, keep_ratio=0.5, proto_ranking=ranking))
    assert rethreshold(stage, scored).to_pylist() == expected.tolist()
    if ranking == "global":
        assert scored.column("reason").to_pylist() == expected.tolist()
        assert summary["kept"] == int((expected == None).sum()) == 75  # noqa: E711


@pytest.mark.parametrize(
    "change",
    [{"keep_ratio": 0.3}, {"keep_ratio": 0.8}, {"proto_ranking": "cluster", "keep_ratio": 0.6}],
)
def test_d4_rethreshold_equals_recompute(d4_run, shared_data, tmp_path, change) -> None:
    scored, _, _ = d4_run
    assert set(change) <= D4Stage.threshold_keys
    cfg = {**LIGHT, "r_dedup": 0.8, "keep_ratio": 0.5, "block_size": 4, **change}
    stage = D4Stage(D4Config(**cfg))
    recomputed, _ = run_local(stage, small_set(shared_data), str(tmp_path), num_partitions=2)
    assert rethreshold(stage, scored).equals(recomputed.column("reason").combine_chunks())
    assert recomputed.drop_columns(["reason"]).equals(scored.drop_columns(["reason"]))


def test_eps_is_not_a_d4_threshold() -> None:
    # A new eps or r_dedup changes the survivors, hence the re-clustering: not a threshold.
    assert not {"eps", "r_dedup", "n_clusters", "embedder"} & D4Stage.threshold_keys


@pytest.mark.slow
def test_keep_ratio_on_real_text(shared_data, tmp_path) -> None:
    texts = gold_texts(shared_data)
    tables = [
        pa.table({"id": [f"{s}-{i}" for i in range(len(texts[s::4]))], "text": texts[s::4]})
        for s in range(4)
    ]
    cfg = {"embedder": "light", "embeddings": "none", "max_chars": 4000}
    scored, summary = run_local(D4Stage(D4Config(**cfg, keep_ratio=0.4)), tables, str(tmp_path))
    n = scored.num_rows
    assert n > 1000 and "d4_embedding" not in scored.column_names
    dedup_kept = summary["dedup_keep_fraction"]
    assert abs(dedup_kept - 0.75) <= 0.01
    for ranking in ("global", "cluster"):
        for ratio in (0.25, 0.4, 0.6):
            stage = D4Stage(D4Config(**cfg, keep_ratio=ratio, proto_ranking=ranking))
            kept = rethreshold(stage, scored).null_count / n
            print(f"d4 light {ranking}: n={n} R={ratio} kept={kept:.4f} dedup={dedup_kept:.4f}")
            assert abs(kept - ratio) <= 0.01


def test_config_rules() -> None:
    cfg = D4Config()
    assert (cfg.r_dedup, cfg.keep_ratio, cfg.r_proto) == (0.75, 0.5, None)
    assert cfg.proto_keep == pytest.approx(2 / 3)
    assert D4Config(r_proto=0.5).keep_ratio is None
    assert D4Config(eps=0.1, r_proto=0.5).proto_keep == 0.5
    with pytest.raises(ValueError, match="keep_ratio needs r_dedup"):
        D4Config(eps=0.1)
    with pytest.raises(ValueError, match="not both"):
        D4Config(r_proto=0.5, keep_ratio=0.4)
    with pytest.raises(ValueError, match="> r_dedup"):
        D4Config(keep_ratio=0.9)


@pytest.fixture
def with_prune_stages(monkeypatch):
    monkeypatch.setitem(registry.STAGES, "d4", "pipeline.prune.d4:D4Stage")
    monkeypatch.setitem(registry.STAGES, "semdedup", "pipeline.prune.semdedup:SemDeDupStage")
    registry.stage_class.cache_clear()
    config_module._recipe_model.cache_clear()
    yield
    registry.stage_class.cache_clear()
    config_module._recipe_model.cache_clear()


@pytest.mark.e2e
def test_runner_runs_d4_and_configs_validate(with_prune_stages, shared_data, tmp_path) -> None:
    texts = gold_texts(shared_data, 300)
    inputs = []
    for s in range(3):
        path = tmp_path / f"in-{s}.jsonl"
        path.write_text(
            "".join(
                json.dumps({"id": f"{s}-{i}", "text": t}) + "\n" for i, t in enumerate(texts[s::3])
            )
        )
        inputs.append(str(path))
    out = tmp_path / "run"
    recipe = recipe_from_dict(
        {
            "input": {"paths": inputs},
            "output": {"path": str(out), "keep_rejected": True},
            "runtime": {"executor": "local"},
            "stages": [{"stage": "d4", "embedder": "light", "keep_ratio": 0.5}],
        }
    )
    stats = run_recipe(recipe).stats
    (d4,) = stats["stages"]
    assert d4["docs_in"] == 300 and d4["docs_kept"] == 150
    assert set(d4["removed_by_reason"]) == {"d4_semdedup", "d4_prototype"}
    assert d4["removed_by_reason"]["d4_semdedup"] == 75
    assert stats["global"]["d4"]["kept"] == 150
    data = pa.concat_tables(pq.read_table(p) for p in sorted((out / "data").glob("*.parquet")))
    assert data.num_rows == 150 and "d4_proto_rank_frac" in data.column_names
    recipe = load_recipe(REPO / "configs" / "d4.yaml")
    assert [s.stage for s in recipe.stages][-1] == "d4"
