"""A persistent child process that applies a function to items under a per-item time limit.

Why a process: a signal cannot interrupt a long lxml/libxml2 C call, and stages may run off the
main thread inside Ray workers, where signals are unavailable anyway. The only reliable way to
stop a runaway page is to kill the process working on it. The child is a fresh interpreter
(`python -m pipeline.stages.sandbox`, spawn semantics: no fork of a threaded Ray worker, and no
re-import of the parent's `__main__`), talking over a socketpair with pickled messages.

Protocol: the parent sends the factory and its arguments once; the child builds the function and
answers `ready`. Then the parent sends a chunk (a list of argument tuples) and the child answers
one `(status, value)` per item, in order: `("ok", result)` or `("error", "Type: message")`. The
parent waits at most `timeout_s` for each answer; on timeout it kills the child, records
`("timeout", None)`, starts a new child and goes on with the next item. A child that dies
mid-item (segfault, OOM kill) gives `("crash", None)` for that item.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import subprocess
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

OK, ERROR, TIMEOUT, CRASH = "ok", "error", "timeout", "crash"
Result = tuple[str, Any]

# Chunks sent to the child are cut at about this many payload bytes, so a batch of large pages
# does not sit in memory twice (pickled and unpickled) all at once.
CHUNK_BYTES = 8 << 20
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding `pipeline/`


@dataclass
class SandboxStats:
    """Counters for reports and tests: items run, how they ended, child starts, IPC volume."""

    items: int = 0
    timeouts: int = 0
    crashes: int = 0
    errors: int = 0
    starts: int = 0
    start_seconds: float = 0.0  # wall time spent starting children (not charged to items)
    chunks: int = 0


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class Sandbox:
    """Runs `factory(*factory_args)` once in a child process, then maps the result over items.

    `factory` must be a module-level callable (it is pickled by reference and imported in the
    child); keep its module light so a restart after a timeout is cheap. `memory_limit_mb` caps
    the child's address space (RLIMIT_AS) so a memory bomb becomes a MemoryError, not an OOM kill
    of the worker. Not thread-safe: one Sandbox per worker.
    """

    def __init__(
        self,
        factory: Callable[..., Callable[..., Any]],
        factory_args: tuple[Any, ...] = (),
        timeout_s: float = 5.0,
        memory_limit_mb: int | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.factory = factory
        self.factory_args = factory_args
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self.startup_timeout_s = startup_timeout_s
        self.stats = SandboxStats()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._finalizer: weakref.finalize | None = None
        self._retired_cpu_s = 0.0  # CPU of children already gone

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the child and wait until it has built its function (idempotent)."""
        if self.running:
            return
        self._kill()
        t0 = time.perf_counter()
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p
        )
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.stages.sandbox", str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
                close_fds=True,
            )
        finally:
            child_sock.close()
        conn = Connection(parent_sock.detach())
        self._proc, self._conn = proc, conn
        self._finalizer = weakref.finalize(self, _kill_process, proc, conn)
        conn.send((self.factory, self.factory_args, self.memory_limit_mb))
        if not conn.poll(self.startup_timeout_s):
            self._kill()
            raise RuntimeError(f"sandbox child did not start within {self.startup_timeout_s}s")
        try:
            status, value = conn.recv()
        except EOFError:
            self._kill()
            raise RuntimeError("sandbox child exited during start-up") from None
        if status != "ready":
            self._kill()
            raise RuntimeError(f"sandbox child failed to start: {value}")
        self.stats.starts += 1
        self.stats.start_seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Ask the child to exit, then make sure it has (kill after a short grace period)."""
        cpu = self._child_cpu_s()
        if self._conn is not None and self.running:
            try:
                self._conn.send(None)
                self._proc.wait(timeout=2)  # type: ignore[union-attr]
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill(cpu)

    def _kill(self, cpu_s: float | None = None) -> None:
        """Kill and reap the child; its CPU time (`cpu_s`, else read now) joins the total."""
        self._retired_cpu_s += self._child_cpu_s() if cpu_s is None else cpu_s
        if self._finalizer is not None:
            self._finalizer()  # kills, reaps and closes; runs at most once
        self._proc, self._conn, self._finalizer = None, None, None

    def _child_cpu_s(self) -> float:
        """User + system CPU seconds of the current child so far (0 when none or unreadable)."""
        if self._proc is None:
            return 0.0
        try:
            t = psutil.Process(self._proc.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return t.user + t.system

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds used by every child of this sandbox so far (the parent's not included)."""
        return self._retired_cpu_s + self._child_cpu_s()

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work ------------------------------------------------------------------------------

    def map(
        self, items: Sequence[tuple[Any, ...]], sizes: Sequence[int] | None = None
    ) -> list[Result]:
        """One `(status, value)` per item, in order. `sizes` (bytes per item) guide chunking."""
        results: list[Result | None] = [None] * len(items)
        i, failed_sends = 0, 0
        while i < len(items):
            j = _chunk_end(i, len(items), sizes)
            self.start()
            try:
                self._conn.send(list(items[i:j]))  # type: ignore[union-attr]
            except OSError:
                # The child died while idle; nothing was in flight. Retry on a fresh one.
                failed_sends += 1
                if failed_sends > 2:
                    raise RuntimeError("sandbox child keeps dying before receiving work") from None
                self._kill()
                continue
            failed_sends = 0
            self.stats.chunks += 1
            i = self._collect(i, j, results)
        self.stats.items += len(items)
        return results  # type: ignore[return-value]

    def _collect(self, i: int, j: int, results: list[Result | None]) -> int:
        """Receive answers for items i..j-1; returns the index to continue from."""
        conn = self._conn
        assert conn is not None
        for k in range(i, j):
            if not conn.poll(self.timeout_s):
                results[k] = (TIMEOUT, None)
                self.stats.timeouts += 1
                self._kill()
                return k + 1
            try:
                status, value = conn.recv()
            except (EOFError, OSError, pickle.UnpicklingError):
                results[k] = (CRASH, None)
                self.stats.crashes += 1
                self._kill()
                return k + 1
            if status == ERROR:
                self.stats.errors += 1
            results[k] = (status, value)
        return j


def _chunk_end(i: int, n: int, sizes: Sequence[int] | None) -> int:
    """End (exclusive) of the chunk starting at i: at least one item, about CHUNK_BYTES."""
    if sizes is None:
        return n
    total, j = 0, i
    while j < n and (j == i or total + sizes[j] <= CHUNK_BYTES):
        total += sizes[j]
        j += 1
    return j


def _kill_process(proc: subprocess.Popen[bytes], conn: Connection) -> None:
    """Kill and reap the child, close our end. Safe to call on an already dead child."""
    with contextlib.suppress(OSError):
        conn.close()
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):  # kill -9 not reaped in 10 s: give up
        proc.wait(timeout=10)


def in_process(fn: Callable[..., Any], items: Sequence[tuple[Any, ...]]) -> list[Result]:
    """The same results as `Sandbox.map` without a child or a time limit (the fast path)."""
    out: list[Result] = []
    for args in items:
        try:
            out.append((OK, fn(*args)))
        except Exception as exc:  # noqa: BLE001 - a bad document must never stop the batch
            out.append((ERROR, _error_text(exc)))
    return out


# -- child side ------------------------------------------------------------------------------


def _child_main(fd: int) -> None:
    conn = Connection(fd)
    try:
        factory, factory_args, memory_limit_mb = conn.recv()
        if memory_limit_mb:
            import resource

            limit = int(memory_limit_mb) << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        fn = factory(*factory_args)
    except Exception:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("failed", traceback.format_exc(limit=5)))
        return
    try:
        conn.send(("ready", None))
        while True:
            chunk = conn.recv()
            if chunk is None:
                return
            for args in chunk:
                try:
                    reply: Result = (OK, fn(*args))
                except Exception as exc:  # noqa: BLE001 - one bad item must not end the child
                    reply = (ERROR, _error_text(exc))
                conn.send(reply)
    except (EOFError, OSError):  # the parent is gone (closed, or its worker was killed)
        return


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))
