"""The lean embedded Ray node: no autoscaler monitor and no API server on the Ray versions it
was checked on, Ray's own node everywhere else, and Ray's own node again if a lean start fails."""

from __future__ import annotations

import logging
from typing import Any

import psutil
import pytest
import ray
from ray._private.node import Node

from pipeline.runner import executors, ray_lean_node
from pipeline.runner.ray_lean_node import (
    RAY_VERSIONS_CHECKED,
    SKIPPED_METHODS,
    lean_head_node,
    lean_node_applies,
)


def test_it_applies_only_on_a_checked_version_whose_node_has_both_methods() -> None:
    class Bare:
        def start_monitor(self) -> None: ...

    class Both(Bare):
        def start_api_server(self) -> None: ...

    for checked in RAY_VERSIONS_CHECKED:
        assert lean_node_applies(f"{checked}.0", Node)
        assert lean_node_applies(f"{checked}.3rc1", Node)
        assert not lean_node_applies(f"{checked}.0", Bare)
        assert not lean_node_applies(f"{checked}.0", Both)  # inherited: not the class's own
    assert not lean_node_applies("2.59.9", Node)
    assert not lean_node_applies("3.0.0", Node)
    assert not lean_node_applies("2.6.0", Node)  # "2.6" is not "2.60"


def test_the_installed_ray_is_one_it_was_checked_on() -> None:
    """pyproject.toml allows other Rays (they start the full node); the one CI installs must
    be checked, or the lean node would go untested."""
    assert lean_node_applies(ray.__version__, Node)


def test_the_methods_are_replaced_for_the_block_only() -> None:
    originals = {name: Node.__dict__[name] for name in SKIPPED_METHODS}
    with pytest.raises(RuntimeError, match="inside"), lean_head_node() as lean:
        assert lean
        for name in SKIPPED_METHODS:
            assert Node.__dict__[name] is not originals[name]
            assert getattr(Node, name)(object(), include_dashboard=False) is None
        raise RuntimeError("inside")
    assert {name: Node.__dict__[name] for name in SKIPPED_METHODS} == originals


def test_on_an_unchecked_ray_the_node_is_rays_own(monkeypatch) -> None:
    monkeypatch.setattr(ray, "__version__", "2.99.0")
    originals = {name: Node.__dict__[name] for name in SKIPPED_METHODS}
    with lean_head_node() as lean:
        assert not lean
        assert {name: Node.__dict__[name] for name in SKIPPED_METHODS} == originals


def test_a_lean_start_that_fails_starts_rays_full_node(monkeypatch, caplog) -> None:
    calls: list[tuple[str, bool]] = []

    def fake_init(**kwargs: Any) -> None:
        lean = Node.__dict__["start_api_server"].__module__ == ray_lean_node.__name__
        calls.append(("init", lean))
        assert kwargs == {"address": "local", "num_cpus": 2}
        if lean:
            raise RuntimeError("the raylet did not register\nmore lines")

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append(("shutdown", False)))
    with caplog.at_level(logging.WARNING, logger="pipeline.runner.executors"):
        executors.init_embedded_ray(num_cpus=2)
    assert calls == [("init", True), ("shutdown", False), ("init", False)]
    assert "a lean embedded Ray did not start (the raylet did not register)" in caplog.text


def test_a_failing_start_of_rays_own_node_is_not_tried_twice(monkeypatch) -> None:
    monkeypatch.setattr(ray_lean_node, "RAY_VERSIONS_CHECKED", ())
    calls: list[str] = []

    def fake_init(**kwargs: Any) -> None:
        calls.append("init")
        raise RuntimeError("no room for the object store")

    monkeypatch.setattr(ray, "init", fake_init)
    with pytest.raises(RuntimeError, match="no room"):
        executors.init_embedded_ray()
    assert calls == ["init"]


@pytest.mark.ray
def test_the_embedded_node_runs_without_monitor_and_api_server(ray_session) -> None:
    """The session's node (started as `curate run` starts one) has no autoscaler monitor and no
    API server among its processes, keeps the log monitor (workers' warnings reach the
    driver), and runs tasks."""
    from ray._private import ray_constants

    node = ray._private.worker._global_node
    started = set(node.all_processes)
    assert ray_constants.PROCESS_TYPE_MONITOR not in started
    assert ray_constants.PROCESS_TYPE_DASHBOARD not in started
    assert ray_constants.PROCESS_TYPE_LOG_MONITOR in started
    lines = [" ".join(c.cmdline()) for c in psutil.Process().children(recursive=True)]
    assert not [x for x in lines if executors.AUTOSCALER_MONITOR in x or "dashboard.py" in x]
    assert ray.get(ray.remote(lambda: 6 * 7).remote()) == 42


def test_the_readme_names_the_checked_ray_versions() -> None:
    from tests.conftest import REPO

    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert f"this was checked with ({', '.join(RAY_VERSIONS_CHECKED)};" in readme
