"""Persistent dedup index: what earlier runs saw, so a later run removes what duplicates it.

`exact_dedup.index` keeps document hashes, `minhash_dedup.index` keeps LSH band records, both
hash-partitioned exactly as the stage's shuffle, so a partition task reads only its slice.

On-disk layout under the index path (local or any fsspec URL):

    manifest.json                 {"format": 1, "stage": "exact_dedup" | "minhash_dedup",
                                   "params": {what the records depend on: banding, seed, shingles,
                                              normalisation, ...},
                                   "partitions": P, "version": V,
                                   "segments": [{"id": "000001", "records": n, "documents": d,
                                                 "run": the writing run's identity}, ...]}
    segments/<id>/part-XXXXX.bin  one keyed record file (io/shuffle.py) per partition holding the
                                  records with `partition` = hash mod P

Only the segments listed in the manifest exist for readers. An update writes a new segment
directory, then commits it by rewriting the manifest atomically (version + 1): a killed update
leaves the previous manifest, hence the previous index, intact, and the orphan directory is
overwritten by the next update. A run whose parameters differ from the manifest's is refused
with one line naming the key. A segment written by the same run (work directory and input
shards: an interrupted prepare that had already committed, rerun) is replaced, never matched
against itself; the same work directory over other shards (an overwritten output) appends. One
writer at a time: a commit that finds the manifest changed since it was read fails.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import fsspec
import numpy as np

from pipeline.errors import CurateError
from pipeline.io.atomic import read_json, write_json_atomic
from pipeline.io.shuffle import read_keyed, write_keyed
from pipeline.stages.global_base import ShardRef

FORMAT = 1
MANIFEST = "manifest.json"
IndexMode = Literal["read", "update"]

# MinHash index documents become graph nodes with keys below every run key (negative), so that
# the smallest key of a cluster, its id, is an indexed document whenever it holds one:
# INT64_MIN + (segment number << 52 | the document's key in the run that indexed it).
SEGMENT_SHIFT = 52
MAX_SEGMENTS = (1 << (63 - SEGMENT_SHIFT)) - 1
_INT64_MIN = np.int64(np.iinfo(np.int64).min)


class DedupIndexError(CurateError):
    """A dedup index is missing, foreign, built with other parameters, or changed meanwhile."""


@dataclass
class DedupIndex:
    """One dedup index as this run sees it: the committed segments it reads (its own excluded)."""

    fs: fsspec.AbstractFileSystem
    path: str
    stage: str
    params: dict[str, Any]
    partitions: int
    mode: IndexMode
    run: str
    version: int = 0
    segments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def segment_number(self) -> int:
        """Number of the segment this run writes (update mode): one past the highest kept."""
        return max((int(s["id"]) for s in self.segments), default=0) + 1

    @property
    def documents(self) -> int:
        """Documents in the segments this run reads."""
        return sum(int(s["documents"]) for s in self.segments)

    def part_path(self, segment: int | str, part: int) -> str:
        """The partition `part` file of a segment."""
        return f"{self.path}/segments/{int(segment):06d}/part-{part:05d}.bin"

    def read(
        self,
        part: int,
        dtype: np.dtype,
        select: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> np.ndarray:
        """The committed records of partition `part`, oldest segment first; with `select` (a
        mask function) only those it keeps, one segment at a time, so the peak is one
        segment's slice plus the selection, not the whole index's slice."""
        out = []
        for segment in self.segments:
            path = self.part_path(segment["id"], part)
            records = read_keyed(self.fs, path, part, dtype, key="partition")
            out.append(records if select is None else records[select(records)])
        return np.concatenate(out) if out else np.empty(0, dtype=dtype)

    def write(self, part: int, records: np.ndarray) -> None:
        """This run's records of partition `part`, in its new (uncommitted) segment."""
        keys = np.full(len(records), part, dtype=np.int64)
        path = self.part_path(self.segment_number, part)
        write_keyed(self.fs, path, records, keys, key="partition")

    def commit(self, records: int, documents: int) -> dict[str, Any]:
        """Publish this run's segment by an atomic manifest write; the manifest written."""
        current = _read_manifest(self.fs, self.path)
        found = 0 if current is None else int(current["version"])
        if found != self.version:
            raise DedupIndexError(
                f"{self.stage}.index {self.path}: changed by another run while this one ran"
                f" (version {self.version} -> {found}); rerun to build on the new version"
            )
        segment = {
            "id": f"{self.segment_number:06d}",
            "records": int(records),
            "documents": int(documents),
            "run": self.run,
        }
        manifest = {
            "format": FORMAT,
            "stage": self.stage,
            "params": self.params,
            "partitions": self.partitions,
            "version": self.version + 1,
            "segments": [*self.segments, segment],
        }
        write_json_atomic(self.fs, posixpath.join(self.path, MANIFEST), manifest)
        return manifest


class IndexedConfig(Protocol):
    """A dedup stage config with an index: its `index`, `index_mode` and record parameters."""

    stage: str
    index: str | None
    index_mode: IndexMode

    def index_params(self) -> dict[str, Any]: ...


def open_index(
    cfg: IndexedConfig, *, partitions: int, work: str, shards: list[ShardRef]
) -> DedupIndex | None:
    """The index of `cfg.index` checked against `cfg.index_params()` (None without one); a new
    empty one for `update` where none exists (with `partitions`), an error for `read`. The run
    is identified by its work directory and input shards."""
    if cfg.index is None:
        return None
    inputs = json.dumps([(s.index, s.path, s.num_rows) for s in shards]).encode()
    run = f"{work} {hashlib.sha256(inputs).hexdigest()[:16]}"
    url, mode, params, stage = cfg.index, cfg.index_mode, cfg.index_params(), cfg.stage
    fs, path = fsspec.core.url_to_fs(url)
    path = path.rstrip("/")
    manifest = _read_manifest(fs, path)
    if manifest is None:
        if mode == "read":
            raise DedupIndexError(
                f"{stage}.index {url}: no index there (index_mode: read needs one;"
                " index_mode: update builds it)"
            )
        return DedupIndex(fs, path, stage, params, max(1, partitions), mode, run)
    if manifest.get("format") != FORMAT or manifest.get("stage") != stage:
        raise DedupIndexError(
            f"{stage}.index {url}: not a {stage} index (format {manifest.get('format')},"
            f" stage {manifest.get('stage')})"
        )
    mismatch = _first_difference(manifest["params"], params)
    if mismatch is not None:
        key, old, new = mismatch
        raise DedupIndexError(
            f"{stage}.index {url}: built with {key}={old!r}, this run has {key}={new!r};"
            f" use the same {key.split('.')[0]} or another index path"
        )
    segments = [s for s in manifest["segments"] if s.get("run") != run]
    index = DedupIndex(
        fs, path, stage, params, int(manifest["partitions"]), mode, run, int(manifest["version"])
    )
    index.segments = segments
    if mode == "update" and index.segment_number > MAX_SEGMENTS:
        raise DedupIndexError(
            f"{stage}.index {url}: {MAX_SEGMENTS} segments is the most an index holds;"
            " rebuild it in one run"
        )
    return index


def finish_run(
    index: DedupIndex, *, matched: int, in_run: int, appended: int, records: int
) -> dict[str, Any]:
    """Commit this run's segment (update mode) and return the report's index figures: documents
    that matched the index vs duplicates within the new data."""
    version = index.version
    if index.mode == "update":
        version = index.commit(records=records, documents=appended)["version"]
    return {
        "index": index.path,
        "index_mode": index.mode,
        "index_version": version,
        "index_documents_before": index.documents,
        "index_matched": matched,
        "duplicates_in_run": in_run,
        "index_appended": appended if index.mode == "update" else 0,
    }


def in_sorted(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Mask of `values` found in the sorted array `sorted_keys` (a binary search each: no
    np.isin, whose hash-based unique is several times slower on 64-bit hashes)."""
    if not len(sorted_keys):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[pos] == values


def virtual_keys(keys: np.ndarray, segment: int) -> np.ndarray:
    """Graph keys of indexed documents: below every run key, ordered by (segment, run key)."""
    if len(keys) and int(keys.max()) >> SEGMENT_SHIFT:
        raise DedupIndexError(
            f"document key {int(keys.max())} too large for an index (at most"
            f" {1 << (SEGMENT_SHIFT - 32)} shards per run)"
        )
    with np.errstate(over="ignore"):
        return _INT64_MIN + ((np.int64(segment) << SEGMENT_SHIFT) | keys.astype(np.int64))


def _first_difference(
    built: dict[str, Any], wanted: dict[str, Any], prefix: str = ""
) -> tuple[str, Any, Any] | None:
    """(dotted key, built value, wanted value) of the first parameter that differs, or None."""
    for key in sorted(set(built) | set(wanted)):
        old, new = built.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found = _first_difference(old, new, f"{prefix}{key}.")
            if found is not None:
                return found
        elif old != new:
            return f"{prefix}{key}", old, new
    return None


def _read_manifest(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any] | None:
    """The committed manifest, or None where there is no index yet."""
    manifest = posixpath.join(path, MANIFEST)
    return read_json(fs, manifest) if fs.exists(manifest) else None
