"""Exact statistics equal brute force (Python sets) on real texts, per set and per subsample."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError
from pipeline.stats.compute import StatsOptions, compute_stats
from pipeline.stats.counting import sliding_max
from pipeline.stats.hashing import subsample_levels, window_hashes
from pipeline.stats.report import build_records
from pipeline.text.words import split_words

SIZES = (1, 2, 5, 13, 50)
WINDOWS = (64,)
STAGES = ["filter_a", "filter_b"]
LEVELS = 3


def _texts(shared: Path) -> list[str]:
    dclm = [
        json.loads(line)["text"]
        for line in (shared / "quality" / "dclm-agreement.jsonl").read_text().splitlines()
    ]
    gold = [
        json.loads(line)["gold"]
        for line in (shared / "extraction" / "scrapinghub.gold.jsonl").read_text().splitlines()
    ]
    return dclm + gold[:60]


def _write(path: Path, ids: list[str], texts: list[str | None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "text": pa.array(texts, pa.string())}), path)


@pytest.fixture(scope="module")
def fake_run(shared_data: Path, tmp_path_factory) -> tuple[Path, list[tuple[str, str | None, int]]]:
    """A run directory laid out like `curate run` with keep_rejected: 2 stages, 2 shards each.

    Documents: real texts, with exact copies across shards and sets, and one without text
    (rejected before extraction). Returns the directory and (id, text, reached) per document.
    """
    texts = _texts(shared_data)
    docs: list[tuple[str, str | None, int]] = []
    for i, t in enumerate(texts):
        docs.append((f"d{i}", t, i % 3))  # reached: 0 = rejected by filter_a, 2 = kept
    for j, i in enumerate(range(0, 60, 7)):  # exact copies, in other sets
        docs.append((f"copy{j}", texts[i], (i + j) % 3))
    docs.append(("no-text", None, 0))
    root = tmp_path_factory.mktemp("fake_run")
    where = {2: "data", 0: "rejected/filter_a", 1: "rejected/filter_b"}
    for reached, sub in where.items():
        mine = [d for d in docs if d[2] == reached]
        for shard in range(2):
            part = mine[shard::2]
            _write(
                root / sub / f"part-{shard:05d}.parquet",
                [d[0] for d in part],
                [d[1] for d in part],
            )
    counts = [sum(1 for d in docs if d[2] >= k) for k in range(3)]
    stats = {
        "stages": [
            {"name": name, "docs_in": counts[k], "docs_rejected": counts[k] - counts[k + 1]}
            for k, name in enumerate(STAGES)
        ],
        "output": {"documents": counts[2]},
    }
    (root / "stats.json").write_text(json.dumps(stats))
    (root / "_run").mkdir()
    (root / "_run" / "config.json").write_text(
        json.dumps({"recipe": {"output": {"keep_rejected": True}}})
    )
    return root, docs


def _brute(docs: list[tuple[str, str | None, int]], k: int, level: int) -> dict[str, object]:
    """Distinct documents, unique n-grams and repeated-token fractions with Python sets."""
    ids = [d[0] for d in docs]
    lv = dict(zip(ids, subsample_levels(ids, 0, LEVELS).tolist(), strict=True))
    chosen = [d for d in docs if d[2] >= k and lv[d[0]] >= level]
    texts = [d[1] for d in chosen if d[1] is not None and d[1].strip()]
    toks = [split_words(t) for t in texts]
    out: dict[str, object] = {
        "documents": len(chosen),
        "tokens": sum(map(len, toks)),
        "distinct_docs": len({unicodedata.normalize("NFC", t).strip() for t in texts}),
    }
    for n in SIZES + WINDOWS:
        grams = Counter(tuple(w[i : i + n]) for w in toks for i in range(len(w) - n + 1))
        out[f"u{n}"] = len(grams)
        if level == 0:
            covered = 0
            for w in toks:
                mark = np.zeros(len(w), dtype=bool)
                for i in range(len(w) - n + 1):
                    if grams[tuple(w[i : i + n])] >= 2:
                        mark[i : i + n] = True
                covered += int(mark.sum())
            out[f"rep{n}"] = covered
    return out


@pytest.fixture(scope="module")
def exact(fake_run, tmp_path_factory):
    root, _ = fake_run
    return compute_stats(_options(root, tmp_path_factory.mktemp("out"), partitions=3))


def _options(root: Path, output: Path, **changes: Any) -> StatsOptions:
    """The exact-mode options of these tests (SIZES, WINDOWS, LEVELS, per stage, local)."""
    return StatsOptions(
        str(root),
        output=str(output),
        ngrams=SIZES,
        windows=WINDOWS,
        subsamples=LEVELS,
        per_stage=True,
        executor="local",
        **changes,
    )


@pytest.mark.slow
@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("level", [0, 2])
def test_exact_counts_equal_brute_force(fake_run, exact, k, level):
    _, docs = fake_run
    want = _brute(docs, k, level)
    assert exact.source.sets == ["input", *STAGES]
    assert exact.totals["documents"][k, level] == want["documents"]
    assert exact.totals["tokens"][0, k, level] == want["tokens"]
    assert exact.distinct["docs"][k, level] == want["distinct_docs"]
    for n in SIZES + WINDOWS:
        assert exact.distinct[str(n)][k, level] == want[f"u{n}"], n
        if level == 0:
            assert exact.covered_tokens[str(n)][k] == want[f"rep{n}"], n


def test_records_follow_the_format(exact):
    records = build_records(exact)
    keys = {"stage", "source", "tokenizer", "metric", "n", "D_tokens", "value", "stderr"}
    keys |= {"method", "seed", "commit", "k", "fraction", "documents"}
    assert all(keys <= r.keys() for r in records)
    got = {(r["stage"], r["metric"], r["n"], r["k"]) for r in records}
    assert ("filter_b", "unique_windows", 64, 3) in got
    assert ("input", "repeated_token_fraction", 50, 0) in got
    hist = [
        r for r in records if r["metric"] == "exact_hash_cluster_hist" and r["stage"] == "input"
    ]
    assert sum(r["value"] for r in hist) == exact.distinct["docs"][0, 0]


def test_128_bit_mode_and_one_partition_agree(fake_run, exact, tmp_path):
    root, _ = fake_run
    wide = compute_stats(_options(root, tmp_path, partitions=1, hash_bits="128"))
    assert wide.config.hash_bits == 128
    for key, arr in exact.distinct.items():
        assert (wide.distinct[key] == arr).all(), key
    for key, arr in exact.covered_tokens.items():
        assert (wide.covered_tokens[key] == arr).all(), key


def test_plain_data_directory(fake_run, tmp_path):
    root, docs = fake_run
    res = compute_stats(
        StatsOptions(
            str(root / "data"),
            output=str(tmp_path),
            ngrams=(1, 5),
            windows=(),
            subsamples=2,
            executor="local",
        )
    )
    want = _brute(docs, 2, 0)
    assert res.source.sets == ["data"]
    assert res.distinct["5"][0, 0] == want["u5"]


def test_missing_rejects_and_wrong_counts_are_clear_errors(fake_run, tmp_path):
    root, _ = fake_run
    opts = dict(output=str(tmp_path), per_stage=True, executor="local", subsamples=1)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("data", "_run", "stats.json"):
        src = root / name
        (broken / name).symlink_to(src, target_is_directory=src.is_dir())
    with pytest.raises(InputError, match="do not match its stats.json"):
        compute_stats(StatsOptions(str(broken), **opts))
    cfg = json.loads((root / "_run" / "config.json").read_text())
    cfg["recipe"]["output"]["keep_rejected"] = False
    off = tmp_path / "off"
    (off / "_run").mkdir(parents=True)
    (off / "_run" / "config.json").write_text(json.dumps(cfg))
    (off / "stats.json").symlink_to(root / "stats.json")
    with pytest.raises(InputError, match="keep_rejected"):
        compute_stats(StatsOptions(str(off), **opts))


def test_window_hashes_match_tuples():
    rng = np.random.default_rng(1)
    vocab = rng.integers(0, 2**63, size=30, dtype=np.uint64)
    docs = [rng.integers(0, 30, size=int(rng.integers(0, 25))) for _ in range(300)]
    flat = np.concatenate([vocab[d] for d in docs])
    lengths = np.array([len(d) for d in docs])
    for n in (1, 3, 7):
        h, starts = window_hashes(flat, lengths, n)
        tuples = [tuple(d[i : i + n]) for d in docs for i in range(len(d) - n + 1)]
        assert len(h) == len(tuples) == len(starts)
        assert len(set(h.tolist())) == len(set(tuples))


def test_sliding_max():
    x = np.full(40, -1, np.int8)
    x[[3, 20]] = [2, 5]
    for n in (1, 2, 3, 5, 8, 13):
        want = np.array([x[max(0, t - n + 1) : t + 1].max() for t in range(40)])
        assert (sliding_max(x, n) == want).all(), n
