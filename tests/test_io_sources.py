"""plan_units / get_reader / input_fingerprint: expansion, formats, errors, determinism."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest

from pipeline.errors import InputError
from pipeline.io.jsonl import JsonlReader
from pipeline.io.options import InputConfig
from pipeline.io.parquet import ParquetReader
from pipeline.io.sources import detect_format, get_reader, input_fingerprint, plan_units
from pipeline.io.warc import WarcReader, WetReader


def plan(*paths: str, **kw) -> list:
    return plan_units(InputConfig(paths=list(paths), **kw))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """b/x.warc.gz, a/y.jsonl.zst, a/z.parquet, a/c/w.warc.wet.gz + files to ignore."""
    for rel in [
        "b/x.warc.gz",
        "a/y.jsonl.zst",
        "a/z.parquet",
        "a/c/w.warc.wet.gz",
        "a/README.md",
        "a/_SUCCESS",
        "a/.hidden.jsonl",
        "a/x.warc.wat.gz",
        "a/z.parquet.crc",
    ]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("CC-MAIN-20240518-00000.warc.gz", "warc"),
        ("a.warc", "warc"),
        ("a.warc.zst", "warc"),
        ("CC-MAIN-x.warc.wet.gz", "wet"),
        ("a.wet", "wet"),
        ("x.warc.wat.gz", "warc"),
        ("d.jsonl", "jsonl"),
        ("d.json.gz", "jsonl"),
        ("d.jsonl.zst", "jsonl"),
        ("d.ndjson", "jsonl"),
        ("p.parquet", "parquet"),
        ("README.md", None),
        ("s3://b/k/file.warc.gz", "warc"),
    ],
)
def test_detect_format(name: str, fmt: str | None) -> None:
    assert detect_format(name) == fmt


def test_directory_recursive_sorted_and_indexed(tree: Path) -> None:
    units = plan(str(tree))
    rel = [(os.path.relpath(u.path, tree), u.format) for u in units]
    assert rel == [
        ("a/c/w.warc.wet.gz", "wet"),
        ("a/x.warc.wat.gz", "warc"),
        ("a/y.jsonl.zst", "jsonl"),
        ("a/z.parquet", "parquet"),
        ("b/x.warc.gz", "warc"),
    ]
    assert [u.index for u in units] == [0, 1, 2, 3, 4]
    assert all(os.path.isabs(u.path) for u in units)


def test_glob_dedup_and_order_independent(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    a = plan("**/*.gz", str(tree / "b" / "x.warc.gz"), "b")
    b = plan("b/x.warc.gz", "**/*.gz")
    assert a == b
    assert [os.path.relpath(u.path, tree) for u in a] == [
        "a/c/w.warc.wet.gz",
        "a/x.warc.wat.gz",
        "b/x.warc.gz",
    ]


def test_missing_path_and_empty_glob(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"input path not found: .*nope\.warc\.gz.*input\.paths"):
        plan(str(tmp_path / "nope.warc.gz"))
    with pytest.raises(InputError, match=r"no files match .*\*\.warc\.gz"):
        plan(str(tmp_path / "*.warc.gz"))
    with pytest.raises(InputError, match="input.paths is empty"):
        plan()


def test_directory_without_data_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no readable input files"):
        plan(str(tmp_path))


def test_explicit_unknown_and_wat_files(tree: Path) -> None:
    with pytest.raises(InputError, match="set input.format"):
        plan(str(tree / "a" / "README.md"))
    # WAT files are read as WARC so their metadata records are counted, never silently dropped.
    units = plan(str(tree / "a" / "x.warc.wat.gz"))
    assert units[0].format == "warc"


def test_fixed_format_applies_to_every_file(tree: Path) -> None:
    units = plan(str(tree / "a"), format="jsonl")
    names = sorted(os.path.relpath(u.path, tree / "a") for u in units)
    assert names == ["README.md", "c/w.warc.wet.gz", "x.warc.wat.gz", "y.jsonl.zst", "z.parquet"]
    assert {u.format for u in units} == {"jsonl"}


def test_disallowed_protocol() -> None:
    with pytest.raises(InputError, match=r"protocol 's3'.*input\.allowed_protocols"):
        plan("s3://bucket/crawl/*.warc.gz")
    with pytest.raises(InputError, match=r"protocol 'https'.*input\.allowed_protocols"):
        plan("https://data.commoncrawl.org/x.warc.gz")
    with pytest.raises(InputError, match=r"protocol 'file'"):
        plan("/tmp", allowed_protocols=["s3"])


def test_fsspec_urls_are_expanded_when_allowed() -> None:
    for name in ("crawl/b.warc.gz", "crawl/a.warc.gz", "crawl/sub/c.jsonl", "crawl/notes.txt"):
        with fsspec.open(f"memory://{name}", "wb") as f:
            f.write(b"x")
    kw = {"allowed_protocols": ["file", "memory"]}
    units = plan("memory://crawl", **kw)
    assert [u.path for u in units] == [
        "memory:///crawl/a.warc.gz",
        "memory:///crawl/b.warc.gz",
        "memory:///crawl/sub/c.jsonl",
    ]
    assert [u.path for u in plan("memory://crawl/*.warc.gz", **kw)] == [
        "memory:///crawl/a.warc.gz",
        "memory:///crawl/b.warc.gz",
    ]
    fp = input_fingerprint(units)
    with fsspec.open("memory://crawl/a.warc.gz", "wb") as f:
        f.write(b"longer content")
    assert input_fingerprint(units) != fp


def test_fingerprint_tracks_content_changes(tree: Path) -> None:
    units = plan(str(tree))
    fp = input_fingerprint(units)
    assert fp == input_fingerprint(list(reversed(units))) and len(fp) == 64
    (tree / "b" / "x.warc.gz").write_bytes(b"changed")
    assert input_fingerprint(units) != fp


def test_get_reader() -> None:
    cfg = InputConfig()
    assert isinstance(get_reader("warc", cfg), WarcReader)
    assert isinstance(get_reader("wet", cfg), WetReader)
    assert isinstance(get_reader("jsonl", cfg), JsonlReader)
    assert isinstance(get_reader("parquet", cfg), ParquetReader)
    assert get_reader("hf", cfg).format == "hf"
    with pytest.raises(InputError, match="unknown input format"):
        get_reader("arc", cfg)


def test_shared_warc_directory(shared_data: Path) -> None:
    units = plan(str(shared_data / "warc"))
    names = [Path(u.path).name for u in units]
    assert names == sorted(names) and len(names) == 11  # the WAT file is read as WARC
    assert [u.format for u in units].count("wet") == 1
