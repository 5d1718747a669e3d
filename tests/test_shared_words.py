"""The `words` intermediate: split once per batch, shared by the stages that declare it, keyed to
the text it was split from, never written; scores, decisions and output bytes as without it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import recipe_from_dict
from pipeline.registry import available_stages, stage_class
from pipeline.runner import kernel
from pipeline.runner.accounting import StageStats
from pipeline.runner.run import run_recipe
from pipeline.schema import ID, LANG, TEXT
from pipeline.stages.contract import WORDS
from pipeline.text.shared_words import DocWords, SharedWords
from pipeline.text.words import non_symbol_words, split_words, split_words_spacing

# Every stage that declares the words intermediate (the test below fails when one is added
# without being listed here, so each is compared with and without sharing).
WORD_STAGES = ("gopher_repetition", "gopher_quality", "fineweb_quality")
# Stages that rewrite `text` between them: the words must be split afresh after each.
REWRITERS = (
    {"stage": "c4_quality", "filter_no_terminal_punct": False, "filter_badwords": False},
    {"stage": "line_corrections"},
    {"stage": "pii"},
)


def make(spec: dict) -> object:
    cls = stage_class(spec["stage"])
    stage = cls(cls.config_cls(**spec))
    stage.setup()
    return stage


def test_word_stages_are_the_ones_that_declare_words() -> None:
    declaring = sorted(
        name
        for name, cls in available_stages().items()
        if WORDS in getattr(cls, "intermediates", ())
    )
    assert declaring == sorted(WORD_STAGES)


@pytest.mark.slow
def test_doc_words_are_split_words(shared_texts: pa.Table) -> None:
    texts = shared_texts.column(TEXT).to_pylist()
    langs = shared_texts.column(LANG).to_pylist()
    for text, lang in zip(texts, langs, strict=True):
        doc = DocWords.of(text, lang)
        assert (doc.words, doc.spaced) == split_words_spacing(text, lang)
        assert doc.non_symbol == non_symbol_words(split_words(text, lang))


@pytest.mark.slow
def test_every_word_stage_scores_the_same_with_shared_words(shared_texts: pa.Table) -> None:
    """Each stage alone (its own split) vs. in a chain after the others filled the shared words,
    also after each text-rewriting stage: the same score columns, the same decisions."""
    stages = {name: make({"stage": name}) for name in WORD_STAGES}
    for rewriter in (None, *REWRITERS):
        batch = shared_texts
        if rewriter is not None:
            batch = make(rewriter).score(batch)
        keys = zip(batch.column(TEXT).to_pylist(), batch.column(LANG).to_pylist(), strict=True)
        distinct = len(set(keys))
        alone = {name: stages[name].score(batch) for name in WORD_STAGES}
        for order in (WORD_STAGES, WORD_STAGES[::-1]):  # each stage reuses the others' words
            words = SharedWords()
            for name in order:
                words.next_stage()
                shared = stages[name].score(batch, words=words)
                assert shared.equals(alone[name]), (name, rewriter)
                assert stages[name].keep(shared).equals(stages[name].keep(alone[name]))
            assert words.misses == distinct  # each text split once
            assert words.hits >= batch.num_rows


def test_a_rewritten_text_is_split_afresh() -> None:
    words = SharedWords()
    words.next_stage()
    before = words.get("Hello big world.", "en")
    words.next_stage()
    assert words.get("Hello big world.", "en") is before  # same text: shared
    assert words.get("Hello world.", "en").words == ["Hello", "world", "."]  # rewritten: split
    assert words.get("Hello big world.", "ja") is not before  # other language: its own split
    assert (words.hits, words.misses) == (1, 3)


def test_words_no_stage_asks_for_are_dropped_a_stage_later() -> None:
    words = SharedWords()
    words.next_stage()
    first = words.get("one two three", "en")
    words.next_stage()
    words.get("other text", "en")  # this stage does not ask for "one two three"
    words.next_stage()
    assert words.get("one two three", "en") is not first  # gone: split again
    assert words.misses == 3


def test_kernel_hands_words_only_to_stages_that_declare_them() -> None:
    shared = kernel.Intermediates()
    assert set(shared.for_stage(make({"stage": "gopher_quality"}))) == {WORDS}
    assert shared.for_stage(make(REWRITERS[0])) == {}


@pytest.mark.slow
def test_run_stage_chain_shares_words_across_stages(shared_texts: pa.Table) -> None:
    """The kernel's loop: gopher_quality finds every text gopher_repetition split."""
    shared = kernel.Intermediates()
    repetition, quality = make({"stage": "gopher_repetition"}), make({"stage": "gopher_quality"})
    kept, _ = kernel.run_stage(repetition, shared_texts, StageStats("r"), shared=shared)
    assert (shared.words.hits, shared.words.misses) == (0, shared_texts.num_rows - 1)  # not ""
    kernel.run_stage(quality, kept, StageStats("q"), shared=shared)
    assert kept.num_rows > 300
    assert shared.words.hits == kept.num_rows - 1  # each text it split and kept: found
    assert shared.words.misses == shared_texts.num_rows  # and "", split now


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for sub in ("data", "rejected")
        for p in sorted((root / sub).rglob("*"))
        if p.is_file()
    }


@pytest.mark.e2e
def test_run_output_is_byte_identical_without_sharing(
    shared_texts: pa.Table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe with every word stage around text rewriters, run with the words shared and with
    every stage splitting on its own: the same kept and rejected shards, byte for byte, and no
    trace of the intermediate in them."""
    source = tmp_path / "docs.jsonl"
    with open(source, "w", encoding="utf-8") as f:
        for rec in shared_texts.to_pylist():
            f.write(json.dumps({"id": rec[ID], "text": rec[TEXT]}, ensure_ascii=False) + "\n")
    stages = [
        {"stage": "langid", "threshold": 0.0},
        {"stage": "gopher_repetition"},
        {"stage": "gopher_quality"},
        REWRITERS[0],
        {"stage": "fineweb_quality"},
        REWRITERS[1],
        {"stage": "gopher_quality", "min_stop_words": None},
    ]

    def run(out: Path) -> None:
        recipe = recipe_from_dict(
            {
                "input": {"paths": [str(source)], "format": "jsonl"},
                "output": {"path": str(out), "keep_rejected": True},
                "runtime": {"executor": "local", "batch_size": 64},
                "stages": stages,
            }
        )
        run_recipe(recipe)

    made: list[kernel.Intermediates] = []
    original = kernel.Intermediates.__init__

    def track(self: kernel.Intermediates) -> None:
        original(self)
        made.append(self)

    monkeypatch.setattr(kernel.Intermediates, "__init__", track)
    run(tmp_path / "shared")
    assert made and sum(m.words.hits for m in made) > 0
    monkeypatch.setattr(kernel.Intermediates, "for_stage", lambda self, stage: {})
    run(tmp_path / "alone")
    shared, alone = _files(tmp_path / "shared"), _files(tmp_path / "alone")
    assert len(shared) >= 5
    assert shared == alone
    kept = pq.read_table(tmp_path / "shared" / "data")
    assert kept.num_rows > 0
    assert not [f.name for f in kept.schema if pa.types.is_list(f.type)]  # no token lists
