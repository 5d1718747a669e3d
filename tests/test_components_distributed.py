"""Distributed connected components give exactly the single task's clusters: random graphs of
every shape, every keep policy, and the minhash_dedup stage on the shared WARCs."""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.config import recipe_from_dict
from pipeline.dedup.components import (
    Components,
    connected_components,
    representatives,
    write_clusters,
)
from pipeline.dedup.components_distributed import (
    ROUND_BYTES_PER_EDGE,
    SCATTER_BYTES_PER_EDGE,
    SINGLE_BYTES_PER_EDGE,
    _scatter_pieces,
    distributed_components,
    plan,
)
from pipeline.runner.run import run_recipe
from pipeline.stages.global_base import LocalContext
from tests.test_runner import read_output

SHARDS = 3


def keys_of(nodes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Node numbers to document keys spread over SHARDS shards in a scrambled order (so the
    smallest key is not the first node of a chain or the centre of a star)."""
    perm = rng.permutation(int(nodes.max()) + 1 if len(nodes) else 0)
    scrambled = perm[nodes].astype(np.int64)
    return ((scrambled % SHARDS) << 32) | (scrambled // SHARDS)


def graph(shape: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(src, dst) node numbers of a graph of the given shape."""
    if shape == "chain":  # the worst case of pointer jumping and of star rounds
        nodes = np.arange(3000)
        return nodes[:-1], nodes[1:]
    if shape == "star":
        return np.zeros(2000, dtype=np.int64), np.arange(1, 2001)
    if shape == "small":  # many components of 2-6 nodes, with repeated and reversed edges
        sizes = rng.integers(2, 7, 800)
        start = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        src = np.concatenate([s + rng.integers(0, n, n) for s, n in zip(start, sizes, strict=True)])
        dst = np.concatenate([s + rng.permutation(n) for s, n in zip(start, sizes, strict=True)])
        keep = src != dst
        chain = np.concatenate([np.arange(s, s + n - 1) for s, n in zip(start, sizes, strict=True)])
        return np.concatenate((src[keep], chain, chain + 1)), np.concatenate(
            (dst[keep], chain + 1, chain)
        )
    if shape == "giant":  # one component: a random tree plus random extra edges
        n = 4000
        parent = (rng.random(n - 1) * np.arange(1, n)).astype(np.int64)
        extra = rng.integers(0, n, (1500, 2))
        extra = extra[extra[:, 0] != extra[:, 1]]
        return np.concatenate((np.arange(1, n), extra[:, 0])), np.concatenate((parent, extra[:, 1]))
    src, dst = rng.integers(0, 6000, 4000), rng.integers(0, 6000, 4000)  # "random": mixed sizes
    return src[src != dst], dst[src != dst]


def clusters(directory: Path) -> dict[int, tuple]:
    """Every cluster file of `directory`: {(shard, row): (cluster id, size, is representative)}."""
    out = {}
    for path in sorted(directory.glob("shard-*.npz")):
        shard = int(path.stem.split("-")[1])
        data = np.load(path)
        assert np.all(np.diff(data["rows"]) > 0)  # rows ascending, as the single path writes
        for row, cid, size, rep in zip(
            data["rows"], data["cluster_id"], data["size"], data["is_rep"], strict=True
        ):
            out[(shard, int(row))] = (int(cid), int(size), bool(rep))
    return out


class PicklingContext(LocalContext):
    """A local context that pickles every task and item, as Ray does: the tasks must travel."""

    def map(
        self, fn: Callable[[Any], Any], items: Sequence[Any], *, num_gpus: float | None = 0
    ) -> list[Any]:
        fn = pickle.loads(pickle.dumps(fn))
        return [fn(pickle.loads(pickle.dumps(item))) for item in items]


def lengths_of(shard: int, *, table: np.ndarray) -> np.ndarray:
    return table[shard]


def both_modes(
    tmp_path: Path,
    src: np.ndarray,
    dst: np.ndarray,
    keep: str,
    seed: int,
    partitions: int,
    memory: int | None = None,
) -> tuple[Components, dict]:
    """The single task's components (cluster files in tmp_path/single) and the distributed
    ones (edges in 3 files, `partitions` partitions; files in tmp_path/dist), asserted equal.
    Lengths are drawn per (shard, row); indexed documents (negative keys) have length 0."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 5, (SHARDS, 3000))  # few values: ties broken by the smallest key
    comp = connected_components(src, dst)
    safe = np.maximum(comp.keys, 0)
    member_lengths = np.where(comp.keys < 0, 0, lengths[safe >> 32, safe & 0xFFFFFFFF])
    is_rep = representatives(comp, keep, member_lengths, seed=seed)
    fs = LocalContext(str(tmp_path / "single")).fs
    write_clusters(fs, str(tmp_path / "single"), comp.keys, comp.cluster_id, comp.size, is_rep)
    files = []
    for i, chunk in enumerate(np.array_split(np.stack((src, dst), axis=1), 3)):
        files.append(str(tmp_path / f"edges-{i}.npy"))
        np.save(files[-1], chunk)
    summary = distributed_components(
        PicklingContext(str(tmp_path / "work"), partitions),
        files,
        str(tmp_path / "work" / "cc"),
        str(tmp_path / "dist"),
        list(range(SHARDS)),
        partitions=partitions,
        keep=keep,
        seed=seed,
        lengths_of=functools.partial(lengths_of, table=lengths),
        memory=memory,
    )
    assert clusters(tmp_path / "dist") == clusters(tmp_path / "single")
    roots = comp.root == np.arange(len(comp.keys))
    assert summary["clusters"] == int(roots.sum())
    assert summary["documents_in_clusters"] == len(comp.keys)
    return comp, summary


@pytest.mark.parametrize("shape", ["chain", "star", "small", "giant", "random"])
@pytest.mark.parametrize("keep", ["first", "longest", "random"])
def test_distributed_gives_the_single_clusters(tmp_path, shape: str, keep: str) -> None:
    """Every shape and keep policy: identical cluster files and figures in both modes."""
    rng = np.random.default_rng(len(shape) * 31 + len(keep))
    src, dst = graph(shape, rng)
    keys = keys_of(np.concatenate((src, dst)), rng)
    comp, summary = both_modes(tmp_path, keys[: len(src)], keys[len(src) :], keep, 5, 7)
    assert summary["largest_cluster"] == int(comp.size.max())
    if shape == "giant":
        assert summary["clusters"] == 1 and summary["largest_cluster"] == 4000
    if shape == "star":
        assert summary["components_rounds"] <= 3  # a star needs at most one hop to its minimum


@pytest.mark.parametrize("shape", ["giant", "random"])
def test_scatter_slices_follow_the_memory_budget(tmp_path, shape: str) -> None:
    """A budget of 300 edges cuts each edge file into slices no larger (the scatter task reads
    only its slice, so it never holds a whole phase-2 file); the clusters stay the single path's."""
    rng = np.random.default_rng(11)
    src, dst = graph(shape, rng)
    keys = keys_of(np.concatenate((src, dst)), rng)
    memory = 300 * SCATTER_BYTES_PER_EDGE
    both_modes(tmp_path, keys[: len(src)], keys[len(src) :], "first", 3, 5, memory=memory)
    files = sorted(str(p) for p in tmp_path.glob("edges-*.npy"))
    pieces = _scatter_pieces(LocalContext(str(tmp_path)).fs, files, memory)
    sizes = [end - start for _, _, _, start, end in pieces]
    assert max(sizes) == 300 and sum(sizes) == len(src)
    assert len(pieces) == sum(-(-len(np.load(f)) // 300) for f in files)
    assert _scatter_pieces(LocalContext(str(tmp_path)).fs, files, None) == [
        (i, f, 0, 0, len(np.load(f))) for i, f in enumerate(files)
    ]


def test_a_star_on_its_smallest_key_converges_in_one_round(tmp_path) -> None:
    """Star edges to the smallest member are the fixpoint: the first round's check sees it."""
    ctx = LocalContext(str(tmp_path / "w"), num_partitions=4)
    np.save(tmp_path / "e.npy", np.array([[5, 1], [9, 1], [7, 2], [3, 2]], dtype=np.int64))
    summary = distributed_components(
        ctx,
        [str(tmp_path / "e.npy")],
        str(tmp_path / "w/cc"),
        str(tmp_path / "c"),
        [0],
        partitions=4,
        keep="first",
        seed=0,
    )
    assert summary["components_rounds"] == 1
    assert clusters(tmp_path / "c") == {
        (0, 1): (1, 3, True),
        (0, 5): (1, 3, False),
        (0, 9): (1, 3, False),
        (0, 2): (2, 3, True),
        (0, 3): (2, 3, False),
        (0, 7): (2, 3, False),
    }


def test_no_edges(tmp_path) -> None:
    ctx = LocalContext(str(tmp_path / "w"), num_partitions=3)
    np.save(tmp_path / "e.npy", np.empty((0, 2), dtype=np.int64))
    summary = distributed_components(
        ctx,
        [str(tmp_path / "e.npy")],
        str(tmp_path / "w/cc"),
        str(tmp_path / "c"),
        [0, 1],
        partitions=3,
        keep="longest",
        seed=0,
        lengths_of=lambda s: np.zeros(0, np.int64),
    )
    assert summary["clusters"] == 0 and summary["components_rounds"] == 1
    assert not list((tmp_path / "c").glob("*"))


def test_plan_picks_by_edges_against_the_memory_budget() -> None:
    budget = 1 << 30
    fits = budget // SINGLE_BYTES_PER_EDGE
    assert plan(fits, "auto", budget, 8) == ("single", 1)
    assert plan(fits + 1, "auto", budget, 8)[0] == "distributed"
    assert plan(10, "distributed", budget, 8) == ("distributed", 8)
    edges = 10**9  # a billion edges: partitions of at most `budget` bytes each
    mode, tasks = plan(edges, "auto", budget, 8)
    assert mode == "distributed" and tasks == -(-edges * ROUND_BYTES_PER_EDGE // budget)
    assert plan(edges, "single", budget, 8) == ("single", 1)  # forced: one task


WARCS = [
    "warc/archive-it-2008.warc.gz",
    "warc/bl-govuk-2014.warc.gz",
    "warc/wget-2024-sample-0000.warc.gz",
]


def _run(shared_data: Path, out: Path, components: str, keep: str) -> dict:
    recipe = recipe_from_dict(
        {
            "input": {"paths": [str(shared_data / w) for w in WARCS]},
            "output": {"path": str(out)},
            "runtime": {"executor": "local", "num_partitions": 3},
            "stages": [
                {"stage": "extract"},
                {
                    "stage": "minhash_dedup",
                    "num_bands": 20,
                    "rows_per_band": 5,
                    "keep": keep,
                    "components": components,
                },
            ],
        }
    )
    return run_recipe(recipe).stats


@pytest.mark.e2e
@pytest.mark.parametrize("keep", ["first", "longest"])
def test_stage_on_shared_warcs_gives_identical_output(shared_data, tmp_path, keep: str) -> None:
    single = _run(shared_data, tmp_path / "single", "single", keep)
    dist = _run(shared_data, tmp_path / "dist", "distributed", keep)
    s, d = single["global"]["minhash_dedup"], dist["global"]["minhash_dedup"]
    assert (s["components"], d["components"]) == ("single", "distributed")
    for key in ("clusters", "documents_in_clusters", "duplicates", "largest_cluster", "edges"):
        assert s[key] == d[key], key
    assert s["duplicates"] > 20  # the archive-it crawl's byte-identical bodies and near copies
    assert single["stages"][1]["removed_by_reason"] == dist["stages"][1]["removed_by_reason"]
    assert read_output(tmp_path / "dist").equals(read_output(tmp_path / "single"))


@pytest.mark.parametrize("keep", ["first", "longest"])
def test_indexed_documents_negative_keys_as_in_the_single_task(tmp_path, keep: str) -> None:
    """Documents of an incremental index (dedup/index.py) have negative keys and no shard: they
    join clusters (as their smallest keys) with length 0, and get no cluster file."""
    rng = np.random.default_rng(3)
    src, dst = graph("small", rng)
    keys = keys_of(np.concatenate((src, dst)), rng)
    indexed = np.unique(keys)[::7]  # every 7th node is an indexed document
    keys = np.where(np.isin(keys, indexed), -1 - keys, keys)
    comp, _ = both_modes(tmp_path, keys[: len(src)], keys[len(src) :], keep, 0, 5)
    assert (comp.cluster_id < 0).sum() > 100  # many clusters hold an indexed document


class KilledContext(LocalContext):
    """A local context that dies (KeyboardInterrupt) before its `left`-th task."""

    def __init__(self, work_dir: str, num_partitions: int, left: int) -> None:
        super().__init__(work_dir, num_partitions)
        self.left = left

    def map(
        self, fn: Callable[[Any], Any], items: Sequence[Any], *, num_gpus: float | None = 0
    ) -> list[Any]:
        out = []
        for item in items:
            if self.left == 0:
                raise KeyboardInterrupt("killed")
            self.left -= 1
            out.append(fn(item))
        return out


def test_killed_during_the_rounds_resumes_to_the_same_clusters(tmp_path) -> None:
    """A prepare killed in the middle of the component rounds reruns only the unfinished tasks
    (runner/resumable.py) and ends with the single task's cluster files."""
    import pyarrow as pa

    from pipeline.dedup.minhash import MinHashDedupConfig, MinHashDedupStage
    from pipeline.prune.local import write_shards
    from pipeline.runner.resumable import ResumableContext, stage_fingerprint
    from tests.test_minhash import base_words, edit

    families = [" ".join(base_words(s)) for s in range(6)]
    texts = [[f, " ".join(edit(f.split(), [5 * i + 3], "v"))] for i, f in enumerate(families)]
    tables = [
        pa.table({"id": [f"{i}-{j}" for j in range(4)], "text": texts[i] + texts[i + 3]})
        for i in range(3)
    ]
    shards = write_shards(tables, str(tmp_path / "in"))
    fingerprint = stage_fingerprint("h", 1, "minhash_dedup", shards)

    def stage(mode: str) -> MinHashDedupStage:
        return MinHashDedupStage(MinHashDedupConfig(components=mode, keep="longest"))

    stage("single").prepare(LocalContext(str(tmp_path / "single"), 3), shards)
    # 3 signature + 3 bucket + 3 scatter tasks, then 2 of round 1's 3: killed in the rounds.
    killed = ResumableContext(KilledContext(str(tmp_path / "w"), 3, left=11), fingerprint)
    with pytest.raises(KeyboardInterrupt):
        stage("distributed").prepare(killed, shards)
    rerun = ResumableContext(LocalContext(str(tmp_path / "w"), 3), fingerprint)
    summary = stage("distributed").prepare(rerun, shards)
    assert rerun.counts()["tasks_resumed"] == 11
    assert summary["components"] == "distributed" and summary["clusters"] == 6
    assert clusters(tmp_path / "w" / "clusters") == clusters(tmp_path / "single" / "clusters")
