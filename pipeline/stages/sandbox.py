"""A persistent child process that applies a function to items under a per-item CPU-time limit.

Why a process: a signal cannot interrupt a long lxml/libxml2 C call, and stages may run off the
main thread inside Ray workers, where signals are unavailable anyway. The only reliable way to
stop a runaway page is to end the process working on it. The child is a fresh interpreter
(spawn semantics: no fork of a threaded Ray worker, and no re-import of the parent's `__main__`)
started with `-I` and an explicit import path holding only the directory of the `pipeline`
package: the working directory, PYTHONPATH and user site-packages cannot shadow a module in it.
It talks to the parent over a socketpair with pickled messages.

The limit counts the item's CPU time in the child, so load on the machine does not change which
items hit it: before each item the child arms ITIMER_PROF (process CPU time, user + system) with
`timeout_s`; at expiry the kernel delivers SIGPROF, whose default action ends the child even
inside a C call. The parent also waits at most `wall_factor` (default WALL_BACKSTOP_FACTOR) x
`timeout_s` of wall time per answer, then kills the child (one stalled without using CPU).
Either way the item is `("timeout", None)` and a new child goes on with the next item.

Protocol: the parent sends the factory and its arguments once; the child builds the function and
answers `("ready", notes)` (the function's `notes` attribute: set-up warnings). Then the parent
sends `(timeout_s, chunk)` (a list of argument tuples) and the child answers one
`(status, value, cpu_s)` per item, in order: `("ok", result, ...)` or `("error", "Type: message",
...)`. A child that dies mid-item other than by SIGPROF (segfault, OOM kill) gives
`("crash", None)` for that item. A CurateError raised by the factory is re-raised in the parent.
"""

from __future__ import annotations

import contextlib
import gc
import pickle
import signal
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

import pipeline
from pipeline.errors import CurateError
from pipeline.stages import allocator

OK, ERROR, TIMEOUT, CRASH = "ok", "error", "timeout", "crash"
Result = tuple[str, Any]

# Chunks sent to the child are cut at about this many payload bytes, so a batch of large pages
# does not sit in memory twice (pickled and unpickled) all at once.
CHUNK_BYTES = 8 << 20
# The directory holding the `pipeline` package: the child's only addition to its import path.
_PACKAGE_ROOT = str(Path(pipeline.__file__).resolve().parent.parent)
# The wall-clock backstop per item, as a multiple of the CPU-time limit. On a busy machine a page
# gets a fraction of a core: a refinedweb run on 2 cores with load ~15 plus 2 busy loops spent
# 12x its extract CPU time in wall time, and at 10x the backstop cut pages the CPU limit would
# have cut anyway (scripts/check_load_repro.py, extract.timeout_s 0.1: 32 of 40 timeouts by the
# backstop at 10x, none at 30x). 30x: 5 s of CPU -> 150 s, a wait only a stalled child reaches.
WALL_BACKSTOP_FACTOR = 30.0
# The extractor child's first-generation GC threshold (Python's default is 700).
CHILD_GC_THRESHOLD = 10_000
# Items whose CPU time reached this fraction of the limit (without passing it) are counted as
# near the limit: a rising count says the limit is about to start cutting pages.
NEAR_LIMIT_FRACTION = 0.5


@dataclass
class SandboxStats:
    """Counters for reports and tests: items run, how they ended, child starts, IPC volume."""

    items: int = 0
    timeouts: int = 0  # items stopped, by either limit
    wall_timeouts: int = 0  # ... of them by the wall-clock backstop
    near_limit: int = 0  # items that finished using >= NEAR_LIMIT_FRACTION of the CPU limit
    crashes: int = 0
    errors: int = 0
    starts: int = 0
    start_seconds: float = 0.0  # wall time spent starting children (not charged to items)
    chunks: int = 0


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class Sandbox:
    """Runs `factory(*factory_args)` once in a child process, then maps the result over items.

    `factory` must be a module-level callable in a module under the `pipeline` package's parent
    directory (it is pickled by reference and imported in the child); keep its module light so a
    restart after a timeout is cheap. `timeout_s` is CPU seconds per item, `wall_factor` x that
    the wall-clock backstop. `memory_limit_mb` caps the child's address space (RLIMIT_AS) so a
    memory bomb becomes a MemoryError, not an OOM kill of the worker. `preload` is a shared
    library the child starts with in LD_PRELOAD (an allocator, pipeline/stages/allocator.py); a
    note says so when it did not load. Not thread-safe: one Sandbox per worker.
    """

    def __init__(
        self,
        factory: Callable[..., Callable[..., Any]],
        factory_args: tuple[Any, ...] = (),
        timeout_s: float = 5.0,
        memory_limit_mb: int | None = None,
        startup_timeout_s: float = 120.0,
        wall_factor: float = WALL_BACKSTOP_FACTOR,
        preload: str | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.factory = factory
        self.factory_args = factory_args
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self.startup_timeout_s = startup_timeout_s
        self.wall_factor = wall_factor  # the wall-clock backstop per item: this x timeout_s
        self.preload = preload
        self.stats = SandboxStats()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._finalizer: weakref.finalize | None = None
        self._retired_cpu_s = 0.0  # CPU of children already gone
        self.notes: list[str] = []  # the child's set-up notes (its function's `notes`)

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
        boot = (
            f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
            f"from pipeline.stages.sandbox import _child_main; _child_main({child_sock.fileno()})"
        )
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", boot],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                env=allocator.preload_env(self.preload) if self.preload else None,
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
        if status == "refused":  # the factory raised a CurateError: the user's to fix
            self._kill()
            raise value
        if status != "ready":
            self._kill()
            raise RuntimeError(f"sandbox child failed to start: {value}")
        self.notes = list(value or ())
        if self.preload and not allocator.preloaded(proc.pid, self.preload):
            self.notes.append(f"extract: {self.preload} did not load; the system allocator is used")
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
                self._conn.send((self.timeout_s, list(items[i:j])))  # type: ignore[union-attr]
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
            if not conn.poll(self.timeout_s * self.wall_factor):
                results[k] = (TIMEOUT, None)
                self.stats.timeouts += 1
                self.stats.wall_timeouts += 1
                self._kill()
                return k + 1
            try:
                status, value, cpu_s = conn.recv()
            except (EOFError, OSError, pickle.UnpicklingError):
                results[k] = (TIMEOUT, None) if self._ended_by_cpu_limit() else (CRASH, None)
                if results[k][0] == TIMEOUT:
                    self.stats.timeouts += 1
                else:
                    self.stats.crashes += 1
                return k + 1
            if status == ERROR:
                self.stats.errors += 1
            if cpu_s >= NEAR_LIMIT_FRACTION * self.timeout_s:
                self.stats.near_limit += 1
            results[k] = (status, value)
        return j

    def _ended_by_cpu_limit(self) -> bool:
        """After the child's socket closed mid-item: reap it (keeping its CPU time) and say
        whether SIGPROF, its CPU-time limit, ended it."""
        proc = self._proc
        assert proc is not None
        cpu = self._child_cpu_s()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        self._kill(cpu)
        return proc.returncode == -signal.SIGPROF


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
            _limit_address_space(int(memory_limit_mb) << 20)
        fn = factory(*factory_args)
    except CurateError as exc:  # a configuration the user must change: the parent raises it
        conn.send(("refused", exc))
        return
    except Exception:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("failed", traceback.format_exc(limit=5)))
        return
    # The child's own objects (modules, the built function) never become garbage: frozen, the
    # collector stops re-scanning them, and a larger first generation runs it less often
    # while a page's many short-lived objects come and go (~1% of trafilatura's instructions).
    gc.collect()
    gc.freeze()
    gc.set_threshold(CHILD_GC_THRESHOLD, *gc.get_threshold()[1:])
    # A disposition of "ignore" and a blocked mask survive exec (a Ray worker's, say): undo both
    # so that SIGPROF ends this process.
    signal.signal(signal.SIGPROF, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGPROF})
    process_time = time.process_time
    try:
        conn.send(("ready", list(getattr(fn, "notes", ()))))
        while True:
            message = conn.recv()
            if message is None:
                return
            limit_s, chunk = message
            for args in chunk:
                # SIGPROF's default action ends the process: the limit holds inside C calls
                signal.setitimer(signal.ITIMER_PROF, limit_s)
                cpu0 = process_time()
                try:
                    reply = (OK, fn(*args))
                except Exception as exc:  # noqa: BLE001 - one bad item must not end the child
                    reply = (ERROR, _error_text(exc))
                cpu = process_time() - cpu0
                signal.setitimer(signal.ITIMER_PROF, 0)
                conn.send((*reply, cpu))
    except (EOFError, OSError):  # the parent is gone (closed, or its worker was killed)
        return


def _limit_address_space(limit: int) -> None:
    """Cap the address space at `limit` bytes, or at the hard limit when that is lower."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
