"""Per-stage and per-run accounting, and the invariant every run must satisfy.

Readers: records == documents + counted skips. Stages: documents in == kept + rejected, and each
stage's input is the previous stage's kept output. A violation raises AccountingError: losing a
document silently is worse than failing loudly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import AccountingError, CurateError
from pipeline.runner.histograms import ScoreHistogram

# Example documents kept per stage and removal reason (stats.json `examples`, report.md).
MAX_EXAMPLES = 3


@dataclass
class StageStats:
    """Counts and costs of one stage (over one unit, or summed over a run)."""

    name: str
    docs_in: int = 0
    docs_kept: int = 0
    docs_rejected: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    tokens_in: int | None = None  # payload tokens, counted with output.tokenizer only
    tokens_out: int | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    metrics: Counter[str] = field(default_factory=Counter)  # stage counters (take_metrics)
    warnings: list[str] = field(default_factory=list)  # set-up warnings, each once
    first_error: str | None = None  # message of the first `<stage>_error` rejection
    # Per thresholded score column: kept vs rejected documents by score (runner.histograms).
    histograms: dict[str, ScoreHistogram] = field(default_factory=dict)
    # reason -> the first few removed documents ({id, url, excerpt}), in unit then row order
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, other: StageStats) -> None:
        self.docs_in += other.docs_in
        self.docs_kept += other.docs_kept
        self.docs_rejected += other.docs_rejected
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        if other.tokens_in is not None:
            self.tokens_in = (self.tokens_in or 0) + other.tokens_in
            self.tokens_out = (self.tokens_out or 0) + (other.tokens_out or 0)
        self.wall_s += other.wall_s
        self.cpu_s += other.cpu_s
        self.reasons.update(other.reasons)
        self.metrics.update(other.metrics)
        self.warnings.extend(w for w in other.warnings if w not in self.warnings)
        if self.first_error is None:
            self.first_error = other.first_error
        for column, h in other.histograms.items():
            if column in self.histograms:
                self.histograms[column].add(h)
            else:
                self.histograms[column] = ScoreHistogram.from_dict(h.to_dict())
        self.add_examples(other.examples)

    def add_examples(self, examples: dict[str, list[dict[str, Any]]]) -> None:
        """Append examples that come later in unit and row order, up to MAX_EXAMPLES per
        reason: summing units in unit order picks the same documents on any executor."""
        for reason, docs in examples.items():
            have = self.examples.setdefault(reason, [])
            have.extend(docs[: MAX_EXAMPLES - len(have)])

    def to_dict(self) -> dict[str, Any]:
        tokens = (
            {"tokens_in": self.tokens_in, "tokens_out": self.tokens_out}
            if self.tokens_in is not None
            else {}
        )
        return {
            "name": self.name,
            "docs_in": self.docs_in,
            "docs_kept": self.docs_kept,
            "docs_rejected": self.docs_rejected,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            **tokens,
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "removed_by_reason": dict(self.reasons.most_common()),
            "metrics": dict(sorted(self.metrics.items())),
            "warnings": list(self.warnings),
            "first_error": self.first_error,
            **(
                {"histograms": {c: h.to_dict() for c, h in self.histograms.items()}}
                if self.histograms
                else {}
            ),
            "examples": {
                r: self.examples[r] for r, _ in self.reasons.most_common() if r in self.examples
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageStats:
        return cls(
            name=d["name"],
            docs_in=d["docs_in"],
            docs_kept=d["docs_kept"],
            docs_rejected=d["docs_rejected"],
            bytes_in=d["bytes_in"],
            bytes_out=d["bytes_out"],
            tokens_in=d.get("tokens_in"),
            tokens_out=d.get("tokens_out"),
            wall_s=d["wall_s"],
            cpu_s=d["cpu_s"],
            reasons=Counter(d["removed_by_reason"]),
            metrics=Counter(d.get("metrics", {})),
            warnings=list(d.get("warnings", [])),
            first_error=d.get("first_error"),
            histograms={c: ScoreHistogram.from_dict(h) for c, h in d.get("histograms", {}).items()},
            examples={r: list(docs) for r, docs in d.get("examples", {}).items()},
        )


@dataclass
class ReaderTotals:
    """Reader accounting summed over units."""

    records: int = 0
    documents: int = 0
    bytes_read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def add(self, d: dict[str, Any]) -> None:
        self.records += d["records"]
        self.documents += d["documents"]
        self.bytes_read += d["bytes_read"]
        self.skipped.update(d["skipped"])
        self.errors.extend(d["errors"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "documents": self.documents,
            "bytes_read": self.bytes_read,
            "skipped": dict(self.skipped.most_common()),
            "errors": self.errors,
        }


def task_where(unit: Any, segment: int) -> str:
    """'unit I (PATH), segment S' for a unit given as an InputUnit or its marker dict."""
    if isinstance(unit, dict):
        return f"unit {unit['index']} ({unit['path']}), segment {segment}"
    return f"unit {unit.index} ({unit.path}), segment {segment}"


def check_segment(result: dict[str, Any]) -> None:
    """Raise AccountingError if one task's numbers do not reconcile.

    Segment 0 starts from the reader's documents; later segments from their input shard's rows.
    """
    where = task_where(result["unit"], result["segment"])
    reader = result["reader"]
    problems = _reader_problems(reader) if reader is not None else []
    start = reader["documents"] if reader is not None else result["input_docs"]
    problems += _chain_problems(start, result["stages"], result["output_docs"])
    if problems:
        raise AccountingError(f"accounting violated in {where}: " + "; ".join(problems))


def check_run(reader: dict[str, Any], stages: list[dict[str, Any]], output_docs: int) -> None:
    """Raise AccountingError if the run totals (or one unit's, all segments) do not reconcile."""
    problems = _reader_problems(reader) + _chain_problems(reader["documents"], stages, output_docs)
    if problems:
        raise AccountingError("accounting violated in run: " + "; ".join(problems))


def _reader_problems(reader: dict[str, Any]) -> list[str]:
    skipped = sum(reader["skipped"].values())
    if reader["records"] != reader["documents"] + skipped:
        return [
            f"reader: records {reader['records']} != documents {reader['documents']} "
            f"+ skipped {skipped}"
        ]
    return []


def _chain_problems(start: int, stages: list[dict[str, Any]], output_docs: int) -> list[str]:
    problems = []
    expected_in = start
    for s in stages:
        if s["docs_in"] != expected_in:
            problems.append(f"{s['name']}: docs in {s['docs_in']} != upstream {expected_in}")
        if s["docs_in"] != s["docs_kept"] + s["docs_rejected"]:
            problems.append(
                f"{s['name']}: in {s['docs_in']} != kept {s['docs_kept']} "
                f"+ rejected {s['docs_rejected']}"
            )
        if sum(s["removed_by_reason"].values()) != s["docs_rejected"]:
            problems.append(f"{s['name']}: reasons do not sum to rejected {s['docs_rejected']}")
        expected_in = s["docs_kept"]
    problems += _token_problems(stages)
    if output_docs != expected_in:
        problems.append(f"output: {output_docs} documents written != {expected_in} kept")
    return problems


def _token_problems(stages: list[dict[str, Any]]) -> list[str]:
    """With output.tokenizer: each stage's tokens in are the previous stage's tokens out."""
    problems = []
    for prev, s in zip(stages, stages[1:], strict=False):
        if "tokens_in" in s and "tokens_out" in prev and s["tokens_in"] != prev["tokens_out"]:
            problems.append(
                f"{s['name']}: tokens in {s['tokens_in']} != upstream {prev['tokens_out']}"
            )
    return problems


def merge_segments(markers: list[dict[str, Any]]) -> dict[str, Any]:
    """One unit's record over all segments: the reader of segment 0, every stage, final output."""
    first, last = markers[0], markers[-1]
    return {
        "unit": first["unit"],
        "reader": first["reader"],
        "stages": [s for m in markers for s in m["stages"]],
        "output_docs": last["output_docs"],
        "output_bytes": last["output_bytes"],
        "output_file": last["output_file"],
    }


def sum_units(units: list[dict[str, Any]], stage_names: list[str]) -> dict[str, Any]:
    """Sum per-unit stats into run totals (reader, per stage, output)."""
    reader = ReaderTotals()
    stages = [StageStats(name) for name in stage_names]
    output_docs = output_bytes = 0
    for u in units:
        reader.add(u["reader"])
        for total, part in zip(stages, u["stages"], strict=True):
            total.add(StageStats.from_dict(part))
        output_docs += u["output_docs"]
        output_bytes += u["output_bytes"]
    return {
        "reader": reader.to_dict(),
        "stages": [s.to_dict() for s in stages],
        "output_docs": output_docs,
        "output_bytes": output_bytes,
    }


def check_error_fractions(stages: list[dict[str, Any]], limit: float) -> None:
    """Raise CurateError when a stage failed on more than `limit` of its input documents.

    Failures are the `<stage>_error` rejections (a document the stage raised on, or e.g. a page
    the extractor crashed on): counted like any removal, but past a few they mean the stage is
    broken, not that the documents were bad.
    """
    for s in stages:
        base = s["name"].split(".")[0]
        errors = s["removed_by_reason"].get(f"{base}_error", 0)
        if s["docs_in"] and errors / s["docs_in"] > limit:
            raise CurateError(
                f"stage {s['name']} failed on {errors} of {s['docs_in']} documents "
                f"({errors / s['docs_in']:.1%} > runtime.max_error_fraction {limit:g}); "
                f"first error: {s.get('first_error') or 'not recorded'}; counts are in stats.json"
            )


def check_input_yielded(reader: dict[str, Any], units: int) -> None:
    """Raise CurateError when the input gave no document at all (empty or wholly unreadable
    files): a run over nothing is not a success, however well it reconciles."""
    if reader["documents"]:
        return
    skipped = ", ".join(f"{n} {r}" for r, n in reader["skipped"].items()) or "none"
    first = f"; first problem: {reader['errors'][0]}" if reader["errors"] else ""
    raise CurateError(
        f"the input gave no document: {units} file(s), {reader['records']} record(s) read "
        f"(skipped: {skipped}){first}; counts are in stats.json"
    )
