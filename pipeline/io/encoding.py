"""Decode raw HTML bytes to text the way a browser would, without trusting any single signal.

Order of evidence (`decode_html`):
  1. a byte-order mark (UTF-8, UTF-16LE/BE) wins outright, as in the WHATWG spec;
  2. the HTTP charset (a UTF-16/32 label only when the bytes are laid out so, its byte order
     taken from where the NUL bytes fall: `wide_codec`), then a `<meta charset>` / `<meta http-equiv=content-type>` / `<?xml encoding>`
     declaration in the first 4 KB, each used only if the body decodes cleanly with it; two
     deliberate exceptions, both common server misconfigurations: a single-byte legacy label
     (latin-1, cp1252, ...) on a body that is valid non-ASCII UTF-8 is overruled by UTF-8, and
     on a body that a multi-byte charset (declared in <meta>, or detected) decodes strictly, by
     that charset (a single-byte label fits any bytes, so it is the weaker evidence);
  3. strict UTF-8;
  4. detection with resiliparse's uchardet wrapper (on the ClueWeb09 EUC-JP sample 29/29 right,
     ~1 ms per page; charset-normalizer also got 29/29 but called a cp1252 test page cp1250),
     when it names a multi-byte codec that decodes strictly;
  5. a declared charset with a handful of bad bytes (U+FFFD <= 10 % of the non-ASCII characters,
     the rest decoding fine): the page is slightly broken, not mislabelled;
  6. a single-byte detected codec; failing everything, the candidate with the fewest U+FFFD,
     and more than 25 % U+FFFD -> undecodable.
Labels go through the WHATWG mapping (iso-8859-1 -> cp1252, x-sjis -> Shift_JIS, ...) and then to
the superset codecs browsers really use (Shift_JIS -> cp932, EUC-KR -> cp949, GBK -> gb18030,
Big5 -> big5hkscs); windows-125x bytes a codec leaves undefined map to C1 controls, as browsers do.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

from resiliparse.parse.encoding import detect_encoding, map_encoding_to_html5

# Above this share of U+FFFD in the decoded text, a body is "undecodable".
UNDECODABLE_RATIO = 0.25
# A declared charset is still trusted when U+FFFD are at most this share of non-ASCII characters.
DECLARED_TOLERANCE = 0.1
# In UTF-16/32 text, at most this share of the NUL bytes may sit in a character's low byte.
WIDE_STRAY_NUL = 0.1
# UTF-16/32 HTML is at least this share NUL bytes (its ASCII markup); fewer: a mislabelled page.
WIDE_MIN_NUL = 1 / 16
# How far into the body to look for <meta charset> and how much uchardet sees.
META_SCAN_BYTES = 4096
DETECT_BYTES = 4096  # uchardet samples head + tail; more data did not help on the gold sets

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
# Codecs browsers actually use in place of the labelled one (strict supersets in practice).
_SUPERSET = {
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "big5": "big5hkscs",
    "iso8859-11": "cp874",
    "latin-1": "cp1252",
    "ascii": "cp1252",
}
# If a codec fails strictly, these extended variants are tried before giving up on the label.
_EXTENDED = {
    "euc_jp": ("euc_jis_2004",),
    "cp932": ("shift_jis_2004",),
    "iso2022_jp": ("iso2022_jp_ext", "iso2022_jp_2004"),
}
# ASCII-compatible single-byte codecs: a valid non-ASCII UTF-8 body overrules these labels.
_SINGLE_BYTE = re.compile(
    r"^(cp(?!932|936|949|950)\d{3,4}|iso8859-\d+|koi8-\w|mac-\w+|latin-1|ascii|tis-620|kz1048|ptcp154)$"
)
_WINDOWS_C1 = re.compile(r"^cp(125\d|874)$")
_UTF16 = ("utf-16-le", "utf-16-be", "utf-16", "utf-32", "utf-32-le", "utf-32-be")

_META_RE = re.compile(
    rb"<meta[^>]{0,512}?charset\s*=\s*[\"']?\s*([a-z0-9_.:+-]{1,40})|"
    rb"<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([a-z0-9_.:+-]{1,40})",
    re.IGNORECASE,
)
_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?\s*([^\"';,\s]+)", re.IGNORECASE)


def _c1_controls(err: UnicodeError) -> tuple[str, int]:
    """Error handler: map bytes a windows-125x codec leaves undefined to U+0080..U+009F."""
    assert isinstance(err, UnicodeDecodeError)
    return "".join(chr(b) for b in err.object[err.start : err.end]), err.end


codecs.register_error("pipeline_c1", _c1_controls)


@lru_cache(maxsize=512)
def normalize_charset(label: str | None) -> str | None:
    """A charset label from HTTP/HTML -> the Python codec a browser would effectively use."""
    if not label:
        return None
    label = label.strip().strip("\"'").strip().lower()
    if not label:
        return None
    name = map_encoding_to_html5(label, fallback_utf8=False)
    try:
        name = codecs.lookup(name or label).name
    except LookupError:
        return None
    return _SUPERSET.get(name, name)


def charset_from_content_type(content_type: str | None) -> str | None:
    """The raw `charset=` parameter of a Content-Type header value, if any."""
    if not content_type:
        return None
    m = _CHARSET_PARAM.search(content_type)
    return m.group(1) if m else None


def wide_codec(body: bytes, codec: str | None) -> str | None:
    """For a UTF-16/32 label (`codec` normalised), the codec the body is really in: endianness
    from where the NUL bytes of its ASCII markup fall (a bare `utf-16` label, or a wrong byte
    order). None when the bytes are not laid out that way: (almost) no NUL in the first 4 KB
    (the label is wrong, the page is ASCII/UTF-8), or NULs at every offset (binary data)."""
    if codec not in _UTF16:
        return None
    head = body[:DETECT_BYTES]
    width = 4 if codec.startswith("utf-32") else 2
    zeros = [head[i::width].count(0) for i in range(width)]
    total = sum(zeros)
    if total < len(head) * WIDE_MIN_NUL:
        return None
    low_first = zeros[0] <= WIDE_STRAY_NUL * total  # a character's first byte is rarely NUL
    high_first = zeros[-1] <= WIDE_STRAY_NUL * total
    if low_first == high_first:
        return None
    return f"utf-{width * 8}-{'le' if low_first else 'be'}"


def meta_charset(body: bytes) -> str | None:
    """The charset declared by <meta> or <?xml encoding> in the first few KB, normalised."""
    m = _META_RE.search(body, 0, META_SCAN_BYTES)
    if not m:
        return None
    name = normalize_charset((m.group(1) or m.group(2)).decode("ascii", "replace"))
    # WHATWG: a meta tag cannot really declare UTF-16 (the tag itself was read as ASCII).
    return "utf-8" if name in _UTF16 else name


def _strict(body: bytes, codec: str) -> str | None:
    """Decode strictly (plus the extended variants of `codec`); None when it does not fit."""
    errors = "pipeline_c1" if _WINDOWS_C1.match(codec) else "strict"
    for name in (codec, *_EXTENDED.get(codec, ())):
        try:
            return body.decode(name, errors)
        except (UnicodeDecodeError, LookupError):
            continue
    return None


def _lenient(body: bytes, codec: str) -> tuple[str, float]:
    """Decode with U+FFFD for bad bytes; returns the text and its share of U+FFFD."""
    try:
        text = body.decode(codec, "replace")
    except LookupError:
        return "", 1.0
    return text, (text.count("\ufffd") / len(text)) if text else 0.0


def _is_utf8(body: bytes) -> str | None:
    """The body as text if it is valid UTF-8, else None."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _mostly_valid(text: str) -> bool:
    """A few U+FFFD among many correctly decoded non-ASCII characters: the label is right and
    the page slightly broken. Mostly U+FFFD among the non-ASCII: the label is wrong."""
    bad = text.count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return non_ascii > bad and bad <= DECLARED_TOLERANCE * non_ascii


def _multibyte_instead(body: bytes, declared: list[str]) -> tuple[str, str] | None:
    """A multi-byte charset that decodes the body strictly, declared elsewhere (<meta>) or
    detected: stronger evidence than a single-byte label, which fits any bytes (servers label
    EUC-JP / Shift_JIS / GBK pages iso-8859-1 by default)."""
    for codec in declared:
        if not _SINGLE_BYTE.match(codec):
            text = _strict(body, codec)
            if text is not None:
                return text, codec
    guess = normalize_charset(detect_encoding(body, max_len=DETECT_BYTES))
    if guess and guess not in declared and guess != "utf-8" and not _SINGLE_BYTE.match(guess):
        text = _strict(body, guess)
        if text is not None:
            return text, guess
    return None


def decode_html(body: bytes, http_charset: str | None) -> tuple[str | None, str]:
    """Decode an HTML body: (text, codec used); text is None when the body is undecodable."""
    if not body:
        return "", "utf-8"
    for bom, codec in _BOMS:
        if body.startswith(bom):
            text, ratio = _lenient(body[len(bom) :], codec)
            return (text if ratio <= UNDECODABLE_RATIO else None), codec

    declared: list[str] = []
    http = normalize_charset(http_charset)
    if http in _UTF16:  # byte order from the bytes; dropped when they are not UTF-16/32
        http = wide_codec(body, http)
    for name in (http, meta_charset(body)):
        if name and name not in declared:
            declared.append(name)

    for codec in declared:
        if _SINGLE_BYTE.match(codec) and not body.isascii():
            text = _is_utf8(body)
            if text is not None:
                return text, "utf-8"
            found = _multibyte_instead(body, declared)
            if found is not None:
                return found
        text = _strict(body, codec)
        if text is not None:
            return text, codec

    if "utf-8" not in declared:
        text = _is_utf8(body)
        if text is not None:
            return text, "utf-8"

    # A multi-byte guess that decodes strictly is strong evidence; a single-byte one is not
    # (every byte string "decodes"), so a nearly clean declared charset goes before it.
    guess = normalize_charset(detect_encoding(body, max_len=DETECT_BYTES))
    if guess in declared or guess == "utf-8":
        guess = None
    if guess and not _SINGLE_BYTE.match(guess):
        text = _strict(body, guess)
        if text is not None:
            return text, guess

    tried: list[tuple[str, float, str]] = []  # (text, share of U+FFFD, codec)
    for codec in declared:
        text, ratio = _lenient(body, codec)
        if _mostly_valid(text):
            return text, codec
        tried.append((text, ratio, codec))

    if guess:
        text = _strict(body, guess)
        if text is not None:
            return text, guess
        tried.append((*_lenient(body, guess), guess))
    if "utf-8" not in declared:
        tried.append((*_lenient(body, "utf-8"), "utf-8"))

    text, ratio, codec = min(tried, key=lambda t: t[1])
    return (text if ratio <= UNDECODABLE_RATIO else None), codec


def html_to_utf8(body: bytes, http_charset: str | None) -> tuple[bytes | None, str]:
    """`decode_html`, but as UTF-8 bytes: a body that already is clean UTF-8 is reused as is,
    which saves re-encoding (the batch builder hands bytes to Arrow directly)."""
    text, codec = decode_html(body, http_charset)
    if text is None:
        return None, codec
    if codec == "utf-8" and not body.startswith(b"\xef\xbb\xbf") and "\ufffd" not in text:
        return body, codec
    return text.encode("utf-8"), codec
