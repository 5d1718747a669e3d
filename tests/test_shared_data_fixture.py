"""The `shared_data` fixture: a skip without ../shared/data, but a failure under .ci/run's
CURATE_REQUIRE_SHARED_DATA=1, so a CI run without the data is never green. No data needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, REQUIRE_SHARED_DATA

PROBE = """
def test_probe(shared_data):
    assert shared_data.name == "data-here"
"""


def _pytest(tmp_path: Path, data: Path, require: bool) -> subprocess.CompletedProcess[str]:
    """Run pytest on a one-test file that uses the fixture, with the data path pointed at `data`."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != REQUIRE_SHARED_DATA}
    env["CURATE_SHARED_DATA"] = str(data)
    if require:
        env[REQUIRE_SHARED_DATA] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider"]
        + ["--rootdir", str(tmp_path), str(probe)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("exists", "require", "code", "outcome"),
    [
        (False, True, 1, "1 error"),
        (False, False, 0, "1 skipped"),
        (True, True, 0, "1 passed"),
    ],
    ids=["missing-required-fails", "missing-skips", "present-passes"],
)
def test_missing_shared_data_fails_when_required(
    tmp_path: Path, exists: bool, require: bool, code: int, outcome: str
) -> None:
    data = tmp_path / "data-here"
    if exists:
        data.mkdir()
    result = _pytest(tmp_path, data, require)
    assert result.returncode == code, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith(outcome), result.stdout
    if require and not exists:
        assert f"shared data not found at {data} and {REQUIRE_SHARED_DATA}=1" in result.stdout
