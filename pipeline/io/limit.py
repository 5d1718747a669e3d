"""`input.limit`: a run over the first N documents of its input, reading no more than needed.

Units are taken in plan order (sorted paths); the first ones are read until N documents have
come out, the unit where the total is reached is capped at what it still needs, and the units
after it are not read at all. The caps depend only on the input files and N, so a resumed run
reads the same documents; the documents of the capped units are read twice (here, to find the
caps, and in the run), which a limit meant for quick trials keeps small.
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.options import InputConfig
from pipeline.io.sources import read_unit


def limit_units(units: list[InputUnit], cfg: InputConfig, batch_size: int) -> list[InputUnit]:
    """The units that hold the first `cfg.limit` documents, the last one capped (unit.limit);
    all of `units` when there is no limit."""
    if cfg.limit is None:
        return units
    chosen: list[InputUnit] = []
    remaining = cfg.limit
    for unit in units:
        if remaining <= 0:
            break
        stats = ReaderStats()
        batches = read_unit(replace(unit, limit=remaining), cfg, stats, batch_size)
        for _ in batches:  # stops by itself at `remaining` documents
            pass
        capped = stats.documents >= remaining
        chosen.append(replace(unit, limit=remaining) if capped else unit)
        remaining -= stats.documents
    return chosen
