"""WARC and WET readers (fastwarc): every record becomes a document or a counted skip.

Skip reasons (ReaderStats.skipped), in the order they are checked:
  warcinfo, request, metadata, revisit, resource, conversion, continuation, unknown_type
      - a record of a type that is not read (named after its WARC-Type). WarcReader reads only
        `response`; WetReader reads only `conversion` (its `warcinfo` etc. are skipped the same way).
        `resource` records (wget logs, manifests) carry no HTTP envelope and are not pages.
  non_http        - a response that is not HTTP (e.g. Heritrix `dns:` lookups).
  corrupt_record  - the HTTP header block has no status line / cannot be parsed, the record
                    broke the reader, or a broken gzip member / stream region was skipped to
                    reach the next readable record (pipeline.io.warc_stream); once per region,
                    with a message in stats.errors.
  http_status     - status not in input.keep_http_status (3xx redirects included).
  non_html        - Content-Type is not HTML, or is absent/generic and the body does not sniff
                    as HTML (BOM, whitespace, <?xml>, comments and doctypes are skipped first).
  too_large       - payload (raw or after Content-Encoding) over input.max_record_bytes; the
                    reader goes on at the next record start found, not at the claimed length.
  truncated       - the record is physically shorter than its Content-Length (file cut mid-
                    record); records marked WARC-Truncated by the crawler are complete and kept.
                    A Content-Length that runs on into the next record (a lying header) is not a
                    skip: the block is cut where the next record's header starts, a message goes
                    to stats.errors and reading resumes at that record.
  bad_content_encoding - gzip/deflate/br/zstd Content-Encoding that does not decode.
  empty_body      - nothing but whitespace in the payload.
  binary_payload  - labelled HTML but the bytes are binary (magic number, or NUL bytes not
                    explained by a UTF-16/32 BOM or charset label).
  undecodable     - no charset leaves fewer than 25 % replacement characters.
  unreadable_file - the file cannot be opened or holds no readable WARC record at all; counted
                    once, with a message in stats.errors.
Columns: id = WARC-Record-ID verbatim (`<urn:uuid:...>`, as in the gold files; a hash of source
and offset if absent), url = WARC-Target-URI, source = unit path (escaped if not UTF-8), fetch_date = WARC-Date as
`YYYY-MM-DDTHH:MM:SSZ` (null if invalid, e.g. ClueWeb09's `2008-10-294T...`).
WAT files read with `format: warc` give no documents: their records count as `metadata`.
HTTP headers are parsed by fastwarc in quirks mode, which accepts the bare-LF header lines of
ClueWeb09 (strict mode runs on into the HTML and mistakes page lines for headers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pyarrow as pa
import xxhash
from fastwarc.warc import WarcRecord, WarcRecordType

from pipeline.io.base import InputUnit, Reader, ReaderStats
from pipeline.io.batch import BatchBuilder, add_error
from pipeline.io.dates import iso_utc
from pipeline.io.encoding import (
    charset_from_content_type,
    html_to_utf8,
    normalize_charset,
    wide_codec,
)
from pipeline.io.options import InputConfig
from pipeline.io.pathnames import display_path
from pipeline.io.payload import (
    GENERIC_MIMES,
    HTML_MIMES,
    PayloadError,
    binary_kind,
    dechunk,
    decode_content,
    looks_like_html,
    mime_of,
)
from pipeline.io.warc_stream import RecordStream
from pipeline.schema import HTML_SCHEMA, TEXT_SCHEMA

_TYPE_NAMES = {
    int(WarcRecordType.warcinfo): "warcinfo",
    int(WarcRecordType.response): "response",
    int(WarcRecordType.resource): "resource",
    int(WarcRecordType.request): "request",
    int(WarcRecordType.metadata): "metadata",
    int(WarcRecordType.revisit): "revisit",
    int(WarcRecordType.conversion): "conversion",
    int(WarcRecordType.continuation): "continuation",
}
_RESPONSE = int(WarcRecordType.response)
_CONVERSION = int(WarcRecordType.conversion)
# The start of a following record inside a block: its Content-Length ran past the block's end.
_NEXT_RECORD = re.compile(rb"\r?\n\r?\nWARC/\d{1,2}\.\d{1,2}\r?\n[A-Za-z][A-Za-z0-9-]*:")
# What every match of _NEXT_RECORD holds, 1 to 3 bytes after its start.
_NEXT_RECORD_CORE = b"\nWARC/"


def next_record_in(body: bytes) -> int | None:
    """Where _NEXT_RECORD first matches in `body` (its `search().start()`), None if nowhere.

    A match is `\\r?\\n\\r?\\nWARC/...`, so it starts 1 to 3 bytes before an occurrence of
    `\\nWARC/`: only those few positions are tried, found with a plain byte search. The regex
    searched alone tries every byte of every page (two thirds of the reader's CPU)."""
    at = body.find(_NEXT_RECORD_CORE)
    while at >= 0:
        for start in range(max(0, at - 3), at):
            if _NEXT_RECORD.match(body, start):
                return start
        at = body.find(_NEXT_RECORD_CORE, at + 1)
    return None


def record_id(rec: WarcRecord, source: str, offset: int) -> str:
    """WARC-Record-ID as written; a stable hash of (source, offset) when the header is missing."""
    rid = rec.record_id
    if rid:
        return rid.strip()
    return "xxh:" + xxhash.xxh3_128_hexdigest(f"{source}\0{offset}".encode())


def target_uri(rec: WarcRecord) -> str | None:
    """WARC-Target-URI without the angle brackets some WARC/1.0 writers add."""
    uri = rec.headers.get("WARC-Target-URI")
    if not uri:
        return None
    uri = uri.strip()
    return uri[1:-1] if uri.startswith("<") and uri.endswith(">") else uri


class _BaseWarcReader(Reader):
    """Shared loop: iterate records, let `_convert` emit a row or name a skip reason."""

    schema: pa.Schema = HTML_SCHEMA
    wanted: int = _RESPONSE

    def __init__(self, cfg: InputConfig | None = None) -> None:
        self.cfg = cfg or InputConfig()
        self.max_bytes = self.cfg.max_record_bytes
        self.keep_status = frozenset(self.cfg.keep_http_status)
        self._overrun = False  # the current record's Content-Length ran into the next record

    def read(self, unit: InputUnit, stats: ReaderStats, batch_size: int) -> Iterator[pa.Table]:
        """Yield batches of documents from one WARC/WET file, counting every record."""
        builder = BatchBuilder(self.schema, batch_size)
        source = display_path(unit.path)
        records = RecordStream(unit, stats)
        for offset, rec in records:
            rtype = int(rec.record_type)
            if rtype != self.wanted:
                stats.skip(_TYPE_NAMES.get(rtype, "unknown_type"))
                continue
            self._overrun = False
            try:
                result = self._convert(rec, source, offset, stats)
            except PayloadError as e:
                stats.skip(e.reason)
                if e.reason == "too_large" or self._overrun:
                    records.resync()
                continue
            except Exception as e:  # a bad record never takes down the run
                stats.skip("corrupt_record")
                add_error(
                    stats.errors, f"{source}: record {rec.record_id}: {type(e).__name__}: {e}"
                )
                continue
            if self._overrun:
                records.resync()
            row, nbytes = result
            stats.emit(nbytes)
            if builder.add(row, len(row[4])):
                yield builder.flush()
        if len(builder):
            yield builder.flush()

    def _convert(
        self, rec: WarcRecord, source: str, offset: int, stats: ReaderStats
    ) -> tuple[tuple, int]:
        """One wanted record -> (row in schema order, payload bytes); PayloadError to skip."""
        raise NotImplementedError

    def _read_block(self, rec: WarcRecord, source: str, stats: ReaderStats) -> bytes:
        """The rest of the record, checked against the size limit, for a Content-Length that
        runs into the next record (cut there) and for physical truncation."""
        expected = rec.content_length
        if expected > self.max_bytes:
            raise PayloadError("too_large")
        body = rec.reader.read()
        overrun = next_record_in(body)
        if overrun is not None:
            self._overrun = True
            add_error(
                stats.errors,
                f"{source}: record {rec.record_id}: Content-Length {expected} runs into the next "
                f"record; block cut at byte {overrun}",
            )
            return body[:overrun]
        if len(body) < expected:
            add_error(
                stats.errors,
                f"{source}: record {rec.record_id} cut short: {len(body)} of {expected} bytes",
            )
            raise PayloadError("truncated")
        return body


class WarcReader(_BaseWarcReader):
    """HTTP `response` records with an HTML payload -> HTML_SCHEMA batches (decoded html)."""

    format = "warc"
    schema = HTML_SCHEMA
    wanted = _RESPONSE

    def _convert(
        self, rec: WarcRecord, source: str, offset: int, stats: ReaderStats
    ) -> tuple[tuple, int]:
        if not rec.is_http:
            if rec.headers.get("Content-Type") is not None:
                raise PayloadError("non_http")
            rec.is_http = True  # no WARC Content-Type at all: try HTTP anyway
        rec.parse_http(quirks_mode=True, auto_decode="none")
        http = rec.http_headers
        status = http.status_code if http is not None else None
        if status is None:
            raise PayloadError("corrupt_record")
        if status not in self.keep_status:
            raise PayloadError("http_status")
        content_type = http.get("Content-Type")
        mime = mime_of(content_type)
        labelled_html = mime in HTML_MIMES
        if not labelled_html and mime not in GENERIC_MIMES:
            raise PayloadError("non_html")

        body = self._read_block(rec, source, stats)
        if "chunked" in (http.get("Transfer-Encoding") or "").lower():
            dechunked = dechunk(body)  # None: the crawler already stored it de-chunked
            body = body if dechunked is None else dechunked
        body = decode_content(body, http.get("Content-Encoding"), self.max_bytes)
        if not body.strip():
            raise PayloadError("empty_body")
        charset = charset_from_content_type(content_type)
        wide = wide_codec(body, normalize_charset(charset)) is not None
        if binary_kind(body, wide_text=wide) is not None:
            raise PayloadError("binary_payload" if labelled_html else "non_html")
        if not labelled_html and not looks_like_html(body):
            raise PayloadError("non_html")
        html, _codec = html_to_utf8(body, charset)
        if html is None:
            raise PayloadError("undecodable")
        row = (
            record_id(rec, source, offset),
            target_uri(rec),
            source,
            iso_utc(rec.headers.get("WARC-Date")),
            html,
        )
        return row, len(body)


class WetReader(_BaseWarcReader):
    """WET `conversion` records (extracted plain text) -> TEXT_SCHEMA batches."""

    format = "wet"
    schema = TEXT_SCHEMA
    wanted = _CONVERSION

    def _convert(
        self, rec: WarcRecord, source: str, offset: int, stats: ReaderStats
    ) -> tuple[tuple, int]:
        body = self._read_block(rec, source, stats)
        if not body.strip():
            raise PayloadError("empty_body")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body.decode("utf-8", "replace")
            if text.count("\ufffd") > 0.25 * len(text):
                raise PayloadError("undecodable") from None
        headers = rec.headers
        meta = {
            key: value
            for key, value in (
                ("content_type", headers.get("Content-Type")),
                ("language", headers.get("WARC-Identified-Content-Language")),
                ("refers_to", headers.get("WARC-Refers-To")),
            )
            if value
        }
        row = (
            record_id(rec, source, offset),
            target_uri(rec),
            source,
            iso_utc(headers.get("WARC-Date")),
            text,
            json.dumps(meta, ensure_ascii=False) if meta else "{}",
        )
        return row, len(body)
