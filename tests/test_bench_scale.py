"""The pure parts of the MinHash scale benchmarks: the generated corpus (scripts/bench_minhash_scale)
and the edges written in datatrove's `.dups` format (scripts/bench_components). No runs."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from scripts.bench_components import BANDS, write_dups
from scripts.bench_dedup import EDIT_RATES, sentences
from scripts.bench_minhash_scale import plant, shard_texts

SPAN = (4, 16)


@pytest.fixture(scope="module")
def pool(shared_data: Path) -> tuple[pa.Array, list[str]]:
    """Real sentences of the extraction gold texts and the copies' vocabulary."""
    found = sentences(shared_data / "extraction")
    return pa.array(found), sorted({w for t in found[:20000] for w in t.split()})


def test_documents_do_not_depend_on_the_shard_cut(pool: tuple[pa.Array, list[str]]) -> None:
    source, rate = plant(3000, 0.3, seed=0)
    whole = shard_texts(0, 3000, source, rate, *pool, SPAN)
    parts = shard_texts(0, 1234, source, rate, *pool, SPAN)
    parts += shard_texts(1234, 3000, source, rate, *pool, SPAN)
    assert whole == parts
    assert len(set(whole)) > 2000  # originals are distinct draws


def test_copies_carry_their_planted_edits(pool: tuple[pa.Array, list[str]]) -> None:
    source, rate = plant(3000, 0.3, seed=0)
    assert (source[:100] == -1).all() and (source < np.arange(3000)).all()
    assert 0.25 < (source >= 0).mean() < 0.35
    texts = shard_texts(0, 3000, source, rate, *pool, SPAN)
    checked = 0
    for i in np.flatnonzero(source >= 0):
        src = source[i]
        words, before = texts[i].split(" "), texts[src].split(" ")
        assert len(words) == len(before)
        changed = sum(a != b for a, b in zip(words, before, strict=True))
        # at most the planted substitutions (a substitute may draw the word it replaces)
        assert changed <= int(EDIT_RATES[rate[i]] * len(words))
        if EDIT_RATES[rate[i]] == 0.0:
            assert texts[i] == texts[src]
        checked += 1
    assert checked > 800
    originals = [len(t.split(" ")) for t, s in zip(texts, source, strict=True) if s < 0]
    assert 100 < np.mean(originals) < 400  # 4-16 sentences of 5-60 words


def test_dups_files_hold_the_pairs_as_datatrove_reads_them(tmp_path: Path) -> None:
    pairs = np.array([[(3 << 32) | 7, (1 << 32) | 2], [(0 << 32) | 5, 0], [(9 << 32) | 1, 4]])
    write_dups(pairs, tmp_path)
    files = sorted(tmp_path.glob("*.dups"))
    assert [f.name for f in files] == [f"{b:05d}_00.dups" for b in range(BANDS)]
    records = [r for f in files for r in struct.iter_unpack("<4I", f.read_bytes())]
    # (file, doc) of the smallest member first, as datatrove's buckets write a bucket's pairs
    assert records == [(1, 2, 3, 7), (0, 0, 0, 5), (0, 4, 9, 1)]
