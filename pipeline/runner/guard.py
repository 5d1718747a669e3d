"""A CPU-time limit on a block of code (SIGPROF from ITIMER_PROF, raised in the main thread), so
a document that sends a stage into runaway work is stopped and counted instead of stalling its
worker. Off the main thread, where the platform has no interval timers, or while another user of
ITIMER_PROF / SIGPROF (a profiler, an outer guard) is active, the block runs unguarded."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class CpuTimeout(BaseException):
    """The guarded block used up its CPU time. A BaseException, like KeyboardInterrupt, so a
    stage's own `except Exception` cannot swallow it and go on with the runaway work."""


_armed = False


def _on_sigprof(signum: int, frame: FrameType | None) -> None:
    if _armed:
        raise CpuTimeout()


def _usable() -> bool:
    """Whether this thread may arm the timer now."""
    if not hasattr(signal, "setitimer") or _armed:
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getitimer(signal.ITIMER_PROF) != (0.0, 0.0):
        return False  # someone else's timer
    return signal.getsignal(signal.SIGPROF) in (signal.SIG_DFL, signal.SIG_IGN, None, _on_sigprof)


@contextmanager
def cpu_limit(seconds: float | None) -> Iterator[bool]:
    """Raise CpuTimeout inside the block once the process has spent `seconds` of CPU time in it.

    Yields whether the limit is active (False: `seconds` is None, or the guard is unavailable
    here; the block then runs without a limit). C code that never returns to the interpreter is
    stopped when it does."""
    global _armed
    if seconds is None or not _usable():
        yield False
        return
    # The handler stays installed (a no-op while disarmed): a SIGPROF still in flight after the
    # block must never meet the default action, which ends the process.
    signal.signal(signal.SIGPROF, _on_sigprof)
    _armed = True
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield True
    finally:
        try:
            _armed = False  # a signal handled before this line still raises; none after it
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
