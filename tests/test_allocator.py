"""The extractor process's allocator: Ray's jemalloc preloaded, the same text, its fallbacks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipeline.stages import allocator
from pipeline.stages.extract import ExtractConfig, ExtractStage
from pipeline.stages.sandbox import ERROR, OK, Sandbox
from tests.test_extract import _sleepy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import eval_extract  # noqa: E402


def test_rays_jemalloc_is_found_and_preloaded_into_the_child_only() -> None:
    path, why_not = allocator.jemalloc()
    assert why_not is None and path is not None and path.endswith("ray/core/libjemalloc.so")
    env = allocator.preload_env(path)
    assert env["LD_PRELOAD"].split(":")[0] == path
    with Sandbox(_sleepy, (0.0,), timeout_s=10.0, preload=path) as box:
        assert box.map([("a",)]) == [(OK, "A")]
        assert allocator.preloaded(box.pid, path)  # type: ignore[arg-type]
        assert box.notes == []
    assert not allocator.preloaded(os.getpid(), path)


def test_a_library_that_does_not_load_leaves_the_system_allocator_and_a_note(
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "libnothere.so")
    with Sandbox(_sleepy, (0.0,), timeout_s=10.0, preload=missing) as box:
        assert box.map([("a",)]) == [(OK, "A")]  # ld.so ignores it; the child works
        assert box.notes == [f"extract: {missing} did not load; the system allocator is used"]


def test_untested_ray_falls_back_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.metadata, "version", lambda name: "3.1.0")
    assert allocator.jemalloc() == (None, "ray 3.1.0 is outside the tested range >=2.40,<3")
    stage = ExtractStage(ExtractConfig(backend="resiliparse"))
    stage.setup()
    try:
        assert not allocator.preloaded(stage.sandbox.pid, "libjemalloc")  # type: ignore[union-attr,arg-type]
        assert stage.warnings() == [
            "extract: jemalloc not used (ray 3.1.0 is outside the tested range >=2.40,<3); "
            "the system allocator is"
        ]
    finally:
        stage.close()


def test_memory_limit_still_turns_a_memory_bomb_into_an_error() -> None:
    path, _ = allocator.jemalloc()
    with Sandbox(_sleepy, (0.0,), timeout_s=10.0, memory_limit_mb=1024, preload=path) as box:
        results = box.map([("alloc",), ("a",)])
    assert results == [(ERROR, "MemoryError: "), (OK, "A")]


def test_same_text_with_either_allocator_on_real_pages(shared_data: Path) -> None:
    """Every 3rd ScrapingHub page through the default extractor with jemalloc and with the
    system allocator: identical texts and statuses, and only the first process maps jemalloc."""
    docs = eval_extract.load_dataset("scrapinghub", shared_data / "extraction")[::3]
    table = eval_extract.docs_table(docs)
    out = {}
    for name in ("jemalloc", "system"):
        stage = ExtractStage(ExtractConfig(allocator=name))
        stage.setup()
        try:
            mapped = allocator.preloaded(stage.sandbox.pid, "libjemalloc.so")  # type: ignore[union-attr,arg-type]
            scored = stage.score(table)
        finally:
            stage.close()
        assert mapped == (name == "jemalloc") and stage.warnings() == []
        out[name] = (scored.column("text").to_pylist(), scored.column("extract_status").to_pylist())
    assert out["jemalloc"] == out["system"]
    assert out["jemalloc"][1].count("ok") == len(docs) == 61
