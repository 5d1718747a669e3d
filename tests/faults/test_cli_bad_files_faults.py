"""Every CLI verb on files it cannot use: a Parquet file with a column twice, one cut short, one
broken mid-way, a run directory whose stats.json is garbage, names that do not exist. Each ends
in a counted rejection naming the file (run) or a one-line error with exit 2 (the others), never
a traceback. Inputs are real DCLM texts written at test time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.faults.helpers import (
    TEXT_STAGES,
    CliResult,
    assert_reconciles,
    curate,
    dclm_lines,
    stats_of,
    write_recipe,
)


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    """The 281 real DCLM texts."""
    return [json.loads(x)["text"] for x in dclm_lines()]


def one_line_error(result: CliResult, *names: str) -> None:
    """Exit 2, one line on stderr starting `curate: error:` and naming every `names`."""
    assert result.code == 2, (result.out, result.err)
    assert result.err.startswith("curate: error: ") and result.err.count("\n") == 1, result.err
    for name in names:
        assert name in result.err


def write_parquet(path: Path, columns: list[tuple[str, list[Any]]], **kw: Any) -> Path:
    """A Parquet file whose columns may repeat a name (Arrow allows it, so writers make them)."""
    table = pa.table([pa.array(v) for _, v in columns], names=[n for n, _ in columns])
    pq.write_table(table, path, **kw)
    return path


@pytest.fixture
def bad_parquets(tmp_path: Path, texts: list[str]) -> dict[str, Path]:
    """good (100 rows), two text columns, two id columns, truncated, broken mid-way."""
    d = tmp_path / "in"
    d.mkdir()
    good = write_parquet(d / "c-good.parquet", [("text", texts[:100])])
    cut = d / "d-cut.parquet"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    broken = write_parquet(tmp_path / "broken.parquet", [("text", texts)], row_group_size=50)
    raw = bytearray(broken.read_bytes())
    start = pq.read_metadata(broken).row_group(2).column(0).data_page_offset
    raw[start : start + 12] = b"\xff" * 12  # a page header no reader can parse
    broken.write_bytes(bytes(raw))
    return {
        "good": good,
        "text_twice": write_parquet(
            d / "a-text-twice.parquet", [("text", texts[100:130]), ("text", texts[130:160])]
        ),
        "id_twice": write_parquet(
            d / "b-id-twice.parquet",
            [("id", [f"a{i}" for i in range(20)]), ("text", texts[160:180]), ("id", [None] * 20)],
        ),
        "cut": cut,
        "broken": broken,
        "text_int": write_parquet(tmp_path / "text-int.parquet", [("text", list(range(5)))]),
    }


@pytest.mark.timeout(120)
def test_parquet_with_a_column_twice_is_counted_not_fatal(capsys, tmp_path, bad_parquets) -> None:
    """Two `text` columns used to fail the whole run, on every rerun, with a KeyError naming no
    file. Now each such file is `unreadable_file` (its rows counted, the file and column named)
    and the rest is read; the first unit being such a file is not taken for a config problem."""
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [tmp_path / "in"], out, TEXT_STAGES)
    for attempt in range(2):  # the rerun resumes instead of failing again
        result = curate(capsys, "run", recipe)
        assert result.code == 0, result.err
        assert ("0 resumed" if attempt == 0 else "4 resumed") in result.out
    stats = stats_of(out)
    assert_reconciles(stats)
    reader = stats["reader"]
    assert reader["documents"] == 100
    assert reader["skipped"] == {"unreadable_file": 30 + 20 + 1}
    errors = "\n".join(reader["errors"])
    assert f"{bad_parquets['text_twice']}: column 'text' appears more than once" in errors
    assert f"{bad_parquets['id_twice']}: column 'id' appears more than once" in errors
    assert f"{bad_parquets['cut']}: not a readable Parquet file" in errors


@pytest.mark.timeout(120)
def test_parquet_broken_mid_way_is_counted_on_one_line(capsys, tmp_path, bad_parquets) -> None:
    """A page header no reader can parse, 100 rows in: the rows read are kept, the rest counted
    `unreadable_file`, and Arrow's two-line message becomes one line in stats.json and on the
    terminal."""
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [bad_parquets["broken"]], out, TEXT_STAGES)
    result = curate(capsys, "run", recipe)
    assert result.code == 0, result.err
    assert result.err.count("\n") == 1 and "Deserializing page header failed" in result.err
    reader = stats_of(out)["reader"]
    assert reader["records"] == 281
    assert reader["documents"] + reader["skipped"]["unreadable_file"] == 281
    assert 0 < reader["documents"] <= 100  # rows of the two row groups before the broken one
    [error] = reader["errors"]
    assert error.startswith(f"{bad_parquets['broken']}: broken after ") and "\n" not in error


@pytest.mark.timeout(60)
def test_inspect_bad_parquet(capsys, tmp_path, bad_parquets) -> None:
    """inspect shows a file with a column twice (naming the problem), refuses a cut one in one
    line, and on a directory lists the unreadable files beside the readable ones."""
    shown = curate(capsys, "inspect", bad_parquets["text_twice"])
    assert shown.code == 0, shown.err
    assert "parquet: 1 files, 30 rows" in shown.out
    assert f"problem: {bad_parquets['text_twice']}: column 'text' appears more than once" in (
        shown.out
    )
    one_line_error(curate(capsys, "inspect", bad_parquets["cut"]), str(bad_parquets["cut"]))
    listing = curate(capsys, "inspect", tmp_path / "in")
    assert listing.code == 0, listing.err
    assert "parquet: 4 files, 150 rows" in listing.out
    assert f"problem: {bad_parquets['cut']}: not a readable Parquet file" in listing.out


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("which", "says"),
    [
        ("text_twice", "column 'text' appears more than once"),
        ("cut", "not a readable Parquet file"),
        ("broken", "broken Parquet file"),
        ("text_int", "column 'text' is int64, not a string"),
    ],
)
def test_stats_on_bad_parquet_is_one_line(capsys, tmp_path, bad_parquets, which, says) -> None:
    """`curate stats` used to print a traceback (KeyError, ArrowInvalid, OSError)."""
    path = bad_parquets[which]
    result = curate(capsys, "stats", path, "--executor", "local", "--output", tmp_path / "st")
    one_line_error(result, f"{path}: {says}")


@pytest.mark.timeout(120)
def test_stats_on_parquet_with_integer_ids(capsys, tmp_path, texts) -> None:
    """Integer ids (a common export) are counted as their text, as the readers map them (was
    an AttributeError traceback)."""
    path = write_parquet(tmp_path / "ids.parquet", [("id", list(range(40))), ("text", texts[:40])])
    result = curate(capsys, "stats", path, "--executor", "local", "--output", tmp_path / "st")
    assert result.code == 0, result.err
    assert result.out.startswith("stats: 40 documents")


@pytest.mark.timeout(120)
def test_run_directory_with_garbage_stats_json(capsys, tmp_path, bad_parquets) -> None:
    """A run whose stats.json was overwritten: inspect says so and still shows the data; stats
    refuses in one line."""
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [bad_parquets["good"]], out, TEXT_STAGES)
    assert curate(capsys, "run", recipe).code == 0
    (out / "stats.json").write_text('{"reader": ')
    shown = curate(capsys, "inspect", out)
    assert shown.code == 0, shown.err
    assert "stats.json is unreadable (JSONDecodeError" in shown.out
    assert "parquet: 1 files" in shown.out
    stats = curate(capsys, "stats", out, "--executor", "local")
    one_line_error(stats, f"{out}/stats.json is unreadable")


@pytest.mark.timeout(60)
def test_unknown_names_are_one_line_errors(capsys, tmp_path) -> None:
    """Unknown stage names, tokenizers and files, for every verb that takes a name."""
    missing = tmp_path / "nothing.parquet"
    cases = [
        (["stages", "nosuchstage"], "unknown stage 'nosuchstage'"),
        (["inspect", missing], str(missing)),
        (["stats", missing, "--executor", "local"], str(missing)),
        (["fit", missing], str(missing)),
        (["run", tmp_path / "none.yaml"], "none.yaml"),
        (["ablate", tmp_path / "none.yaml"], "none.yaml"),
    ]
    for argv, says in cases:
        one_line_error(curate(capsys, *argv), says)
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"text": "a b c"}\n')
    bad_tok = curate(capsys, "stats", jsonl, "--executor", "local", "--tokenizer", "nosuch")
    one_line_error(bad_tok, "tokenizer 'nosuch'")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\xff\xfe\x00{}", "stats.jsonl is not UTF-8 text"),
        (b"{}\n[1, 2]\n", "line 2 is not a stats record: not a JSON object"),
        (b'{}\n{"metric": \n', "line 2 is not a stats record"),
    ],
)
def test_fit_on_broken_stats_is_one_line(capsys, tmp_path, content: bytes, says: str) -> None:
    """`curate fit` on a stats.jsonl that is not UTF-8 or holds a non-record (was a traceback for
    both) or a cut line."""
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "stats.jsonl").write_bytes(content)
    one_line_error(curate(capsys, "fit", tmp_path / "st"), f"{tmp_path / 'st'}: {says}")


@pytest.mark.timeout(60)
def test_fit_on_a_loss_csv_that_is_not_text(capsys, tmp_path) -> None:
    """A binary (UTF-16) file given as --loss-csv: one line naming it (was a traceback)."""
    csv = tmp_path / "loss.csv"
    csv.write_bytes("N,D,loss\n1,2,3\n".encode("utf-16"))
    result = curate(capsys, "fit", "--loss-csv", csv)
    one_line_error(result, f"--loss-csv {csv}: not a readable CSV file")
