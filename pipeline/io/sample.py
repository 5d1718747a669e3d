"""`input.sample_files`: a seeded sample of the input's units (files), read in plan order.

Each unit is ranked by a hash of (seed, path, shard) and the `n` lowest ranks are kept. The
choice depends only on the set of paths and the seed, never on the order they were listed in or
on the machine: the same paths file, reordered, gives the same sample, and so does a rerun.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from pipeline.io.base import InputUnit


def sample_units(units: list[InputUnit], n: int, seed: int) -> list[InputUnit]:
    """`n` of `units` chosen by `seed` (all of them when there are no more than `n`), in their
    plan order and re-indexed 0..n-1."""
    if n >= len(units):
        return units

    def rank(unit: InputUnit) -> bytes:
        key = f"{seed}\0{unit.path}\0{unit.shard}".encode("utf-8", "surrogateescape")
        return hashlib.blake2b(key, digest_size=8).digest()

    chosen = sorted(sorted(units, key=rank)[:n], key=lambda u: u.index)
    return [replace(unit, index=i) for i, unit in enumerate(chosen)]
