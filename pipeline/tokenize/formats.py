"""Token shard files: Megatron-LM's indexed dataset (.bin + .idx) and nanoGPT's flat array.

Megatron `.idx` (little-endian), as megatron/core/datasets/indexed_dataset.py reads it:

    b"MMIDIDX\\x00\\x00"   magic (9 bytes)
    <Q 1                  version
    <B code               token dtype: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64,
                          7 float32, 8 uint16
    <Q n                  sequences (one per document here)
    <Q n + 1              entries of the document index
    int32[n]              sequence lengths (tokens)
    int64[n]              sequence pointers (byte offsets into .bin)
    int64[n + 1]          document index: 0, 1, ..., n (sequence i is document i)

`.bin` is the documents' tokens back to back. nanoGPT: `.bin` is the same flat array (uint16 when
the vocabulary fits, else uint32) and `<name>.json` a manifest of dtype, counts and the
documents' token offsets. Every file is written atomically (io/atomic.py).
"""

from __future__ import annotations

import struct
from typing import Any

import fsspec
import numpy as np

from pipeline.io.atomic import AtomicFile, atomic_write, write_json_atomic

FORMATS = ("megatron", "nanogpt")
MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
MEGATRON_CODES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.int8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.int64): 5,
    np.dtype(np.float64): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.uint16): 8,
}


def token_dtype(fmt: str, vocab_size: int) -> np.dtype:
    """The token dtype of a format for a vocabulary: Megatron's own rule (uint16 below 65,500
    ids, else int32), nanoGPT's (uint16 when every id fits, else uint32)."""
    if fmt == "megatron":
        return np.dtype(np.uint16 if vocab_size < 65_500 else np.int32)
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def shard_files(fmt: str, name: str) -> tuple[str, str]:
    """The two files of shard `name`: the token array and its index (Megatron) or manifest."""
    return f"{name}.bin", f"{name}.idx" if fmt == "megatron" else f"{name}.json"


class ShardFile:
    """One output shard streamed to disk: documents appended in order, then `finish()` commits
    the token array and writes the index last (so a visible index always has its tokens)."""

    def __init__(
        self, fs: fsspec.AbstractFileSystem, root: str, name: str, fmt: str, dtype: np.dtype
    ) -> None:
        self.fs, self.root, self.name, self.fmt, self.dtype = fs, root, name, fmt, dtype
        bin_name, self.index_name = shard_files(fmt, name)
        self.bin = AtomicFile(fs, f"{root}/{bin_name}")
        self.stream = self.bin.open()
        self.sizes: list[np.ndarray] = []
        self.tokens = 0

    def append(self, tokens: np.ndarray, sizes: np.ndarray) -> None:
        """Append documents: their tokens back to back and each one's length."""
        if not len(sizes):
            return
        self.stream.write(memoryview(np.ascontiguousarray(tokens, self.dtype)).cast("B"))
        self.sizes.append(np.asarray(sizes, np.int64))
        self.tokens += int(tokens.size)

    def finish(self) -> dict[str, Any]:
        """Commit the shard; returns its name, documents and tokens."""
        self.stream.close()
        self.bin.commit()
        sizes = np.concatenate(self.sizes) if self.sizes else np.zeros(0, np.int64)
        path = f"{self.root}/{self.index_name}"
        if self.fmt == "megatron":
            write_megatron_index(self.fs, path, sizes, self.dtype)
        else:
            offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            write_json_atomic(
                self.fs,
                path,
                {
                    "format": "nanogpt",
                    "dtype": self.dtype.name,
                    "documents": int(sizes.size),
                    "tokens": self.tokens,
                    "document_offsets": offsets.tolist(),
                },
            )
        return {"name": self.name, "documents": int(sizes.size), "tokens": self.tokens}

    def discard(self) -> None:
        """Drop the unfinished shard (its temporary file)."""
        self.stream.close()
        self.bin.discard()


def write_megatron_index(
    fs: fsspec.AbstractFileSystem, path: str, sizes: np.ndarray, dtype: np.dtype
) -> None:
    """The `.idx` of documents with token counts `sizes`, one sequence per document."""
    n = int(sizes.size)
    pointers = np.zeros(n, np.int64)
    if n:
        pointers[1:] = np.cumsum(sizes[:-1], dtype=np.int64) * dtype.itemsize
    with atomic_write(fs, path) as f:
        f.write(MEGATRON_MAGIC)
        f.write(struct.pack("<QBQQ", 1, MEGATRON_CODES[dtype], n, n + 1))
        f.write(np.asarray(sizes, np.int32).tobytes())
        f.write(pointers.tobytes())
        f.write(np.arange(n + 1, dtype=np.int64).tobytes())


class ShardSplitter:
    """Writes documents into shards `<stem>-000`, `<stem>-001`, ...: a new shard starts when the
    next document would take the current one past `max_tokens` (None: one shard)."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        root: str,
        stem: str,
        fmt: str,
        dtype: np.dtype,
        max_tokens: int | None,
    ) -> None:
        self.fs, self.root, self.stem, self.fmt, self.dtype = fs, root, stem, fmt, dtype
        self.max_tokens = max_tokens
        self.done: list[dict[str, Any]] = []
        self.current: ShardFile | None = None

    def _open(self) -> ShardFile:
        name = f"{self.stem}-{len(self.done):03d}"
        self.current = ShardFile(self.fs, self.root, name, self.fmt, self.dtype)
        return self.current

    def append(self, tokens: np.ndarray, sizes: np.ndarray) -> None:
        """Append documents (tokens back to back, their lengths), splitting at documents."""
        shard = self.current or self._open()
        if self.max_tokens is None:
            shard.append(tokens, sizes)
            return
        ends = np.cumsum(sizes, dtype=np.int64)
        start = 0  # first document not yet written
        while start < sizes.size:
            base = int(ends[start - 1]) if start else 0
            room = self.max_tokens - shard.tokens
            stop = int(np.searchsorted(ends, base + room, side="right"))
            if stop == start and shard.tokens == 0:
                stop = start + 1  # a document longer than a shard gets a shard of its own
            if stop > start:
                shard.append(tokens[base : int(ends[stop - 1])], sizes[start:stop])
                start = stop
            if start < sizes.size:
                self.done.append(shard.finish())
                shard = self._open()

    def finish(self) -> list[dict[str, Any]]:
        """Commit the last shard; a shard without documents is not written."""
        if self.current is not None:
            if self.current.sizes:
                self.done.append(self.current.finish())
            else:
                self.current.discard()
        self.current = None
        return self.done

    def discard(self) -> None:
        if self.current is not None:
            self.current.discard()
