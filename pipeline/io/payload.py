"""HTTP payload helpers for WARC responses: MIME classes, sniffing, de-chunking, Content-Encoding.

Kept apart from the WARC iteration so each rule can be tested on hand-made bytes.
"""

from __future__ import annotations

import re
import zlib

import brotli
import zstandard

HTML_MIMES = frozenset({"text/html", "application/xhtml+xml", "application/xhtml", "text/xhtml"})
# Content-Types that say nothing about the payload: the body is sniffed instead.
GENERIC_MIMES = frozenset(
    {
        "",
        "application/octet-stream",
        "binary/octet-stream",
        "application/unknown",
        "unknown/unknown",
        "application/x-unknown-content-type",
        "*/*",
        "text/unknown",
        "none",
    }
)

SNIFF_BYTES = 2048
_MAGIC = (
    (b"%PDF-", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"PK\x03\x04", "zip"),
    (b"\x1f\x8b\x08", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"BZh91AY&SY", "bzip2"),
    (b"RIFF", "riff"),
    (b"OggS", "ogg"),
    (b"ID3", "mp3"),
    (b"fLaC", "flac"),
    (b"\x1aE\xdf\xa3", "webm"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"\x00\x01\x00\x00\x00", "ttf"),
    (b"OTTO", "otf"),
    (b"wOFF", "woff"),
    (b"wOF2", "woff2"),
    (b"\x7fELF", "elf"),
    (b"MZ\x90\x00", "exe"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),
    (b"CWS", "swf"),
    (b"FWS", "swf"),
    (b"ZWS", "swf"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\xca\xfe\xba\xbe", "class"),
)
# Tags that open an HTML document (WHATWG MIME sniffing list, plus common first tags).
_HTML_TAG = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|script|iframe|h[1-6]|div|font|table|a|style|title|b|br|"
    rb"p|meta|link|span|center|form|img|ul|nav|header|section|article|main|noscript|frameset|"
    rb"base|!--)[\s>/]",
    re.IGNORECASE,
)
_HTML_ANYWHERE = re.compile(
    rb"<(?:html|head|body|title|div|p|table|br|a\s+href|meta|script|span|ul|li|h[1-6])[\s>/]",
    re.IGNORECASE,
)
_XML_ROOT = re.compile(
    rb"<(?:rss|feed|svg|urlset|sitemapindex|rdf:rdf|kml|opml|xsl:|wsdl|soap)[\s>:/]", re.IGNORECASE
)
_WS = b" \t\r\n\x0c"
_CHUNK_LINE = re.compile(rb"[0-9a-fA-F]{1,16}[ \t]*(?:;[^\r\n]*)?\r?\n")


class PayloadError(Exception):
    """A payload cannot be used; `reason` is the skip reason to count."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


def mime_of(content_type: str | None) -> str:
    """The lower-cased media type of a Content-Type value ('' when absent)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def binary_kind(body: bytes, wide_text: bool = False) -> str | None:
    """A short name for a binary payload (by magic number or NUL bytes), None for text.
    `wide_text`: the body is labelled UTF-16/32 and laid out so (its NUL bytes are text)."""
    for magic, kind in _MAGIC:
        if body.startswith(magic):
            return kind
    if body[4:8] == b"ftyp":
        return "mp4"
    head = body[:4096]
    if wide_text or head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    if head.count(b"\x00") > 8:
        return "nul_bytes"
    return None


def looks_like_html(body: bytes) -> bool:
    """Sniff an unlabelled body: does it start like HTML once BOM, space, comments, <?xml> go,
    or (not being RSS/Atom/SVG/sitemap XML) carry HTML tags early on?"""
    head = body[:SNIFF_BYTES]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        head = head[2:].replace(b"\x00", b"")
    elif head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    pos = len(head) - len(head.lstrip(_WS))
    for _ in range(32):
        if head.startswith(b"<!--", pos):
            end = head.find(b"-->", pos + 4)
            if end < 0:
                break
            pos = end + 3
        elif head[pos : pos + 5].lower() == b"<?xml":
            end = head.find(b"?>", pos)
            if end < 0:
                break
            pos = end + 2
        elif _HTML_TAG.match(head, pos):
            return True
        elif _XML_ROOT.match(head, pos):
            return False
        else:
            break
        while pos < len(head) and head[pos] in _WS:
            pos += 1
    # Stray text before the markup (PHP warnings), or a wrapper tag (CleanEval's <text>): two
    # HTML tags within the first KB or two are enough.
    tags = _HTML_ANYWHERE.finditer(head)
    return next(tags, None) is not None and next(tags, None) is not None


def dechunk(body: bytes) -> bytes | None:
    """Undo HTTP chunked transfer coding; None when the body is not actually chunked.

    Many crawlers store the de-chunked body but keep the header, so the header alone is not
    trusted. A chunk cut short by the end of the body is kept (the record may be truncated).
    """
    m = _CHUNK_LINE.match(body)
    if m is None:
        return None
    out: list[bytes] = []
    pos = 0
    while m is not None:
        size = int(m.group(0).split(b";", 1)[0].strip(), 16)
        start = m.end()
        if size == 0:
            break
        out.append(body[start : start + size])
        pos = start + size
        if body.startswith(b"\r\n", pos):
            pos += 2
        elif body.startswith(b"\n", pos):
            pos += 1
        if pos >= len(body):
            break
        m = _CHUNK_LINE.match(body, pos)
    return b"".join(out)


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    """zlib/gzip-decompress at most `limit` + 1 bytes (a truncated stream keeps what it has)."""
    d = zlib.decompressobj(wbits)
    return d.decompress(body, limit + 1)


def _decode_one(body: bytes, coding: str, limit: int) -> bytes:
    """Undo one Content-Encoding; raises PayloadError when the bytes do not decode."""
    if coding in ("gzip", "x-gzip"):
        # Some archives (ClueWeb09) store the decoded body but keep the header: check the magic.
        if not body.startswith(b"\x1f\x8b"):
            return body
        try:
            return _inflate(body, 31, limit)
        except zlib.error as e:
            raise PayloadError("bad_content_encoding", f"gzip: {e}") from e
    if coding == "deflate":
        for wbits in (15, -15):
            try:
                return _inflate(body, wbits, limit)
            except zlib.error:
                continue
        if looks_like_html(body):
            return body
        raise PayloadError("bad_content_encoding", "deflate: not a zlib or raw deflate stream")
    if coding == "br":
        try:
            return brotli.Decompressor().process(body, output_buffer_limit=limit + 1)
        except brotli.error as e:
            if looks_like_html(body):
                return body
            raise PayloadError("bad_content_encoding", f"br: {e}") from e
    if coding == "zstd":
        if not body.startswith(b"\x28\xb5\x2f\xfd"):
            return body
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True)
            return reader.read(limit + 1)
        except zstandard.ZstdError as e:
            raise PayloadError("bad_content_encoding", f"zstd: {e}") from e
    return body  # identity, or an unknown coding we leave alone


def decode_content(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo every Content-Encoding (last applied first); raises PayloadError (reason set)."""
    if not content_encoding:
        return body
    for coding in reversed(content_encoding.lower().split(",")):
        body = _decode_one(body, coding.strip(), limit)
        if len(body) > limit:
            raise PayloadError("too_large", f"decoded body over {limit} bytes")
    return body
