"""`input.limit`: a run over the first N documents of its input, reading no more than needed,
and each of them once.

Units are taken in plan order (sorted paths); the first ones are read until N documents have
come out, the unit where the total is reached is capped at what it still needs, and the units
after it are not read at all. The caps depend only on the input files and N, so a resumed run
reads the same documents. What this pass read is kept with each unit (`InputUnit.preread`) and
replayed by the run instead of reading the files again, up to PREREAD_MAX_BYTES of batches (a
limit is meant for quick trials); units past that budget are read again by the run.
"""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa

from pipeline.io.base import InputUnit, PreRead, ReaderStats
from pipeline.io.options import InputConfig
from pipeline.io.sources import read_unit

# Arrow bytes of batches kept from the limit pass for the run (beyond: read again).
PREREAD_MAX_BYTES = 512 * 2**20


def limit_units(units: list[InputUnit], cfg: InputConfig, batch_size: int) -> list[InputUnit]:
    """The units that hold the first `cfg.limit` documents, the last one capped (unit.limit),
    each with what reading it produced (unit.preread, within PREREAD_MAX_BYTES); all of
    `units`, unread, when there is no limit."""
    if cfg.limit is None:
        return units
    chosen: list[InputUnit] = []
    remaining = cfg.limit
    budget = PREREAD_MAX_BYTES
    for unit in units:
        if remaining <= 0:
            break
        stats = ReaderStats()
        kept: list[pa.Table] | None = []
        for batch in read_unit(replace(unit, limit=remaining), cfg, stats, batch_size):
            budget -= batch.nbytes  # the reading stops by itself at `remaining` documents
            if kept is not None and budget >= 0:
                kept.append(batch)
            else:
                kept = None  # over the budget: the run reads this unit again
        preread = PreRead(tuple(kept), stats) if kept is not None else None
        capped = stats.documents >= remaining
        chosen.append(replace(unit, limit=remaining if capped else None, preread=preread))
        remaining -= stats.documents
    return chosen
