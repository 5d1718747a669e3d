"""`substring_dedup`: cut spans of >= `min_tokens` tokens that occur more than once (ExactSubstr).

ALGORITHMS.md 3.2 (Lee et al. 2022) on raw UTF-8. Shards are packed, in index order, into groups
of at most `max_group_bytes` of text (a larger shard is a group alone). Per group, the documents'
UTF-8 bytes are concatenated with a 0xFF byte after each (0xFF never occurs in UTF-8) and a suffix
array is built with libdivsufsort (pydivsufsort). For every byte position p:

- `remove: all` (the reference): m(p) = the longest prefix of the suffix at p that occurs anywhere
  else in the group = max of its two neighbouring LCPs (Kasai), cut at the document end.
- `remove: all_but_first`: m(p) = the longest prefix that also starts at an earlier position
  (longest previous factor), so the first occurrence in doc_key order survives.

A match never crosses a document: two suffixes whose common prefix reaches a 0xFF are at the same
distance from their documents' ends, so cutting m(p) there is exact. Repeats inside one document
count, as in the reference.

Units (`unit`): `words` (default) - tokens are `split_words` tokens (words and punctuation marks;
~1.15 per English word, close to GPT-2's ~1.3 tokens per word), and a span is N = `min_tokens`
tokens starting at a token start p with byte length l(p); it is a repeat when m(p) >= l(p).
`bytes` - every byte position p with m(p) >= L = round(min_tokens x bytes_per_token) starts a repeat
of L bytes (the reference's 50 tokens are 100 bytes of 2-byte token ids; in raw English UTF-8,
GPT-2 averages ~4 bytes per token, the default). Repeats are the union of [p, p + l(p)); in byte
mode the ends snap forward to character boundaries.

Memory per group of n bytes (int32 suffix array, n < 2^31): `all` peaks at ~13 B per byte (text,
suffix array, LCP, Kasai's rank array; then an int32 m(p) array replaces them);
`all_but_first` at ~21 B per byte (pydivsufsort's longest previous factor builds its own arrays).
So the default 256 MiB group needs ~3.3 GiB (all) or ~5.4 GiB (all_but_first) per task.

score_shard() deletes the byte ranges (text in between is kept as is, no whitespace repair, as the
reference). A document that lost text and is left with fewer than max(1, `min_length`) characters
after stripping whitespace is rejected `substring_dedup_empty`.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from pipeline.dedup.workfiles import read_manifest, write_manifest
from pipeline.io.shuffle import read_keyed, write_keyed
from pipeline.schema import TEXT
from pipeline.stages.base import StageConfig, reasons_from_checks
from pipeline.stages.global_base import GlobalContext, GlobalStage, ShardRef
from pipeline.text.batch import with_columns
from pipeline.text.words import split_words

CHARS_REMOVED = "substr_chars_removed"
SPANS_REMOVED = "substr_spans_removed"
REASON_EMPTY = "substring_dedup_empty"
SEPARATOR = 0xFF
RANGE_RECORD = np.dtype([("row", "<u4"), ("start", "<u4"), ("end", "<u4")])
_CHUNK = 1 << 22  # positions per vectorised step (~32 B of temporaries each)
# Bytes that always end a token: ASCII whitespace and the document separator.
_BOUNDARY = np.zeros(256, dtype=bool)
_BOUNDARY[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32, SEPARATOR]] = True


class SubstringDedupConfig(StageConfig):
    """Span threshold and unit, which copies go, and the group size bound."""

    stage: Literal["substring_dedup"] = "substring_dedup"
    min_tokens: int = Field(default=50, ge=1)  # shortest repeated span that is cut, in tokens
    unit: Literal["words", "bytes"] = "words"  # words (split_words tokens) or bytes (UTF-8)
    bytes_per_token: float = Field(default=4.0, gt=0)  # unit bytes: span = min_tokens x this
    remove: Literal["all", "all_but_first"] = "all"  # cut every copy, or all but the first
    # Max UTF-8 bytes of text per group (one suffix array; a larger shard is a group alone).
    max_group_bytes: int = Field(default=256 << 20, ge=1, le=(1 << 31) - 1)
    min_length: int = Field(default=0, ge=0)  # characters left (stripped) to keep an edited doc

    @property
    def min_bytes(self) -> int:
        """Bytes-mode span length L."""
        return max(1, round(self.min_tokens * self.bytes_per_token))

    @model_validator(mode="after")
    def _span_fits_a_group(self) -> SubstringDedupConfig:
        """A bytes-mode span longer than a group could never match (and 1e300 would overflow
        the suffix-array arithmetic after the whole map segment): refused here instead."""
        if self.unit == "bytes" and self.min_tokens * self.bytes_per_token > self.max_group_bytes:
            raise ValueError(
                f"min_tokens x bytes_per_token = {self.min_tokens * self.bytes_per_token:.4g} "
                f"bytes, longer than max_group_bytes ({self.max_group_bytes}): no span could match"
            )
        return self


# --- suffix-array matching ---------------------------------------------------------------------


def match_lengths(data: np.ndarray, remove: str) -> np.ndarray:
    """int32 m(p) for every byte position of `data` (not yet cut at document ends)."""
    import pydivsufsort

    sa = pydivsufsort.divsufsort(data)
    if remove == "all_but_first":
        lpf = pydivsufsort.longest_previous_factor(data, sa)
        del sa
        return lpf.astype(np.int32, copy=False)
    lcp = pydivsufsort.kasai(data, sa)  # lcp[i] = LCP(sa[i], sa[i+1]); last = 0
    # best[i] = max(lcp[i], lcp[i-1]), in place from the end in chunks (reads are not yet written).
    for stop in range(len(lcp), 1, -_CHUNK):
        start = max(1, stop - _CHUNK)
        np.maximum(lcp[start:stop], lcp[start - 1 : stop - 1], out=lcp[start:stop])
    m = np.empty(len(data), dtype=np.int32)
    m[sa] = lcp
    return m


def _space_table() -> np.ndarray:
    """Code point -> str.isspace(), for code points up to U+3000 (the last space)."""
    return np.array([chr(cp).isspace() for cp in range(0x3001)], dtype=bool)


_PY_SPACE = _space_table()


def _find_spans(text: str, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token character spans by searching each token after the previous one (slow path)."""
    starts, ends = [], []
    pos = 0
    for tok in tokens:
        at = text.find(tok, pos)
        if at < 0:  # a segmenter returned something that is not a substring: skip it
            continue
        starts.append(at)
        pos = at + len(tok)
        ends.append(pos)
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


def token_byte_spans(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) byte offsets in text.encode() of each `split_words` token.

    Tokens cover every non-space character in order, so when their concatenation equals the
    text without whitespace, token i is found by cumulative lengths among the non-space
    characters, without a Python loop per token; otherwise each token is searched for.
    """
    tokens = split_words(text)
    if not tokens:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if text.isascii():
        cps = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    else:
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if "".join(tokens) == "".join(text.split()):
        if cps.dtype == np.uint8:
            nonspace = np.flatnonzero(~_PY_SPACE[cps])
        else:
            nonspace = np.flatnonzero(~_PY_SPACE[np.minimum(cps, 0x3000)] | (cps > 0x3000))
        ends = np.cumsum(np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens)))
        s = nonspace[np.concatenate(([0], ends[:-1]))]
        e = nonspace[ends - 1] + 1
    else:
        s, e = _find_spans(text, tokens)
    if cps.dtype == np.uint32:
        widths = 1 + (cps >= 0x80).astype(np.int64) + (cps >= 0x800) + (cps >= 0x10000)
        offsets = np.concatenate(([0], np.cumsum(widths)))
        s, e = offsets[s], offsets[e]
    return s, e


def merge_ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of [starts, ends) intervals given sorted by start: merged (starts, ends)."""
    if len(starts) < 2:
        return starts, ends
    reach = np.maximum.accumulate(ends)
    new = np.ones(len(starts), dtype=bool)
    new[1:] = starts[1:] > reach[:-1]
    idx = np.flatnonzero(new)
    last = np.append(idx[1:], len(starts)) - 1
    return starts[idx], reach[last]


def clip_to_documents(m: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
    """m(p) = min(m(p), end of p's document - p), in place (0 on separators)."""
    for a in range(0, len(m), _CHUNK):
        pos = np.arange(a, min(len(m), a + _CHUNK), dtype=np.int64)
        doc = np.searchsorted(starts, pos, side="right") - 1
        np.minimum(m[a : a + len(pos)], ends[doc] - pos, out=m[a : a + len(pos)], casting="unsafe")


def _windows(m: np.ndarray, lb: int, by_match: bool) -> tuple[np.ndarray, np.ndarray]:
    """Union of [p, p + (m(p) if by_match else lb)) over the p with m(p) >= lb (chunked)."""
    found_s, found_e = [], []
    for a in range(0, len(m), _CHUNK):
        p = np.flatnonzero(m[a : a + _CHUNK] >= lb) + a
        if len(p):
            s, e = merge_ranges(p, p + (m[p] if by_match else lb))
            found_s.append(s)
            found_e.append(e)
    if not found_s:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return merge_ranges(np.concatenate(found_s), np.concatenate(found_e))


def _snap(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Offsets moved forward past UTF-8 continuation bytes (at most 3) to a character start."""
    for _ in range(3):
        cont = (data[pos] & 0xC0) == 0x80
        if not cont.any():
            break
        pos = pos + cont
    return pos


def repeated_ranges(
    data: np.ndarray, m: np.ndarray, cfg: SubstringDedupConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Merged byte ranges [s, e) of `data` inside repeated spans (m already clipped)."""
    if cfg.unit == "bytes":
        s, e = _windows(m, cfg.min_bytes, by_match=False)
        s, e = _snap(data, s), _snap(data, e)  # ends stop at the 0xFF after the document
        keep = e > s
        return merge_ranges(s[keep], e[keep])
    n = cfg.min_tokens
    # Only windows [p, p + m(p)) with m(p) >= n can hold n repeated tokens (a token is >= 1
    # byte). Each is widened to whitespace or separators (token boundaries) and tokenised alone.
    ws, we = _windows(m, n, by_match=True)
    if not len(ws):
        return ws, we
    bounds = np.flatnonzero(_BOUNDARY[data])  # the last byte is a separator, so never empty
    before = np.searchsorted(bounds, ws, side="right") - 1
    ws = np.where(before >= 0, bounds[np.maximum(before, 0)] + 1, 0)
    we = bounds[np.searchsorted(bounds, we, side="left")]
    ws, we = merge_ranges(ws, np.maximum.accumulate(we))
    found_s, found_e = [], []
    for a, b in zip(ws.tolist(), we.tolist(), strict=True):
        ts, te = token_byte_spans(data[a:b].tobytes().decode("utf-8"))
        if len(ts) < n:
            continue
        span = te[n - 1 :] - ts[: len(ts) - n + 1]
        first = ts[: len(ts) - n + 1] + a
        hit = m[first] >= span
        found_s.append(first[hit])
        found_e.append(first[hit] + span[hit])
    if not found_s:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return merge_ranges(np.concatenate(found_s), np.concatenate(found_e))


# --- phases ------------------------------------------------------------------------------------


def _utf8_column(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(data bytes, offsets[n + 1]) of the text column, nulls as empty strings."""
    col = pc.fill_null(table.column(TEXT), "").cast(pa.large_string()).combine_chunks()
    _, offsets, data = col.buffers()
    if offsets is None or not len(col):
        return np.empty(0, np.uint8), np.zeros(1, np.int64)
    off = np.frombuffer(offsets, dtype=np.int64)[col.offset : col.offset + len(col) + 1]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    return raw, off


def _shard_bytes(shard: ShardRef, *, fs: fsspec.AbstractFileSystem) -> int:
    """UTF-8 bytes of a shard's texts plus one separator per document."""
    total = 0
    for batch in shard.iter_batches(fs, columns=[TEXT]):
        lengths = pc.binary_length(pc.fill_null(batch.column(TEXT), ""))
        total += int(pc.sum(lengths).as_py() or 0) + batch.num_rows
    return total


def plan_groups(sizes: list[tuple[int, int]], bound: int) -> list[list[int]]:
    """Consecutive shards (index, bytes) packed into groups of at most `bound` bytes each."""
    groups: list[list[int]] = []
    used = bound + 1
    for index, size in sizes:
        if used + size > bound:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += size
    return groups


def _dedup_group(
    item: tuple[int, list[ShardRef]],
    *,
    fs: fsspec.AbstractFileSystem,
    work_dir: str,
    cfg: SubstringDedupConfig,
) -> dict[str, Any]:
    """Phase 2: suffix array over one group; write each document's repeated byte ranges."""
    group, shards = item
    pieces, owners, counts = [], [], []
    for shard in shards:
        raw, off = _utf8_column(shard.read(fs, columns=[TEXT]))
        pieces.append((raw, off))
        counts.append(len(off) - 1)
        owners += [(shard.index, r) for r in range(len(off) - 1)]
    total = sum(int(off[-1] - off[0]) + len(off) - 1 for _, off in pieces)
    data = np.empty(total, dtype=np.uint8)
    starts = np.empty(len(owners), dtype=np.int64)
    pos = d = 0
    for raw, off in pieces:
        for a, b in zip(off[:-1].tolist(), off[1:].tolist(), strict=True):
            data[pos : pos + b - a] = raw[a:b]
            starts[d] = pos
            pos += b - a
            data[pos] = SEPARATOR
            pos += 1
            d += 1
    del pieces
    ends = np.append(starts[1:] - 1, total - 1) if len(starts) else starts  # separators
    if total:
        m = match_lengths(data, cfg.remove)
        clip_to_documents(m, starts, ends)
        rs, re_ = repeated_ranges(data, m, cfg)
        del m
    else:
        rs = re_ = np.empty(0, np.int64)
    doc = np.searchsorted(starts, rs, side="right") - 1
    out = np.empty(len(rs), dtype=RANGE_RECORD)
    owner = np.asarray(owners, dtype=np.int64).reshape(-1, 2)
    out["row"] = owner[doc, 1]
    out["start"] = rs - starts[doc]
    out["end"] = re_ - starts[doc]
    keys = owner[doc, 0]
    write_keyed(fs, f"{work_dir}/ranges/{group:05d}.bin", out, keys, key="shard")
    return {
        "group": group,
        "rows": {str(s.index): int(n) for s, n in zip(shards, counts, strict=True)},
        "documents": len(owners),
        "bytes": total - len(owners),
        "bytes_removed": int((out["end"].astype(np.int64) - out["start"]).sum()),
        "spans": len(out),
        "documents_touched": len(np.unique(doc)),
    }


class SubstringDedupStage(GlobalStage):
    """ExactSubstr-style span removal within size-bounded shard groups; rewrites `text`."""

    config_cls = SubstringDedupConfig
    threshold_keys = frozenset({"min_length"})
    score_columns = (TEXT, CHARS_REMOVED, SPANS_REMOVED)

    config: SubstringDedupConfig

    def prepare(self, ctx: GlobalContext, shards: list[ShardRef]) -> dict[str, Any]:
        cfg, fs, work = self.config, ctx.fs, ctx.work_dir
        present = sorted((s for s in shards if s.path is not None), key=lambda s: s.index)
        sizes = ctx.map(partial(_shard_bytes, fs=fs), present)
        groups = plan_groups(
            [(s.index, z) for s, z in zip(present, sizes, strict=True)], cfg.max_group_bytes
        )
        by_index = {s.index: s for s in present}
        stats = ctx.map(
            partial(_dedup_group, fs=fs, work_dir=work, cfg=cfg),
            [(g, [by_index[i] for i in members]) for g, members in enumerate(groups)],
        )
        group_of = {str(i): g for g, members in enumerate(groups) for i in members}
        rows = {k: v for s in stats for k, v in s.pop("rows").items()}
        write_manifest(fs, work, {"group": group_of, "rows": rows})
        total = sum(s["bytes"] for s in stats)
        removed = sum(s["bytes_removed"] for s in stats)
        bytes_per_byte = 21 if cfg.remove == "all_but_first" else 13
        return {
            "documents": sum(s["documents"] for s in stats),
            "bytes": total,
            "bytes_removed": removed,
            "bytes_removed_frac": removed / total if total else 0.0,
            "spans": sum(s["spans"] for s in stats),
            "documents_touched": sum(s["documents_touched"] for s in stats),
            "groups": len(groups),
            "largest_group_bytes": max((s["bytes"] + s["documents"] for s in stats), default=0),
            "oversized_groups": sum(
                1 for s in stats if s["bytes"] + s["documents"] > cfg.max_group_bytes
            ),
            "span_bytes": cfg.min_bytes if cfg.unit == "bytes" else None,
            "peak_bytes_per_group_byte": bytes_per_byte,
        }

    def score_shard(self, ctx: GlobalContext, shard: ShardRef, table: pa.Table) -> pa.Table:
        n = table.num_rows
        manifest = read_manifest(ctx.fs, ctx.work_dir, shard.index, n)
        group = manifest["group"].get(str(shard.index))
        path = f"{ctx.work_dir}/ranges/{group:05d}.bin"
        ranges = (
            read_keyed(ctx.fs, path, shard.index, RANGE_RECORD, key="shard")
            if group is not None and n
            else np.empty(0, RANGE_RECORD)
        )
        texts = table.column(TEXT).to_pylist() if n else []
        chars = np.zeros(n, dtype=np.int64)
        spans = np.zeros(n, dtype=np.int32)
        if len(ranges):
            ranges = np.sort(ranges, order=["row", "start"])
            rows, first = np.unique(ranges["row"], return_index=True)
            bounds = np.append(first[1:], len(ranges))
            for row, a, b in zip(rows.tolist(), first.tolist(), bounds.tolist(), strict=True):
                old = texts[row]
                new = cut(old.encode("utf-8"), ranges["start"][a:b], ranges["end"][a:b])
                texts[row] = new
                chars[row] = len(old) - len(new)
                spans[row] = b - a
        return with_columns(
            table,
            {
                TEXT: pa.array(texts, type=pa.string()),
                CHARS_REMOVED: pa.array(chars, type=pa.int64()),
                SPANS_REMOVED: pa.array(spans, type=pa.int32()),
            },
        )

    def keep(self, table: pa.Table) -> pa.Array:
        edited = table.column(SPANS_REMOVED).to_numpy(zero_copy_only=False) > 0
        left = pc.utf8_length(pc.utf8_trim_whitespace(pc.fill_null(table.column(TEXT), "")))
        left = left.to_numpy(zero_copy_only=False)
        short = edited & (left < max(1, self.config.min_length))
        return reasons_from_checks(table.num_rows, [(short, REASON_EMPTY)])


def cut(data: bytes, starts: np.ndarray, ends: np.ndarray) -> str:
    """`data` without the sorted, disjoint byte ranges [starts, ends), decoded."""
    out, pos = [], 0
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        out.append(data[pos:a])
        pos = b
    out.append(data[pos:])
    return b"".join(out).decode("utf-8")
