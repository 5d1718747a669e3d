"""Keyed record files: one numpy structured array per file, grouped by an integer key.

The shuffle between counting phases writes each chunk of hashes once, grouped by (metric,
partition), and each reader seeks to just its key: far fewer files than one per (writer, key).
Layout: b"PSK1", u64 header length, JSON {dtype, keys, counts}, then the records by key.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

MAGIC = b"PSK1"


def write_keyed(fs: Any, path: str, records: np.ndarray, keys: np.ndarray) -> int:
    """Write `records` grouped by `keys` (stable within a key); returns bytes written."""
    if keys.size and keys.min() >= 0 and keys.max() < 1 << 16:
        keys = keys.astype(np.uint16)  # numpy's stable sort is a radix sort for 16-bit keys
    order = np.argsort(keys, kind="stable")
    records = records[order]
    uniq, counts = np.unique(keys[order], return_counts=True)
    header = json.dumps(
        {
            "dtype": records.dtype.descr,
            "keys": uniq.tolist(),
            "counts": counts.tolist(),
        }
    ).encode()
    with fs.open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", len(header)) + header)
        f.write(memoryview(np.ascontiguousarray(records)).cast("B"))  # no extra copy
    return len(header) + records.nbytes + 12


class KeyedReader:
    """Reads the slices of one keyed file; the header is parsed once."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs, self.path = fs, path
        with fs.open(path, "rb") as f:
            head = f.read(12)
            if head[:4] != MAGIC:
                raise ValueError(f"{path} is not a keyed record file")
            (size,) = struct.unpack("<Q", head[4:])
            meta = json.loads(f.read(size))
        self.dtype = np.dtype([tuple(x) for x in meta["dtype"]])
        counts = np.asarray(meta["counts"], dtype=np.int64)
        self.keys = np.asarray(meta["keys"], dtype=np.int64)
        self.counts = counts
        self.starts = (
            12 + size + np.concatenate([[0], np.cumsum(counts)[:-1]]) * self.dtype.itemsize
        )

    def read(self, key: int) -> np.ndarray:
        """The records of `key` (empty if the file has none)."""
        i = int(np.searchsorted(self.keys, key))
        if i >= self.keys.size or self.keys[i] != key:
            return np.empty(0, dtype=self.dtype)
        with self.fs.open(self.path, "rb") as f:
            f.seek(int(self.starts[i]))
            data = f.read(int(self.counts[i]) * self.dtype.itemsize)
        return np.frombuffer(data, dtype=self.dtype)
