"""Atomic file writes: a file appears under its final name complete, or not at all.

Every file the pipeline writes (shards, markers, stats.json, work files of global stages) is
written under a hidden temporary name beside it, `dir/.<name>.tmp-<token>`, and renamed when
complete. The name is hidden because Arrow, Spark and `datasets` skip names starting with a dot (a
`<name>.tmp-...` beside the shards would break `pq.read_table("data/")`); it carries `TMP_MARK`
so that `remove_temp_files` deletes what an interrupted run left.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec

TMP_MARK = ".tmp-"


def temp_name(path: str) -> str:
    """A unique hidden name beside `path` for writing it: `dir/.<name>.tmp-<token>`."""
    parent, name = posixpath.split(path)
    hidden = f".{name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    return posixpath.join(parent, hidden) if parent else hidden


class AtomicFile:
    """One file written under `temp_name(path)`: `open()`, write, then `commit()` or `discard()`.

    For writers that keep the file open across calls (ShardWriter); otherwise use `atomic_write`.
    """

    def __init__(
        self, fs: fsspec.AbstractFileSystem, path: str, mode: str = "wb", **open_kwargs: Any
    ) -> None:
        self.fs, self.path, self.mode, self.open_kwargs = fs, path, mode, open_kwargs
        self.tmp_path = temp_name(path)

    def open(self) -> IO[Any]:
        """The temporary file, opened for writing (its directory created if needed)."""
        parent = posixpath.dirname(self.path)
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        return self.fs.open(self.tmp_path, self.mode, **self.open_kwargs)

    def commit(self) -> None:
        """Rename the (closed) temporary file to the final name, replacing any file there."""
        self.fs.mv(self.tmp_path, self.path)

    def discard(self) -> None:
        """Remove the temporary file, if it exists."""
        if self.fs.exists(self.tmp_path):
            self.fs.rm(self.tmp_path)


@contextmanager
def atomic_write(
    fs: fsspec.AbstractFileSystem, path: str, mode: str = "wb", **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """Open `path` for writing atomically (`open_kwargs` as for `fs.open`, e.g. newline=""):
    renamed into place when the block ends, the temporary file removed if it or the rename
    raises."""
    target = AtomicFile(fs, path, mode, **open_kwargs)
    try:
        with target.open() as f:
            yield f
        target.commit()
    except BaseException:  # the block, the close or the rename failed: leave nothing behind
        target.discard()
        raise


def write_json_atomic(
    fs: fsspec.AbstractFileSystem, path: str, obj: Any, **json_kwargs: Any
) -> None:
    """`json.dump(obj, f, **json_kwargs)` into `path`, atomically."""
    with atomic_write(fs, path, "w") as f:
        json.dump(obj, f, **json_kwargs)


def read_json(fs: fsspec.AbstractFileSystem, path: str) -> Any:
    """The JSON document at `path` (the reading side of `write_json_atomic`)."""
    with fs.open(path, "r") as f:
        return json.load(f)


def remove_temp_files(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Delete what interrupted atomic writes left under `path`, recursively (names carrying
    `TMP_MARK`, and the `<name>.tmp` of versions before this module); never a final name."""
    if not fs.exists(path):
        return
    for f in fs.find(path):
        name = f.rsplit("/", 1)[-1]
        if TMP_MARK in name or name.endswith(".tmp"):
            fs.rm(f)
