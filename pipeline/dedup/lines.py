"""`line_dedup`: CCNet-style removal of lines already seen in the same group of shards.

ALGORITHMS.md 3.3. A line is a piece of `text.split("\\n")`. Its key is the 64-bit xxh3 of its
normalised form (preset `ccnet`: strip, lowercase, digits -> 0, Unicode punctuation and
non-printing characters removed); a line that normalises to "" (blank, or punctuation only) is
never a duplicate. Shards are pooled in groups of `group_size` consecutive shards (null = one group
for the whole corpus; CCNet used 50 of a dump's 1,600). Within a group, `keep` decides:

- `first` (default): every occurrence of a key after the first (in doc_key = shard.index << 32 |
  row, then line order) is dropped, whether it is in another document or earlier in the same one.
- `none` (CCNet's rule): every occurrence of a key that occurs in more than one document of the
  group is dropped, the first included; a line repeated only inside one document stays.

prepare(): phase 1 per shard writes (hash, doc_key, line_no) records (20 B) keyed by
(group, hash mod P); phase 2 per (group, partition) concatenates its slices in doc_key order, sorts
stably by hash and writes the dropped occurrences as (row << 32 | line_no) keyed by shard.
Memory: phase 1 holds 20 B per non-blank line of its shard; phase 2 peaks at ~64 B per line of
its (group, partition) (63 B measured on 10^6 lines, half of them repeats), i.e. ~64 x L / P for
L lines in a group. 64-bit keys: expected colliding pairs ~L^2 / 2^65, ~0.03 at 10^9 distinct
lines per group (a collision drops one line wrongly, not a document).

score_shard() removes the dropped lines; where lines were removed, runs of blank lines left behind
collapse to one blank line and outer newlines are trimmed, then a document that ended with a
newline gets one back (so it ends like an untouched document). A document that lost lines and is left
with fewer than `min_length` characters (or none) is rejected `line_dedup_too_short` (CCNet: 300 for
every document; untouched short documents are left to the quality stages here).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Literal

import fsspec
import numpy as np
import pyarrow as pa
import xxhash
from pydantic import Field

from pipeline.dedup.workfiles import ROW_BITS, ROW_MASK, read_manifest, shard_path, write_manifest
from pipeline.io.shuffle import read_keyed, write_keyed
from pipeline.schema import TEXT
from pipeline.stages.base import StageConfig, reasons_from_checks
from pipeline.stages.global_base import GlobalContext, GlobalStage, ShardRef
from pipeline.text.batch import with_columns
from pipeline.text.normalize import NormSpec, normalize_lines

LINES_REMOVED = "line_dedup_lines_removed"
CHARS_REMOVED = "line_dedup_chars_removed"
CHARS_BEFORE = "line_dedup_chars_before"
REASON_SHORT = "line_dedup_too_short"

LINE_RECORD = np.dtype([("hash", "<u8"), ("doc", "<u8"), ("line", "<u4")])
DROP_RECORD = np.dtype("<u8")  # row << 32 | line_no
_BLANK_RUNS = re.compile(r"\n(?:[^\S\n]*\n)+")


class LineDedupConfig(StageConfig):
    """Line normalisation, the shard group pooled together, and the length left to keep a doc."""

    stage: Literal["line_dedup"] = "line_dedup"
    normalization: NormSpec = "ccnet"  # line key: preset or TextNorm switches (text/normalize.py)
    group_size: int | None = Field(default=None, ge=1)  # shards per group; null = all shards
    min_length: int = Field(default=300, ge=0)  # reject a doc that lost lines if fewer chars remain
    # Which copies of a repeated line survive: first (the first occurrence) or none (CCNet: every
    # copy of a line found in more than one document is removed).
    keep: Literal["first", "none"] = "first"


def line_hashes(text: str, normalization: NormSpec) -> tuple[list[int], list[int]]:
    """(line numbers, xxh3_64 of the normalised line) for each line that is not blank."""
    lines = normalize_lines(text, normalization)
    numbers = [j for j, line in enumerate(lines) if line]
    digest = xxhash.xxh3_64_intdigest
    return numbers, [digest(lines[j].encode("utf-8")) for j in numbers]


def remove_lines(text: str, drop: set[int]) -> str:
    """`text` without the lines numbered in `drop` (blank runs left behind collapse to one); a
    trailing newline of `text` stays when anything is left."""
    kept = [line for j, line in enumerate(text.split("\n")) if j not in drop]
    out = _BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip("\n")
    return out + "\n" if out and text.endswith("\n") else out


def _hash_shard(
    item: tuple[ShardRef, int],
    *,
    fs: fsspec.AbstractFileSystem,
    work_dir: str,
    normalization: NormSpec,
    num_partitions: int,
) -> dict[str, int]:
    """Phase 1: (hash, doc_key, line_no) for one shard, keyed by group * P + hash mod P."""
    shard, group = item
    chunks: list[np.ndarray] = []
    row = 0
    for batch in shard.iter_batches(fs, columns=[TEXT]):
        numbers: list[int] = []
        hashes: list[int] = []
        rows: list[int] = []
        for text in batch.column(TEXT).to_pylist():
            if text:
                nums, hs = line_hashes(text, normalization)
                numbers += nums
                hashes += hs
                rows += [row] * len(nums)
            row += 1
        rec = np.empty(len(hashes), dtype=LINE_RECORD)
        rec["hash"] = hashes
        rec["doc"] = (shard.index << ROW_BITS) | np.asarray(rows, dtype=np.uint64)
        rec["line"] = numbers
        chunks.append(rec)
    records = np.concatenate(chunks) if chunks else np.empty(0, dtype=LINE_RECORD)
    keys = np.uint64(group * num_partitions) + records["hash"] % np.uint64(num_partitions)
    write_keyed(
        fs, shard_path(work_dir, "hashes", shard.index), records, keys, key="group_partition"
    )
    return {"index": shard.index, "rows": row, "lines": len(records)}


def _drops_path(work_dir: str, group: int, part: int) -> str:
    return f"{work_dir}/drops/{group:05d}-{part:05d}.bin"


def _dedup_partition(
    item: tuple[int, int],
    *,
    fs: fsspec.AbstractFileSystem,
    work_dir: str,
    groups: list[list[int]],
    num_partitions: int,
    keep: str,
) -> dict[str, int]:
    """Phase 2: mark the dropped occurrences of each line hash in one (group, part): every one
    after the first (keep first), or all of a hash found in several documents (keep none)."""
    group, part = item
    key = group * num_partitions + part
    paths = [shard_path(work_dir, "hashes", s) for s in groups[group]]
    records = read_keyed(fs, paths, key, LINE_RECORD, key="group_partition")
    # Slices are in (doc_key, line) order, so a stable sort keeps the first occurrence first.
    order = np.argsort(records["hash"], kind="stable")
    hashes = records["hash"][order]
    later = np.zeros(len(order), dtype=bool)
    later[1:] = hashes[1:] == hashes[:-1]
    del hashes
    if keep == "none":
        later = _in_several_docs(records["doc"][order], later)
    dropped = order[later]
    del order
    dropped.sort()  # back to (doc_key, line) order
    doc = records["doc"][dropped]
    packed = ((doc & np.uint64(ROW_MASK)) << np.uint64(32)) | records["line"][dropped]
    shards = doc >> np.uint64(ROW_BITS)
    write_keyed(fs, _drops_path(work_dir, group, part), packed, shards, key="shard")
    return {"lines": len(records), "dropped": len(packed)}


def _in_several_docs(docs: np.ndarray, same_as_previous: np.ndarray) -> np.ndarray:
    """Per record of a hash-sorted run list (docs in doc_key order inside each run): whether its
    run spans more than one document."""
    run = np.cumsum(~same_as_previous) - 1
    new_doc = ~same_as_previous
    new_doc[1:] |= docs[1:] != docs[:-1]
    docs_per_run = np.bincount(run, weights=new_doc, minlength=int(run[-1]) + 1 if len(run) else 0)
    return docs_per_run[run] > 1


class LineDedupStage(GlobalStage):
    """Line-level exact dedup within shard groups; rewrites `text`."""

    config_cls = LineDedupConfig
    threshold_keys = frozenset({"min_length"})
    score_columns = (TEXT, LINES_REMOVED, CHARS_REMOVED, CHARS_BEFORE)

    config: LineDedupConfig

    def prepare(self, ctx: GlobalContext, shards: list[ShardRef]) -> dict[str, Any]:
        cfg, fs, work = self.config, ctx.fs, ctx.work_dir
        parts = max(1, ctx.num_partitions)
        ordered = sorted(shards, key=lambda s: s.index)
        size = cfg.group_size or max(1, len(ordered))
        group_of = {s.index: pos // size for pos, s in enumerate(ordered)}
        num_groups = (len(ordered) + size - 1) // size
        present = [s for s in ordered if s.path is not None]
        groups: list[list[int]] = [[] for _ in range(num_groups)]
        for s in present:
            groups[group_of[s.index]].append(s.index)
        hashed = ctx.map(
            partial(
                _hash_shard,
                fs=fs,
                work_dir=work,
                normalization=cfg.normalization,
                num_partitions=parts,
            ),
            [(s, group_of[s.index]) for s in present],
        )
        tasks = [(g, p) for g in range(num_groups) if groups[g] for p in range(parts)]
        stats = ctx.map(
            partial(
                _dedup_partition,
                fs=fs,
                work_dir=work,
                groups=groups,
                num_partitions=parts,
                keep=cfg.keep,
            ),
            tasks,
        )
        write_manifest(
            fs,
            work,
            {
                "partitions": parts,
                "group": {str(i): g for i, g in group_of.items()},
                "rows": {str(h["index"]): h["rows"] for h in hashed},
            },
        )
        lines = sum(s["lines"] for s in stats)
        dropped = sum(s["dropped"] for s in stats)
        return {
            "documents": sum(h["rows"] for h in hashed),
            "lines": lines,
            "lines_dropped": dropped,
            "lines_dropped_frac": dropped / lines if lines else 0.0,
            "groups": num_groups,
            "group_size": size,
            "partitions": parts,
            "max_partition_lines": max((s["lines"] for s in stats), default=0),
            "phase2_bytes_per_line": 64,
        }

    def _drops(self, ctx: GlobalContext, shard: ShardRef, n: int) -> dict[int, set[int]]:
        """row -> line numbers to drop, for one shard."""
        manifest = read_manifest(ctx.fs, ctx.work_dir, shard.index, n)
        group = manifest["group"].get(str(shard.index))
        if not n or group is None:
            return {}
        paths = [_drops_path(ctx.work_dir, group, p) for p in range(manifest["partitions"])]
        packed = read_keyed(ctx.fs, paths, shard.index, DROP_RECORD, key="shard")
        out: dict[int, set[int]] = {}
        for value in np.sort(packed).tolist():
            out.setdefault(value >> 32, set()).add(value & 0xFFFFFFFF)
        return out

    def score_shard(self, ctx: GlobalContext, shard: ShardRef, table: pa.Table) -> pa.Table:
        n = table.num_rows
        drops = self._drops(ctx, shard, n)
        texts = table.column(TEXT).to_pylist() if n else []
        removed = np.zeros(n, dtype=np.int64)
        chars_removed = np.zeros(n, dtype=np.int64)
        before = np.array([len(t) if t else 0 for t in texts], dtype=np.int64)
        for row, lines in drops.items():
            new = remove_lines(texts[row], lines)
            removed[row] = len(lines)
            chars_removed[row] = len(texts[row]) - len(new)
            texts[row] = new
        return with_columns(
            table,
            {
                TEXT: pa.array(texts, type=pa.string()),
                LINES_REMOVED: pa.array(removed, type=pa.int32()),
                CHARS_REMOVED: pa.array(chars_removed, type=pa.int64()),
                CHARS_BEFORE: pa.array(before, type=pa.int64()),
            },
        )

    def keep(self, table: pa.Table) -> pa.Array:
        removed = table.column(LINES_REMOVED).to_numpy(zero_copy_only=False) > 0
        left = table.column(CHARS_BEFORE).to_numpy(zero_copy_only=False) - table.column(
            CHARS_REMOVED
        ).to_numpy(zero_copy_only=False)
        short = removed & ((left < self.config.min_length) | (left == 0))
        return reasons_from_checks(table.num_rows, [(short, REASON_SHORT)])
