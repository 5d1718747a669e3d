"""Keyed record files: the one on-disk format of every shuffle between phases of a global stage.

A writer groups a numpy record array by an integer key (a hash partition, a shard, a file) into
one file; each reader seeks to just its key's slice. One file per writer, not one per (writer,
key), so a shuffle of W writers and P partitions makes W files instead of W x P.

Layout (little-endian):

    b"CURATEKR"              magic
    u32 version              FORMAT_VERSION
    u64 n                    length of the JSON header
    n bytes                  {"key": what the key is, "dtype": the record dtype (numpy descr),
                              "keys": [sorted distinct keys], "counts": [records per key]}
    records                  grouped by key in `keys` order, each group in its input order

Files are written atomically (io/atomic.py). Readers check the magic, the version, and, where
the caller says what it expects, the key and the record dtype: a stale or foreign work file gives
one clear error naming the file instead of garbage records.
"""

from __future__ import annotations

import json
import struct

import fsspec
import numpy as np
from numpy.lib.format import descr_to_dtype, dtype_to_descr

from pipeline.errors import CurateError
from pipeline.io.atomic import atomic_write

MAGIC = b"CURATEKR"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")  # magic, version, header length


class KeyedFileError(CurateError):
    """A keyed record file is not what its reader expects (foreign, stale, truncated)."""


def write_keyed(
    fs: fsspec.AbstractFileSystem, path: str, records: np.ndarray, keys: np.ndarray, *, key: str
) -> None:
    """Write `records` grouped by the non-negative integer `keys` (stable within a key),
    atomically; `key` names what the keys are (checked by readers)."""
    keys = np.asarray(keys)
    if keys.size and keys.min() >= 0 and keys.max() < 1 << 16:
        keys = keys.astype(np.uint16)  # numpy's stable sort is a radix sort for 16-bit keys
    order = np.argsort(keys, kind="stable")
    records = np.ascontiguousarray(records[order])
    uniq, counts = np.unique(keys[order], return_counts=True)
    header = json.dumps(
        {
            "key": key,
            "dtype": dtype_to_descr(records.dtype),
            "keys": uniq.tolist(),
            "counts": counts.tolist(),
        }
    ).encode()
    with atomic_write(fs, path) as f:
        f.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header)
        f.write(memoryview(records).cast("B"))  # no extra copy


class KeyedFile:
    """One keyed record file, its header read and checked once; slices read on demand."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        path: str,
        *,
        key: str,
        dtype: np.dtype | None = None,
    ) -> None:
        self.fs, self.path = fs, path
        with fs.open(path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
                raise KeyedFileError(f"{path}: not a keyed record file (bad magic)")
            _, version, size = _PREFIX.unpack(prefix)
            if version != FORMAT_VERSION:
                raise KeyedFileError(
                    f"{path}: keyed record file version {version}, this pipeline reads version"
                    f" {FORMAT_VERSION}; delete the stale work directory"
                )
            meta = json.loads(f.read(size))
        self.dtype = descr_to_dtype(meta["dtype"])
        if meta["key"] != key:
            raise KeyedFileError(f"{path}: records keyed by {meta['key']!r}, expected {key!r}")
        if dtype is not None and self.dtype != dtype:
            raise KeyedFileError(f"{path}: records of dtype {self.dtype}, expected {dtype}")
        self.keys = np.asarray(meta["keys"], dtype=np.int64)
        self.counts = np.asarray(meta["counts"], dtype=np.int64)
        first = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.starts = _PREFIX.size + size + first * self.dtype.itemsize

    def count(self, k: int) -> int:
        """Number of records under key `k` (0 if none)."""
        i = int(np.searchsorted(self.keys, k))
        return int(self.counts[i]) if i < self.keys.size and self.keys[i] == k else 0

    def read_into(self, k: int, buf: memoryview) -> int:
        """Copy key `k`'s records into the byte buffer `buf`; returns the records copied."""
        i = int(np.searchsorted(self.keys, k))
        if i >= self.keys.size or self.keys[i] != k:
            return 0
        nbytes = int(self.counts[i]) * self.dtype.itemsize
        with self.fs.open(self.path, "rb") as f:
            f.seek(int(self.starts[i]))
            got = f.readinto(buf[:nbytes])
        if got != nbytes:
            raise KeyedFileError(f"{self.path}: truncated keyed record file")
        return int(self.counts[i])

    def read(self, k: int) -> np.ndarray:
        """The records of key `k` (empty if the file has none)."""
        out = np.empty(self.count(k), dtype=self.dtype)
        if out.size:
            self.read_into(k, memoryview(out.view(np.uint8).reshape(-1)))
        return out


def read_keyed(
    fs: fsspec.AbstractFileSystem, paths: str | list[str], k: int, dtype: np.dtype, *, key: str
) -> np.ndarray:
    """The records written under key `k`, concatenated over `paths` in order.

    Headers are read first, then every slice straight into one preallocated array, so the peak
    is the result itself (no per-file copies to concatenate).
    """
    files = [
        KeyedFile(fs, p, key=key, dtype=dtype)
        for p in ([paths] if isinstance(paths, str) else paths)
    ]
    counts = [f.count(k) for f in files]
    out = np.empty(sum(counts), dtype=dtype)
    buf = memoryview(out.view(np.uint8).reshape(-1))
    pos = 0
    for f, count in zip(files, counts, strict=True):
        if count:
            f.read_into(k, buf[pos:])
            pos += count * dtype.itemsize
    return out
