"""The one execution kernel: score, isolate failing documents, decide, account.

`curate run` (runner/unit.py), the ablation score cache (ablate/cache.py) and the ablation
variants (ablate/run.py) all apply stages through these functions, so a document that breaks a
stage is treated, named and counted the same way everywhere:

- `score_isolated`: a stage's `score` on a batch; when the batch raises, row by row, so one bad
  document becomes a `<stage>_error` rejection instead of sinking the batch.
- `decide`: the stage's `keep` on scored rows (isolated the same way), plus the error reasons.
- `account`: a stage's StageStats from what it saw and what it decided.
- `run_stage`: the three together for a map stage over one batch (the run's loop).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import AccountingError
from pipeline.runner.accounting import StageStats
from pipeline.schema import HTML, REASON, TEXT

log = logging.getLogger(__name__)

MAX_ERROR_TEXT = 500


def error_reason(stage: Any) -> str:
    """The rejection reason of a document the stage failed on."""
    return f"{stage.name}_error"


def error_text(exc: BaseException) -> str:
    """One bounded line naming an exception (for stats.json's first_error)."""
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:MAX_ERROR_TEXT]


@dataclass
class Scored:
    """A batch after `score`: the scored rows and the rows the stage failed on."""

    table: pa.Table | None  # scored rows, input order (None when every row failed)
    ok: np.ndarray  # positions in the input batch of the rows of `table`
    failed: np.ndarray  # positions of rows on which score raised
    first_error: str | None


def _take(batch: pa.Table, idx: np.ndarray) -> pa.Table:
    return batch.take(pa.array(idx, pa.int64()))


def score_isolated(stage: Any, batch: pa.Table) -> Scored:
    """`stage.score(batch)`; if it raises, each row alone, recording the ones that fail."""
    n = batch.num_rows
    try:
        table = stage.score(batch)
    except Exception as exc:  # noqa: BLE001 - isolate, count and continue
        log.warning("stage %s failed on a batch (%s); isolating documents", stage.name, exc)
    else:
        if table.num_rows != n:  # a stage that drops rows itself would lose them silently
            raise AccountingError(f"{stage.name}: score returned {table.num_rows} rows for {n}")
        return Scored(table, np.arange(n), np.zeros(0, np.int64), None)
    parts, ok, failed = [], [], []
    first: str | None = None
    for i in range(n):
        try:
            part = stage.score(batch.slice(i, 1))
        except Exception as exc:  # noqa: BLE001
            log.warning("stage %s could not process a document: %s", stage.name, exc)
            first = first or error_text(exc)
            failed.append(i)
            continue
        if part.num_rows != 1:
            raise AccountingError(f"{stage.name}: score returned {part.num_rows} rows for 1")
        parts.append(part)
        ok.append(i)
    table = pa.concat_tables(parts, promote_options="permissive") if parts else None
    return Scored(table, np.array(ok, np.int64), np.array(failed, np.int64), first)


def keep_isolated(stage: Any, table: pa.Table) -> tuple[list[str | None], str | None]:
    """`stage.keep(table)` as a list of reasons; rows on which keep raises get the error reason."""
    try:
        reasons = stage.keep(table)
        if len(reasons) != table.num_rows:
            raise ValueError(f"keep() returned {len(reasons)} reasons for {table.num_rows} rows")
        return reasons.to_pylist(), None
    except Exception as exc:  # noqa: BLE001
        log.warning("stage %s failed deciding a batch (%s); isolating documents", stage.name, exc)
    out: list[str | None] = []
    first: str | None = None
    for i in range(table.num_rows):
        try:
            out.append(stage.keep(table.slice(i, 1))[0].as_py())
        except Exception as exc:  # noqa: BLE001
            first = first or error_text(exc)
            out.append(error_reason(stage))
    return out, first


def decide(stage: Any, scored: Scored, n: int) -> tuple[np.ndarray, str | None]:
    """Reasons for all `n` rows of the input batch (None = keep) and the first error message."""
    reasons = np.full(n, None, dtype=object)
    first = scored.first_error
    if len(scored.failed):
        reasons[scored.failed] = error_reason(stage)
    if scored.table is not None and len(scored.ok):
        decided, keep_error = keep_isolated(stage, scored.table)
        reasons[scored.ok] = np.array(decided, dtype=object)
        first = first or keep_error
    return reasons, first


def account(
    stats: StageStats,
    reasons: np.ndarray,
    bytes_in: int,
    bytes_out: int,
    first_error: str | None = None,
) -> None:
    """Add one batch's decisions to a stage's stats (docs in = kept + rejected by design)."""
    rejected = [r for r in reasons if r is not None]
    stats.docs_in += len(reasons)
    stats.docs_rejected += len(rejected)
    stats.docs_kept += len(reasons) - len(rejected)
    stats.bytes_in += bytes_in
    stats.bytes_out += bytes_out
    stats.reasons.update(rejected)
    if first_error and stats.first_error is None:
        stats.first_error = first_error


def collect(stats: StageStats, stage: Any) -> None:
    """Take the stage's own counters, set-up warnings and first failure message."""
    stats.metrics.update(stage.take_metrics())
    for w in stage.warnings():
        if w not in stats.warnings:
            log.warning("stage %s: %s", stats.name, w)
            stats.warnings.append(w)
    message = stage.take_error()
    if message and stats.first_error is None:
        stats.first_error = message[:MAX_ERROR_TEXT]


def split(batch: pa.Table, scored: Scored, reasons: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """(kept scored rows, rejected rows with a `reason` column), both in input order.

    A rejected row is as the stage left it; one the stage failed on is as it came in.
    """
    kept_mask = np.array([r is None for r in reasons], dtype=bool)
    if scored.table is None:
        kept = batch.slice(0, 0)
    else:
        kept = scored.table.filter(pa.array(kept_mask[scored.ok]))
    parts, order = [], []
    if scored.table is not None:
        rej_ok = ~kept_mask[scored.ok]
        if rej_ok.any():
            parts.append(scored.table.filter(pa.array(rej_ok)))
            order.append(scored.ok[rej_ok])
    if len(scored.failed):
        parts.append(_take(batch, scored.failed))
        order.append(scored.failed)
    if not parts:
        like = scored.table if scored.table is not None else batch
        return kept, like.slice(0, 0).append_column(REASON, pa.array([], pa.string()))
    rejected = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    positions = np.concatenate(order)
    if len(parts) > 1:
        rejected = rejected.take(pa.array(np.argsort(positions, kind="stable")))
        positions = np.sort(positions)
    return kept, rejected.append_column(REASON, pa.array(list(reasons[positions]), pa.string()))


def run_stage(stage: Any, batch: pa.Table, stats: StageStats) -> tuple[pa.Table, pa.Table]:
    """Apply a map stage to a batch: timed, isolated, decided, counted."""
    wall0, cpu0 = time.perf_counter(), time.process_time() + stage.helper_cpu_s()
    scored = score_isolated(stage, batch)
    reasons, first = decide(stage, scored, batch.num_rows)
    kept, rejected = split(batch, scored, reasons)
    account(stats, reasons, payload_bytes(batch), payload_bytes(kept), first)
    collect(stats, stage)
    stats.wall_s += time.perf_counter() - wall0
    stats.cpu_s += time.process_time() + stage.helper_cpu_s() - cpu0
    return kept, rejected


def payload_lengths(batch: pa.Table) -> pa.Array:
    """UTF-8 bytes per row of the payload column (`text`, else `html`; 0 when null or absent)."""
    col = TEXT if TEXT in batch.column_names else HTML if HTML in batch.column_names else None
    if col is None:
        return pa.array([0] * batch.num_rows, pa.int64())
    return pc.binary_length(batch.column(col)).fill_null(0).cast(pa.int64())


def payload_bytes(batch: pa.Table) -> int:
    """UTF-8 bytes of the payload column, summed (the byte accounting of stats.json)."""
    if batch.num_rows == 0:
        return 0
    return int(pc.sum(payload_lengths(batch)).as_py() or 0)
