"""Column names and Arrow schemas shared by readers, stages and writers."""

from __future__ import annotations

import pyarrow as pa

ID = "id"
URL = "url"
SOURCE = "source"
FETCH_DATE = "fetch_date"
HTML = "html"
TEXT = "text"
METADATA = "metadata"
LANG = "lang"
LANG_SCORE = "lang_score"
REASON = "reason"

# Columns every reader emits, before the payload column.
BASE_FIELDS = [
    pa.field(ID, pa.string(), nullable=False),
    pa.field(URL, pa.string()),
    pa.field(SOURCE, pa.string()),
    pa.field(FETCH_DATE, pa.string()),  # ISO 8601 UTC when parseable, else null
]

# Batches from WARC responses carry raw HTML (decoded to str) until `extract` replaces it.
HTML_SCHEMA = pa.schema([*BASE_FIELDS, pa.field(HTML, pa.string())])
# Batches from WET / JSONL / Parquet / HF carry text directly; `metadata` is a JSON object string.
TEXT_SCHEMA = pa.schema(
    [*BASE_FIELDS, pa.field(TEXT, pa.string()), pa.field(METADATA, pa.string())]
)


def empty_like(schema: pa.Schema) -> pa.Table:
    """An empty table with `schema`, for stages that filter everything out."""
    return schema.empty_table()
