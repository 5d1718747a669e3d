"""Atomic file writes: a file appears under its final name complete, or not at all.

Every file the pipeline writes (shards, markers, stats.json, work files of global stages) is
written under a hidden temporary name beside it, `dir/.<name>.tmp-<token>`, and renamed when
complete. The name is hidden because Arrow, Spark and `datasets` skip names starting with a dot (a
`<name>.tmp-...` beside the shards would break `pq.read_table("data/")`); it carries `TMP_MARK`
so that `remove_temp_files` deletes what an interrupted run left.

Object stores (S3, GCS, Azure) have no rename: fsspec's `mv` there is a copy and a delete (the
bytes written twice, and a crash between the two leaves both). There the file is written to a
local spool file and uploaded under its final name on commit: an object becomes visible only when
its upload completes, so a reader sees the whole file or none, and a killed upload leaves at most
an unfinished multipart upload, which no listing shows. A unit's completion marker, written after
its shards, is what commits the unit (pipeline/runner/unit.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec
import psutil

from pipeline.io.object_store import abort_unfinished_uploads, is_object_store

TMP_MARK = ".tmp-"
# Local spool files of object-store writes: `$TMPDIR/.curate-spool-<pid>-<random>`.
SPOOL_PREFIX = ".curate-spool-"


def temp_name(path: str) -> str:
    """A unique hidden name beside `path` for writing it: `dir/.<name>.tmp-<token>`."""
    parent, name = posixpath.split(path)
    hidden = f".{name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    return posixpath.join(parent, hidden) if parent else hidden


class AtomicFile:
    """One file written under `temp_name(path)`: `open()`, write, then `commit()` or `discard()`.

    For writers that keep the file open across calls (ShardWriter); otherwise use `atomic_write`.
    On an object store the temporary file is a local spool file (`spool` True), uploaded on commit.
    """

    def __init__(
        self, fs: fsspec.AbstractFileSystem, path: str, mode: str = "wb", **open_kwargs: Any
    ) -> None:
        self.fs, self.path, self.mode, self.open_kwargs = fs, path, mode, open_kwargs
        self.spool = is_object_store(fs)
        self.tmp_path = "" if self.spool else temp_name(path)  # a spool file is made by open()

    def open(self) -> IO[Any]:
        """The temporary file, opened for writing (its directory created if needed)."""
        if self.spool:
            fd, self.tmp_path = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-")
            return os.fdopen(fd, self.mode, **self.open_kwargs)
        parent = posixpath.dirname(self.path)
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        return self.fs.open(self.tmp_path, self.mode, **self.open_kwargs)

    def commit(self) -> None:
        """Put the (closed) temporary file under the final name, replacing any file there: a
        rename, or on an object store an upload of the spool file (then deleted)."""
        if self.spool:
            try:
                self.fs.put_file(self.tmp_path, self.path)
            finally:
                os.unlink(self.tmp_path)
        else:
            self.fs.mv(self.tmp_path, self.path)

    def discard(self) -> None:
        """Remove the temporary file, if it exists."""
        if self.spool:
            if self.tmp_path and os.path.exists(self.tmp_path):
                os.unlink(self.tmp_path)
        elif self.fs.exists(self.tmp_path):
            self.fs.rm(self.tmp_path)


@contextmanager
def atomic_write(
    fs: fsspec.AbstractFileSystem, path: str, mode: str = "wb", **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """Open `path` for writing atomically (`open_kwargs` as for `fs.open`, e.g. newline=""):
    committed (renamed or uploaded) when the block ends, the temporary file removed if it or the
    commit raises."""
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
    """`json.dump(obj, f, **json_kwargs)` into `path`, atomically. Encoded first, then written
    in one call: json.dump writes each token (~4,000 writes for a unit's marker, through fsspec's
    file object: half the marker's CPU)."""
    text = json.dumps(obj, **json_kwargs)
    with atomic_write(fs, path, "w") as f:
        f.write(text)


def read_json(fs: fsspec.AbstractFileSystem, path: str) -> Any:
    """The JSON document at `path` (the reading side of `write_json_atomic`)."""
    with fs.open(path, "r") as f:
        return json.load(f)


def remove_temp_files(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Delete what interrupted atomic writes left under `path`, recursively (names carrying
    `TMP_MARK`, and the `<name>.tmp` of versions before this module); never a final name. On
    S3, the unfinished multipart uploads of killed writers too."""
    if is_object_store(fs):
        abort_unfinished_uploads(fs, path)
        remove_dead_spools()
    if not fs.exists(path):
        return
    for f in fs.find(path):
        name = f.rsplit("/", 1)[-1]
        if TMP_MARK in name or name.endswith(".tmp"):
            fs.rm(f)


def remove_dead_spools() -> int:
    """Delete the spool files (in `$TMPDIR`) of processes no longer running on this host: what
    a writer killed mid-shard left; returns how many."""
    removed = 0
    for entry in os.scandir(tempfile.gettempdir()):
        pid = entry.name.removeprefix(SPOOL_PREFIX).split("-", 1)[0]
        if (
            entry.name.startswith(SPOOL_PREFIX)
            and pid.isdigit()
            and not psutil.pid_exists(int(pid))
        ):
            with contextlib.suppress(FileNotFoundError):  # another run's cleanup got there first
                os.unlink(entry.path)
                removed += 1
    return removed
