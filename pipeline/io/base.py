"""The reader contract: one unit of input -> a stream of Arrow batches, every record counted."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from pipeline.schema import HTML_SCHEMA, TEXT_SCHEMA

# Skip reasons that mean the recipe does not fit the input, with the key that fixes them.
CONFIG_SKIPS: dict[str, str] = {
    "missing_text": "input.text_field",
    "missing_text_column": "input.text_field",
}
MAX_SEEN_FIELDS = 30


@dataclass(frozen=True)
class InputUnit:
    """One independently processable piece of input: a file (or a shard of an HF dataset).

    `index` is the unit's position in the sorted plan; output shards are named after it, so it
    must be stable for the same input list.
    """

    index: int
    path: str  # local path or fsspec URL
    format: str  # warc | wet | jsonl | parquet | hf
    shard: int = 0  # for formats that split one path into several units (hf)
    num_shards: int = 1
    limit: int | None = None  # read only its first `limit` documents (input.limit, io/limit.py)
    # False: a remote file listed in input.paths_file, never looked up (a request each), so its
    # size is unknown and its identity is its path (io/sources.py).
    checked: bool = True
    # Its batches and reader stats from a read already done (input.limit's pass, io/limit.py),
    # replayed instead of reading the file again; never part of the unit's identity.
    preread: PreRead | None = field(default=None, compare=False, repr=False)


@dataclass
class ReaderStats:
    """Per-unit reader accounting: records == documents + sum(skipped.values())."""

    records: int = 0
    documents: int = 0
    bytes_read: int = 0  # payload bytes of the documents emitted
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # file-level problems, human readable
    # Field names of records skipped for a configuration reason (for the error naming the key).
    seen_fields: list[str] = field(default_factory=list)

    def note_fields(self, names: Iterable[str]) -> None:
        """Remember the field names of a record skipped for a configuration reason (bounded)."""
        for name in names:
            if len(self.seen_fields) >= MAX_SEEN_FIELDS:
                return
            if name not in self.seen_fields:
                self.seen_fields.append(str(name)[:80])

    def config_problem(self, source: str) -> str | None:
        """One line naming the key to set when every record was skipped for a configuration
        reason (e.g. every JSON line lacks the text field), else None."""
        if self.documents or not self.records:
            return None
        reasons = {r for r, n in self.skipped.items() if n}
        if not reasons or not reasons <= set(CONFIG_SKIPS):
            return None
        keys = sorted({CONFIG_SKIPS[r] for r in reasons})
        counts = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()) if n)
        seen = ", ".join(self.seen_fields) or "none"
        detail = self.errors[0].removeprefix(f"{source}: ") if self.errors else ""
        return (
            f"{source}: no record was usable ({counts}{'; ' + detail if detail else ''}); "
            f"fields seen: {seen}; set {' / '.join(keys)}"
        )

    def skip(self, reason: str, n: int = 1) -> None:
        self.records += n
        self.skipped[reason] += n

    def emit(self, nbytes: int) -> None:
        self.records += 1
        self.documents += 1
        self.bytes_read += nbytes

    def balanced(self) -> bool:
        return self.records == self.documents + sum(self.skipped.values())

    def add(self, other: ReaderStats) -> None:
        """Count what `other` counted (records, documents, bytes, skips, errors) here too."""
        self.records += other.records
        self.documents += other.documents
        self.bytes_read += other.bytes_read
        self.skipped.update(other.skipped)
        self.errors.extend(other.errors)
        self.note_fields(other.seen_fields)

    def to_dict(self) -> dict:
        return {
            "records": self.records,
            "documents": self.documents,
            "bytes_read": self.bytes_read,
            "skipped": dict(sorted(self.skipped.items())),
            "errors": list(self.errors),
        }


@dataclass(frozen=True)
class PreRead:
    """What reading a unit produced (its batches, its reader's stats), kept so that the unit is
    not read a second time: a run replays it exactly as the reader would produce it again."""

    batches: tuple[pa.Table, ...]
    stats: ReaderStats

    def replay(self, stats: ReaderStats) -> Iterator[pa.Table]:
        stats.add(self.stats)
        yield from self.batches


class Reader(ABC):
    """Reads one InputUnit into batches of at most `batch_size` rows.

    Emits HTML_SCHEMA batches (warc) or TEXT_SCHEMA batches (all others). A bad record is a
    counted skip; a file that cannot be read at all records an error in `stats.errors` and a
    `skipped["unreadable_file"]` count instead of raising, so one bad file never stops a run.
    """

    format: str

    @abstractmethod
    def read(self, unit: InputUnit, stats: ReaderStats, batch_size: int) -> Iterator[pa.Table]:
        """Yield batches for `unit`, updating `stats` as records are read."""


def reader_schema(fmt: str) -> pa.Schema:
    """The columns a reader of `fmt` emits: raw HTML for WARC, text for every other format."""
    return HTML_SCHEMA if fmt == "warc" else TEXT_SCHEMA
