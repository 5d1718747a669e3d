"""The one execution kernel: score, isolate failing documents, decide, account.

`curate run` (runner/unit.py), the ablation score cache (ablate/cache.py) and the ablation
variants (ablate/run.py) all apply stages through these functions, so a document that breaks a
stage is treated, named and counted the same way everywhere:

- `score_isolated`: a stage's `score` on a batch; when the batch raises, row by row, so one bad
  document becomes a `<stage>_error` rejection instead of sinking the batch. Work per document
  is bounded here too: a text longer than the stage's `max_chars` is `<stage>_too_large` without
  being scored, and `score` runs under a CPU-time limit (runtime.stage_cpu_s_per_doc, per batch,
  then per document when the batch runs out) whose overrun is `<stage>_timeout`.
- `decide`: the stage's `keep` on scored rows (isolated the same way), plus the error reasons.
- `account`: a stage's StageStats from what it saw and what it decided.
- `run_stage`: the three together for a map stage over one batch (the run's loop), counting
  the stage's thresholded scores into its histograms (runner.histograms) on the way.
- `note_examples`: the first few removed documents of each reason, for stats.json and report.md.
- `Intermediates`: the values computed once per batch and shared by the stages that declare them
  (their contract's `intermediates`, e.g. each document's words), handed to `score` by keyword.
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
from pipeline.runner.accounting import MAX_EXAMPLES, StageStats
from pipeline.runner.guard import CpuTimeout, cpu_limit
from pipeline.runner.histograms import observe_scores
from pipeline.schema import HTML, ID, REASON, TEXT, URL
from pipeline.stages.contract import WORDS
from pipeline.text.shared_words import SharedWords

log = logging.getLogger(__name__)

MAX_ERROR_TEXT = 500
EXCERPT_CHARS = 300  # characters of an example document's text in stats.json and report.md


def error_reason(stage: Any) -> str:
    """The rejection reason of a document the stage failed on."""
    return f"{stage.name}_error"


def too_large_reason(stage: Any) -> str:
    """The rejection reason of a document longer than the stage's `max_chars`."""
    return f"{stage.name}_too_large"


def timeout_reason(stage: Any) -> str:
    """The rejection reason of a document that used up the per-document CPU time."""
    return f"{stage.name}_timeout"


def error_text(exc: BaseException) -> str:
    """One bounded line naming an exception (for stats.json's first_error)."""
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:MAX_ERROR_TEXT]


@dataclass
class Scored:
    """A batch after `score`: the scored rows and the rows the stage failed on."""

    table: pa.Table | None  # scored rows, input order (None when every row failed)
    ok: np.ndarray  # positions in the input batch of the rows of `table`
    failed: np.ndarray  # positions of rows on which score raised (ascending)
    first_error: str | None
    # The reason of each failed row (aligned with `failed`); None or absent: `<stage>_error`.
    failed_reasons: list[str | None] | None = None


def _take(batch: pa.Table, idx: np.ndarray) -> pa.Table:
    return batch.take(pa.array(idx, pa.int64()))


def over_max_chars(stage: Any, batch: pa.Table) -> np.ndarray:
    """Positions of the rows whose text is longer than the stage's `max_chars` (none for a
    stage without that key)."""
    limit = getattr(stage.config, "max_chars", None)
    if limit is None or TEXT not in batch.column_names or batch.num_rows == 0:
        return np.zeros(0, np.int64)
    if all(_data_bytes(chunk) <= limit for chunk in batch.column(TEXT).chunks):
        return np.zeros(0, np.int64)  # no text has more bytes, so none has more characters
    lengths = pc.utf8_length(batch.column(TEXT)).fill_null(0)
    return np.flatnonzero(pc.greater(lengths, limit).to_numpy(zero_copy_only=False))


def _data_bytes(chunk: pa.Array) -> int:
    """An upper bound of any one value's UTF-8 bytes in a string chunk: its data buffer's size
    (the whole buffer, also under a slice); for another type, a bound no limit passes."""
    if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
        return np.iinfo(np.int64).max
    data = chunk.buffers()[2]
    return 0 if data is None else data.size


def cpu_budget(stage: Any, cpu_s: float | None) -> float | None:
    """The CPU limit per document for `stage`: none for a stage that enforces its own
    per-document `timeout_s` (extract's sandbox kills the page's process itself)."""
    return None if getattr(stage.config, "timeout_s", None) else cpu_s  # null or 0: in-process


class Intermediates:
    """One batch's intermediates (pipeline.stages.contract.INTERMEDIATES), made on first use.

    The kernel keeps one per batch along a chain; each is keyed to the text it was computed
    from (a rewritten `text` is computed afresh), lives in memory only and is never written."""

    def __init__(self) -> None:
        self.words = SharedWords()

    def for_stage(self, stage: Any) -> dict[str, Any]:
        """The keyword arguments of `stage.score`: the intermediates its contract declares, each
        told that a new stage starts (so entries no stage uses any more are let go)."""
        names = stage.contract(stage.config).intermediates
        if WORDS in names:
            self.words.next_stage()
        return {WORDS: self.words} if WORDS in names else {}


def score_isolated(
    stage: Any, batch: pa.Table, cpu_s: float | None = None, shared: Intermediates | None = None
) -> Scored:
    """`stage.score(batch)` on the rows within `max_chars`, under a CPU limit of `cpu_s`; if it
    raises or runs out, each row alone under `cpu_s`, recording the ones that fail and why.
    `shared`: the batch's intermediates, for a stage that declares some (else the stage computes
    its own)."""
    kwargs = shared.for_stage(stage) if shared is not None else {}
    n = batch.num_rows
    big = over_max_chars(stage, batch)
    todo = np.setdiff1d(np.arange(n), big) if len(big) else np.arange(n)
    failures = {int(i): too_large_reason(stage) for i in big}
    limit = cpu_budget(stage, cpu_s)
    if len(todo) == 0:
        return _scored([], [], failures, None)
    try:
        with cpu_limit(limit):
            table = stage.score(_take(batch, todo) if len(big) else batch, **kwargs)
    except CpuTimeout:
        log.warning("stage %s ran out of CPU time on a batch; isolating documents", stage.name)
    except Exception as exc:  # noqa: BLE001 - isolate, count and continue
        log.warning("stage %s failed on a batch (%s); isolating documents", stage.name, exc)
    else:
        if table.num_rows != len(todo):  # a stage that drops rows itself would lose them
            raise AccountingError(
                f"{stage.name}: score returned {table.num_rows} rows for {len(todo)}"
            )
        failed, reasons = _failed(failures)
        return Scored(table, todo, failed, None, reasons)
    parts, ok = [], []
    first: str | None = None
    for i in todo.tolist():
        try:
            with cpu_limit(limit):
                part = stage.score(batch.slice(i, 1), **kwargs)
        except CpuTimeout:
            log.warning("stage %s: a document used more than %s CPU s", stage.name, limit)
            failures[i] = timeout_reason(stage)
            continue
        except Exception as exc:  # noqa: BLE001
            log.warning("stage %s could not process a document: %s", stage.name, exc)
            first = first or error_text(exc)
            failures[i] = None
            continue
        if part.num_rows != 1:
            raise AccountingError(f"{stage.name}: score returned {part.num_rows} rows for 1")
        parts.append(part)
        ok.append(i)
    return _scored(parts, ok, failures, first)


def _failed(failures: dict[int, str | None]) -> tuple[np.ndarray, list[str | None]]:
    """(ascending failed positions, their reasons) from position -> reason."""
    order = sorted(failures)
    return np.array(order, np.int64), [failures[i] for i in order]


def _scored(
    parts: list[pa.Table], ok: list[int], failures: dict[int, str | None], first: str | None
) -> Scored:
    table = pa.concat_tables(parts, promote_options="permissive") if parts else None
    failed, reasons = _failed(failures)
    return Scored(table, np.array(ok, np.int64), failed, first, reasons)


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
        given = scored.failed_reasons or [None] * len(scored.failed)
        reasons[scored.failed] = np.array([r or error_reason(stage) for r in given], object)
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
    tokens: tuple[int, int] | None = None,
) -> None:
    """Add one batch's decisions to a stage's stats (docs in = kept + rejected by design);
    `tokens` = (in, out) when output.tokenizer counts them."""
    rejected = [r for r in reasons if r is not None]
    stats.docs_in += len(reasons)
    stats.docs_rejected += len(rejected)
    stats.docs_kept += len(reasons) - len(rejected)
    stats.bytes_in += bytes_in
    stats.bytes_out += bytes_out
    if tokens is not None:
        stats.tokens_in = (stats.tokens_in or 0) + tokens[0]
        stats.tokens_out = (stats.tokens_out or 0) + tokens[1]
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


def excerpt(text: str | None) -> str:
    """The start of a document, whitespace runs shown as one space, at most EXCERPT_CHARS."""
    head = " ".join((text or "")[: 4 * EXCERPT_CHARS].split())
    return head if len(head) <= EXCERPT_CHARS else head[: EXCERPT_CHARS - 1] + "\u2026"


def note_examples(stats: StageStats, rejected: pa.Table) -> None:
    """Keep the first removed documents of each reason (up to MAX_EXAMPLES) in `stats`: id, URL
    and an excerpt of the text (the HTML when the text is empty, as for `extract_empty`)."""
    if rejected.num_rows == 0:
        return
    full = {r for r, docs in stats.examples.items() if len(docs) >= MAX_EXAMPLES}
    picked: dict[str, list[int]] = {}
    for i, reason in enumerate(rejected.column(REASON).to_pylist()):
        if reason in full:
            continue
        rows = picked.setdefault(reason, [])
        rows.append(i)
        if len(rows) + len(stats.examples.get(reason, [])) >= MAX_EXAMPLES:
            full.add(reason)
    names = rejected.column_names

    def value(col: str, i: int) -> Any:
        return rejected.column(col)[i].as_py() if col in names else None

    for reason, rows in picked.items():
        stats.add_examples(
            {
                reason: [
                    {
                        "id": value(ID, i),
                        "url": value(URL, i),
                        "excerpt": excerpt(value(TEXT, i) or value(HTML, i)),
                    }
                    for i in rows
                ]
            }
        )


def split(
    batch: pa.Table, scored: Scored, reasons: np.ndarray, restore: tuple[str, ...] = ()
) -> tuple[pa.Table, pa.Table]:
    """(kept scored rows, rejected rows with a `reason` column), both in input order.

    A rejected row is as the stage left it; one the stage failed on is as it came in. The
    columns `restore` of the input come back on every rejected row (a stage's `drops`, e.g.
    extract's `html` under output.keep_rejected_html).
    """
    kept_mask = np.array([r is None for r in reasons], dtype=bool)
    if scored.table is None:
        kept = batch.slice(0, 0)
    elif kept_mask.all():  # what filtering with all true gives, chunk for chunk, without copies
        kept = scored.table
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
    for col in (c for c in restore if c in batch.column_names):
        values = batch.column(col).take(pa.array(positions, pa.int64()))
        at = rejected.schema.get_field_index(col)
        rejected = (
            rejected.set_column(at, col, values) if at >= 0 else rejected.append_column(col, values)
        )
    return kept, rejected.append_column(REASON, pa.array(list(reasons[positions]), pa.string()))


def run_stage(
    stage: Any,
    batch: pa.Table,
    stats: StageStats,
    cpu_s: float | None = None,
    tokens: PayloadTokens | None = None,
    restore: tuple[str, ...] = (),
    shared: Intermediates | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Apply a map stage to a batch: bounded, timed, isolated, decided, counted (in tokens
    too when `tokens` is given; that counting is outside the stage's wall and CPU time);
    `restore`: input columns put back on the rejected rows (see `split`); `shared`: the
    batch's intermediates, kept by the caller along the chain."""
    wall0, cpu0 = time.perf_counter(), time.process_time() + stage.helper_cpu_s()
    scored = score_isolated(stage, batch, cpu_s, shared)
    reasons, first = decide(stage, scored, batch.num_rows)
    kept, rejected = split(batch, scored, reasons, restore)
    collect(stats, stage)
    stats.wall_s += time.perf_counter() - wall0
    stats.cpu_s += time.process_time() + stage.helper_cpu_s() - cpu0
    counted = tokens.in_out(stage, batch, kept, reasons) if tokens is not None else None
    account(stats, reasons, payload_bytes(batch), payload_bytes(kept), first, counted)
    count_scores(stats, stage, scored, reasons)
    note_examples(stats, rejected)
    return kept, rejected


def count_scores(stats: StageStats, stage: Any, scored: Scored, reasons: np.ndarray) -> None:
    """Add the scored rows' thresholded scores to the stage's histograms, kept (reason None)
    vs rejected; rows the stage failed on have no score and are not counted."""
    if scored.table is not None and len(scored.ok):
        kept_mask = np.array([r is None for r in reasons[scored.ok]], dtype=bool)
        observe_scores(stats.histograms, stage, scored.table, kept_mask)


def payload_column(batch: pa.Table) -> str | None:
    """The payload column: `text`, else `html` (before extraction), else None."""
    return TEXT if TEXT in batch.column_names else HTML if HTML in batch.column_names else None


def payload_lengths(batch: pa.Table) -> pa.Array:
    """UTF-8 bytes per row of the payload column (`text`, else `html`; 0 when null or absent)."""
    col = payload_column(batch)
    if col is None:
        return pa.array([0] * batch.num_rows, pa.int64())
    return pc.binary_length(batch.column(col)).fill_null(0).cast(pa.int64())


def payload_bytes(batch: pa.Table) -> int:
    """UTF-8 bytes of the payload column, summed (the byte accounting of stats.json)."""
    if batch.num_rows == 0:
        return 0
    return int(pc.sum(payload_lengths(batch)).as_py() or 0)


class PayloadTokens:
    """Tokens of the payload column (the one `payload_bytes` counts) under output.tokenizer, a
    Hugging Face tokenizer.json encoded without special tokens.

    Each text is encoded once along a chain: the lengths of the last table counted are kept,
    and a stage that does not rewrite the payload (its contract does not produce it) passes its
    input's lengths of the kept rows on as the next stage's input, without encoding again."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._last: tuple[pa.Table, np.ndarray] | None = None

    def lengths(self, table: pa.Table) -> np.ndarray:
        """Tokens per row (0 for a null or absent payload)."""
        if self._last is not None and self._last[0] is table:
            return self._last[1]
        from pipeline.stats.tokenizers import load_tokenizer

        col = payload_column(table)
        out = np.zeros(table.num_rows, np.int64)
        texts = [] if col is None else table.column(col).to_pylist()
        todo = [i for i, t in enumerate(texts) if t]
        if todo:
            encoder = load_tokenizer(self.spec)
            out[todo] = encoder.encode_ids([texts[i] for i in todo])[1]  # type: ignore[attr-defined]
        self._last = (table, out)
        return out

    def in_out(
        self, stage: Any, batch: pa.Table, kept: pa.Table, reasons: np.ndarray
    ) -> tuple[int, int]:
        """(tokens of `batch`, tokens of `kept`), `kept` being the rows of `batch` whose reason
        is None, in order, as `split` makes them."""
        before = self.lengths(batch)
        col = payload_column(batch)
        if (
            col is not None
            and col == payload_column(kept)
            and col not in stage.contract(stage.config).produces
        ):
            after = before[np.array([r is None for r in reasons], dtype=bool)]
            self._last = (kept, after)
        else:
            after = self.lengths(kept)
        return int(before.sum()), int(after.sum())
