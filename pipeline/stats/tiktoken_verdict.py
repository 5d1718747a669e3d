"""The verdict of the tiktoken exactness check (stats/tiktoken_bpe.py) per tokenizer file, kept
in this process and in the user cache directory, and the input size below which `--encoder auto`
is better off without tiktoken.

Making tiktoken's encoder with the check costs ~7.4 CPU-us per vocabulary id (0.31-0.38 s
for 50k ids, 0.77-0.79 s for 100k), in every process that loads the tokenizer (the driver, each
Ray worker, `curate stats`). The verdict depends only on the file's content, the check's code
and the versions of tokenizers and tiktoken, so it is cached under all four: a process that
finds it builds tiktoken's tables without the merge conditions (a quarter of the cost), or goes
straight to the tokenizers library with the recorded reason. An unreadable cache is a miss, an
unwritable one is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from pipeline.io.atomic import write_json_atomic
from pipeline.io.user_cache import user_cache_dir
from pipeline.stats import tiktoken_bpe
from pipeline.stats.tiktoken_bpe import TiktokenPlan, tiktoken_plan

VERDICT_DIR = "tiktoken-check"
# Measured with scripts/bench_tiktoken_check.py (docs/benchmarks.md, "tokenize on tiny inputs,
# round three"): CPU seconds of making tiktoken's encoder with the check (importing tiktoken,
# reading the file, the check, the tables), fixed and per vocabulary id, and CPU seconds per
# byte of text tiktoken saves against the tokenizers library (English web text and 75
# languages alike).
CHECK_FIXED_S = 0.03
CHECK_S_PER_ID = 7.4e-6
SAVED_S_PER_BYTE = 1.75e-7


@dataclass(frozen=True)
class Verdict:
    """The check's outcome for one file: `why` tiktoken is not exact, None when it is."""

    why: str | None


_memo: dict[str, Verdict] = {}


@cache
def check_version() -> str:
    """Hash of the check's source and the versions of the libraries it reasons about."""
    versions = []
    for dist in ("tokenizers", "tiktoken"):
        try:
            versions.append(importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            versions.append("absent")
    h = hashlib.sha256(Path(tiktoken_bpe.__file__).read_bytes())
    h.update(" ".join(versions).encode())
    return h.hexdigest()[:16]


def verdict_path(file_hash: str) -> str:
    """The cache file of the verdict on a tokenizer.json whose content hashes to `file_hash`."""
    return os.path.join(user_cache_dir(), VERDICT_DIR, f"{file_hash}-{check_version()}.json")


def cached_verdict(file_hash: str) -> Verdict | None:
    """The verdict on file `file_hash` from this process or the disk cache, None if neither
    holds one (or the cache file is unreadable)."""
    if file_hash in _memo:
        return _memo[file_hash]
    try:
        with open(verdict_path(file_hash), encoding="utf-8") as f:
            why = json.load(f)["why"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if why is not None and not isinstance(why, str):
        return None
    _memo[file_hash] = Verdict(why)
    return _memo[file_hash]


def store_verdict(file_hash: str, verdict: Verdict, source: Path) -> None:
    """Keep the verdict in this process and, where the cache directory is writable, on disk
    (atomically: a reader sees a whole verdict or none)."""
    _memo[file_hash] = verdict
    record = {"why": verdict.why, "tokenizer": str(source), "check": check_version()}
    with contextlib.suppress(OSError):
        write_json_atomic(LocalFileSystem(), verdict_path(file_hash), record, indent=1)


def checked_plan(path: Path, loaded: Any, file_hash: str) -> tuple[TiktokenPlan | str, str]:
    """(`tiktoken_plan` of the file, or why there is none; `"cached"` when a verdict was found,
    `"run"` when the check ran and its verdict was stored)."""
    known = cached_verdict(file_hash)
    if known is not None and known.why is not None:
        return known.why, "cached"
    plan = tiktoken_plan(path, loaded, proven=known is not None)
    if known is None:
        store_verdict(file_hash, Verdict(plan if isinstance(plan, str) else None), path)
    return plan, "run" if known is None else "cached"


def break_even_bytes(vocab_size: int) -> int:
    """Bytes of text from which tiktoken, the check included, is cheaper than the tokenizers
    library (~2.3 MB for 50k ids). One bound whether or not a verdict is cached (from a cached
    one tiktoken pays from ~0.5-0.8 MB), so the same input always gets the same encoder."""
    return int((CHECK_FIXED_S + CHECK_S_PER_ID * vocab_size) / SAVED_S_PER_BYTE)


def small_input(vocab_size: int, sizes: Iterable[int | None]) -> str | None:
    """Why `--encoder auto` should run the tokenizers library, without the check, on an input
    of files of `sizes` (None: unknown, taken as large), or None when the input is larger than
    the break-even."""
    limit = break_even_bytes(vocab_size)
    total = 0
    for size in sizes:  # stops at the limit: a large input is not stat'ed file by file
        if size is None or total + size >= limit:
            return None
        total += size
    return (
        f"input of {total:,} bytes < {limit:,} (break-even for {vocab_size:,} ids): the "
        "exactness check would cost more than tiktoken saves"
    )
