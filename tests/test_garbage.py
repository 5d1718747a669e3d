"""The garbage collector while a job's stages are set up (pipeline.runner.garbage)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import recipe_from_dict
from pipeline.runner.garbage import YOUNG_THRESHOLD
from pipeline.runner.run import run_recipe
from pipeline.runner.unit import StageChain


@pytest.fixture
def default_gc() -> Iterator[None]:
    """The process's own collector settings around the test, whatever it does."""
    saved = gc.get_threshold()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()


def _recipe(out: Path, inputs: list[str]) -> object:
    return recipe_from_dict(
        {
            "input": {"paths": inputs},
            "output": {"path": str(out)},
            "runtime": {"executor": "local"},
            "stages": [{"stage": "gopher_quality"}, {"stage": "fineweb_quality"}],
        }
    )


def test_set_up_stages_freeze_and_close_restores(tmp_path: Path, default_gc: None) -> None:
    gc.set_threshold(500, 7, 9)
    chain = StageChain(_recipe(tmp_path / "out", [str(tmp_path)]))
    chain.setup([])  # nothing set up: the process's settings stay
    assert gc.get_threshold() == (500, 7, 9) and gc.get_freeze_count() == 0
    chain.setup([0])
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 7, 9)
    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # the imported modules, the stage
    chain.setup([0, 1])  # one more stage: frozen again, the saved threshold kept
    assert gc.get_freeze_count() >= frozen and gc.get_threshold()[0] == YOUNG_THRESHOLD
    chain.close()
    assert gc.get_threshold() == (500, 7, 9) and gc.get_freeze_count() == 0


def test_a_local_run_leaves_the_collector_as_it_was(
    shared_data: Path, tmp_path: Path, default_gc: None
) -> None:
    """`executor: local` runs in the caller's process: its settings are back after the run, and
    the run's output is what it is with the collector untouched (a second run, same bytes)."""
    inputs = [str(shared_data / "quality" / "dclm-agreement.jsonl")]
    before = gc.get_threshold()
    result = run_recipe(_recipe(tmp_path / "a", inputs))
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    assert 0 < result.stats["output"]["documents"] < 281
    gc.disable()
    try:
        run_recipe(_recipe(tmp_path / "b", inputs))
    finally:
        gc.enable()
    for a in sorted((tmp_path / "a" / "data").iterdir()):
        assert a.read_bytes() == (tmp_path / "b" / "data" / a.name).read_bytes()
