"""The run's log file (`_run/run.log`): every log line of a run, Ray's own included.

The terminal keeps progress and curate's own messages; Ray's warnings (the token-authentication
notice, its C++ core's connection retries) would otherwise print through the progress bar. While
a run holds its log open, `ray_output_to_run_log` sends them to the file instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

from pipeline.io.writer import output_fs

LOG_NAME = "run.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_ACTIVE: list[logging.FileHandler] = []  # the log files of runs in progress, innermost last
_RAY_HANDLERS: list[list[logging.Handler]] = []  # Ray's own handlers, put back at the end


def log_path(output: str, run_dir: str) -> str:
    """Where a run into `output` logs: `<output>/<run_dir>/run.log` for a local directory, a
    file in the temporary directory for a remote one (a log is appended line by line)."""
    fs, root = output_fs(output)
    if "file" in fs.protocol or "local" in fs.protocol:
        return os.path.join(root, run_dir, LOG_NAME)
    safe = "".join(c if c.isalnum() else "_" for c in output)[-80:]
    return os.path.join(tempfile.gettempdir(), f"curate-{safe}.log")


@contextlib.contextmanager
def run_log(path: str) -> Iterator[str]:
    """Append this process's log records (what the root logger lets through) to `path` for the
    block; yields the path."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    _ACTIVE.append(handler)
    try:
        yield path
    finally:
        _ACTIVE.remove(handler)
        root.removeHandler(handler)
        if _RAY_HANDLERS and not _ACTIVE:  # Ray's logger back to its own handlers
            logging.getLogger("ray").handlers = _RAY_HANDLERS.pop()
        handler.close()


@contextlib.contextmanager
def ray_output_to_run_log() -> Iterator[None]:
    """While a run log is open: Ray's Python loggers write to it (until the run ends), and file
    descriptor 2 points at it for the block (Ray's C++ core writes its warnings there)."""
    if not _ACTIVE:
        yield
        return
    handler = _ACTIVE[-1]
    ray_logger = logging.getLogger("ray")
    if not _RAY_HANDLERS:
        _RAY_HANDLERS.append(list(ray_logger.handlers))
    ray_logger.handlers = [handler]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(handler.baseFilename, "ab", buffering=0) as f:
            os.dup2(f.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def run_log_tail(max_bytes: int = 1 << 16) -> str:
    """The last `max_bytes` of the open run log ('' when none is open or it cannot be read)."""
    if not _ACTIVE:
        return ""
    try:
        with open(_ACTIVE[-1].baseFilename, "rb") as f:
            f.seek(max(0, os.path.getsize(f.name) - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
