"""Build broken inputs from the real files in ../shared/data, and run recipes through the CLI.

Real crawl WARCs store one gzip member per record, so a fault is made by rewriting one member:
cut it, flip bytes of its header, change its Content-Length or swap its HTTP body.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipeline.cli import main
from tests.conftest import SHARED_DATA

WARC_DIR = SHARED_DATA / "warc"
# 281 real web texts with a 0/1 quality label, one JSON object per line.
DCLM = SHARED_DATA / "quality" / "dclm-agreement.jsonl"
# A real wget crawl: 48 records, 22 HTML responses, one gzip member per record.
WGET = WARC_DIR / "wget-2024-sample-0000.warc.gz"
# One cheap text stage, for runs over text input (JSONL, Parquet).
TEXT_STAGES: list[dict[str, Any]] = [{"stage": "gopher_quality"}]
# Fast, in-process extraction for tests about readers, accounting and the runner.
FAST_EXTRACT: dict[str, Any] = {"stage": "extract", "backend": "resiliparse", "timeout_s": None}
# The default extractor in-process: the documents of the sandboxed default (no page comes near
# its CPU limit), without starting extractor processes; for tests about what comes after it.
IN_PROCESS_EXTRACT: dict[str, Any] = {"stage": "extract", "timeout_s": None}


@dataclass
class Member:
    """One gzip member of a WARC file: its stored bytes and the WARC record inside."""

    raw: bytes
    record: bytes

    def header(self, name: str) -> str | None:
        """A WARC header value of the record."""
        m = re.search(rb"\r\n" + name.encode() + rb":[ \t]*([^\r\n]*)", self.record[:4096], re.I)
        return m.group(1).decode() if m else None


def warc_members(path: Path) -> list[Member]:
    """Split a per-record-gzip WARC file into its members."""
    raw = path.read_bytes()
    members, pos = [], 0
    while pos < len(raw):
        d = zlib.decompressobj(31)
        record = d.decompress(raw[pos:])
        end = len(raw) - len(d.unused_data)
        members.append(Member(raw[pos:end], record))
        pos = end
    return members


def gz(record: bytes) -> bytes:
    """One gzip member, reproducibly (no timestamp)."""
    return gzip.compress(record, mtime=0)


def write_members(path: Path, members: list[Member | bytes]) -> Path:
    """Write members (as stored, or raw bytes to put in verbatim) back to a file."""
    path.write_bytes(b"".join(m.raw if isinstance(m, Member) else m for m in members))
    return path


def html_responses(members: list[Member]) -> list[int]:
    """Indices of the records that are HTTP 200 text/html responses."""
    out = []
    for i, m in enumerate(members):
        head = m.record[:6000]
        ok = b"WARC-Type: response" in head and re.search(rb"HTTP/1\.[01] 200", head)
        if ok and re.search(rb"\nContent-Type:\s*text/html", head, re.I):
            out.append(i)
    return out


# A <meta> tag declaring a charset (removed when a page is re-encoded).
META_CHARSET = re.compile(rb"<meta[^>]*charset[^>]*>", re.IGNORECASE)


def html_pages(path: Path, n: int) -> list[tuple[Member, str]]:
    """The first `n` non-ASCII HTML responses of a real file as (member, page decoded right)."""
    from pipeline.io.encoding import charset_from_content_type, decode_html

    out = []
    ms = warc_members(path)
    for k in html_responses(ms):
        block = split_record(ms[k].record)[1]
        ct = re.search(rb"\nContent-Type:([^\r\n]*)", block[:2000], re.I)
        label = charset_from_content_type(ct.group(1).decode()) if ct else None
        text, _ = decode_html(http_body(ms[k]), label)
        if text and not text.isascii():
            out.append((ms[k], text))
        if len(out) == n:
            break
    return out


def split_record(record: bytes) -> tuple[bytes, bytes]:
    """(WARC header block without the blank line, content block); the trailing CRLFs dropped."""
    head, _, block = record.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length:\s*(\d+)", head, re.I).group(1))
    return head, block[:length]


def make_record(head: bytes, block: bytes, content_length: int | None = None) -> bytes:
    """A WARC record from a header block and a content block, with a (possibly lying) length."""
    length = len(block) if content_length is None else content_length
    head = re.sub(rb"Content-Length:\s*\d+", b"Content-Length: %d" % length, head, count=1)
    return head + b"\r\n\r\n" + block + b"\r\n\r\n"


def with_content_length(member: Member, length: int) -> bytes:
    """The member re-compressed with its record's Content-Length replaced by `length`."""
    head, block = split_record(member.record)
    return gz(make_record(head, block, length))


def http_parts(block: bytes) -> tuple[list[bytes], bytes]:
    """(HTTP header lines, body) of a response's content block (CRLF or bare-LF headers)."""
    m = re.search(rb"\r?\n\r?\n", block)
    assert m is not None, "no end of HTTP headers"
    return re.split(rb"\r?\n", block[: m.start()]), block[m.end() :]


_DROPPED = re.compile(rb"(content-length|transfer-encoding|content-encoding):", re.IGNORECASE)


def with_http_body(
    member: Member, body: bytes, content_type: str | None = None, record_id: str | None = None
) -> bytes:
    """The member with its HTTP body replaced (lengths fixed, digests dropped); optionally a new
    Content-Type (None = keep; "" = drop the header) and a new WARC-Record-ID."""
    head, block = split_record(member.record)
    lines, _ = http_parts(block)
    lines = [ln for ln in lines if not _DROPPED.match(ln)]
    if content_type is not None:
        lines = [ln for ln in lines if not ln.lower().startswith(b"content-type:")]
        if content_type:
            lines.append(b"Content-Type: " + content_type.encode())
    lines.append(b"Content-Length: %d" % len(body))
    if record_id is not None:
        head = re.sub(rb"WARC-Record-ID:[^\r\n]*", f"WARC-Record-ID: {record_id}".encode(), head)
    head = re.sub(rb"\r\nWARC-(Payload|Block)-Digest:[^\r\n]*", b"", head)
    return gz(make_record(head, b"\r\n".join(lines) + b"\r\n\r\n" + body))


def http_body(member: Member) -> bytes:
    """The HTTP body of a response record (as stored)."""
    return http_parts(split_record(member.record)[1])[1]


def dclm_lines() -> list[str]:
    """The 281 DCLM records as JSON lines."""
    lines = DCLM.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 281
    return lines


# --- recipes and runs ---------------------------------------------------------------------


def write_recipe(
    path: Path,
    inputs: list[str | Path],
    out: Path,
    stages: list[dict[str, Any]] | None = None,
    *,
    input_options: dict[str, Any] | None = None,
    output_options: dict[str, Any] | None = None,
    **runtime: Any,
) -> Path:
    """A recipe file (JSON is valid YAML) running locally, without progress output."""
    recipe = {
        "input": {"paths": [str(p) for p in inputs], **(input_options or {})},
        "output": {"path": str(out), "keep_rejected": True, **(output_options or {})},
        "runtime": {"executor": "local", "batch_size": 16, "progress": "off", **runtime},
        "stages": stages or [FAST_EXTRACT],
    }
    path.write_text(json.dumps(recipe, indent=1))
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def curate(capsys: Any, *argv: str | Path) -> CliResult:
    """Run `curate ARGV` in this process; exit code and what the user saw."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    seen = capsys.readouterr()
    return CliResult(code, seen.out, seen.err)


def stats_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "stats.json").read_text())


def read_output(out: Path) -> pa.Table:
    """All kept documents of a run, sorted by id."""
    return ds.dataset(str(out / "data"), format="parquet").to_table().sort_by("id")


def kept_ids(out: Path) -> list[str]:
    return read_output(out).column("id").to_pylist()


def texts_by_id(out: Path) -> dict[str, str]:
    t = read_output(out)
    return dict(zip(t.column("id").to_pylist(), t.column("text").to_pylist(), strict=True))


def rejected(out: Path, stage: str) -> pa.Table:
    return ds.dataset(str(out / "rejected" / stage), format="parquet").to_table()


def assert_reconciles(stats: dict[str, Any]) -> None:
    """The run's own accounting, re-checked from stats.json: nothing lost anywhere."""
    assert stats["accounting"] == "ok"
    r = stats["reader"]
    assert r["records"] == r["documents"] + sum(r["skipped"].values())
    upstream = r["documents"]
    for s in stats["stages"]:
        assert s["docs_in"] == upstream == s["docs_kept"] + s["docs_rejected"], s["name"]
        assert sum(s["removed_by_reason"].values()) == s["docs_rejected"], s["name"]
        upstream = s["docs_kept"]
    assert stats["output"]["documents"] == upstream


def assert_no_partial_shard(out: Path) -> None:
    """Every file a reader of data/ would pick up is a complete Parquet shard."""
    data = out / "data"
    if not data.is_dir():
        return
    for f in data.iterdir():
        if f.name.startswith((".", "_")):
            continue  # hidden: temporary names, skipped by Arrow, Spark and `datasets`
        assert f.name.endswith(".parquet"), f"unexpected file under data/: {f.name}"
        pq.read_metadata(f)  # raises on a partial file
