"""Hostile input paths, end to end through the CLI: FIFOs, devices and sockets among the inputs
(never opened: counted `unreadable_file` naming the type), file names that are not UTF-8 (read,
escaped in every report), names that look like globs. Inputs are real DCLM texts, built in
tmp_path at test time."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.faults.helpers import (
    TEXT_STAGES,
    assert_reconciles,
    curate,
    dclm_lines,
    read_output,
    stats_of,
    write_recipe,
)

NOT_REGULAR = "not a regular file; only regular files are read"


@pytest.fixture(scope="module")
def lines(shared_data) -> list[str]:
    return dclm_lines()


def write_jsonl(path: Path | bytes, lines: list[str]) -> None:
    """Write JSON lines to a str or bytes (non-UTF-8) path."""
    with open(path, "wb") as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))


def run(capsys, tmp_path: Path, inputs: list[Any], out: Path | None = None):
    out = out or tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", inputs, out, TEXT_STAGES)
    return curate(capsys, "run", recipe), out


# --- item 6: only regular files are opened ------------------------------------------------------


@pytest.fixture
def special_files(tmp_path: Path, lines: list[str]) -> Path:
    """An input directory with one real JSONL file beside a FIFO, a FIFO named .parquet, a
    listening Unix socket, and symlinks to /dev/zero and /dev/null."""
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "good.jsonl", lines[:30])
    os.mkfifo(d / "pipe.jsonl")
    os.mkfifo(d / "pipe.parquet")
    (d / "zero.jsonl").symlink_to("/dev/zero")
    (d / "null.jsonl.gz").symlink_to("/dev/null")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "sock.jsonl"))
    yield d
    sock.close()


@pytest.mark.timeout(60)
def test_fifo_device_and_socket_inputs_are_counted_never_opened(
    capsys, tmp_path, special_files
) -> None:
    """A FIFO used to block open() forever and /dev/zero to be read without end: each is now one
    `unreadable_file` with an error naming its type; the real file is read in full."""
    result, out = run(capsys, tmp_path, [special_files])
    assert result.code == 0, result.err
    stats = stats_of(out)
    assert_reconciles(stats)
    reader = stats["reader"]
    assert reader["documents"] == 30
    assert reader["skipped"] == {"unreadable_file": 5}
    kinds = {
        "pipe.jsonl": "a FIFO (named pipe)",
        "pipe.parquet": "a FIFO (named pipe)",
        "zero.jsonl": "a character device",
        "null.jsonl.gz": "a character device",
        "sock.jsonl": "a socket",
    }
    assert sorted(reader["errors"]) == sorted(
        f"{special_files / name}: cannot open: {kind}, {NOT_REGULAR}"
        for name, kind in kinds.items()
    )
    assert "5 input problem(s)" in result.err


@pytest.mark.timeout(60)
def test_fifo_named_explicitly(capsys, tmp_path, lines) -> None:
    """A FIFO given by name is planned (it exists) and counted, not reported as missing."""
    good, fifo = tmp_path / "good.jsonl", tmp_path / "live.jsonl"
    write_jsonl(good, lines[:10])
    os.mkfifo(fifo)
    result, out = run(capsys, tmp_path, [good, fifo])
    assert result.code == 0, result.err
    stats = stats_of(out)
    assert stats["reader"]["documents"] == 10
    assert stats["reader"]["skipped"] == {"unreadable_file": 1}
    assert stats["reader"]["errors"] == [f"{fifo}: cannot open: a FIFO (named pipe), {NOT_REGULAR}"]
    shown = curate(capsys, "inspect", fifo)
    assert shown.code == 0 and "unreadable_file 1" in shown.out and "a FIFO" in shown.out


# --- item 12: an existing name with glob characters is taken literally --------------------------


@pytest.mark.timeout(60)
def test_existing_path_with_glob_characters_is_taken_literally(capsys, tmp_path, lines) -> None:
    """`crawl[2024].jsonl` used to be expanded as a glob (matching `crawl2.jsonl`, or nothing);
    a path that exists is read as named. A pattern that matches no existing name still globs."""
    literal = tmp_path / "crawl[2024].jsonl"
    write_jsonl(literal, lines[:12])
    write_jsonl(tmp_path / "crawl2.jsonl", lines[12:20])  # what the glob `crawl[2024]` matches
    result, out = run(capsys, tmp_path, [literal])
    assert result.code == 0, result.err
    assert stats_of(out)["reader"]["documents"] == 12
    assert set(read_output(out).column("source").to_pylist()) == {str(literal)}
    globbed, out2 = run(capsys, tmp_path, [tmp_path / "crawl[0-9].jsonl"], tmp_path / "out2")
    assert globbed.code == 0, globbed.err
    assert stats_of(out2)["reader"]["documents"] == 8


# --- item 11: non-UTF-8 file names -----------------------------------------------------------


@pytest.fixture
def non_utf8_dir(tmp_path: Path, lines: list[str]) -> Path:
    """`café.jsonl` in Latin-1 (byte 0xE9), `p\\xff.parquet` and a plain `good.jsonl`."""
    d = tmp_path / "in"
    d.mkdir()
    root = os.fsencode(d)
    write_jsonl(root + b"/caf\xe9.jsonl", lines[:40])
    table = pa.table({"text": [json.loads(x)["text"] for x in lines[40:70]]})
    with open(root + b"/p\xff.parquet", "wb") as f:
        pq.write_table(table, f)
    write_jsonl(d / "good.jsonl", lines[70:100])
    return d


def assert_utf8_without_surrogates(path: Path) -> str:
    """The file decodes as strict UTF-8 (no raw byte, no encoded surrogate)."""
    text = path.read_bytes().decode("utf-8")
    assert "\\udc" not in text.lower()
    return text


@pytest.mark.timeout(120)
def test_non_utf8_file_names_are_read_and_escaped(capsys, tmp_path, non_utf8_dir) -> None:
    """Every run used to end in UnicodeEncodeError writing stats.json, leaving stats.json.tmp.
    Now the files are read, their names escaped (\\xe9) in the source column, stats.json and the
    report, no temporary file stays in the output root, and a rerun resumes."""
    result, out = run(capsys, tmp_path, [non_utf8_dir])
    assert result.code == 0, result.err
    stats = stats_of(out)
    assert_reconciles(stats)
    assert stats["reader"]["documents"] == 100 and stats["reader"]["skipped"] == {}
    cafe, parquet = f"{non_utf8_dir}/caf\\xe9.jsonl", f"{non_utf8_dir}/p\\xff.parquet"
    assert [u["path"] for u in stats["units"]] == [cafe, f"{non_utf8_dir}/good.jsonl", parquet]
    assert cafe.replace("\\", "\\\\") in assert_utf8_without_surrogates(out / "stats.json")
    assert_utf8_without_surrogates(out / "report.md")
    sources = read_output(out).column("source").to_pylist()
    assert {s for s in sources if "good" not in s} == {cafe, parquet}
    assert sorted(p.name for p in out.iterdir()) == [
        "_run",
        "data",
        "rejected",
        "report.html",
        "report.md",
        "stats.json",
    ]
    again, _ = run(capsys, tmp_path, [non_utf8_dir])
    assert again.code == 0 and "3 resumed" in again.out


@pytest.mark.timeout(120)
def test_non_utf8_path_named_on_the_command_line(capsys, tmp_path, non_utf8_dir) -> None:
    """The same file named explicitly (--input): the recipe record and stats are written."""
    path = os.fsdecode(os.fsencode(non_utf8_dir) + b"/caf\xe9.jsonl")
    recipe = write_recipe(tmp_path / "r.yaml", [non_utf8_dir], tmp_path / "out", TEXT_STAGES)
    result = curate(capsys, "run", recipe, "--input", path)
    assert result.code == 0, result.err
    assert stats_of(tmp_path / "out")["reader"]["documents"] == 40
    config = assert_utf8_without_surrogates(tmp_path / "out" / "_run" / "config.json")
    assert "caf\\\\xe9.jsonl" in config


@pytest.mark.timeout(120)
def test_non_utf8_file_names_in_inspect_stats_and_ablate(capsys, tmp_path, non_utf8_dir) -> None:
    """The other verbs on the same inputs: inspect prints the escaped name, stats counts the
    file, ablate runs its variants; a missing non-UTF-8 path is a one-line error."""
    cafe = os.fsdecode(os.fsencode(non_utf8_dir) + b"/caf\xe9.jsonl")
    shown = curate(capsys, "inspect", cafe)
    assert shown.code == 0, shown.err
    assert f"{non_utf8_dir}/caf\\xe9.jsonl [jsonl]: records 40, documents 40" in shown.out

    counted = curate(capsys, "stats", cafe, "--executor", "local", "--output", tmp_path / "st")
    assert counted.code == 0, counted.err
    assert counted.out.startswith("stats: 40 documents")
    summary = json.loads(assert_utf8_without_surrogates(tmp_path / "st" / "summary.json"))
    assert summary["input"] == f"{non_utf8_dir}/caf\\xe9.jsonl"

    base = write_recipe(tmp_path / "base.yaml", [non_utf8_dir], tmp_path / "unused", TEXT_STAGES)
    ablation = tmp_path / "abl.yaml"
    ablation.write_text(
        f"name: t\nbase: {base}\noutput:\n  path: {tmp_path / 'abl'}\nvariants:\n"
        "  strict: {set: {gopher_quality.min_doc_words: 80}}\n  plain: {}\n"
    )
    ablated = curate(capsys, "ablate", ablation)
    assert ablated.code == 0, ablated.err
    assert "strict: 100 in" in ablated.out and "plain: 100 in" in ablated.out

    missing = os.fsdecode(os.fsencode(tmp_path) + b"/nothing-\xff")
    for argv in (["inspect", missing], ["stats", missing, "--executor", "local"], ["fit", missing]):
        failed = curate(capsys, *argv)
        assert failed.code == 2, argv
        assert failed.err.startswith("curate: error: ") and failed.err.count("\n") == 1, argv
        assert "Traceback" not in failed.err


@pytest.mark.timeout(120)
def test_failed_stats_write_leaves_no_temp_file(capsys, tmp_path, lines, monkeypatch) -> None:
    """stats.json cannot be put in place (disk full at the rename): exit 2, one line, and no
    `stats.json.tmp` left in the output root; the rerun writes it."""
    from fsspec.implementations.local import LocalFileSystem

    write_jsonl(tmp_path / "a.jsonl", lines[:10])
    real_mv = LocalFileSystem.mv

    def full_disk(self, path1, path2, *args, **kwargs):
        if str(path2).endswith("stats.json"):
            raise OSError(28, "No space left on device")
        return real_mv(self, path1, path2, *args, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "mv", full_disk)
    result, out = run(capsys, tmp_path, [tmp_path / "a.jsonl"])
    assert result.code == 2 and "No space left on device" in result.err
    assert result.err.count("\n") == 1
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]
    monkeypatch.setattr(LocalFileSystem, "mv", real_mv)
    again, _ = run(capsys, tmp_path, [tmp_path / "a.jsonl"])
    assert again.code == 0 and stats_of(out)["reader"]["documents"] == 10
