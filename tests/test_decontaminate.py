"""decontaminate: benchmark items (real English sentences) found in real DCLM documents verbatim,
with changed case and punctuation, across a line break and partially; common phrases ignored;
remove_spans output exact; the per-benchmark summary; config errors before any work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import ConfigError
from pipeline.stages.decontaminate import (
    BENCHMARKS,
    CHARS_REMOVED,
    CUTS,
    ITEMS,
    NGRAMS,
    DecontaminateConfig,
    DecontaminateStage,
    lookup,
    ngram_hashes,
    prefilter,
    word_spans,
    words,
)
from tests.test_exact_dedup import docs, run_stage, write_shards

TEMPLATE = "Which of the following statements best describes the main idea of the passage about"


@pytest.fixture(scope="module")
def real(shared_data: Path) -> dict[str, list[str]]:
    """English lingua sentences of 16+ words (benchmark questions) and DCLM texts (documents)."""
    lines = (shared_data / "langid" / "lingua-sentences" / "en.txt").read_text().splitlines()
    questions = [s for s in lines if len(words(s, "ccnet")) >= 16][:30]
    with open(shared_data / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    return {"questions": questions, "texts": [t for t in texts if len(t) > 400][:40]}


def write_benchmarks(tmp: Path, questions: list[str]) -> list[dict[str, Any]]:
    """A JSONL benchmark (question + choices list) and a Parquet one holding a template that
    12 items share (more than max_ngram_docs 10)."""
    qa = tmp / "qa.jsonl"
    with open(qa, "w", encoding="utf-8") as f:
        for i, q in enumerate(questions):
            f.write(json.dumps({"id": f"q{i}", "question": q, "choices": ["yes", "no"]}) + "\n")
    tpl = tmp / "tpl.parquet"
    topics = ["rivers", "bees", "trade", "music", "rain", "salt", "ships", "maps", "wheat", "iron"]
    topics += ["glass", "wool"]
    pq.write_table(
        pa.table(
            {
                "uid": [f"t{i}" for i in range(len(topics))],
                "prompt": [f"{TEMPLATE} {t} in the old world?" for t in topics],
            }
        ),
        tpl,
    )
    return [
        {"name": "qa", "paths": [str(qa)], "fields": ["question", "choices"]},
        {"name": "tpl", "paths": [str(tpl)], "fields": ["prompt"], "id_field": "uid"},
    ]


def test_words_ngrams_and_spans() -> None:
    text = "Hello, World! Don't-stop the U.S.\ne-mail 2024"
    assert words(text, "ccnet") == ["hello", "world", "dontstop", "the", "us", "email", "0000"]
    assert [text[a:b] for a, b in word_spans(text, "ccnet")] == [
        "Hello",
        "World",
        "Don't-stop",
        "the",
        "U.S",
        "e-mail",
        "2024",
    ]
    h, doc, start = ngram_hashes([["a", "b", "c"], ["a", "b"], ["x", "a", "b", "c"]], 3)
    # The same words give the same hash in any document; a two-word document has no 3-gram.
    assert doc.tolist() == [0, 2, 2] and start.tolist() == [0, 0, 1]
    assert h[0] == h[2] and h[0] != h[1]


def test_lookup_finds_exactly_the_indexed_hashes() -> None:
    """The bitmap prefilter never hides an indexed n-gram and lets few others through."""
    rng = np.random.default_rng(19)
    table = np.unique(rng.integers(0, 2**63, 5000, dtype=np.uint64) * np.uint64(2))
    index = {"hashes": table, "filter": prefilter(table)}
    assert index["filter"].nbytes * 8 == 1 << 18  # >= 32 bits per n-gram, a power of two
    queries = np.concatenate([rng.integers(0, 2**63, 100_000, dtype=np.uint64), table[::7]])
    hit, pos = lookup(index, queries)
    assert hit.tolist() == np.flatnonzero(np.isin(queries, table)).tolist()
    assert (table[pos] == queries[hit]).all()


def _corpus(tmp: Path, real: dict[str, list[str]]) -> tuple[list, list[str]]:
    tmp.mkdir()
    q, t = real["questions"], real["texts"]
    half = " ".join(q[3].split()[:14])  # 14 words: 2 n-grams of 13
    spread = q[2].split()
    embedded = [
        f"{t[0]}\n{q[0]}\n{t[1][:300]}",  # verbatim
        f"{t[2][:300]} {q[1].upper().replace(' ', ', ')}!! {t[3][:200]}",  # case, punctuation
        f"{t[4][:300]} {' '.join(spread[:8])}\n{' '.join(spread[8:])} end.",  # a line break
        f"{t[5][:300]} {half}. {t[6][:300]}",  # partial
        f"{t[7][:300]} {TEMPLATE} sheep in the old world? {t[8][:300]}",  # only the template
    ]
    clean = t[10:30]
    refs = write_shards(tmp, [docs(embedded, "e"), docs(clean, "c")])
    return refs, embedded + clean


def test_reject_finds_copies_and_leaves_common_phrases(
    tmp_path: Path, real: dict[str, list[str]]
) -> None:
    benches = write_benchmarks(tmp_path, real["questions"])
    refs, _ = _corpus(tmp_path / "shards", real)
    stage = DecontaminateStage(DecontaminateConfig(benchmarks=benches, min_matches=3))
    summary, kept, rejected = run_stage(stage, refs, tmp_path / "w", parts=2)
    rows = {r["id"]: r for r in kept.to_pylist() + rejected.to_pylist()}
    n_words = [len(words(q, "ccnet")) for q in real["questions"][:3]]
    for i in range(3):  # every 13-gram of the question: words - 12
        assert rows[f"e{i}"][NGRAMS] == n_words[i] - 12
        assert rows[f"e{i}"][ITEMS] == [f"qa:q{i}"]
        assert rows[f"e{i}"][BENCHMARKS] == ["qa"]
    assert rows["e3"][NGRAMS] == 2 and rows["e3"][ITEMS] == ["qa:q3"]  # under min_matches 3
    assert rows["e4"][NGRAMS] == 0 and rows["e4"][ITEMS] == []  # template n-grams ignored
    assert sorted(rejected.column("id").to_pylist()) == ["e0", "e1", "e2"]
    assert set(rejected.column("reason").to_pylist()) == {"decontaminate_match"}
    assert all(r[NGRAMS] == 0 for i, r in rows.items() if i.startswith("c"))
    assert kept.column("text").to_pylist()[0] == rows["e3"]["text"]  # texts untouched
    assert summary["items"] == 42 and summary["documents"] == 25
    assert summary["qa_items_found"] == 3 and summary["qa_documents_touched"] == 3
    assert summary["tpl_items_found"] == 0 and summary["ngrams_ignored"] == 2
    # 8 B hash + 4 B offset + 4 B item per n-gram (each in one item), one more offset, and the
    # prefilter's smallest bitmap (2^16 bits).
    assert summary["index_filter_bytes"] == 8192
    assert summary["index_bytes"] == 16 * summary["ngrams"] + 4 + 8192
    # min_matches 1: the partial copy counts too.
    stage = DecontaminateStage(DecontaminateConfig(benchmarks=benches))
    summary, _, rejected = run_stage(stage, refs, tmp_path / "w1", parts=2)
    assert sorted(rejected.column("id").to_pylist()) == ["e0", "e1", "e2", "e3"]
    assert summary["qa_items_found"] == 4 and summary["qa_documents_touched"] == 4


def test_summary_does_not_depend_on_sharding(tmp_path: Path, real: dict[str, list[str]]) -> None:
    """The same item in documents of several shards: found once, each document touched."""
    benches = write_benchmarks(tmp_path, real["questions"])
    q, t = real["questions"], real["texts"]
    shards = [docs([f"{t[i]} {q[0]}", t[i + 5]], f"s{i}-") for i in range(3)]
    (tmp_path / "s").mkdir()
    stage = DecontaminateStage(DecontaminateConfig(benchmarks=benches))
    summary, _, rejected = run_stage(stage, write_shards(tmp_path / "s", shards), tmp_path / "w")
    assert summary["qa_items_found"] == 1 and summary["qa_documents_touched"] == 3
    assert rejected.num_rows == 3


def test_remove_spans_output_is_exact(tmp_path: Path, real: dict[str, list[str]]) -> None:
    benches = write_benchmarks(tmp_path, real["questions"])
    q, t = real["questions"], real["texts"]
    prefix, middle, suffix = t[0][:400], t[1][:400], t[2][:400]
    one = f"{prefix} {q[0]} {suffix}"
    two = f"{prefix} {q[0]} {middle} {q[1]} {suffix}"
    (tmp_path / "s").mkdir()
    refs = write_shards(tmp_path / "s", [docs([one, two, t[3]], "d")])
    cfg = {"benchmarks": benches, "mode": "remove_spans", "margin_chars": 10, "min_length": 100}
    stage = DecontaminateStage(DecontaminateConfig(**cfg))
    _, kept, rejected = run_stage(stage, refs, tmp_path / "w")
    rows = {r["id"]: r for r in kept.to_pylist()}
    # The match runs from the question's first word to its last; 10 characters go either side.
    a = len(prefix) + 1 - 10
    b = len(prefix) + 1 + len(q[0]) + 10
    assert rows["d0"]["text"] == f"{one[:a].strip()}\n{one[b:].strip()}"
    assert rows["d0"][CUTS] == 1
    assert rows["d0"][CHARS_REMOVED] == len(one) - len(rows["d0"]["text"])
    assert rows["d1"][CUTS] == 2
    c = b - 10 + 1 + len(middle) + 1  # where q[1] starts in `two`
    pieces = [two[:a], two[b : c - 10], two[c + len(q[1]) + 10 :]]
    assert rows["d1"]["text"] == "\n".join(p.strip() for p in pieces)
    assert rows["d2"]["text"] == t[3] and rows["d2"][CUTS] == 0
    assert rejected.num_rows == 0
    # Thresholds re-apply to the stored columns: one cut allowed, or 1000 characters required.
    scored = pa.Table.from_pylist([rows["d0"], rows["d1"]])
    strict = DecontaminateStage(DecontaminateConfig(**cfg | {"max_cuts": 1}))
    assert strict.keep(scored).to_pylist() == [None, "decontaminate_too_many_cuts"]
    assert len(rows["d0"]["text"]) < 1000 <= len(rows["d1"]["text"])
    long = DecontaminateStage(DecontaminateConfig(**cfg | {"min_length": 1000}))
    assert long.keep(scored).to_pylist() == ["decontaminate_too_short", None]


def test_config_errors(tmp_path: Path, real: dict[str, list[str]]) -> None:
    benches = write_benchmarks(tmp_path, real["questions"][:2])
    DecontaminateStage.verify(DecontaminateConfig(benchmarks=benches), "stages[0]", None)
    missing_path = [{**benches[0], "paths": [str(tmp_path / "nope.jsonl")]}]
    with pytest.raises(ConfigError, match=r"stages\[0\]\.benchmarks\[qa\]\.paths"):
        DecontaminateStage.verify(DecontaminateConfig(benchmarks=missing_path), "stages[0]", None)
    missing_field = [{**benches[0], "fields": ["question", "answer"]}]
    with pytest.raises(ConfigError, match="'answer' is not a field"):
        DecontaminateStage.verify(DecontaminateConfig(benchmarks=missing_field), "stages[0]", None)
    wrong_first = [{**benches[0], "fields": ["choices"]}]
    with pytest.raises(ConfigError, match="must hold a string"):
        DecontaminateStage.verify(DecontaminateConfig(benchmarks=wrong_first), "stages[0]", None)
    with pytest.raises(ValueError):
        DecontaminateConfig(benchmarks=[])
    with pytest.raises(ValueError, match="distinct"):
        DecontaminateConfig(benchmarks=[benches[0], benches[0]])
    with pytest.raises(ValueError, match="tokens"):
        DecontaminateConfig(benchmarks=benches, normalization="fineweb")


def test_missing_benchmark_field_stops_the_run_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, real: dict[str, list[str]]
) -> None:
    from tests.faults.helpers import curate, write_recipe

    benches = write_benchmarks(tmp_path, real["questions"][:2])
    docs_file = tmp_path / "docs.jsonl"
    docs_file.write_text(json.dumps({"id": "d", "text": real["texts"][0]}) + "\n")
    out = tmp_path / "out"
    stage = {"stage": "decontaminate", "benchmarks": [{**benches[0], "fields": ["question", "x"]}]}
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [docs_file], out, [stage]))
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert "stages[0] (decontaminate).benchmarks[qa].fields: 'x' is not a field" in result.err
    assert not (out / "data").exists()


def test_hf_dataset_benchmark_with_list_field(tmp_path: Path, real: dict[str, list[str]]) -> None:
    """A `datasets` directory whose answer options are a list column: a document that copies
    only one option (a real sentence) is found through `choices`."""
    datasets = pytest.importorskip("datasets")
    q = real["questions"]
    rows = {
        "id": ["h0", "h1"],
        "question": ["Which one is right?", "Which one is wrong?"],
        "choices": [[q[0], "no"], ["yes", q[1]]],
    }
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "hf"))
    bench = {"name": "hf", "paths": [str(tmp_path / "hf")], "fields": ["question", "choices"]}
    cfg = DecontaminateConfig(benchmarks=[bench])
    DecontaminateStage.verify(cfg, "stages[0]", None)
    (tmp_path / "s").mkdir()
    refs = write_shards(tmp_path / "s", [docs([f"{real['texts'][0]}\n{q[1]}"], "d")])
    summary, _, rejected = run_stage(DecontaminateStage(cfg), refs, tmp_path / "w")
    assert rejected.column(ITEMS).to_pylist() == [["hf:h1"]]
    assert summary["hf_items"] == 2 and summary["hf_items_found"] == 1
