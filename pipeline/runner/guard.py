"""A CPU-time limit on a block of code (SIGPROF from ITIMER_PROF, raised in the main thread), so
a document that sends a stage into runaway work is stopped and counted instead of stalling its
worker. Off the main thread, where the platform has no interval timers, or while another user of
ITIMER_PROF / SIGPROF (a profiler, an outer guard) is active, the block runs unguarded.

Python drops an exception raised inside a weakref or GC callback or a `__del__` (it prints
"Exception ignored in ..." and goes on), and a signal handler runs wherever the interpreter is.
So the timer repeats every REFIRE_S of CPU after the limit until the block ends, and a block that
ends normally after the limit fired raises CpuTimeout on its way out: a dropped timeout is
still counted, never turned into a finished (and differently decided) document. Likewise a block
that ends in an error after the limit fired ends in CpuTimeout (C code can turn the pending
timeout into an error of its own)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class CpuTimeout(BaseException):
    """The guarded block used up its CPU time. A BaseException, like KeyboardInterrupt, so a
    stage's own `except Exception` cannot swallow it and go on with the runaway work."""


# CPU seconds between repeats of the signal once the limit is spent (see the module docstring)
REFIRE_S = 0.02

_armed = False
_fired = False


def _on_sigprof(signum: int, frame: FrameType | None) -> None:
    global _fired
    if _armed:
        _fired = True
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
    global _armed, _fired
    if seconds is None or not _usable():
        yield False
        return
    # The handler stays installed (a no-op while disarmed): a SIGPROF still in flight after the
    # block must never meet the default action, which ends the process.
    signal.signal(signal.SIGPROF, _on_sigprof)
    _fired = False
    _armed = True
    signal.setitimer(signal.ITIMER_PROF, seconds, REFIRE_S)
    try:
        yield True
    except Exception as exc:
        # C code that returns after the handler raised can report the pending CpuTimeout as
        # an error of its own (a numba function: "returned a result with an exception set").
        if _fired:
            raise CpuTimeout() from exc
        raise
    finally:
        try:
            _armed = False  # a signal handled before this line still raises; none after it
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    if _fired:  # the limit was spent but its CpuTimeout was raised where Python drops it
        raise CpuTimeout()
