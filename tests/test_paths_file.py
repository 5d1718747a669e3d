"""Common Crawl style inputs: input.paths_file (gzip, relative lines joined to input.base_url),
input.sample_files with its seed, --paths-file, with --limit and resume, and their errors. The
listed files are the shared WARCs, read in place."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import fsspec
import pytest

from pipeline.config import RuntimeConfig, load_recipe
from pipeline.errors import ConfigError, InputError
from pipeline.io.options import InputConfig
from pipeline.io.sources import plan_units, unit_identity
from pipeline.runner.executors import resolve_executor
from tests.faults.helpers import (
    FAST_EXTRACT,
    WARC_DIR,
    WGET,
    assert_reconciles,
    curate,
    read_output,
    stats_of,
    write_recipe,
)

# Two small shared WARCs: 22 + 1 HTML responses.
SMALL = ["warc/wget-2024-sample-0000.warc.gz", "warc/cc-main-2024-22-whirlwind.warc.gz"]


def _paths_file(path: Path, lines: list[str]) -> Path:
    """A paths file as Common Crawl ships one: gzip when the name says so, LF line ends."""
    data = "".join(f"{line}\n" for line in lines).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def _shared_warcs() -> list[str]:
    """The shared WARC files' paths relative to the shared data directory (9 of them)."""
    return sorted(f"warc/{p.name}" for p in WARC_DIR.glob("*.warc.gz"))


def _plan(**input_options: Any) -> list[Any]:
    return plan_units(InputConfig(**input_options))


# --- planning ---------------------------------------------------------------------------------


def test_gzip_paths_file_with_base_url_plans_the_listed_warcs(tmp_path, shared_data) -> None:
    """Relative lines joined to a local base directory, an absolute line, comments, blank lines,
    CRLF ends and a repeated line: the same units as listing the files in input.paths."""
    listed = _shared_warcs()
    lines = ["# CC-MAIN-2024-22 excerpt", *listed[:5], "", f"  {listed[5]}\r", listed[0]]
    lines += [str(shared_data / p) for p in listed[6:]]
    paths_file = _paths_file(tmp_path / "warc.paths.gz", lines)
    units = _plan(paths_file=str(paths_file), base_url=str(shared_data))
    expected = _plan(paths=[str(shared_data / p) for p in listed])
    assert len(units) == len(listed) == 9
    assert [(u.index, u.path, u.format) for u in units] == [
        (u.index, u.path, u.format) for u in expected
    ]
    assert all(u.checked for u in units)  # local lines are looked up like input.paths
    # without base_url, relative lines are relative to the paths file's own directory
    local = _paths_file(tmp_path / "lists" / "p.txt", ["../data/a.jsonl"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text('{"text": "hello"}\n')
    assert [u.path for u in _plan(paths_file=str(local))] == [str(tmp_path / "data" / "a.jsonl")]
    # paths and paths_file together: both read, a file in both once
    both = _plan(paths=[str(shared_data / listed[0])], paths_file=str(local))
    # units come sorted by path, wherever tmp_path and the data happen to live
    assert [u.path for u in both] == sorted(
        [str(tmp_path / "data" / "a.jsonl"), str(WARC_DIR / listed[0][5:])]
    )


def test_recipe_relative_paths_file_and_base_url(tmp_path, shared_data, monkeypatch) -> None:
    """paths_file (a `_file` key) and a relative base_url resolve against the recipe file's
    directory; URLs are left alone; base_url without paths_file is refused."""
    recipes = tmp_path / "recipes"
    _paths_file(recipes / "lists" / "warc.paths.gz", SMALL)
    (recipes / "r.yaml").parent.mkdir(exist_ok=True)
    data_link = recipes / "shared"
    data_link.symlink_to(shared_data)
    (recipes / "r.yaml").write_text(
        "input:\n  paths_file: lists/warc.paths.gz\n  base_url: shared\n"
        "output:\n  path: out\nstages:\n  - stage: extract\n"
    )
    monkeypatch.chdir(tmp_path)  # anywhere else
    r = load_recipe(recipes / "r.yaml")
    assert r.input.paths_file == str(recipes / "lists" / "warc.paths.gz")
    assert r.input.base_url == str(data_link)
    assert [Path(u.path).name for u in plan_units(r.input)] == sorted(Path(p).name for p in SMALL)
    r = load_recipe(recipes / "r.yaml", ["input.base_url='s3://commoncrawl/'"])
    assert r.input.base_url == "s3://commoncrawl/"
    with pytest.raises(ConfigError, match="base_url is prefixed to the lines of paths_file"):
        load_recipe(recipes / "r.yaml", ["input.paths_file=null", "input.paths=[a.warc.gz]"])


def test_sample_is_seeded_and_independent_of_line_order(tmp_path, shared_data) -> None:
    listed = _shared_warcs()
    forward = _paths_file(tmp_path / "a.txt", listed)
    backward = _paths_file(tmp_path / "b.txt", listed[::-1])
    base = str(shared_data)

    def sample(paths_file: Path, n: int, seed: int) -> list[str]:
        units = _plan(paths_file=str(paths_file), base_url=base, sample_files=n, seed=seed)
        assert [u.index for u in units] == list(range(len(units)))  # re-indexed, plan order
        assert [u.path for u in units] == sorted(u.path for u in units)
        return [Path(u.path).name for u in units]

    first = sample(forward, 4, 0)
    assert len(first) == 4 and set(first) <= {Path(p).name for p in listed}
    assert sample(forward, 4, 0) == first == sample(backward, 4, 0)
    by_seed = {tuple(sample(forward, 4, seed)) for seed in range(6)}
    assert len(by_seed) > 1  # other seeds, other samples
    assert sample(forward, 9, 3) == sample(forward, 50, 3) == sorted(Path(p).name for p in listed)
    # sample_files applies to input.paths too (units of any source)
    paths = [str(shared_data / p) for p in listed]
    assert [Path(u.path).name for u in _plan(paths=paths, sample_files=4)] == first


def test_ninety_thousand_remote_lines_plan_without_a_request(tmp_path, monkeypatch) -> None:
    """Common Crawl's ~90,000 WARC paths, relative, with an https base: no filesystem is even
    built while planning or taking the units' identities (each would be a request), so their
    sizes are unknown and `executor: auto` chooses Ray."""
    lines = [
        f"crawl-data/CC-MAIN-2024-22/segments/1715971{s:06d}.5/warc/"
        f"CC-MAIN-20240522-{s:05d}-{i:05d}.warc.gz"
        for s in range(100)
        for i in range(900)
    ]
    paths_file = _paths_file(tmp_path / "warc.paths.gz", lines)

    def no_request(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a remote filesystem was used while planning: {args}")

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_request)
    monkeypatch.setattr(fsspec, "open", no_request)
    cfg = InputConfig(
        paths_file=str(paths_file),
        base_url="https://data.commoncrawl.org/",
        allowed_protocols=["file", "https"],
    )
    units = plan_units(cfg)
    assert len(units) == 90_000 and not any(u.checked for u in units)
    assert units[0].path == "https://data.commoncrawl.org/" + sorted(lines)[0]
    assert {u.format for u in units} == {"warc"}
    identity = unit_identity(units[-1])
    assert (identity["path"], identity["size"], identity["stamp"]) == (units[-1].path, None, None)
    sizes = [unit_identity(u)["size"] for u in units[:100]]
    assert resolve_executor(RuntimeConfig(executor="auto"), sizes).executor == "ray"
    sampled = plan_units(cfg.model_copy(update={"sample_files": 250, "seed": 7}))
    assert len(sampled) == 250 and {u.path for u in sampled} <= {u.path for u in units}


# --- runs -------------------------------------------------------------------------------------


def _recipe(tmp_path: Path, paths_file: Path, base: Path, out: Path, **input_options: Any) -> Path:
    recipe = json.loads(write_recipe(tmp_path / "r.yaml", [], out).read_text())
    recipe["input"] = {"paths_file": str(paths_file), "base_url": str(base), **input_options}
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    return tmp_path / "r.yaml"


def test_run_from_a_paths_file_equals_a_run_over_the_same_paths(
    capsys, tmp_path, shared_data
) -> None:
    paths_file = _paths_file(tmp_path / "warc.paths.gz", SMALL)
    listed_out, direct_out = tmp_path / "listed", tmp_path / "direct"
    recipe = write_recipe(tmp_path / "plain.yaml", [WGET], listed_out)
    result = curate(
        capsys, "run", recipe, "--paths-file", paths_file, "--set", f"input.base_url={shared_data}"
    )
    assert result.code == 0, result.err
    direct = curate(
        capsys, "run", recipe, "--input", *[shared_data / p for p in SMALL], "--output", direct_out
    )
    assert direct.code == 0, direct.err
    stats = stats_of(listed_out)
    assert_reconciles(stats)
    assert stats["inputs"]["units"] == 2 and stats["reader"]["documents"] == 23
    assert read_output(listed_out).equals(read_output(direct_out))
    recorded = (listed_out / "_run" / "config.yaml").read_text()
    assert f"input.paths_file={json.dumps(str(paths_file))}" in recorded
    # --input replaces the recipe's paths file (and its base_url) unless --paths-file is given
    cfg_recipe = _recipe(tmp_path, paths_file, shared_data, tmp_path / "o")
    only = curate(capsys, "run", cfg_recipe, "--input", WGET, "--dry-run")
    assert only.code == 0 and "input: 1 unit(s)" in only.out, only.err


def test_sample_with_limit_then_resume(capsys, tmp_path, shared_data) -> None:
    """sample_files picks the files, --limit then reads the sample's first documents in order;
    a killed run (a unit's marker gone) resumes to the same output; a changed list is refused."""
    listed = _shared_warcs()
    paths_file = _paths_file(tmp_path / "warc.paths.gz", listed)
    out = tmp_path / "out"
    recipe = _recipe(tmp_path, paths_file, shared_data, out, sample_files=3, seed=11)
    chosen = [
        u.path
        for u in _plan(
            paths_file=str(paths_file), base_url=str(shared_data), sample_files=3, seed=11
        )
    ]
    args = ("run", recipe, "--limit", "30")
    plan = curate(capsys, *args, "--dry-run")
    assert plan.code == 0 and "  sample_files 3: 3 file(s) chosen by seed 11\n" in plan.out
    result = curate(capsys, *args)
    assert result.code == 0, result.err
    stats = stats_of(out)
    assert_reconciles(stats)
    assert stats["reader"]["documents"] == 30
    assert stats["inputs"]["sample_files"] == 3 and stats["inputs"]["seed"] == 11
    assert stats["inputs"]["limit"] == 30 and stats["inputs"]["units_planned"] == 3
    read = [u["path"] for u in stats["units"]]
    assert read == chosen[: len(read)]
    first = read_output(out)

    units = sorted((out / "_run" / "units" / "seg00").glob("part-*.json"))
    units[-1].unlink()
    (out / "stats.json").unlink()
    again = curate(capsys, *args)
    assert again.code == 0, again.err
    n = len(read)
    assert f"from {n} input file(s) (1 processed, {n - 1} resumed; " in again.out
    assert read_output(out).equals(first)

    # the first sampled file dropped from the list: another sample, refused naming the file
    _paths_file(paths_file, [p for p in listed if not chosen[0].endswith(p)])
    refused = curate(capsys, *args)
    assert refused.code != 0 and "Traceback" not in refused.err
    assert f"removed {chosen[0]}" in refused.err and "--overwrite" in refused.err


def test_remote_paths_file_and_a_missing_remote_file(capsys, tmp_path) -> None:
    """A paths file in a remote store, its relative lines relative to it; a remote line is not
    looked up while planning: a missing one is one `unreadable_file` when its unit is read, the
    other file read, a warning naming it (memory:// stands for the remote store here; the local
    executor shares this process's memory filesystem)."""
    fs = fsspec.filesystem("memory")
    fs.pipe("/cc/segment/a.warc.gz", WGET.read_bytes())
    lines = b"segment/a.warc.gz\nsegment/gone.warc.gz\n"
    fs.pipe("/cc/warc.paths.gz", gzip.compress(lines))
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [], out)
    options = ("--set", "input.allowed_protocols=[file, memory]")
    try:
        result = curate(
            capsys, "run", recipe, "--paths-file", "memory://cc/warc.paths.gz", *options
        )
    finally:
        fs.rm("/cc", recursive=True)
    assert result.code == 0, result.err
    stats = stats_of(out)
    assert_reconciles(stats)
    assert stats["reader"]["skipped"]["unreadable_file"] == 1
    assert stats["reader"]["documents"] == 22
    assert "memory://cc/segment/gone.warc.gz" in result.err
    assert [u["path"] for u in stats["units"]] == [
        "memory://cc/segment/a.warc.gz",
        "memory://cc/segment/gone.warc.gz",
    ]


# --- errors -----------------------------------------------------------------------------------


def _error(capsys, tmp_path: Path, paths_file: Path, base: Path | None = None) -> str:
    """The one-line error of a run over `paths_file` (exit code 2, no traceback)."""
    recipe = write_recipe(tmp_path / "e.yaml", [], tmp_path / "eo", [FAST_EXTRACT])
    extra = ["--set", f"input.base_url={base}"] if base else []
    result = curate(capsys, "run", recipe, "--paths-file", paths_file, *extra)
    assert result.code == 2 and "Traceback" not in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert not (tmp_path / "eo").exists()
    return result.err.removeprefix("curate: error: ").strip()


def test_paths_file_errors(capsys, tmp_path, shared_data) -> None:
    missing = tmp_path / "nope.paths.gz"
    assert _error(capsys, tmp_path, missing) == f"input.paths_file not found: '{missing}'"

    empty = _paths_file(tmp_path / "empty.txt", ["# nothing yet", "", "   "])
    assert _error(capsys, tmp_path, empty) == (
        f"input.paths_file {empty} lists no files (3 lines, all blank or comments)"
    )

    gone = _paths_file(tmp_path / "gone.txt", [SMALL[0], "warc/no-such.warc.gz"])
    assert _error(capsys, tmp_path, gone, shared_data) == (
        f"input path not found: '{shared_data / 'warc/no-such.warc.gz'}'; "
        "check line 2 of input.paths_file"
    )

    unknown = _paths_file(tmp_path / "unknown.txt", [str(WGET), "README"])
    (tmp_path / "README").write_text("not data\n")
    assert _error(capsys, tmp_path, unknown).startswith(
        f"cannot tell the format of {tmp_path / 'README'} from its name "
        "(line 2 of input.paths_file); set input.format"
    )

    remote = _paths_file(tmp_path / "remote.txt", ["s3://commoncrawl/crawl-data/x.warc.gz"])
    assert "uses protocol 's3', which is not allowed" in _error(capsys, tmp_path, remote)
    with pytest.raises(InputError, match="cannot open 'nosuch://lists/warc.paths.gz': "):
        plan_units(
            InputConfig(
                paths_file="nosuch://lists/warc.paths.gz", allowed_protocols=["file", "nosuch"]
            )
        )

    binary = tmp_path / "data.warc.paths"  # a data file named as the paths file by mistake
    binary.write_bytes(gzip.decompress(WGET.read_bytes())[:300] + b"\x00\x01\n")
    assert "holds control characters, not a path" in _error(capsys, tmp_path, binary)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9.warc.gz\n".encode("latin-1"))
    assert _error(capsys, tmp_path, latin1) == (
        f"input.paths_file {latin1}, line 1: not UTF-8 text; a paths file lists one file per "
        "line (data files go in input.paths)"
    )
    long_line = tmp_path / "long.txt"
    long_line.write_bytes(b"a" * 10_000)
    assert "line 1: longer than 4096 bytes, not a path" in _error(capsys, tmp_path, long_line)

    corrupt = tmp_path / "corrupt.paths.gz"
    corrupt.write_bytes(gzip.compress(b"warc/a.warc.gz\n" * 100)[:40])
    assert _error(capsys, tmp_path, corrupt).startswith(
        f"cannot read input.paths_file '{corrupt}': "
    )
    assert _error(capsys, tmp_path, tmp_path).startswith(
        f"cannot read input.paths_file '{tmp_path}': a directory, not a regular file"
    )


def test_plan_errors_name_the_paths_key() -> None:
    with pytest.raises(InputError, match=r"input.paths is empty; .*input.paths_file"):
        plan_units(InputConfig())
