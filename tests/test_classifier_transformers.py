"""`classifier` with `backend: transformers` end to end on a tiny model made here: the same
scores on Ray as locally, its score column ranked by `top_fraction`, and an ablation's score
cache keyed on every file of the model directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.ablate.run import run_ablation
from pipeline.ablate.spec import load_ablation
from pipeline.config import recipe_from_dict
from pipeline.runner.run import run_recipe
from tests.tiny_models import make_tiny_classifier


def _all_documents(out: Path) -> pa.Table:
    """Kept and rejected documents of a run (id, score columns, reason), sorted by id."""
    kept = ds.dataset(str(out / "data"), format="parquet").to_table()
    kept = kept.append_column("reason", pa.nulls(kept.num_rows, pa.string()))
    rejected = ds.dataset(str(out / "rejected"), format="parquet").to_table()
    columns = ["id", "edu_score", "edu_score_frac_above", "reason"]
    return pa.concat_tables([kept.select(columns), rejected.select(columns)]).sort_by("id")


@pytest.mark.e2e
def test_transformers_backend_on_ray_matches_local(shared_data, tmp_path, ray_session) -> None:
    model = make_tiny_classifier(tmp_path / "edu", 1)  # a regression head, as FineWeb-Edu's
    dclm = shared_data / "quality" / "dclm-agreement.jsonl"
    stages = [
        {
            "stage": "classifier",
            "backend": "transformers",
            "model_path": str(model),
            "column": "edu_score",
            "threshold": -1e9,  # every document is scored and passes: top_fraction decides
            "max_length": 128,
            "batch_size": 16,
            "device": "cpu",
        },
        {"stage": "top_fraction", "column": "edu_score", "keep_top_fraction": 0.25},
    ]
    runs = {}
    for executor in ("local", "ray"):
        recipe = recipe_from_dict(
            {
                "input": {"paths": [str(dclm)]},
                "output": {"path": str(tmp_path / executor), "keep_rejected": True},
                "runtime": {"executor": executor, "batch_size": 64},
                "stages": stages,
            }
        )
        runs[executor] = run_recipe(recipe).stats
    local, on_ray = _all_documents(tmp_path / "local"), _all_documents(tmp_path / "ray")
    assert local.num_rows == 281
    assert local.column("id").equals(on_ray.column("id"))
    # Equal up to float32 rounding: torch's CPU kernels may split sums differently between runs
    # (seen: 0 or 1 of 281 scores off by 1.5e-8); the decisions are the same.
    np.testing.assert_allclose(
        on_ray.column("edu_score").to_numpy(), local.column("edu_score").to_numpy(), atol=1e-6
    )
    assert on_ray.column("reason").equals(local.column("reason"))
    summary = runs["local"]["global"]["top_fraction"]
    assert summary["kept"] == runs["ray"]["global"]["top_fraction"]["kept"]
    assert summary["kept"] == 71  # ceil(0.25 x 281): random-weight scores do not tie
    scores = local.column("edu_score").to_numpy()
    assert np.unique(scores).size == 281 and scores.std() > 0.01
    report = json.loads((tmp_path / "ray" / "stats.json").read_text())
    assert report["stages"][0]["name"] == "classifier"


@pytest.mark.e2e
def test_new_weights_in_the_model_directory_recompute_an_ablation(shared_data, tmp_path) -> None:
    """`model_path` names a directory: new weights in the same files recompute the classifier's
    cache node (not the stage before it), and the variant is rebuilt with the new scores."""
    docs = tmp_path / "docs.jsonl"
    with open(shared_data / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as src:
        docs.write_text("".join(line for _, line in zip(range(12), src, strict=False)))
    model = make_tiny_classifier(tmp_path / "model", 1, seed=0, max_positions=64)
    classifier = {
        "stage": "classifier",
        "backend": "transformers",
        "model_path": str(model),
        "column": "edu_score",
        "threshold": None,
        "max_length": 64,
        "device": "cpu",
    }
    base = {
        "input": {"paths": [str(docs)]},
        "output": {"path": "unused"},
        "runtime": {"executor": "local", "batch_size": 16},
        "stages": [{"stage": "gopher_quality"}, classifier],
    }
    (tmp_path / "base.yaml").write_text(json.dumps(base))
    path = tmp_path / "abl.yaml"
    variants = {
        "base": "base.yaml",
        "output": {"path": str(tmp_path / "out")},
        "variants": {"a": {}},
    }
    path.write_text(json.dumps(variants))

    def scores() -> list[float]:
        table = pq.read_table(tmp_path / "out" / "variants" / "a" / "data").sort_by("id")
        return table.column("edu_score").to_pylist()

    assert run_ablation(load_ablation(path)).computed == {"a": ["gopher_quality", "classifier"]}
    first = scores()
    assert run_ablation(load_ablation(path)).computed == {"a": []}
    make_tiny_classifier(model, 1, seed=1, max_positions=64)  # other weights, same file names
    assert run_ablation(load_ablation(path)).computed == {"a": ["classifier"]}
    second = scores()
    assert len(first) == len(second) == 9 and first != second  # gopher_quality keeps 9 of 12
    assert run_ablation(load_ablation(path)).computed == {"a": []} and scores() == second
