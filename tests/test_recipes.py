"""The shipped recipes: each validates, runs, and reconciles; refinedweb end to end on real crawls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_recipe
from pipeline.runner.run import run_recipe
from tests.conftest import REPO
from tests.test_runner import read_output

RECIPES = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_validates(path: Path) -> None:
    """Each shipped recipe validates and keeps its stages, in the file's order."""
    recipe = load_recipe(path)
    listed = [s["stage"] for s in yaml.safe_load(path.read_text(encoding="utf-8"))["stages"]]
    assert [s.stage for s in recipe.stages] == listed


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["fineweb", "c4", "gopher"])
def test_recipe_runs_on_the_demo_warc(name: str, demo_warc, tmp_path) -> None:
    recipe = load_recipe(REPO / "configs" / f"{name}.yaml").with_overrides(
        input={"paths": [str(demo_warc)]},
        output={"path": str(tmp_path / name)},
        runtime={"executor": "local"},
    )
    stats = run_recipe(recipe).stats
    assert stats["accounting"] == "ok"
    assert [s["name"] for s in stats["stages"]] == [s.stage for s in recipe.stages]
    # The English articles of the demo are clean prose: the recipes keep them.
    assert stats["output"]["documents"] >= 3


@pytest.mark.e2e
def test_refinedweb_end_to_end_on_all_shared_crawls(shared_data, tmp_path, ray_session) -> None:
    """RefinedWeb's 8 steps over every shared WARC and the extraction WARCs, funnel in report.md."""
    inputs = sorted(str(p) for p in (shared_data / "warc").glob("*.warc.gz"))  # not WET/WAT
    inputs += sorted(str(p) for p in (shared_data / "extraction").glob("*.warc.gz"))
    out = tmp_path / "refinedweb"
    recipe = load_recipe(REPO / "configs" / "refinedweb.yaml").with_overrides(
        input={"paths": inputs}, output={"path": str(out)}
    )
    stats = run_recipe(recipe).stats
    names = [s["name"] for s in stats["stages"]]
    assert names == [
        "url_filter",
        "extract",
        "langid",
        "gopher_repetition",
        "gopher_quality",
        "line_corrections",
        "minhash_dedup",
        "substring_dedup",
    ]
    reader = stats["reader"]
    assert reader["records"] == reader["documents"] + sum(reader["skipped"].values())
    assert reader["documents"] > 1100  # 920 extraction pages + the crawl responses
    upstream = reader["documents"]
    for s in stats["stages"]:
        assert s["docs_in"] == upstream == s["docs_kept"] + s["docs_rejected"]
        upstream = s["docs_kept"]
    by_name = {s["name"]: s for s in stats["stages"]}
    # Most of the crawl pages that are not English go at language ID ...
    assert by_name["langid"]["removed_by_reason"].get("lang_not_allowed", 0) > 30
    # ... and the English articles of the extraction benchmarks mostly survive the filters.
    assert stats["output"]["documents"] > 0.5 * reader["documents"]
    assert read_output(out).num_rows == stats["output"]["documents"]
    report = (out / "report.md").read_text()
    assert "## Funnel" in report
    for name in names:
        assert f"| {name} | " in report
    # Bytes are tracked per stage too (the funnel in bytes).
    assert all(s["bytes_in"] >= s["bytes_out"] for s in stats["stages"][2:])
    # The dedup steps ran as global stages, with their summaries (the LSH S-curve) recorded.
    assert {"minhash_dedup", "substring_dedup"} <= set(stats["global"])
    (tmp_path / "funnel.json").write_text(json.dumps(stats["stages"], indent=1))
