"""Third-party stages: installed packages register them by entry point (`curate.stages`).

The example plugin (scripts/example_plugin) is "installed" without pip: its package is copied
onto a temporary sys.path folder next to a `*.dist-info` (METADATA + entry_points.txt), which
importlib.metadata finds as it finds any installed distribution.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import config, registry
from pipeline.ablate import fingerprint
from pipeline.errors import ConfigError
from pipeline.stage_docs import readme_with_reference, stage_reference
from tests.conftest import REPO
from tests.faults.helpers import DCLM, curate, rejected, stats_of, write_recipe

PLUGIN = REPO / "scripts" / "example_plugin"
PACKAGE = "curate_example_plugin"
DIST = "curate-example-plugin"
ENTRY = "caps_filter = curate_example_plugin.caps_filter:CapsFilterStage"


def install(site: Path, entry: str = ENTRY) -> Path:
    """The example plugin as an installed distribution under `site` (package + dist-info)."""
    shutil.copytree(PLUGIN / PACKAGE, site / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    info = site / f"{PACKAGE}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{entry}\n")
    return site


def forget_stages() -> None:
    """Drop what this process remembers of the registered stages (as a fresh worker would)."""
    for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
        del sys.modules[name]
    registry.plugins.cache_clear()
    registry.broken_plugins.cache_clear()
    registry.stage_class.cache_clear()
    config._recipe_model.cache_clear()
    fingerprint.stage_dependencies.cache_clear()
    fingerprint._source_dir.cache_clear()


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example plugin installed on sys.path for this test only."""
    site = install(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    forget_stages()
    yield site
    monkeypatch.undo()
    forget_stages()


def test_an_installed_plugin_registers_its_stage_with_its_origin(plugin_site: Path) -> None:
    names = registry.registered()
    assert list(names)[: len(registry.STAGES)] == list(registry.STAGES)  # built-ins first
    assert names["caps_filter"] == "curate_example_plugin.caps_filter:CapsFilterStage"
    assert registry.origin("caps_filter") == DIST
    assert registry.origin("langid") == registry.BUILT_IN
    cls = registry.stage_class("caps_filter")
    assert cls.__module__ == "curate_example_plugin.caps_filter" and cls.name == "caps_filter"
    assert Path(sys.modules[cls.__module__].__file__).is_relative_to(plugin_site)


def test_curate_stages_lists_every_stage_with_its_origin(capsys, plugin_site: Path) -> None:
    result = curate(capsys, "stages")
    assert result.code == 0
    assert f"| `caps_filter` | map | {DIST} |" in result.out
    assert "| `langid` | map | built-in |" in result.out
    assert "| `minhash_dedup` | global | built-in |" in result.out
    one = curate(capsys, "stages", "caps_filter")
    assert one.out.startswith(f"#### `caps_filter` (map stage, {DIST})")
    assert "| `max_caps_ratio` | `0.5` | yes | Reject a document whose cased letters" in one.out
    # The README describes the built-ins only, whatever is installed where it is generated.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme_with_reference(readme) == readme
    assert "caps_filter" not in stage_reference(origins=False)


def test_a_recipe_runs_a_plugin_stage_on_real_documents(capsys, tmp_path, plugin_site) -> None:
    from curate_example_plugin.caps_filter import caps_ratio

    out = tmp_path / "out"
    stages = [{"stage": "caps_filter", "max_caps_ratio": 0.2}]
    recipe = write_recipe(tmp_path / "r.yaml", [DCLM], out, stages)
    assert curate(capsys, "run", recipe).code == 0
    s = stats_of(out)["stages"][0]
    texts = [json.loads(line)["text"] for line in DCLM.read_text().splitlines()]
    shouting = [t for t in texts if (r := caps_ratio(t, 20)) is not None and r > 0.2]
    assert (s["name"], s["docs_in"], len(shouting)) == ("caps_filter", 281, 4)
    assert s["removed_by_reason"] == {"caps_filter_shouting": 4}
    gone = rejected(out, "caps_filter")
    assert sorted(gone.column("text").to_pylist()) == sorted(shouting)
    assert min(gone.column("caps_ratio").to_pylist()) > 0.2
    kept = pq.read_table(out / "data").column("caps_ratio").to_pylist()
    assert len(kept) == 277 and max(r for r in kept if r is not None) <= 0.2


@pytest.fixture
def broken_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example plugin installed with an entry point whose module fails on import, the way
    a plugin missing a native library does."""
    site = install(tmp_path / "site", "caps_filter = curate_example_plugin.broken:CapsFilterStage")
    (site / PACKAGE / "broken.py").write_text('raise RuntimeError("libcaps.so: not found")\n')
    monkeypatch.syspath_prepend(str(site))
    forget_stages()
    yield site
    monkeypatch.undo()
    forget_stages()


BROKEN = (
    f"the package {DIST} registers a stage named 'caps_filter' (entry point `curate.stages`: "
    "curate_example_plugin.broken:CapsFilterStage) that cannot be loaded: RuntimeError: "
    "libcaps.so: not found"
)


def test_a_broken_plugin_is_a_warning_for_recipes_that_do_not_use_it(
    capsys, tmp_path, broken_site
) -> None:
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [DCLM], out, [{"stage": "gopher_quality"}])
    result = curate(capsys, "run", recipe)
    assert result.code == 0, result.err
    assert result.err.splitlines() == [
        f"curate: warning: {BROKEN}; stage 'caps_filter' is unavailable"
    ]
    assert stats_of(out)["stages"][0]["docs_in"] == 281
    assert "caps_filter" not in registry.registered()


def test_a_recipe_using_a_broken_plugin_stage_is_refused_with_the_reason(
    capsys, tmp_path, broken_site
) -> None:
    stages = [{"stage": "gopher_quality"}, {"stage": "caps_filter"}]
    recipe = write_recipe(tmp_path / "r.yaml", [DCLM], tmp_path / "out", stages)
    result = curate(capsys, "run", recipe)
    assert result.code == 2 and not (tmp_path / "out").exists()
    assert "Traceback" not in result.err
    warning, error = result.err.splitlines()
    assert warning.startswith("curate: warning: ")
    assert error == (
        f"curate: error: {recipe}: stages[1].stage (line 21): stage 'caps_filter' is unavailable: {BROKEN}"
    )
    with pytest.raises(ConfigError, match="RuntimeError: libcaps.so: not found"):
        registry.stage_class("caps_filter")


def test_curate_stages_warns_of_a_broken_plugin_and_lists_the_rest(capsys, broken_site) -> None:
    result = curate(capsys, "stages")
    assert result.code == 0
    assert result.err.splitlines() == [
        f"curate: warning: {BROKEN}; stage 'caps_filter' is unavailable"
    ]
    assert "| `langid` | map | built-in |" in result.out and "caps_filter" not in result.out
    one = curate(capsys, "stages", "caps_filter")
    assert one.code == 2 and one.err.splitlines()[-1] == f"curate: error: {BROKEN}"


def test_a_plugin_named_like_a_built_in_is_refused(capsys, tmp_path, monkeypatch) -> None:
    site = install(tmp_path / "site", "langid = curate_example_plugin.caps_filter:CapsFilterStage")
    monkeypatch.syspath_prepend(str(site))
    forget_stages()
    try:
        clash = (
            f"the package {DIST} registers a stage named 'langid' (entry point "
            "`curate.stages`: curate_example_plugin.caps_filter:CapsFilterStage), the name of a "
            "built-in stage; a plugin cannot replace a built-in: rename its entry point or "
            "uninstall it"
        )
        with pytest.raises(ConfigError, match="a plugin cannot replace a built-in"):
            registry.stage_class("langid")
        recipe = write_recipe(tmp_path / "r.yaml", [DCLM], tmp_path / "out", [{"stage": "langid"}])
        result = curate(capsys, "run", recipe)
        assert result.code == 2 and not (tmp_path / "out").exists()
        assert result.err.splitlines() == [
            f"curate: warning: {clash}; stage 'langid' is unavailable",
            f"curate: error: {recipe}: stages[0].stage (line 18): stage 'langid' is unavailable: "
            + clash,
        ]
        # A recipe that does not name it runs, with the warning.
        other = [{"stage": "gopher_quality"}]
        recipe = write_recipe(tmp_path / "r2.yaml", [DCLM], tmp_path / "out2", other)
        result = curate(capsys, "run", recipe)
        assert result.code == 0 and result.err.startswith(f"curate: warning: {clash};")
    finally:
        monkeypatch.undo()
        forget_stages()


def test_two_packages_registering_one_name_make_only_that_name_unavailable(
    tmp_path, monkeypatch
) -> None:
    site = install(tmp_path / "site")
    other = site / "other_caps-0.2.0.dist-info"
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: other-caps\nVersion: 0.2.0\n")
    (other / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{ENTRY}\n")
    monkeypatch.syspath_prepend(str(site))
    forget_stages()
    try:
        dists = sorted([DIST, "other-caps"])
        problem = registry.broken_plugins()["caps_filter"]
        assert problem.startswith("the packages ") and problem.endswith(
            "both register a stage named 'caps_filter' (entry point `curate.stages`); "
            "uninstall one of them"
        )
        assert all(d in problem for d in dists)
        assert "caps_filter" not in registry.registered() and "langid" in registry.registered()
    finally:
        monkeypatch.undo()
        forget_stages()


def test_an_entry_point_that_does_not_load_is_named(tmp_path, monkeypatch) -> None:
    site = install(tmp_path / "site", "caps_filter = curate_example_plugin.caps_filter:Missing")
    monkeypatch.syspath_prepend(str(site))
    forget_stages()
    try:
        with pytest.raises(
            ConfigError, match=rf"{DIST} registers .* that cannot be loaded: AttributeError"
        ):
            registry.stage_class("caps_filter")
    finally:
        monkeypatch.undo()
        forget_stages()


def test_the_ablation_fingerprint_covers_the_plugin_modules(plugin_site: Path) -> None:
    deps = fingerprint.stage_dependencies("caps_filter")
    assert {PACKAGE, f"{PACKAGE}.caps_filter", "pipeline.stages.base"} <= set(deps.modules)
    assert "pyarrow" in deps.imports and "pydantic" in deps.imports
    manifest = fingerprint.stage_manifest("caps_filter", {})
    source = plugin_site / PACKAGE / "caps_filter.py"
    assert manifest["modules"][f"{PACKAGE}.caps_filter"] == fingerprint.file_digest(source)
    before = fingerprint.stage_fingerprint("caps_filter", {})
    source.write_text(source.read_text() + "\n# an edit to the plugin's code\n")
    assert fingerprint.stage_fingerprint("caps_filter", {}) != before


def test_the_fingerprint_covers_the_resource_files_a_plugin_declares(plugin_site: Path) -> None:
    package = plugin_site / PACKAGE
    (package / "data").mkdir()
    (package / "data" / "words.txt").write_text("SALE\n")
    source = package / "caps_filter.py"
    source.write_text(source.read_text() + '\nRESOURCE_FILES = ("data/words.txt",)\n')
    deps = fingerprint.stage_dependencies("caps_filter")
    assert deps.resources == (f"{PACKAGE}:data/words.txt",)
    before = fingerprint.stage_fingerprint("caps_filter", {})
    (package / "data" / "words.txt").write_text("SALE\nFREE\n")
    assert fingerprint.stage_fingerprint("caps_filter", {}) != before


@pytest.mark.ray
@pytest.mark.e2e
def test_ray_workers_resolve_the_plugin_from_their_environment(tmp_path: Path) -> None:
    """A fresh `curate run` on Ray: each worker process finds the entry point itself."""
    site = install(tmp_path / "site")
    out = tmp_path / "out"
    stages = [{"stage": "caps_filter", "max_caps_ratio": 0.2}]
    recipe = write_recipe(tmp_path / "r.yaml", [DCLM], out, stages, executor="ray", num_workers=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(recipe)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    stats = stats_of(out)
    assert stats["stages"][0]["removed_by_reason"] == {"caps_filter_shouting": 4}
    markers = [json.loads(p.read_text()) for p in (out / "_run" / "units").rglob("*.json")]
    assert markers and all(m["worker"]["node"] != "local" for m in markers)


def test_the_example_plugin_passes_its_own_tests() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=PLUGIN,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "5 passed" in done.stdout
