"""Connected components over many tasks: large-star / small-star rounds on hash-partitioned edges.

Why: the single-task path (`components`) holds every candidate edge in one process (~140 bytes
per edge at peak); a corpus of billions of documents has more edges than one machine holds.
Here no task holds more than its partition: 1/Q of the edges (two directed records each), plus
the largest component's members in the task that owns its root (the final stars are keyed by
node).

Algorithm (Kiveris et al., "Connected Components in MapReduce and Beyond", 2014): edges are
stored in both directions in keyed record files (io/shuffle.py), keyed by fmix64(node) mod Q, so
each `ctx.map` task sees every neighbour of its nodes. Rounds alternate
- large-star: each node u links every larger neighbour v to m(u), the smallest of u and its
  neighbours;
- small-star: each node u links itself and every smaller neighbour to the smallest of them;
both keep connectivity and never add edges. Convergence check, per node on a round's input: either
every neighbour is larger (a root) or the node has exactly one neighbour and it is smaller (a
leaf). When every task reports that, the graph is a forest of stars, each centred on its
component's smallest key: the cluster ids of the single-task path, whatever the edge order. Rounds
are O(log^2 n) in theory, a handful in practice (MinHash star edges are nearly stars already).

Finish: the task owning a root sizes its cluster and picks the representative (`representatives`,
so the policies are the single path's), and member records go, keyed by shard, to one task per
shard that writes the shard's cluster file. `keep: longest` needs each member's length, which lives
with its shard: members make one extra trip, by shard (lengths attached) and back by root.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import fsspec
import numpy as np

from pipeline.dedup.components import Components, cluster_summary, representatives, write_clusters
from pipeline.dedup.kernels import fmix64
from pipeline.dedup.workfiles import ROW_BITS
from pipeline.io.shuffle import read_keyed, write_keyed
from pipeline.stages.global_base import GlobalContext

EDGE = np.dtype([("u", "<i8"), ("v", "<i8")])
MEMBER = np.dtype(
    [("key", "<i8"), ("cluster", "<i8"), ("size", "<i8"), ("length", "<i8"), ("rep", "?")]
)
BY_NODE, BY_SHARD = "component-node", "shard"
MAX_ROUNDS = 200  # O(log^2 n) rounds: 200 is never reached by a graph that fits on any disk
# Peak RSS per undirected edge (scripts/bench_components.py, 1M-30M documents): one task holding
# all edges (components.py; 134-137 B measured, clustered documents included), and a round task
# per edge of its partition (two directed records, their sort, the emitted records; 169-196 B).
SINGLE_BYTES_PER_EDGE = 140
ROUND_BYTES_PER_EDGE = 200
# The scatter reads a slice of one edge file and writes it both ways, keyed (~215 B per undirected
# edge measured at 10M documents); slices are cut so that one fits the memory budget too.
SCATTER_BYTES_PER_EDGE = 256

LengthsOf = Callable[[int], np.ndarray]  # shard index -> each row's length (keep: longest)


def plan(edges: int, mode: str, memory: int, partitions: int) -> tuple[str, int]:
    """("single" | "distributed", component partitions Q) for `edges` undirected edges.

    auto: one task while its ~SINGLE_BYTES_PER_EDGE x edges fit `memory`; distributed: at least
    `partitions` tasks, more until each partition's round task fits `memory`.
    """
    if mode == "auto":
        mode = "single" if edges * SINGLE_BYTES_PER_EDGE <= memory else "distributed"
    if mode == "single":
        return "single", 1
    return "distributed", max(partitions, math.ceil(edges * ROUND_BYTES_PER_EDGE / memory))


def node_partition(keys: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each node key: fmix64(key) mod `partitions` (spreads consecutive keys)."""
    with np.errstate(over="ignore"):
        return (fmix64(keys.astype(np.uint64)) % np.uint64(partitions)).astype(np.int64)


def distributed_components(
    ctx: GlobalContext,
    edge_files: Sequence[str],
    work: str,
    clusters_dir: str,
    shard_ids: Sequence[int],
    *,
    partitions: int,
    keep: str,
    seed: int,
    lengths_of: LengthsOf | None = None,
    memory: int | None = None,
) -> dict[str, Any]:
    """Components of the edges in the .npy (n, 2) int64 files `edge_files`, resolved by rounds of
    `partitions` tasks under `work`; per-shard cluster files (`write_clusters`) in `clusters_dir`.
    `memory`: the per-task budget the scatter's slices of the edge files are cut to (None: whole
    files). Returns the single path's summary plus the rounds run."""
    pieces = _scatter_pieces(ctx.fs, edge_files, memory)
    ctx.map(functools.partial(_scatter_task, fs=ctx.fs, work=work, partitions=partitions), pieces)
    sources = [f"{work}/round-000/part-{i:05d}-{j:05d}.bin" for i, _, j, _, _ in pieces]
    nodes = list(range(partitions))
    for r in range(1, MAX_ROUNDS + 1):
        out = f"{work}/round-{r:03d}"
        step = _tasks(_round_task, ctx, sources, out, partitions=partitions, large=r % 2 == 1)
        if all(ctx.map(step, nodes)):
            break  # this round's input (`sources`) is the star forest
        if r > 1 and ctx.fs.exists(f"{work}/round-{r - 1:03d}"):  # gone when resumed past it
            ctx.fs.rm(f"{work}/round-{r - 1:03d}", recursive=True)
        sources = [f"{out}/part-{q:05d}.bin" for q in nodes]
    else:
        raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
    stats = ctx.map(
        _tasks(_roots_task, ctx, sources, f"{work}/members", keep=keep, seed=seed), nodes
    )
    members = [f"{work}/members/part-{q:05d}.bin" for q in nodes]
    if keep == "longest":
        if lengths_of is None:
            raise ValueError("keep 'longest' needs lengths")
        attach = _tasks(
            _lengths_task,
            ctx,
            members,
            f"{work}/by-root",
            partitions=partitions,
            lengths_of=lengths_of,
        )
        ctx.map(attach, list(shard_ids))
        by_root = [f"{work}/by-root/shard-{s:06d}.bin" for s in shard_ids]
        by_root += [f"{work}/members/indexed-{q:05d}.bin" for q in nodes]
        ctx.map(_tasks(_choose_task, ctx, by_root, f"{work}/chosen"), nodes)
        members = [f"{work}/chosen/part-{q:05d}.bin" for q in nodes]
    ctx.map(_tasks(_write_task, ctx, members, clusters_dir), list(shard_ids))
    sizes = np.concatenate(stats) if stats else np.zeros(0, dtype=np.int64)
    return {**cluster_summary(sizes), "components_rounds": r, "components_partitions": partitions}


def _tasks(
    fn: Callable[..., Any], ctx: GlobalContext, sources: list[str], out: str, **options: Any
) -> Callable[[int], Any]:
    """`fn` bound to the file system, the keyed files it reads and where it writes (picklable)."""
    return functools.partial(fn, fs=ctx.fs, sources=sources, out=out, **options)


def _both_ways(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Directed records u -> v for the undirected edges (a[i], b[i]): both directions."""
    rec = np.empty(2 * len(a), dtype=EDGE)
    rec["u"][: len(a)], rec["v"][: len(a)] = a, b
    rec["u"][len(a) :], rec["v"][len(a) :] = b, a
    return rec


def _write_edges(
    fs: fsspec.AbstractFileSystem, path: str, a: np.ndarray, b: np.ndarray, partitions: int
) -> None:
    """The undirected edges (a[i], b[i]) in both directions, keyed by the partition of u."""
    rec = _both_ways(a, b)
    write_keyed(fs, path, rec, node_partition(rec["u"], partitions), key=BY_NODE)


_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _npy_rows(f: Any) -> tuple[int, np.dtype, int]:
    """(rows, dtype, data offset) of the (n, 2) .npy array in the open file `f`, header only."""
    version = np.lib.format.read_magic(f)
    if version not in _NPY_HEADERS:
        raise ValueError(f".npy format version {version} is not one np.save writes for edges")
    shape, fortran, dtype = _NPY_HEADERS[version](f)
    if len(shape) != 2 or shape[1] != 2 or fortran:
        raise ValueError(f"expected a C-ordered (n, 2) edge array, got shape {shape}")
    return shape[0], dtype, f.tell()


def _scatter_pieces(
    fs: fsspec.AbstractFileSystem, edge_files: Sequence[str], memory: int | None
) -> list[tuple[int, str, int, int, int]]:
    """(file index, path, slice index, first row, end row): the edge files cut into slices of at
    most `memory` / SCATTER_BYTES_PER_EDGE edges, so no scatter task outgrows the budget."""
    step = max(1, memory // SCATTER_BYTES_PER_EDGE) if memory else None
    pieces = []
    for index, path in enumerate(edge_files):
        with fs.open(path, "rb") as f:
            rows = _npy_rows(f)[0]
        size = step or max(rows, 1)
        for j, start in enumerate(range(0, max(rows, 1), size)):  # an empty file: one piece
            pieces.append((index, path, j, start, min(rows, start + size)))
    return pieces


def _scatter_task(
    item: tuple[int, str, int, int, int],
    *,
    fs: fsspec.AbstractFileSystem,
    work: str,
    partitions: int,
) -> None:
    """Rows [start, end) of one edge file to directed records keyed by node partition (round 0's
    input); only that slice is read."""
    index, path, piece, start, end = item
    with fs.open(path, "rb") as f:
        _, dtype, offset = _npy_rows(f)
        f.seek(offset + start * 2 * dtype.itemsize)
        raw = f.read((end - start) * 2 * dtype.itemsize)
    pairs = np.frombuffer(raw, dtype=dtype).reshape(-1, 2).astype(np.int64)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    out = f"{work}/round-000/part-{index:05d}-{piece:05d}.bin"
    _write_edges(fs, out, pairs[:, 0], pairs[:, 1], partitions)


def _neighbourhoods(
    fs: fsspec.AbstractFileSystem, sources: list[str], part: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, starts): partition `part`'s records sorted by (u, v) without duplicates, and the
    index of each node's first record (its smallest neighbour)."""
    rec = read_keyed(fs, sources, part, EDGE, key=BY_NODE)
    order = np.lexsort((rec["v"], rec["u"]))
    u = rec["u"][order]
    v = rec["v"][order]
    del order, rec
    if len(u):
        fresh = np.concatenate(([True], (u[1:] != u[:-1]) | (v[1:] != v[:-1])))
        u, v = u[fresh], v[fresh]
    starts = np.flatnonzero(np.concatenate(([True], u[1:] != u[:-1]))) if len(u) else u[:0]
    return u, v, starts


def _round_task(
    part: int,
    *,
    fs: fsspec.AbstractFileSystem,
    sources: list[str],
    out: str,
    partitions: int,
    large: bool,
) -> bool:
    """One large-star (or small-star) step over one partition's nodes; True when the partition's
    input already was stars centred on their smallest key (the convergence check)."""
    u, v, starts = _neighbourhoods(fs, sources, part)
    node, smallest = u[starts], v[starts]
    degree = np.diff(np.append(starts, len(u)))
    converged = bool(np.all((smallest > node) | ((degree == 1) & (smallest < node))))
    m = np.repeat(np.minimum(node, smallest), degree)  # smallest of u and its neighbours
    if large:  # every larger neighbour of u to m(u)
        sel = v > u
        a, b = v[sel], m[sel]
    else:  # u and every smaller neighbour to the smallest of them
        sel = v < u
        hooked = smallest < node
        a = np.concatenate((v[sel], node[hooked]))
        b = np.concatenate((m[sel], smallest[hooked]))
        sel = a != b
        a, b = a[sel], b[sel]
    del u, v, m, sel
    _write_edges(fs, f"{out}/part-{part:05d}.bin", a, b, partitions)
    return converged


def _stars(part: int, fs: fsspec.AbstractFileSystem, sources: list[str]) -> np.ndarray:
    """The clusters whose root lives in partition `part` of the converged star forest."""
    u, v, starts = _neighbourhoods(fs, sources, part)
    node, smallest = u[starts], v[starts]
    degree = np.diff(np.append(starts, len(u)))
    is_root = smallest > node
    leaf = np.repeat(is_root, degree)
    keys = np.concatenate((node[is_root], v[leaf]))
    cluster = np.concatenate((node[is_root], u[leaf]))
    size = degree[is_root] + 1
    rec = np.zeros(len(keys), dtype=MEMBER)
    rec["key"], rec["cluster"] = keys, cluster
    rec["size"] = np.concatenate((size, np.repeat(size, degree[is_root])))
    return rec


def _choose(rec: np.ndarray, keep: str, seed: int) -> np.ndarray:
    """`rec` (whole clusters) with `rep` set by `representatives`, the single path's policies."""
    rec = rec[np.argsort(rec["key"])]
    root = np.searchsorted(rec["key"], rec["cluster"])
    comp = Components(rec["key"], root)
    rec["rep"] = representatives(comp, keep, rec["length"], seed)
    return rec


def _shard_of(rec: np.ndarray) -> np.ndarray:
    return rec["key"] >> ROW_BITS


def _roots_task(
    part: int,
    *,
    fs: fsspec.AbstractFileSystem,
    sources: list[str],
    out: str,
    keep: str,
    seed: int,
) -> np.ndarray:
    """Members of the clusters rooted in `part` (representatives chosen unless `keep` needs
    lengths), keyed by shard; returns the cluster sizes."""
    rec = _stars(part, fs, sources)
    if keep != "longest":
        rec = _choose(rec, keep, seed)
    else:  # indexed documents (negative keys) have no shard, no length: they go straight back
        indexed = rec[rec["key"] < 0]
        keys = np.full(len(indexed), part)
        write_keyed(fs, f"{out}/indexed-{part:05d}.bin", indexed, keys, key=BY_NODE)
    write_keyed(fs, f"{out}/part-{part:05d}.bin", rec, _shard_of(rec), key=BY_SHARD)
    return rec["size"][rec["key"] == rec["cluster"]]


def _lengths_task(
    shard: int,
    *,
    fs: fsspec.AbstractFileSystem,
    sources: list[str],
    out: str,
    partitions: int,
    lengths_of: LengthsOf,
) -> None:
    """One shard's members with their lengths, back to the partitions of their roots."""
    rec = read_keyed(fs, sources, shard, MEMBER, key=BY_SHARD)
    if len(rec):
        rec["length"] = lengths_of(shard)[rec["key"] & ((1 << ROW_BITS) - 1)]
    parts = node_partition(rec["cluster"], partitions)
    write_keyed(fs, f"{out}/shard-{shard:06d}.bin", rec, parts, key=BY_NODE)


def _choose_task(part: int, *, fs: fsspec.AbstractFileSystem, sources: list[str], out: str) -> None:
    """The longest member of each cluster rooted in `part`; members keyed by shard again."""
    rec = _choose(read_keyed(fs, sources, part, MEMBER, key=BY_NODE), "longest", 0)
    write_keyed(fs, f"{out}/part-{part:05d}.bin", rec, _shard_of(rec), key=BY_SHARD)


def _write_task(shard: int, *, fs: fsspec.AbstractFileSystem, sources: list[str], out: str) -> None:
    """One shard's cluster file (in the directory `out`) from its members' records."""
    rec = read_keyed(fs, sources, shard, MEMBER, key=BY_SHARD)
    rec = rec[np.argsort(rec["key"])]
    write_clusters(fs, out, rec["key"], rec["cluster"], rec["size"], rec["rep"])
