"""curate's per-user cache directory, for what is slow to build and the same on every run of a
machine (token tables, verdicts of the tiktoken check): $XDG_CACHE_HOME/curate, by default
~/.cache/curate. Nothing in it is needed: a cache that cannot be read or written is rebuilt or
skipped by its user."""

from __future__ import annotations

import os


def user_cache_dir() -> str:
    """The directory (not created here): $XDG_CACHE_HOME (default ~/.cache), then `curate`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "curate")
