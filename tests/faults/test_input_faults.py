"""Hostile structured input and unusable input paths, end to end through `curate run`: JSONL lines
that are not JSON, Parquet files without a usable text column, empty documents, paths that cannot
be read. Inputs are built from the real DCLM quality sample and crawl files."""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.runner import run as run_module
from tests.faults.helpers import (
    DCLM,
    TEXT_STAGES,
    WGET,
    assert_reconciles,
    curate,
    kept_ids,
    read_output,
    rejected,
    stats_of,
    write_recipe,
)


@pytest.fixture(scope="module")
def dclm(shared_data) -> list[dict[str, Any]]:
    """The 281 real web texts with their 0/1 quality label."""
    rows = [json.loads(line) for line in DCLM.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 281
    return rows


def run_ok(capsys, tmp_path: Path, inputs: list[Path], **input_options: Any):
    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "r.yaml", inputs, out, TEXT_STAGES, input_options=input_options
    )
    result = curate(capsys, "run", recipe)
    assert result.code == 0, result.err
    stats = stats_of(out)
    assert_reconciles(stats)
    return result, stats, out


def test_jsonl_lines_that_are_not_json(capsys, tmp_path, dclm) -> None:
    """Broken lines among the real records are `bad_json` skips; every real record is read."""
    lines = DCLM.read_text(encoding="utf-8").splitlines()
    bad = [
        lines[10][: len(lines[10]) // 2],  # a record cut mid-string
        "this line is plain text, not JSON",
        json.dumps([dclm[0]["text"]]),  # valid JSON, but not an object
        '"just a string"',
        "\x00\x01\x02 binary junk \xff",
    ]
    mixed = lines[:100] + bad[:3] + lines[100:200] + bad[3:] + lines[200:]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(mixed) + "\n", encoding="utf-8")
    _, stats, out = run_ok(capsys, tmp_path, [path])
    assert stats["reader"]["skipped"] == {"bad_json": 5}
    assert stats["reader"]["documents"] == 281
    assert stats["reader"]["records"] == 286


def test_jsonl_line_nested_too_deep(capsys, tmp_path, dclm) -> None:
    """A line holding a 100,000-deep JSON value (RecursionError, not ValueError): one `bad_json`,
    and the 50 real records after it are read, by `curate run` and by `curate stats` (the line
    took every later record down with it as one `unreadable_file`)."""
    deep = '{"id": "deep", "text": "x", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"
    rows = [json.dumps(r) for r in dclm[:55]]
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(rows[:5] + [deep] + rows[5:]) + "\n", encoding="utf-8")
    _, stats, out = run_ok(capsys, tmp_path, [path])
    assert stats["reader"]["skipped"] == {"bad_json": 1}
    assert stats["reader"]["documents"] == 55 and stats["reader"]["records"] == 56
    assert stats["reader"]["errors"] == []

    result = curate(capsys, "stats", path, "--executor", "local", "--output", tmp_path / "st")
    assert result.code == 0, result.err
    assert result.out.startswith("stats: 55 documents")
    summary = json.loads((tmp_path / "st" / "summary.json").read_text())
    assert summary["by_stage"]["data"]["documents"] == 55


def test_jsonl_lines_at_the_recursion_limit(capsys, tmp_path, dclm) -> None:
    """Nesting from 900 to 1,000 levels in metadata and in the id, around where decoding or
    re-encoding hits the recursion limit: every line is a document or one counted skip
    (`bad_json` when it does not decode, `bad_record` when its fields cannot be stored), and
    the real records after them are all read."""
    lines = []
    for depth in range(900, 1001):
        lines.append('{"text": "meta", "m": ' + "[" * depth + "]" * depth + "}")
        lines.append('{"text": "id", "id": ' + "[" * depth + "1" + "]" * depth + "}")
    path = tmp_path / "limit.jsonl"
    path.write_text("\n".join(lines + [json.dumps(r) for r in dclm[:30]]) + "\n")
    _, stats, out = run_ok(capsys, tmp_path, [path])
    reader = stats["reader"]
    assert reader["records"] == 232 and set(reader["skipped"]) <= {"bad_json", "bad_record"}
    assert reader["skipped"]["bad_json"] > 0 and reader["documents"] > 30
    seen = read_output(out).column("text").to_pylist()
    seen += rejected(out, "gopher_quality").column("text").to_pylist()
    assert {r["text"] for r in dclm[:30]} <= set(seen)


def test_parquet_row_python_cannot_hold(capsys, tmp_path, dclm) -> None:
    """A timestamp past year 9999 in one row (metadata or fetch_date): that row is `bad_record`,
    the 39 others are read (the batch's remaining rows were lost as `unreadable_file`)."""
    texts = [r["text"] for r in dclm[:40]]
    when = pa.array([0] * 20 + [10**12] + [0] * 19, pa.timestamp("s"))
    for column in ("crawled", "fetch_date"):
        (tmp_path / column).mkdir()
        path = _parquet(tmp_path / f"{column}.parquet", dclm, {"text": texts, column: when})
        _, stats, out = run_ok(capsys, tmp_path / column, [path])
        assert stats["reader"]["skipped"] == {"bad_record": 1}
        assert stats["reader"]["documents"] == 39 and stats["reader"]["errors"] == []


def test_jsonl_records_without_text(capsys, tmp_path, dclm) -> None:
    """A record whose text is missing, null or not a string is `missing_text`."""
    rows = [*dclm[:50], {"label": 1}, {"text": None}, {"text": 42}, {"text": ["a", "list"]}]
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    _, stats, _ = run_ok(capsys, tmp_path, [path])
    assert stats["reader"]["skipped"] == {"missing_text": 4}
    assert stats["reader"]["documents"] == 50


def test_empty_and_whitespace_only_documents(capsys, tmp_path, dclm) -> None:
    """Empty and whitespace-only texts are documents (counted in), and the first stage rejects
    them with a reason: nothing is dropped silently."""
    rows = [*dclm[:20], {"id": "empty", "text": ""}, {"id": "blank", "text": " \n\t\u3000 \n"}]
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    _, stats, out = run_ok(capsys, tmp_path, [path])
    assert stats["reader"]["documents"] == 22
    gone = rejected(out, "gopher_quality").to_pylist()
    reasons = {r["id"]: r["reason"] for r in gone}
    assert reasons["empty"] == reasons["blank"] == "gopher_short_doc"


def _parquet(path: Path, dclm: list[dict[str, Any]], columns: dict[str, Any]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (
            lambda rows: {
                "content": [r["text"] for r in rows],
                "label": [r["label"] for r in rows],
            },
            "no 'text' column (columns: content, label); set input.text_field",
        ),
        (
            lambda rows: {"text": [r["label"] for r in rows]},
            "column 'text' is int64, not a string; set input.text_field",
        ),
        (
            lambda rows: {"text": [[r["text"]] for r in rows]},
            "column 'text' is list<element: string>, not a string; set input.text_field",
        ),
    ],
    ids=["missing", "int", "list"],
)
def test_parquet_with_missing_or_mistyped_text_column(
    capsys, tmp_path, dclm, columns, message
) -> None:
    """A file none of whose rows has a usable text column is a configuration problem: the run
    fails (exit 2) telling which column is wrong and which key to set, even when a good file
    beside it was read first."""
    good = _parquet(tmp_path / "a-good.parquet", dclm, {"text": [r["text"] for r in dclm[:100]]})
    bad = _parquet(tmp_path / "b-bad.parquet", dclm, columns(dclm[100:]))
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [good, bad], out, TEXT_STAGES)
    result = curate(capsys, "run", recipe)
    assert result.code == 2
    assert f"{bad}: no record was usable (181 missing_text_column; {message})" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (out / "stats.json").exists()


def test_parquet_text_field_fix_reads_it(capsys, tmp_path, dclm) -> None:
    """What the message says to do works: input.text_field names the column."""
    path = _parquet(tmp_path / "c.parquet", dclm, {"content": [r["text"] for r in dclm]})
    _, stats, _ = run_ok(capsys, tmp_path, [path], text_field="content")
    assert stats["reader"]["documents"] == 281 and not stats["reader"]["skipped"]


def test_truncated_parquet_file(capsys, tmp_path, dclm) -> None:
    """A Parquet file cut short (no footer) is one `unreadable_file`, with a message; alone, it
    gives no document, so the run fails (after accounting) saying so."""
    path = _parquet(tmp_path / "t.parquet", dclm, {"text": [r["text"] for r in dclm]})
    path.write_bytes(path.read_bytes()[:-100])
    out = tmp_path / "out"
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [path], out, TEXT_STAGES))
    assert result.code == 2
    assert "the input gave no document: 1 file(s), 1 record(s) read" in result.err
    assert "not a readable Parquet file" in result.err
    stats = stats_of(out)
    assert_reconciles(stats)
    assert stats["reader"]["skipped"] == {"unreadable_file": 1}


# --- unreadable input paths ---------------------------------------------------------------------


def _deny_reading(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """chmod 000, and when that does not stop this process (root), refuse it the same way."""
    path.chmod(0)
    if os.access(path, os.R_OK):  # running as root: permissions are not enforced
        real_access, real_open = os.access, builtins.open
        denied = str(path)

        def access(p: Any, mode: int, *a: Any, **kw: Any) -> bool:
            return False if str(p) == denied else real_access(p, mode, *a, **kw)

        def open_(p: Any, *a: Any, **kw: Any) -> Any:
            if str(p) == denied:
                raise PermissionError(13, "Permission denied", denied)
            return real_open(p, *a, **kw)

        monkeypatch.setattr(os, "access", access)
        monkeypatch.setattr(builtins, "open", open_)


def test_unreadable_input_file_fails_before_any_work(capsys, tmp_path, monkeypatch) -> None:
    """An input file without read permission: a short error naming it, and nothing written."""
    path = tmp_path / "locked.warc.gz"
    path.write_bytes(WGET.read_bytes())
    _deny_reading(monkeypatch, path)
    out = tmp_path / "out"
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [path], out))
    assert result.code == 2
    assert result.err == (
        f"curate: error: cannot read '{path}': permission denied; fix its permissions or remove "
        "it from input.paths\n"
    )
    assert not out.exists()


def test_unreadable_input_directory(capsys, tmp_path, monkeypatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.warc.gz").write_bytes(WGET.read_bytes())
    _deny_reading(monkeypatch, locked)
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [locked], tmp_path / "o"))
    assert result.code == 2
    assert result.err.startswith(
        f"curate: error: cannot read directory '{locked}': permission denied; fix its permissions"
    )


def test_missing_input_path(capsys, tmp_path) -> None:
    missing = tmp_path / "nope.warc.gz"
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [missing], tmp_path / "o"))
    assert result.code == 2
    assert result.err == f"curate: error: input path not found: '{missing}'; check input.paths\n"


def test_input_file_vanishing_during_the_run_is_counted(capsys, tmp_path, monkeypatch) -> None:
    """A file deleted after planning: `unreadable_file` for it, the other file read, a warning."""
    gone = tmp_path / "gone.warc.gz"
    gone.write_bytes(WGET.read_bytes())
    real_plan = run_module.plan_units

    def plan_then_delete(cfg: Any, **kwargs: Any) -> Any:
        units = real_plan(cfg, **kwargs)
        gone.unlink()
        return units

    monkeypatch.setattr(run_module, "plan_units", plan_then_delete)
    out = tmp_path / "out"
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [WGET, gone], out))
    assert result.code == 0, result.err
    stats = stats_of(out)
    assert_reconciles(stats)
    assert stats["reader"]["skipped"]["unreadable_file"] == 1
    assert stats["reader"]["documents"] == 22
    assert "cannot open" in result.err and str(gone) in result.err
    assert len(kept_ids(out)) > 0
