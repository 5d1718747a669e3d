"""Shared fixtures: the real data in ../shared/data (read in place, never copied)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; tests that need it are skipped with a clear reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the whole test session (ray.init costs seconds on 2 cores)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_warc(tmp_path_factory) -> Path:
    """The demo WARC made by scripts/make_demo_data.py (the project's own generated data)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("demo") / "demo.warc.gz"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_demo_data.py"), str(out)],
        check=True,
        capture_output=True,
    )
    return out
