"""minhash_dedup against ground truth: Clough-Stevenson answers, and recall/precision vs the
S-curve on real texts with controlled edits (brute-force Jaccard as the reference)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.dedup import lsh
from pipeline.dedup.minhash import CLUSTER_ID, MinHashDedupConfig, MinHashDedupStage
from pipeline.dedup.shingles import ngram_strings
from pipeline.dedup.signatures import MinHasher
from pipeline.stages.global_base import LocalContext, ShardRef
from pipeline.text.normalize import normalize_batch

CATEGORIES = ("cut", "light", "heavy", "non")


def clough_stevenson(root: Path) -> tuple[list[str], list[str], list[dict]]:
    """(ids, texts, answers): the 5 sources first, then the 95 graded answers."""
    folder = root / "neardup" / "clough-stevenson"
    with open(folder / "file_information.csv", newline="") as f:
        answers = [r for r in csv.DictReader(f) if r["Category"] in CATEGORIES]
    ids = [f"orig_task{t}.txt" for t in "abcde"] + [r["File"] for r in answers]
    texts = [(folder / name).read_bytes().decode("utf-8", "replace") for name in ids]
    return ids, texts, answers


def cluster_ids(
    tmp_path: Path, ids: list[str], texts: list[str], **config
) -> tuple[dict, dict[str, int]]:
    """Run the stage over 3 shards (+ an empty one) and return {id: cluster id}."""
    refs = []
    for i in range(3):
        path = tmp_path / f"cs{i}.parquet"
        pq.write_table(pa.table({"id": ids[i::3], "text": texts[i::3]}), path)
        refs.append(ShardRef(i, str(path), len(ids[i::3])))
    refs.append(ShardRef(3, None, 0))
    stage = MinHashDedupStage(MinHashDedupConfig(**config))
    ctx = LocalContext(str(tmp_path / "work"), num_partitions=4)
    summary = stage.prepare(ctx, refs)
    out: dict[str, int] = {}
    for ref in refs[:3]:
        scored = stage.score_shard(ctx, ref, ref.read(ctx.fs))
        out.update(
            zip(scored.column("id").to_pylist(), scored.column(CLUSTER_ID).to_pylist(), strict=True)
        )
    return summary, out


# Settings: the 0.5 threshold asked for, FineWeb's 14x8 and a low-threshold 3-gram setting.
# Cut answers are excerpts of a longer source (5-gram containment ~0.9, Jaccard 0.1-0.5), so a
# Jaccard detector at 0.5-0.8 finds only the few long excerpts; the low setting finds most.
SETTINGS = {
    "t0.5_5gram": {"threshold": 0.5},
    "fineweb_14x8": {"preset": "fineweb"},
    "t0.2_3gram": {"threshold": 0.2, "num_perm": 256, "ngram_size": 3},
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_clough_stevenson_detection_rates(shared_data: Path, tmp_path: Path, name: str) -> None:
    ids, texts, answers = clough_stevenson(shared_data)
    summary, cid = cluster_ids(tmp_path, ids, texts, **SETTINGS[name])
    found: dict[str, list[bool]] = defaultdict(list)
    for row in answers:
        found[row["Category"]].append(cid[row["File"]] == cid[f"orig_task{row['Task']}.txt"])
    rates = {c: round(float(np.mean(found[c])), 3) for c in CATEGORIES}
    print(
        f"\nClough-Stevenson {name} ({summary['num_bands']}x{summary['rows_per_band']}): {json.dumps(rates)}"
    )
    assert rates["non"] == 0.0
    # non answers never join any source's cluster, nor each other's
    non_clusters = [cid[r["File"]] for r in answers if r["Category"] == "non"]
    assert all(cid[f"orig_task{t}.txt"] not in non_clusters for t in "abcde")
    assert rates["cut"] >= rates["light"] >= rates["heavy"]
    if name == "t0.2_3gram":
        assert rates["cut"] >= 0.85 and rates["light"] >= 0.6
    else:
        assert rates["cut"] >= 0.1


# --- recall / precision against brute-force Jaccard ---------------------------------------------


def shingle_set(text: str, n: int = 5) -> frozenset[str]:
    return frozenset(ngram_strings(text.split(), n))


def edited_copies(
    tokens: list[str], rng: np.random.Generator, rates: tuple[float, ...]
) -> list[list[str]]:
    """One copy per rate: that fraction of positions substituted by fresh words."""
    copies = []
    for rate in rates:
        out = list(tokens)
        for p in rng.choice(len(tokens), size=max(1, int(rate * len(tokens))), replace=False):
            out[p] = f"zq{rng.integers(0, 1 << 40):x}".replace("0", "o").replace("1", "l")
        copies.append(out)
    return copies


@pytest.mark.slow
def test_recall_and_precision_follow_the_s_curve(shared_data: Path) -> None:
    """Families (a real text + 5 edited copies); every within-family pair's exact Jaccard gives
    its S-curve probability; observed candidate counts per Jaccard bin must match the sum of
    those probabilities within 4.5 binomial standard deviations."""
    texts = []
    for path in sorted((shared_data / "extraction").glob("*.gold.jsonl")):
        with open(path) as f:
            texts.extend(json.loads(line)["gold"] for line in f)
    bases = [t.split()[:300] for t in normalize_batch(texts) if len(t.split()) >= 150]
    rng = np.random.default_rng(0)
    rates = (0.01, 0.03, 0.05, 0.08, 0.12)
    family_docs = [[base, *edited_copies(base, rng, rates)] for base in bases]
    docs = [" ".join(d) for fam in family_docs for d in fam]
    assert len(docs) > 3000
    bands, rows = 14, 8
    sig, _ = MinHasher(num_perm=bands * rows).signatures(docs)
    bh = lsh.band_hashes(sig, bands, rows)

    # All candidate pairs: every pair of documents sharing a bucket in any band.
    candidates: set[tuple[int, int]] = set()
    for band in range(bands):
        order = np.argsort(bh[:, band], kind="stable")
        vals = bh[order, band]
        starts = np.flatnonzero(np.concatenate(([True], vals[1:] != vals[:-1])))
        for lo, hi in zip(starts, np.append(starts[1:], len(vals)), strict=True):
            members = sorted(order[lo:hi].tolist())
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    candidates.add((members[x], members[y]))

    sets = [shingle_set(d) for d in docs]

    def jaccard(a: int, b: int) -> float:
        return len(sets[a] & sets[b]) / len(sets[a] | sets[b])

    size = len(rates) + 1
    pairs = {}
    for f in range(len(family_docs)):
        ids = range(f * size, (f + 1) * size)
        for a in ids:
            for b in ids:
                if a < b:
                    pairs[(a, b)] = jaccard(a, b)
    for pair in candidates - pairs.keys():
        pairs[pair] = jaccard(*pair)  # cross-family candidates (near-identical gold texts)

    sims = np.array(list(pairs.values()))
    found = np.array([p in candidates for p in pairs])
    prob = lsh.collision_probability(sims, bands, rows)
    edges = np.array([0.0, 0.3, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.01])
    print("\nJaccard bin: pairs, found, expected (S-curve)")
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (sims >= lo) & (sims < hi)
        if not sel.any():
            continue
        obs, exp = int(found[sel].sum()), float(prob[sel].sum())
        sd = float(np.sqrt((prob[sel] * (1 - prob[sel])).sum()))
        print(f"  [{lo:.2f}, {hi:.2f}): {int(sel.sum()):5d} {obs:5d} {exp:8.1f} +- {sd:.1f}")
        assert abs(obs - exp) <= 4.5 * sd + 2, (lo, hi, obs, exp, sd)

    # Precision / recall at the 0.7, 0.75 and 0.8 thresholds, against the S-curve expectation.
    for t in (0.7, 0.75, 0.8):
        pos = sims >= t
        recall, exp_recall = found[pos].mean(), prob[pos].mean()
        precision = found[pos].sum() / max(found.sum(), 1)
        exp_precision = prob[pos].sum() / prob.sum()
        print(
            f"  t={t}: recall {recall:.3f} (S-curve {exp_recall:.3f}), "
            f"precision {precision:.3f} (S-curve {exp_precision:.3f}), positives {int(pos.sum())}"
        )
        n_pos = int(pos.sum())
        assert (
            abs(recall - exp_recall) <= 4.5 * np.sqrt(exp_recall * (1 - exp_recall) / n_pos) + 0.01
        )
        assert abs(precision - exp_precision) <= 0.05
