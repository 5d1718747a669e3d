"""Phases 2 and 3 of exact counting: distinct items per partition, then repeated-token coverage.

Phase 2 (one task per hash partition, metrics one after another) sorts the partition's records
by hash. With r = the last set of an occurrence's file and l its subsample level, an item is in
S_k and D_j iff some occurrence has r >= k and l >= j, so one sort gives every (set, level) cell:
per set k, the maximum level of the item's occurrences in S_k, histogrammed and summed from the
top. Memory: ~80 B per record of the partition for the largest metric (records, sort order,
sorted copy, group arrays; 68-78 B measured), i.e. ~80 B x tokens / W.

For each occurrence it also computes `rep` = the largest k such that the occurrence is in S_k and
the item occurs at least twice in S_k (min of its own r and the item's second-largest r), and
writes (position, rep) of repeated occurrences keyed by file. Phase 3 (one task per file) marks,
for every token, the largest rep among windows covering it (a sliding maximum), so token t lies
inside a repeated n-gram of S_k iff that value >= k. Memory: ~3 B per token of the file.
"""

from __future__ import annotations

from typing import Any

import fsspec
import numpy as np

from pipeline.io.shuffle import KeyedFile, write_keyed
from pipeline.stats.hashing import bit_length
from pipeline.stats.scan import DOCREC, POS_BITS, POS_MASK, CountConfig

FILE_GROUP = 256  # files per phase-2 output file of a (partition, metric): small headers
REPREC = np.dtype([("pos", "<u8"), ("rep", "i1")])


def count_partition(
    cfg: CountConfig, file_sets: np.ndarray, chunks: list[str], part: int
) -> dict[str, Any]:
    """Phase 2 for hash partition `part`: per-metric (set x level) distinct counts and more.

    `file_sets[f]` is the last set of file f; `chunks` the phase-1 chunk stems.
    """
    fs, work = fsspec.core.url_to_fs(cfg.work_dir)
    w = cfg.partitions
    readers = [
        KeyedFile(fs, f"{s}.ngrams", key="metric_partition", dtype=cfg.ngram_dtype)
        for s in chunks
        if fs.exists(f"{s}.ngrams")
    ]
    doc_readers = [
        KeyedFile(fs, f"{s}.docs", key="partition", dtype=DOCREC)
        for s in chunks
        if fs.exists(f"{s}.docs")
    ]
    out: dict[str, Any] = {"part": part, "metrics": {}}
    # Records are built inside the call so _count's sorted copy replaces them (peak memory).
    out["docs"] = _count(cfg, _concat([r.read(part) for r in doc_readers], DOCREC), file_sets, True)
    for mi, size in enumerate(cfg.sizes, start=1):
        slices = (r.read(mi * w + part) for r in readers)
        res = _count(cfg, _concat(list(slices), cfg.ngram_dtype), file_sets, docs=False)
        rep = res.pop("rep_records", None)
        if rep is not None and rep.size:
            _write_repeated(fs, work, part, mi, rep)
        out["metrics"][str(size)] = res
    return out


def _rep_path(work: str, part: int, metric: int, group: int) -> str:
    return f"{work}/p2/part{part:05d}-m{metric:02d}-g{group:05d}"


def _write_repeated(fs: Any, work: str, part: int, metric: int, rep: np.ndarray) -> None:
    """(position, rep) records keyed by file, one keyed file per group of FILE_GROUP files."""
    fs.makedirs(f"{work}/p2", exist_ok=True)
    files = (rep["pos"] >> np.uint64(POS_BITS)).astype(np.int64)
    group = files // FILE_GROUP
    for g in np.unique(group).tolist():
        sel = group == g
        write_keyed(fs, _rep_path(work, part, metric, g), rep[sel], files[sel], key="file")


def _concat(parts: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    parts = [p for p in parts if p.size]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def _count(cfg: CountConfig, recs: np.ndarray, file_sets: np.ndarray, docs: bool) -> dict[str, Any]:
    """Distinct counts per (set, level) and per-set occurrence / repetition / cluster numbers."""
    nsets, nlev = cfg.num_sets, cfg.levels
    res: dict[str, Any] = {
        "distinct": np.zeros((nsets, nlev), np.int64),
        "occurrences": np.zeros(nsets, np.int64),
        "repeated_occurrences": np.zeros(nsets, np.int64),
    }
    if docs:
        res["distinct_tokens"] = np.zeros((nsets, nlev), np.int64)
        res["cluster_hist"] = np.zeros((nsets, 33), np.int64)
    if recs.size == 0:
        return res
    wide = "h2" in recs.dtype.names
    # Sort by hash, then gather plain per-field arrays (gathering packed 17-byte records is
    # several times slower); the packed records are dropped as soon as the fields are out.
    order = np.lexsort((recs["h2"], recs["h"])) if wide else np.argsort(recs["h"])
    h = recs["h"][order]
    new = np.empty(h.size, dtype=bool)
    new[0] = True
    np.not_equal(h[1:], h[:-1], out=new[1:])
    del h
    if wide:
        h2 = recs["h2"][order]
        new[1:] |= h2[1:] != h2[:-1]
        del h2
    starts = np.flatnonzero(new)
    del new
    pos = recs["pos"][order]
    lvl = recs["lvl"][order].astype(np.int8)
    grp_tok = recs["tok"][order[starts]].astype(np.float64) if docs else None
    del order, recs
    stage = file_sets[(pos >> np.uint64(POS_BITS)).astype(np.int64)].astype(np.int8)
    for k in range(nsets):
        in_k = stage >= k
        cnt = np.add.reduceat(in_k.astype(np.int64), starts)
        top = np.maximum.reduceat(np.where(in_k, lvl, np.int8(-1)), starts)
        present = top >= 0
        hist = np.bincount(top[present], minlength=nlev)
        res["distinct"][k] = np.cumsum(hist[::-1])[::-1]
        res["occurrences"][k] = int(cnt.sum())
        res["repeated_occurrences"][k] = int(cnt[cnt >= 2].sum())
        if docs:
            assert grp_tok is not None
            wt = np.bincount(top[present], weights=grp_tok[present], minlength=nlev)
            res["distinct_tokens"][k] = np.cumsum(wt[::-1])[::-1].round().astype(np.int64)
            sizes = cnt[cnt > 0]
            res["cluster_hist"][k] = np.bincount(bit_length(sizes) - 1, minlength=33)[:33]
    if not docs and nsets:
        res["rep_records"] = _repeated(pos, stage, starts)
    return res


def _repeated(pos: np.ndarray, stage: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(position, rep) of every occurrence that is repeated in at least S_0 (rep >= 0)."""
    sizes = np.diff(np.append(starts, stage.size))
    gid = np.repeat(np.arange(starts.size, dtype=np.int32), sizes)
    s16 = stage.astype(np.int16)
    m1 = np.maximum.reduceat(s16, starts)
    is_top = s16 == m1[gid]
    n_top = np.add.reduceat(is_top.astype(np.int64), starts)
    rest = np.maximum.reduceat(np.where(is_top, np.int16(-1), s16), starts)
    m2 = np.where(n_top >= 2, m1, rest)
    rep = np.minimum(s16, m2[gid])
    keep = rep >= 0
    out = np.empty(int(keep.sum()), dtype=REPREC)
    out["pos"], out["rep"] = pos[keep], rep[keep]
    return out


def cover_file(cfg: CountConfig, file_index: int, tokens: int) -> dict[str, list[int]]:
    """Phase 3 for one file: tokens inside an n-gram repeated in S_k, per size and set k."""
    fs, work = fsspec.core.url_to_fs(cfg.work_dir)
    group = file_index // FILE_GROUP
    out: dict[str, list[int]] = {}
    for mi, size in enumerate(cfg.sizes, start=1):
        rep = np.full(tokens, -1, dtype=np.int8)
        for part in range(cfg.partitions):
            path = _rep_path(work, part, mi, group)
            if fs.exists(path):
                sec = KeyedFile(fs, path, key="file", dtype=REPREC).read(file_index)
                rep[(sec["pos"] & np.uint64(POS_MASK)).astype(np.int64)] = sec["rep"]
        covered = sliding_max(rep, size)
        hist = np.bincount(covered.astype(np.int64) + 1, minlength=cfg.num_sets + 1)
        out[str(size)] = np.cumsum(hist[::-1])[::-1][1 : cfg.num_sets + 1].tolist()
    return out


def sliding_max(x: np.ndarray, n: int) -> np.ndarray:
    """y[t] = max(x[t-n+1 .. t]) (values before the start count as -1), in O(len x log n)."""
    m = x.copy()
    width = 1
    while 2 * width <= n:
        m = _shift_max(m, width)
        width *= 2
    if width < n:
        m = _shift_max(m, n - width)
    return m


def _shift_max(m: np.ndarray, d: int) -> np.ndarray:
    out = m.copy()
    if d < m.size:
        np.maximum(out[d:], m[:-d], out=out[d:])
    return out
