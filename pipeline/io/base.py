"""The reader contract: one unit of input -> a stream of Arrow batches, every record counted."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa


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


@dataclass
class ReaderStats:
    """Per-unit reader accounting: records == documents + sum(skipped.values())."""

    records: int = 0
    documents: int = 0
    bytes_read: int = 0  # payload bytes of the documents emitted
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # file-level problems, human readable

    def skip(self, reason: str, n: int = 1) -> None:
        self.records += n
        self.skipped[reason] += n

    def emit(self, nbytes: int) -> None:
        self.records += 1
        self.documents += 1
        self.bytes_read += nbytes

    def balanced(self) -> bool:
        return self.records == self.documents + sum(self.skipped.values())

    def to_dict(self) -> dict:
        return {
            "records": self.records,
            "documents": self.documents,
            "bytes_read": self.bytes_read,
            "skipped": dict(sorted(self.skipped.items())),
            "errors": list(self.errors),
        }


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
