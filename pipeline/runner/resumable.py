"""Resumable prepare phases: every task of a global stage's `ctx.map` records its result when it
finishes, so a prepare killed part way resumes from its finished tasks, not from the stage start.

A record is `<work_dir>/_tasks/<call>/<item>-<key>.pkl`: the phase's call number in prepare(),
the item's position and a key hashing the stage's inputs (`stage_fingerprint`: recipe hash,
segment, shards, partitions, other files read), the task function with its bound arguments and
the item. A changed input changes the key, so a stale result is never reused; a work directory
stamped for other inputs is emptied before the stage starts. The task itself writes its record
(on the Ray worker too), after the task's own files: those are written atomically
(io/atomic.py), so a recorded task's files are complete. This relies on what every phase
already guarantees: a task's files are a function of its inputs, and no later task rewrites
them (a phase that iterates, e.g. rounds of a distributed algorithm, writes each round's files
under names of their own).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import io
import logging
import pickle
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import fsspec
import numpy as np
from pydantic import BaseModel

from pipeline.io.atomic import atomic_write, read_json, write_json_atomic

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

TASKS_DIR = "_tasks"
STAMP = f"{TASKS_DIR}/stage.json"


def stable_digest(obj: Any) -> str:
    """A hex digest of `obj` that is the same in every process (unlike hash() or pickle of sets):
    partials by function name and arguments, models and dataclasses by their fields, arrays by
    their bytes, file systems by their class and protocol."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    """Feed `obj`'s stable description into the hash `h` (tagged by kind, so "1" != 1)."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[{len(obj)}".encode())
        for x in obj:
            _feed(h, x)
        h.update(b"]")
    elif isinstance(obj, dict):
        h.update(f"dict[{len(obj)}".encode())
        for k, v in sorted((stable_digest(k), v) for k, v in obj.items()):
            h.update(k.encode())
            _feed(h, v)
        h.update(b"]")
    elif isinstance(obj, (set, frozenset)):
        h.update(f"set[{','.join(sorted(stable_digest(x) for x in obj))}]".encode())
    elif isinstance(obj, functools.partial):
        h.update(b"partial(")
        _feed(h, (obj.func, obj.args, obj.keywords))
        h.update(b")")
    elif isinstance(obj, np.ndarray):
        h.update(f"ndarray:{obj.dtype.str}:{obj.shape};".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, np.generic):
        h.update(f"{obj.dtype.str}:{obj.item()!r};".encode())
    elif inspect.ismethod(obj):
        _feed(h, (obj.__self__, obj.__func__))
    elif isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        h.update(f"code:{obj.__module__}.{obj.__qualname__};".encode())
    elif isinstance(obj, BaseModel):
        _feed(h, (_name(obj), obj.model_dump(mode="json")))
    elif dataclasses.is_dataclass(obj):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        _feed(h, (_name(obj), fields))
    elif isinstance(obj, fsspec.AbstractFileSystem):
        _feed(h, (_name(obj), obj.protocol))
    elif hasattr(obj, "__dict__"):
        _feed(h, (_name(obj), vars(obj)))
    else:  # an object without state to walk: its pickle (a differing one only skips a resume)
        h.update(pickle.dumps(obj, protocol=4))


def _name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def stage_fingerprint(
    config_hash: str, segment: int, label: str, shards: Sequence[Any], other: Any = None
) -> str:
    """What a global stage's prepare depends on: the recipe (its hash covers the stage chain up
    to this stage and the curate version), its place, its input shards (index, path, rows) and
    what else it reads (`other`: GlobalStage.prepare_inputs, e.g. benchmark files)."""
    return stable_digest((config_hash, segment, label, list(shards), other))


class ResumableContext:
    """A GlobalContext around `inner` (a LocalContext or RayContext on the stage's work dir)
    whose `map` reuses the recorded results of tasks finished by an earlier, interrupted
    prepare over the same inputs, runs the others, and records each as it finishes."""

    def __init__(self, inner: Any, fingerprint: str, label: str = "") -> None:
        self.inner = inner
        self.label = label
        self.fs = inner.fs
        self.work_dir = inner.work_dir.rstrip("/")
        self.num_partitions = inner.num_partitions
        self.fingerprint = stable_digest((fingerprint, self.num_partitions))
        self.calls = 0
        self.tasks = 0
        self.tasks_resumed = 0
        self._claim_work_dir()

    def _claim_work_dir(self) -> None:
        """Keep the work dir of an interrupted prepare over the same inputs; empty any other."""
        stamp = f"{self.work_dir}/{STAMP}"
        if self.fs.exists(stamp) and read_json(self.fs, stamp) == {"inputs": self.fingerprint}:
            return
        if self.fs.exists(self.work_dir):
            self.fs.rm(self.work_dir, recursive=True)
        self.fs.makedirs(f"{self.work_dir}/{TASKS_DIR}", exist_ok=True)
        write_json_atomic(self.fs, stamp, {"inputs": self.fingerprint})

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], *, num_gpus: float | None = 0
    ) -> list[R]:
        self.calls += 1
        phase = f"{self.work_dir}/{TASKS_DIR}/{self.calls:03d}"
        fn_key = stable_digest(fn)
        paths = [
            f"{phase}/{i:06d}-{stable_digest((self.fingerprint, fn_key, item))[:32]}.pkl"
            for i, item in enumerate(items)
        ]
        listed = self.fs.ls(phase, detail=False) if self.fs.exists(phase) else []
        recorded = {p.rsplit("/", 1)[-1] for p in listed}
        results: list[Any] = [None] * len(items)
        todo: list[int] = []
        for i, path in enumerate(paths):
            found = _load(self.fs, path) if path.rsplit("/", 1)[-1] in recorded else None
            if found is None:
                todo.append(i)
            else:
                results[i] = found[0]
        resumed = len(items) - len(todo)
        if resumed:
            log.info(
                "global stage %s: phase %d, %d of %d task(s) resumed from an earlier run",
                self.label,
                self.calls,
                resumed,
                len(items),
            )
        ran = self.inner.map(
            functools.partial(run_and_record, fn=fn, fs=self.fs),
            [(items[i], paths[i]) for i in todo],
            num_gpus=num_gpus,
        )
        for i, result in zip(todo, ran, strict=True):
            results[i] = result
        self.tasks += len(items)
        self.tasks_resumed += resumed
        return results

    def counts(self) -> dict[str, int]:
        """For the stage's summary: the tasks of every phase, and those resumed from records."""
        return {"tasks": self.tasks, "tasks_resumed": self.tasks_resumed}


def run_and_record(task: tuple[Any, str], *, fn: Callable[[Any], Any], fs: Any) -> Any:
    """fn(item), then its result pickled to the record path, atomically (a Ray task's body)."""
    item, path = task
    result = fn(item)
    with atomic_write(fs, path) as f:
        pickle.dump(result, f, protocol=4)
    return result


def _load(fs: Any, path: str) -> tuple[Any] | None:
    """(the recorded result,), or None when the record cannot be read back (the task reruns)."""
    try:
        with fs.open(path, "rb") as f:
            return (_RecordUnpickler(io.BytesIO(f.read())).load(),)
    except Exception as exc:  # noqa: BLE001 - any unreadable record: run the task again
        log.warning("task record %s unreadable (%s); the task runs again", path, exc)
        return None


class _RecordUnpickler(pickle.Unpickler):
    """Reads task results (plain data and numpy arrays) and nothing else: a record file cannot
    make the driver import or call arbitrary code."""

    ALLOWED = {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED or module == "numpy.dtypes":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a task result type")
