"""File names as text. A name that is not valid UTF-8 reaches Python as a str holding lone
surrogates (PEP 383, os.fsdecode): it opens fine but cannot be written as UTF-8. Such a name
is kept as is for opening, and escaped (`caf\\xe9.jsonl`) wherever it is shown or stored: error
messages, the `source` column, stats.json, reports, the terminal."""

from __future__ import annotations

import codecs
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, carried by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def display_path(path: str) -> str:
    """`path` as valid Unicode: undecodable bytes as `\\xNN`, other lone surrogates `\\uNNNN`;
    a UTF-8 name is returned unchanged."""
    return _SURROGATE.sub(_escape, path) if _SURROGATE.search(path) else path


def json_safe(value: Any) -> Any:
    """A JSON-able structure with every string (keys too) passed through `display_path`, so
    writing it as UTF-8 cannot fail half-way on a file name."""
    if isinstance(value, str):
        return display_path(value)
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _escape_unencodable(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: lone surrogates as `display_path` writes them, any other character
    the stream cannot encode as a backslash escape."""
    assert isinstance(err, UnicodeEncodeError)
    bad = err.object[err.start : err.end]
    return "".join(
        display_path(c) if _SURROGATE.match(c) else c.encode("ascii", "backslashreplace").decode()
        for c in bad
    ), err.end


# For text streams: `open(..., errors=ESCAPE_ERRORS)` or `stream.reconfigure(errors=...)`.
ESCAPE_ERRORS = "pipeline_escape_names"
codecs.register_error(ESCAPE_ERRORS, _escape_unencodable)
