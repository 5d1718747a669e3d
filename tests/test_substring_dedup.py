"""substring_dedup: a 60-token span repeated in 3 documents is cut, a 40-token one is not; removal
semantics, byte units with multi-byte characters, emptied documents, and the gold texts."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from pipeline.dedup.substring import (
    CHARS_REMOVED,
    SPANS_REMOVED,
    SubstringDedupConfig,
    SubstringDedupStage,
    merge_ranges,
    plan_groups,
    token_byte_spans,
)
from tests.test_exact_dedup import docs, gold_text_shards, run_stage, write_shards

_RNG = random.Random(7)


def words(n: int) -> str:
    """n random lowercase words (no accidental long repeats)."""
    return " ".join(
        "".join(_RNG.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(_RNG.randint(3, 9)))
        for _ in range(n)
    )


SPAN60 = words(60)
SPAN40 = words(40)


def _corpus(tmp: Path):
    texts = [
        f"{words(30)} {SPAN60} {words(20)}. {SPAN40} {words(10)}",
        f"{words(25)} {SPAN40} {words(5)}",
        f"{SPAN60} {words(45)}",
        f"{words(12)}\n{SPAN60}\n{SPAN40}",
        words(80),
    ]
    return texts, write_shards(tmp, [docs(texts[:2], "a"), [], docs(texts[2:], "b")])


def test_sixty_token_span_cut_forty_kept(tmp_path: Path) -> None:
    texts, refs = _corpus(tmp_path)
    summary, kept, rejected = run_stage(SubstringDedupStage(SubstringDedupConfig()), refs, tmp_path)
    rows = {r["id"]: r for r in kept.to_pylist()}
    assert rejected.num_rows == 0
    for doc_id, original in (("a0", texts[0]), ("b0", texts[2]), ("b1", texts[3])):
        assert SPAN60 not in rows[doc_id]["text"]
        assert rows[doc_id]["text"] == original.replace(SPAN60, "", 1)
        assert rows[doc_id][CHARS_REMOVED] == len(SPAN60)
        assert rows[doc_id][SPANS_REMOVED] == 1
    assert SPAN40 in rows["a0"]["text"] and SPAN40 in rows["a1"]["text"]
    assert rows["a1"]["text"] == texts[1] and rows["a1"][SPANS_REMOVED] == 0
    assert rows["b2"]["text"] == texts[4]
    assert summary["spans"] == 3 and summary["documents_touched"] == 3
    assert summary["bytes_removed"] == 3 * len(SPAN60)


def test_threshold_and_all_but_first(tmp_path: Path) -> None:
    texts, refs = _corpus(tmp_path)
    cfg = SubstringDedupConfig(min_tokens=40, remove="all_but_first")
    _, kept, _ = run_stage(SubstringDedupStage(cfg), refs, tmp_path)
    rows = {r["id"]: r["text"] for r in kept.to_pylist()}
    # The first occurrence (a0) keeps both spans; the later copies lose them.
    assert rows["a0"] == texts[0]
    assert SPAN40 not in rows["a1"] and SPAN60 not in rows["b0"]
    assert SPAN60 not in rows["b1"] and SPAN40 not in rows["b1"]
    assert rows["b1"] == texts[3].replace(SPAN60, "").replace(SPAN40, "")


def test_emptied_document_rejected(tmp_path: Path) -> None:
    refs = write_shards(tmp_path, [docs([SPAN60, f"  {SPAN60}\n", f"{words(8)} {SPAN60}"], "e")])
    stage = SubstringDedupStage(SubstringDedupConfig())
    _, kept, rejected = run_stage(stage, refs, tmp_path)
    assert rejected.column("id").to_pylist() == ["e0", "e1"]
    assert set(rejected.column("reason").to_pylist()) == {"substring_dedup_empty"}
    assert kept.column("id").to_pylist() == ["e2"]
    strict = SubstringDedupStage(SubstringDedupConfig(min_length=1000))
    assert strict.keep(kept).to_pylist() == ["substring_dedup_empty"]


def test_bytes_unit_and_multibyte_text(tmp_path: Path) -> None:
    shared = "Ça coûte 20 € — «très» cher, naïve façade. " * 3  # 141 bytes, 2-3 byte chars
    short = "Überraschung: 日本語のテキスト"  # 46 bytes
    texts = [f"début {shared} milieu {short} fin", f"{short} autre {shared}", "sans rien"]
    refs = write_shards(tmp_path, [docs(texts, "u")])
    cfg = SubstringDedupConfig(unit="bytes", min_tokens=25, bytes_per_token=4)  # 100 bytes
    _, kept, _ = run_stage(SubstringDedupStage(cfg), refs, tmp_path)
    rows = {r["id"]: r["text"] for r in kept.to_pylist()}
    assert rows["u0"].startswith("début") and short in rows["u0"]
    assert "cher" not in rows["u0"] and "cher" not in rows["u1"]
    assert short in rows["u1"] and rows["u2"] == "sans rien"
    # Unicode words: the same span in words mode is found too.
    _, kept, _ = run_stage(
        SubstringDedupStage(SubstringDedupConfig(min_tokens=30)), refs, tmp_path / "w"
    )
    rows = {r["id"]: r["text"] for r in kept.to_pylist()}
    assert "naïve" not in rows["u0"] and "naïve" not in rows["u1"]


def test_helpers() -> None:
    s, e = token_byte_spans("Ça va, très bien")
    assert s.tolist() == [0, 4, 6, 8, 14] and e.tolist() == [3, 6, 7, 13, 18]
    s, e = merge_ranges(np.array([0, 2, 10, 11]), np.array([5, 4, 12, 15]))
    assert s.tolist() == [0, 10] and e.tolist() == [5, 15]
    assert plan_groups([(0, 5), (1, 5), (2, 20), (3, 1)], 10) == [[0, 1], [2], [3]]
    with pytest.raises(ValueError):
        SubstringDedupConfig(max_group_bytes=1 << 31)


def test_groups_bound_the_pool(tmp_path: Path) -> None:
    texts, refs = _corpus(tmp_path)
    size = sum(len(t.encode()) + 1 for t in texts[:2])
    summary, kept, _ = run_stage(
        SubstringDedupStage(SubstringDedupConfig(max_group_bytes=size)), refs, tmp_path
    )
    assert summary["groups"] == 2
    rows = {r["id"]: r["text"] for r in kept.to_pylist()}
    # a0's SPAN60 copy has no partner in its own group; b0 and b1 still share one.
    assert SPAN60 in rows["a0"] and SPAN60 not in rows["b0"]


@pytest.mark.slow
def test_gold_texts(shared_data: Path, tmp_path: Path) -> None:
    texts, refs = gold_text_shards(shared_data, tmp_path)
    summary, kept, rejected = run_stage(SubstringDedupStage(SubstringDedupConfig()), refs, tmp_path)
    assert kept.num_rows + rejected.num_rows == len(texts)
    print(
        f"gold: {summary['bytes_removed']}/{summary['bytes']} bytes"
        f" ({summary['bytes_removed_frac']:.2%}) in {summary['spans']} spans,"
        f" {summary['documents_touched']} documents touched, {rejected.num_rows} rejected"
    )
    assert 0 < summary["bytes_removed_frac"] < 0.2


def test_text_without_spaces(tmp_path: Path) -> None:
    """Chinese has no spaces: rjieba tokens, one window per document."""
    span = "自然语言处理是计算机科学和人工智能的一个分支，研究如何让计算机理解人类语言。" * 2
    texts = [f"第一篇文章。{span}结束了。", f"{span}另一个结尾。", "没有重复的内容。"]
    refs = write_shards(tmp_path, [docs(texts, "z")])
    _, kept, _ = run_stage(SubstringDedupStage(SubstringDedupConfig(min_tokens=20)), refs, tmp_path)
    rows = {r["id"]: r["text"] for r in kept.to_pylist()}
    assert rows["z0"] == "第一篇文章。结束了。"
    assert rows["z1"] == "另一个结尾。" and rows["z2"] == texts[2]
