"""Column-wise batch building: Python lists per column, one Arrow table per batch (fast)."""

from __future__ import annotations

import re

import pyarrow as pa

# Flush before a batch's string payload reaches this size: Arrow `string` offsets are int32.
MAX_BATCH_BYTES = 256 * 1024 * 1024
MAX_ERRORS_PER_UNIT = 20
_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def clean_str(value: str | None) -> str | None:
    """Replace lone surrogates (e.g. from JSON `\\ud800` escapes) so the string is valid UTF-8."""
    if value is None:
        return None
    return _SURROGATE.sub("\ufffd", value)


class BatchBuilder:
    """Accumulates rows for `schema` and hands back tables of at most `batch_size` rows."""

    def __init__(self, schema: pa.Schema, batch_size: int, max_bytes: int = MAX_BATCH_BYTES):
        self.schema = schema
        self.batch_size = max(1, int(batch_size))
        self.max_bytes = max_bytes
        self.columns: list[list] = [[] for _ in schema.names]
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.columns[0])

    def add(self, row: tuple, nbytes: int) -> bool:
        """Append one row (values in schema order); True when the batch should be flushed."""
        for col, value in zip(self.columns, row, strict=True):
            col.append(value)
        self.nbytes += nbytes
        return len(self.columns[0]) >= self.batch_size or self.nbytes >= self.max_bytes

    def flush(self) -> pa.Table:
        """The accumulated rows as one table; the builder starts empty again."""
        arrays = [_column(col, f.type) for col, f in zip(self.columns, self.schema, strict=True)]
        self.columns = [[] for _ in self.schema.names]
        self.nbytes = 0
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _utf8(values: list) -> list:
    """str -> UTF-8 bytes (lone surrogates replaced); bytes and None pass through."""
    try:
        return [v.encode("utf-8") if type(v) is str else v for v in values]
    except UnicodeEncodeError:
        return [clean_str(v).encode("utf-8") if type(v) is str else v for v in values]


def _column(values: list, type_: pa.DataType) -> pa.Array:
    """One Arrow column. Strings go through UTF-8 bytes + a validating binary->string cast,
    several times faster than letting Arrow convert large Python str objects itself."""
    if pa.types.is_string(type_):
        return pa.array(_utf8(values), type=pa.binary()).cast(pa.string())
    return pa.array(values, type=type_)


def add_error(errors: list[str], message: str) -> None:
    """Record a human-readable problem (on one line: library messages can span several),
    capping the list so a broken file cannot flood it."""
    if len(errors) < MAX_ERRORS_PER_UNIT:
        errors.append(_LINE_BREAKS.sub(" ", message).strip())
    elif len(errors) == MAX_ERRORS_PER_UNIT:
        errors.append("... further errors in this unit not listed")
