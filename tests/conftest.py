"""Shared fixtures: the real data in ../shared/data (read in place, never copied), one Ray per
session, the demo WARC; and the test tiers (markers `ray`, `e2e`, `slow`; `make test-fast`)."""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# $CURATE_SHARED_DATA points the tests at another copy (the fixture's own test points it nowhere).
SHARED_DATA = Path(os.environ.get("CURATE_SHARED_DATA") or REPO.parent / "shared" / "data")
# Set by .ci/run: a missing data directory fails the tests that need it instead of skipping them.
REQUIRE_SHARED_DATA = "CURATE_REQUIRE_SHARED_DATA"
FAULTS = REPO / "tests" / "faults"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data. When it is absent the tests that need it are skipped, or fail under
    $CURATE_REQUIRE_SHARED_DATA=1 (CI), so a run without the data is never green by omission."""
    if not SHARED_DATA.is_dir():
        if os.environ.get(REQUIRE_SHARED_DATA) == "1":
            pytest.fail(
                f"shared data not found at {SHARED_DATA} and {REQUIRE_SHARED_DATA}=1: "
                "this run must not skip the tests on real data",
                pytrace=False,
            )
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_texts(shared_data: Path) -> Any:
    """Real texts with a language each: 20-sentence documents of every lingua language (CJK,
    Thai and other scripts through their segmenters), the DCLM quality set and the first 40 of
    ScrapingHub's gold texts (English), and a few hand-made edge cases: a pyarrow Table with
    columns id, text, lang."""
    import pyarrow as pa

    from pipeline.schema import ID, LANG, TEXT

    texts, langs = [], []
    for path in sorted((shared_data / "langid" / "lingua-sentences").glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for start in (0, 100):
            texts.append("\n".join(lines[start : start + 20]))
            langs.append(path.stem)
    for name, n in (
        ("quality/dclm-agreement.jsonl", 281),
        ("extraction/scrapinghub.gold.jsonl", 40),
    ):
        with open(shared_data / name, encoding="utf-8") as f:
            for line in f.readlines()[:n]:
                rec = json.loads(line)
                texts.append(rec.get("text") or rec.get("gold") or "")
                langs.append("en")
    texts += ["", "\n\n", "...", "日本語のテキストです。\nカタカナ"]  # hand-made edge cases
    langs += ["en", None, None, None]
    ids = [f"d{i}" for i in range(len(texts))]
    return pa.table({ID: ids, TEXT: texts, LANG: langs})


@pytest.fixture(scope="module", autouse=True)
def _faults_read_shared_data(request: pytest.FixtureRequest) -> None:
    """tests/faults builds its inputs from the real files (tests/faults/helpers.py: WGET, DCLM):
    every module there goes through `shared_data`, before any of its own fixtures."""
    if request.path.is_relative_to(FAULTS):
        request.getfixturevalue("shared_data")


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the whole test session (ray.init costs seconds on 2 cores)."""
    import ray

    from pipeline.runner.executors import embedded_ray_options, end_embedded_ray, init_embedded_ray

    if not ray.is_initialized():  # started as `curate run` starts an embedded Ray
        init_embedded_ray(num_cpus=2, logging_level="WARNING", **embedded_ray_options())
    yield ray
    end_embedded_ray()  # ray.shutdown without its wait on the autoscaler monitor


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


@pytest.fixture(scope="session")
def small_quality_model(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small fastText quality model of tests/test_classifier.py (train_small_model), trained
    once per session for every module that scores with it (tests must not change it)."""
    from tests.test_classifier import train_small_model

    return train_small_model(shared_data, tmp_path_factory.mktemp("quality-model"))


S3_BUCKET = "curate-test"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Generator[str, None, None]:
    """A real S3 API server on localhost (moto's standalone server, from the `test` extra) with
    bucket `S3_BUCKET`, for the whole session; yields its endpoint URL. The process environment
    points s3fs at it the way a user's would: AWS_ENDPOINT_URL and the standard credential
    variables (subprocesses, e.g. a `curate` run, inherit them)."""
    pytest.importorskip("s3fs", reason="the `remote` extra (s3fs) is not installed")
    pytest.importorskip("moto.server", reason="the `test` extra (moto[server]) is not installed")
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("s3-server") / "moto.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_ENDPOINT_URL", endpoint)
            mp.setenv("AWS_ACCESS_KEY_ID", "testing")
            mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
                mp.delenv(name, raising=False)
            import fsspec

            fsspec.filesystem("s3").mkdir(S3_BUCKET)
            yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- tiers -------------------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `ray` every test that uses the `ray_session` fixture and `e2e` every test under
    tests/faults (end to end through the CLI); the rest are marked by hand in the test files.
    Every `ray` test joins xdist group "ray": under `--dist loadgroup` (make test) they all run
    on one worker, so the session starts one Ray, not one per worker."""
    for item in items:
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
        if item.path.is_relative_to(FAULTS):
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))


_running: list[pytest.Item] = []
_REAL_INIT = pytest.StashKey[Any]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Remember the test being set up, run or torn down (for the Ray guard below)."""
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


def pytest_configure(config: pytest.Config) -> None:
    """Guard: a test that starts Ray in this process without the `ray` marker fails, naming the
    marker, so the fast tier (`-m "not ray ..."`) never starts Ray by accident."""
    import ray

    real_init = ray.init

    def guarded_init(*args: Any, **kwargs: Any) -> Any:
        if _running and _running[-1].get_closest_marker("ray") is None:
            pytest.fail(
                f"{_running[-1].nodeid} starts Ray: use the ray_session fixture or mark it "
                "@pytest.mark.ray",
                pytrace=False,
            )
        return real_init(*args, **kwargs)

    ray.init = guarded_init
    config.stash[_REAL_INIT] = real_init


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put the real `ray.init` back."""
    import ray

    ray.init = config.stash.get(_REAL_INIT, ray.init)
