"""The extractor process's memory allocator: jemalloc, preloaded into it where it can be found.

An extraction allocates and frees a tree's worth of small blocks per page (libxml2's nodes and
attribute strings, trafilatura's Python objects): with glibc's malloc ~15% of a page's time goes
to malloc/free and their consolidation passes (perf, trafilatura's fast setting, ScrapingHub).
jemalloc serves the same pattern with 6-8% fewer instructions per page, ~1.1x the pages per CPU
second (docs/benchmarks.md, "Extraction, round three"), and an allocator cannot change what the
extractor computes. Ray, a dependency, ships a jemalloc build
(`ray/core/libjemalloc.so`, the one its own processes can use); the sandboxed extractor's process
starts with it in LD_PRELOAD. Guarded like trafilatura_adapter's speedups: Ray's version in the
tested range, the file present, and once the process runs, the library mapped into it
(`preloaded`); otherwise the process runs on the system allocator, only slower, with a note.
"""

from __future__ import annotations

import os
from importlib import metadata, util
from pathlib import Path

# The Ray releases whose bundled jemalloc was tested here (pyproject.toml pins ray the same way).
TESTED_RAY_MIN = (2, 40)
TESTED_RAY_BELOW = (3,)
RAY_JEMALLOC = ("core", "libjemalloc.so")


def jemalloc() -> tuple[str | None, str | None]:
    """(path of Ray's bundled jemalloc, None), or (None, why it is not used)."""
    from pipeline.stages.trafilatura_adapter import version_tuple  # lxml: only when asked

    try:
        version = metadata.version("ray")
    except metadata.PackageNotFoundError:
        return None, "ray is not installed"
    if not TESTED_RAY_MIN <= version_tuple(version) < TESTED_RAY_BELOW:
        return None, f"ray {version} is outside the tested range >=2.40,<3"
    spec = util.find_spec("ray")  # its location only: importing ray costs seconds
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder).joinpath(*RAY_JEMALLOC)
        if path.is_file():
            return str(path), None
    return None, f"ray {version} has no {'/'.join(RAY_JEMALLOC)}"


def preload_env(library: str) -> dict[str, str]:
    """This process's environment with `library` first in LD_PRELOAD (for a child process)."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD")) if p)
    return env


def preloaded(pid: int, library: str) -> bool:
    """Whether process `pid` has `library` mapped (its preload took effect)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return os.path.realpath(library) in maps or library in maps
