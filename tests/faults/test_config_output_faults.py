"""Bad recipes, an output directory that is not ours, and a disk that fills up, through `curate run`.

Message details of each config error (key, line, allowed values) are pinned in
tests/test_config.py; here the same faults go through the CLI to check what the user sees and that
no work starts.
"""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.local import LocalFileOpener

from tests.conftest import REPO
from tests.faults.helpers import (
    FAST_EXTRACT,
    WARC_DIR,
    WGET,
    assert_no_partial_shard,
    assert_reconciles,
    curate,
    read_output,
    stats_of,
    write_recipe,
)

REFINEDWEB = (REPO / "configs" / "refinedweb.yaml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "threshold: 0.65",
            "threshold: [0.65",
            ["invalid YAML (line ", "expected ',' or ']'"],
        ),
        (
            "stage: langid",
            "stage: langidd",
            [
                "stages[2].stage (line {line}): unknown stage 'langidd' (did you mean 'langid'?); "
                "allowed: url_filter, extract"
            ],
        ),
        (
            "threshold: 0.65",
            "treshold: 0.65",
            [
                "stages[2] (langid).treshold (line {line}): unknown key (did you mean "
                "'threshold'?); allowed:",
                "threshold",
            ],
        ),
        (
            "threshold: 0.65",
            "threshold: high",
            ["stages[2] (langid).threshold (line {line}):", "valid number", "'high'"],
        ),
        (
            "keep_rejected: true",
            "keep_rejected: maybe",
            ["output.keep_rejected (line {line}):", "valid boolean", "'maybe'"],
        ),
    ],
    ids=["invalid-yaml", "unknown-stage", "unknown-key", "wrong-type", "wrong-type-bool"],
)
def test_bad_recipe_fails_before_any_work(capsys, tmp_path, old, new, expected) -> None:
    """A broken refinedweb.yaml: exit 2, a short message naming the file, line, key and what is
    allowed, no traceback, and the output directory never created."""
    assert old in REFINEDWEB
    line = next(i for i, text in enumerate(REFINEDWEB.splitlines(), 1) if old in text)
    config = tmp_path / "refinedweb.yaml"
    config.write_text(REFINEDWEB.replace(old, new, 1))
    out = tmp_path / "out"
    result = curate(capsys, "run", config, "--input", WGET, "--output", out)
    assert result.code == 2
    assert result.err.startswith(f"curate: error: {config}: ")
    for part in expected:
        assert part.format(line=line) in result.err
    assert "Traceback" not in result.err and len(result.err) < 600
    assert not out.exists()


def test_bad_command_line_override(capsys, tmp_path) -> None:
    config = tmp_path / "r.yaml"
    config.write_text(REFINEDWEB)
    out = tmp_path / "out"
    result = curate(capsys, "run", config, "--input", WGET, "--output", out, "--workers", "0")
    assert result.code == 2
    assert "runtime.num_workers: Input should be greater than 0 (got 0)" in result.err
    assert not out.exists()


# --- the output directory -----------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_output_directory_of_another_config_is_refused(capsys, tmp_path) -> None:
    """A run into a directory holding another config's run: refused, saying what to do, and the
    earlier run left byte for byte as it was; --overwrite replaces only what a run writes."""
    out = tmp_path / "out"
    first = write_recipe(tmp_path / "a.yaml", [WGET], out)
    assert curate(capsys, "run", first).code == 0
    (out / "NOTES.txt").write_text("the user's own file")
    before = _snapshot(out)
    other_stage = {**FAST_EXTRACT, "resiliparse": {"main_content": False}}
    second = write_recipe(tmp_path / "b.yaml", [WGET], out, [other_stage])
    result = curate(capsys, "run", second)
    assert result.code == 2
    assert "holds a run of a different config" in result.err
    assert "choose another --output or pass --overwrite" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert _snapshot(out) == before
    result = curate(capsys, "run", second, "--overwrite")
    assert result.code == 0, result.err
    assert (out / "NOTES.txt").read_text() == "the user's own file"
    assert_reconciles(stats_of(out))


def test_output_directory_with_foreign_data_is_refused(capsys, tmp_path) -> None:
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "theirs.parquet").write_bytes(b"not ours")
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [WGET], out))
    assert result.code == 2
    assert "holds data but no run record" in result.err and "--overwrite" in result.err
    assert (out / "data" / "theirs.parquet").read_bytes() == b"not ours"


# --- a full disk --------------------------------------------------------------------------------


class FullDisk:
    """Make local writes under `root` fail with ENOSPC once `budget` bytes have been written."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path, budget: int) -> None:
        self.root = str(root)
        self.budget = budget
        self.written = 0
        real_write = LocalFileOpener.write
        disk = self

        def write(opener: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
            if str(opener.path).startswith(disk.root):
                size = len(memoryview(data).cast("B")) if not isinstance(data, str) else len(data)
                if disk.written + size > disk.budget:
                    raise OSError(errno.ENOSPC, "No space left on device", opener.path)
                disk.written += size
            return real_write(opener, data, *args, **kwargs)

        monkeypatch.setattr(LocalFileOpener, "write", write)


INPUTS = [
    WARC_DIR / "wget-2024-sample-0000.warc.gz",
    WARC_DIR / "wget-2024-sample-0001.warc.gz",
    WARC_DIR / "bl-govuk-2014.warc.gz",
]


def test_disk_filling_up_mid_run_then_resume(capsys, tmp_path, shared_data, monkeypatch) -> None:
    """The disk fills while the second unit is written: exit 2 with a short message saying to
    rerun, no partial shard visible under data/; once space is freed, the rerun resumes and the
    output is identical to an uninterrupted run."""
    clean = tmp_path / "clean"
    with monkeypatch.context() as patch:
        meter = FullDisk(patch, clean, 2**62)
        assert curate(capsys, "run", write_recipe(tmp_path / "c.yaml", INPUTS, clean)).code == 0
    reference = read_output(clean)

    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", INPUTS, out)
    with monkeypatch.context() as patch:
        disk = FullDisk(patch, out, meter.written // 2)
        result = curate(capsys, "run", recipe)
    assert 0 < disk.written <= meter.written // 2
    assert result.code == 2
    assert "No space left on device" in result.err
    assert "rerun the same command to resume" in result.err
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
    assert_no_partial_shard(out)
    assert not (out / "stats.json").exists()

    result = curate(capsys, "run", recipe)
    assert result.code == 0, result.err
    assert "resumed" in result.out
    assert read_output(out).equals(reference)
    assert_reconciles(stats_of(out))
    assert not list(out.rglob("*.tmp*"))


def test_disk_full_from_the_start(capsys, tmp_path, monkeypatch) -> None:
    """Not even the run record fits: a one-line error, not a traceback."""
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [WGET], out)
    FullDisk(monkeypatch, out, 0)
    result = curate(capsys, "run", recipe)
    assert result.code == 2
    assert result.err.startswith("curate: error: ") and "No space left on device" in result.err
    assert len(result.err.strip().splitlines()) == 1
