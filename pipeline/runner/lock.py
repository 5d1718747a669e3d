"""One writer per output directory: an exclusive lock file that names its holder.

`curate run`, `ablate` and `stats` hold `<output>/.curate.lock` while they write there; a second
writer is refused at once with the holder's command, host, pid and start time (so `--overwrite`
can never delete a live run's work). On a local filesystem the lock is an flock(2) on that file,
which the kernel drops when the holder dies, however it dies; the file's record is checked too:
a holder on another host, or a live process on this one, keeps the directory. A record left by a
dead process on this host is stale and taken over with a warning. Object stores have no locks:
there the record alone decides (best effort: two writers starting within the same second can
both win).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import psutil
from fsspec.implementations.local import LocalFileSystem

from pipeline.errors import OutputError
from pipeline.io.writer import output_fs

log = logging.getLogger(__name__)

LOCK_NAME = ".curate.lock"


@contextlib.contextmanager
def output_lock(path: str, command: str) -> Iterator[None]:
    """Hold the writer lock of output directory `path` (created if missing) for the block.

    A directory this call created and left empty (the command failed before writing) is removed
    again, so a refused or failed command leaves nothing behind.
    """
    fs, root = output_fs(path)
    created = not fs.exists(root)
    fs.makedirs(root, exist_ok=True)
    lock = f"{root}/{LOCK_NAME}"
    record = _record(command)
    try:
        if isinstance(fs, LocalFileSystem):
            fd = _lock_local(lock, path, record)
            try:
                yield
            finally:
                with contextlib.suppress(FileNotFoundError):  # still held: a waiter retries
                    os.unlink(lock)
                os.close(fd)
        else:
            _lock_remote(fs, lock, path, record)
            try:
                yield
            finally:
                fs.rm(lock)
    finally:
        if created:
            with contextlib.suppress(OSError):
                if not fs.ls(root):
                    fs.rmdir(root)


def check_unheld(fs: Any, root: str) -> None:
    """OutputError when a live writer holds directory `root` of `fs` (checked before deleting
    it, e.g. `curate run --overwrite` removing a run's stats/ that `curate stats` writes)."""
    lock = f"{root}/{LOCK_NAME}"
    if not fs.exists(lock):
        return
    if isinstance(fs, LocalFileSystem):
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released by the close below
            except BlockingIOError:
                raise OutputError(_refusal(root, _parse(os.pread(fd, 65536, 0)))) from None
            holder = _parse(os.pread(fd, 65536, 0))
        finally:
            os.close(fd)
    else:
        holder = _parse(fs.cat_file(lock))
    if holder is not None and (holder.get("host") != socket.gethostname() or _alive(holder)):
        raise OutputError(_refusal(root, holder, lock))


def _record(command: str) -> dict[str, Any]:
    """Who holds the lock: command, host, pid, the pid's start time (tells a reused pid apart)."""
    me = psutil.Process()
    return {
        "command": command,
        "host": socket.gethostname(),
        "pid": me.pid,
        "pid_started": me.create_time(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def _lock_local(lock: str, path: str, record: dict[str, Any]) -> int:
    """flock the lock file and write our record; the open descriptor keeps the lock."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _parse(os.pread(fd, 65536, 0))
            os.close(fd)
            raise OutputError(_refusal(path, holder)) from None
        try:
            same_file = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # the holder released (unlinked) it between our open and flock
            os.close(fd)
            continue
        holder = _parse(os.pread(fd, 65536, 0))
        try:
            _check_stale(holder, path, lock)
        except OutputError:
            os.close(fd)
            raise
        data = json.dumps(record).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        return fd


def _lock_remote(fs: Any, lock: str, path: str, record: dict[str, Any]) -> None:
    """Write our record unless a live holder's is there; read it back to catch a racing writer."""
    if fs.exists(lock):
        _check_stale(_parse(fs.cat_file(lock)), path, lock)
    data = json.dumps(record).encode()
    fs.pipe_file(lock, data)
    holder = _parse(fs.cat_file(lock))
    if holder != record:
        raise OutputError(_refusal(path, holder))


def _check_stale(holder: dict[str, Any] | None, path: str, lock: str) -> None:
    """OutputError unless the recorded holder (if any) is a dead process on this host."""
    if holder is None:
        return  # no record, or one cut short by a crash before it was written
    if holder.get("host") != socket.gethostname() or _alive(holder):
        raise OutputError(_refusal(path, holder, lock))
    log.warning(
        "%s: taking over the lock of %s (pid %s on this host, no longer running)",
        path,
        holder.get("command", "curate"),
        holder.get("pid"),
    )


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the recorded pid runs on this host and is the same process (same start time)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # exists, but we may not look at it: assume it is the holder
    recorded = holder.get("pid_started")
    return not isinstance(recorded, int | float) or abs(started - recorded) < 1.0


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        holder = json.loads(data)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _refusal(path: str, holder: dict[str, Any] | None, lock: str | None = None) -> str:
    """The one-line refusal naming the holder."""
    if holder is None:
        who = "another curate process"
    else:
        who = (
            f"{holder.get('command', 'curate')} (host {holder.get('host')}, pid "
            f"{holder.get('pid')}, since {holder.get('started')})"
        )
    msg = f"{path} is being written by {who}; wait for it to finish or choose another --output"
    if lock is not None and holder is not None and holder.get("host") != socket.gethostname():
        msg += f" (if that process is gone, delete {lock})"
    return msg
