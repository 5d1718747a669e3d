"""line_dedup: first occurrences kept across shards and inside a document, CCNet normalisation,
shard groups, the too-short rule, and the amount removed from the extraction gold texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.dedup.lines import (
    CHARS_BEFORE,
    CHARS_REMOVED,
    LINES_REMOVED,
    LineDedupConfig,
    LineDedupStage,
    line_hashes,
    remove_lines,
)
from tests.test_exact_dedup import docs, gold_text_shards, run_stage, write_shards

LONG = "x" * 40


def _corpus(tmp: Path):
    return write_shards(
        tmp,
        [
            docs(
                [
                    f"Menu: Home | About\nFirst article body {LONG}\nCopyright 2019 Example Inc.",
                    f"menu home | about\nSecond article body {LONG}\nCopyright 2020 Example Inc.",
                ],
                "a",
            ),
            [],
            docs(
                [
                    f"Third body {LONG}\n\nRepeat me please\n\nRepeat me, please!\n\nEnd {LONG}",
                    "MENU: HOME | ABOUT\nCopyright 2021 Example Inc.",
                ],
                "b",
            ),
        ],
    )


def test_first_occurrence_kept_across_shards(tmp_path: Path) -> None:
    stage = LineDedupStage(LineDedupConfig(min_length=10))
    summary, kept, rejected = run_stage(stage, _corpus(tmp_path), tmp_path)
    rows = {r["id"]: r for r in kept.to_pylist() + rejected.to_pylist()}
    assert rows["a0"][LINES_REMOVED] == 0
    assert rows["a0"]["text"].startswith("Menu: Home | About")
    # Menu and copyright lines (digits -> 0, punctuation and case ignored) were seen in a0.
    assert rows["a1"]["text"] == f"Second article body {LONG}"
    assert rows["a1"][LINES_REMOVED] == 2
    assert rows["a1"][CHARS_BEFORE] - rows["a1"][CHARS_REMOVED] == len(rows["a1"]["text"])
    # The second "repeat me" is dropped, the blank lines around it collapse to one.
    assert rows["b0"]["text"] == f"Third body {LONG}\n\nRepeat me please\n\nEnd {LONG}"
    assert rows["b0"][LINES_REMOVED] == 1
    # b1 lost every line: rejected whatever min_length says.
    assert rows["b1"]["text"] == "" and rows["b1"][LINES_REMOVED] == 2
    assert rejected.column("id").to_pylist() == ["b1"]
    assert rejected.column("reason").to_pylist() == ["line_dedup_too_short"]
    assert summary["lines"] == 12 and summary["lines_dropped"] == 5
    assert summary["documents"] == 4 and summary["groups"] == 1


def test_min_length_and_rethreshold(tmp_path: Path) -> None:
    stage = LineDedupStage(LineDedupConfig())  # default min_length 300
    _, kept, rejected = run_stage(stage, _corpus(tmp_path), tmp_path)
    # a1 (shortened to 60 chars) and b0 (edited) now fall under 300; a0 was not edited.
    assert sorted(rejected.column("id").to_pylist()) == ["a1", "b0", "b1"]
    assert kept.column("id").to_pylist() == ["a0"]
    # keep() uses stored columns only: another threshold applies without recomputing.
    scored = rejected.drop_columns(["reason"])
    relaxed = LineDedupStage(LineDedupConfig(min_length=50))
    assert relaxed.keep(scored).to_pylist() == [None, None, "line_dedup_too_short"]


def test_groups_limit_the_pool(tmp_path: Path) -> None:
    stage = LineDedupStage(LineDedupConfig(group_size=2, min_length=0))
    summary, kept, rejected = run_stage(stage, _corpus(tmp_path), tmp_path, parts=2)
    rows = {r["id"]: r for r in kept.to_pylist() + rejected.to_pylist()}
    # Shards 0 and 1 form a group, shard 2 another: b1's lines are new in its group.
    assert summary["groups"] == 2
    assert rows["a1"][LINES_REMOVED] == 2
    assert rows["b1"][LINES_REMOVED] == 0 and rows["b0"][LINES_REMOVED] == 1
    assert rejected.num_rows == 0


def test_remove_lines_helper() -> None:
    assert remove_lines("a\nb\nc", {1}) == "a\nc"
    assert remove_lines("a\n\nb\n\nc", {2}) == "a\n\nc"
    assert remove_lines("a\nb", {0, 1}) == ""
    # A trailing newline survives like in an untouched document, also when the last line goes.
    assert remove_lines("a\nb\nc\n", {1}) == "a\nc\n"
    assert remove_lines("a\nb\n", {1}) == "a\n"
    assert remove_lines("a\n", {0}) == ""


def test_keep_none_removes_every_copy(tmp_path: Path) -> None:
    """CCNet: a line found in two documents goes from both; one repeated inside a single
    document only, and unique lines, stay."""
    refs = write_shards(
        tmp_path,
        [
            docs([f"Shared footer\nAlpha {LONG}\nAlpha {LONG}\n", f"Beta {LONG}"], "a"),
            docs([f"Gamma {LONG}\nshared FOOTER!\n\nDelta {LONG}\nshared footer"], "b"),
        ],
    )
    stage = LineDedupStage(LineDedupConfig(keep="none", min_length=0))
    summary, kept, rejected = run_stage(stage, refs, tmp_path, parts=2)
    rows = {r["id"]: r for r in kept.to_pylist() + rejected.to_pylist()}
    assert rows["a0"]["text"] == f"Alpha {LONG}\nAlpha {LONG}\n"  # trailing newline kept
    assert rows["a0"][LINES_REMOVED] == 1
    assert rows["a1"]["text"] == f"Beta {LONG}" and rows["a1"][LINES_REMOVED] == 0
    assert rows["b0"]["text"] == f"Gamma {LONG}\n\nDelta {LONG}"
    assert rows["b0"][LINES_REMOVED] == 2
    assert summary["lines_dropped"] == 3 and rejected.num_rows == 0
    # keep first on the same documents: only the later copies go (a0's second Alpha too).
    _, kept, _ = run_stage(
        LineDedupStage(LineDedupConfig(min_length=0)), refs, tmp_path / "first", parts=2
    )
    first = dict(zip(kept.column("id").to_pylist(), kept.column("text").to_pylist(), strict=True))
    assert first["a0"] == f"Shared footer\nAlpha {LONG}\n"
    assert first["b0"] == f"Gamma {LONG}\n\nDelta {LONG}"


def test_keep_none_on_real_texts_is_ccnets_rule(shared_data: Path, tmp_path: Path) -> None:
    """The gold texts: every line whose key is in two or more documents is gone, every other
    line is where it was (checked against a direct count of documents per key)."""
    texts, refs = gold_text_shards(shared_data, tmp_path)
    stage = LineDedupStage(LineDedupConfig(keep="none", min_length=0))
    summary, kept, rejected = run_stage(stage, refs, tmp_path)
    out = kept.to_pylist() + rejected.to_pylist()
    assert len(out) == len(texts)
    docs_of: dict[int, set[str]] = {}
    keys: dict[str, dict[int, int]] = {}
    by_id = {}
    for shard in range(4):
        for i, text in enumerate(texts[shard::4]):
            doc = f"g{shard}-{i}"
            by_id[doc] = text
            numbers, hashes = line_hashes(text, "ccnet")
            keys[doc] = dict(zip(numbers, hashes, strict=True))
            for h in hashes:
                docs_of.setdefault(h, set()).add(doc)
    repeated = {h for h, d in docs_of.items() if len(d) > 1}
    assert len(repeated) > 10, "the gold texts share boilerplate lines"
    dropped_total = 0
    for row in out:
        drop = {j for j, h in keys[row["id"]].items() if h in repeated}
        dropped_total += len(drop)
        assert row[LINES_REMOVED] == len(drop)
        original = by_id[row["id"]]
        assert row["text"] == (remove_lines(original, drop) if drop else original)
        _, left = line_hashes(row["text"], "ccnet")
        assert not repeated & set(left)
    assert summary["lines_dropped"] == dropped_total > 0


def test_gold_texts(shared_data: Path, tmp_path: Path) -> None:
    """Real extracted text: report how much line dedup removes (asserted loosely)."""
    texts, refs = gold_text_shards(shared_data, tmp_path)
    summary, kept, rejected = run_stage(LineDedupStage(LineDedupConfig()), refs, tmp_path)
    assert kept.num_rows + rejected.num_rows == len(texts)
    frac = summary["lines_dropped_frac"]
    print(
        f"gold: {summary['lines_dropped']}/{summary['lines']} lines ({frac:.2%}),"
        f" {rejected.num_rows}/{len(texts)} documents rejected"
    )
    assert 0 < frac < 0.2
    assert sum(kept.column(LINES_REMOVED).to_pylist()) <= summary["lines_dropped"]


def test_config_errors() -> None:
    with pytest.raises(ValueError):
        LineDedupConfig(group_size=0)
    with pytest.raises(ValueError):
        LineDedupConfig(min_length=-1)
    with pytest.raises(ValueError):
        LineDedupConfig(keep="last")
