"""Map records of structured inputs (JSONL, Parquet, HF datasets) onto TEXT_SCHEMA.

`input.text_field`, `input.id_field` and `input.url_field` name the source fields; a field named
`fetch_date` fills that column (normalised to ISO 8601 UTC); every other field goes into
`metadata` as a JSON object string ("{}" when there are none). A missing id becomes a stable
`xxh:<128-bit hex>` hash of (source path, position), position being the 1-based line number
(JSONL) or the 0-based row number (Parquet, HF). A record whose text is missing, null or not a
string is skipped as `missing_text`, one whose text is over input.max_record_bytes (UTF-8) as
`too_large` (JSONL lines are capped as a whole by the reader); a record whose fields cannot be
mapped at all (a timestamp past year 9999, nesting too deep to store as metadata) as
`bad_record`; an empty or whitespace text is still a document, so the stages reject it with a
reason and it shows up in their statistics.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from pipeline.io.base import Reader, ReaderStats
from pipeline.io.dates import iso_utc
from pipeline.io.options import InputConfig
from pipeline.schema import FETCH_DATE, TEXT_SCHEMA

# What mapping one record can raise: a value Python cannot represent (ValueError, OverflowError),
# nesting deeper than the recursion limit (RecursionError), a value too big (MemoryError).
RECORD_ERRORS = (ValueError, TypeError, RecursionError, MemoryError, OverflowError)


def fallback_id(source: str, position: int) -> str:
    """Stable id for a record without one: hash of (source path, position)."""
    return "xxh:" + xxhash.xxh3_128_hexdigest(f"{source}\0{position}".encode())


def _to_json(meta: dict[str, Any]) -> str:
    """Metadata dict -> compact JSON object string (non-JSON values via str)."""
    if not meta:
        return "{}"
    return json.dumps(meta, ensure_ascii=False, default=str, separators=(",", ":"))


def _string_array(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Any Arrow column as `string` (numbers cast; structs and lists via str())."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    try:
        return arr.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in arr.to_pylist()], pa.string())


def is_string_type(type_: pa.DataType) -> bool:
    """Whether an Arrow type holds text (string, large_string, string_view, dictionary of them)."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or type_ == pa.string_view()


class FieldReader(Reader):
    """A reader of records with named fields (JSONL, Parquet, `datasets`): its config and the
    FieldMap of the configured names."""

    def __init__(self, cfg: InputConfig | None = None) -> None:
        self.cfg = cfg or InputConfig()
        self.fields = FieldMap(self.cfg)


class FieldMap:
    """The configured field names, applied to one record or one Arrow batch."""

    def __init__(self, cfg: InputConfig) -> None:
        self.text = cfg.text_field
        self.id = cfg.id_field
        self.url = cfg.url_field
        self.reserved = {self.text, self.id, self.url, FETCH_DATE}
        self.max_bytes = cfg.max_record_bytes

    def from_record(self, obj: dict[str, Any], source: str, position: int) -> tuple | None:
        """A TEXT_SCHEMA row for one JSON object; None when it has no usable text."""
        text = obj.get(self.text)
        if not isinstance(text, str):
            return None
        rid = obj.get(self.id)
        url = obj.get(self.url)
        meta = {k: v for k, v in obj.items() if k not in self.reserved}
        return (
            fallback_id(source, position) if rid is None or rid == "" else str(rid),
            url if isinstance(url, str) else None,
            source,
            iso_utc(obj.get(FETCH_DATE)),
            text,
            _to_json(meta),
        )

    def from_arrow(
        self, table: pa.Table | pa.RecordBatch, source: str, offset: int, stats: ReaderStats
    ) -> pa.Table:
        """TEXT_SCHEMA table for a batch whose row 0 is row `offset` of the unit; counts all rows.

        Rows without a text are `missing_text`, rows whose text is over `max_record_bytes` are
        `too_large`; both are dropped before anything else of the row is converted. A batch that
        cannot be converted (a value Python cannot hold, such as a timestamp past year 9999) is
        converted row by row: the rows that fail are `bad_record`, the rest read.
        """
        try:
            return self._from_arrow(table, source, offset, stats)
        except RECORD_ERRORS:
            pass
        parts = []
        for i in range(table.num_rows):
            try:
                parts.append(self._from_arrow(table.slice(i, 1), source, offset + i, stats))
            except RECORD_ERRORS:
                stats.skip("bad_record")
        return pa.concat_tables(parts) if parts else TEXT_SCHEMA.empty_table()

    def _from_arrow(
        self, table: pa.Table | pa.RecordBatch, source: str, offset: int, stats: ReaderStats
    ) -> pa.Table:
        """from_arrow for a batch that converts whole; counts its rows only when it does."""
        n = table.num_rows
        text = _string_array(table.column(self.text))
        sizes = pc.binary_length(text)
        too_large = pc.fill_null(pc.greater(sizes, self.max_bytes), False)
        keep = pc.and_(text.is_valid(), pc.invert(too_large))
        n_missing = text.null_count
        n_large = pc.sum(too_large).as_py() or 0
        positions = range(n)
        if text.null_count or n_large:
            positions = pc.indices_nonzero(keep).to_pylist()
            table, text = table.filter(keep), text.filter(keep)
        names = table.schema.names
        n = table.num_rows
        if self.id in names:
            ids = _string_array(table.column(self.id)).to_pylist()
            ids = [
                v if v else fallback_id(source, offset + i)
                for i, v in zip(positions, ids, strict=True)
            ]
        else:
            ids = [fallback_id(source, offset + i) for i in positions]
        urls = (
            _string_array(table.column(self.url)) if self.url in names else pa.nulls(n, pa.string())
        )
        if FETCH_DATE in names:
            dates = pa.array(
                [iso_utc(v) for v in table.column(FETCH_DATE).to_pylist()], pa.string()
            )
        else:
            dates = pa.nulls(n, pa.string())
        rest = [c for c in names if c not in self.reserved]
        if rest:
            rows = table.select(rest).to_pylist()
            meta = pa.array([_to_json(r) for r in rows], pa.string())
        else:
            meta = pa.array(["{}"] * n, pa.string())
        out = pa.Table.from_arrays(
            [
                pa.array(ids, pa.string()),
                urls,
                pa.array([source] * n, pa.string()),
                dates,
                text,
                meta,
            ],
            schema=TEXT_SCHEMA,
        )
        if n_missing:
            stats.skip("missing_text", n_missing)
        if n_large:
            stats.skip("too_large", n_large)
        stats.records += n
        stats.documents += n
        stats.bytes_read += pc.sum(pc.binary_length(text)).as_py() or 0
        return out
