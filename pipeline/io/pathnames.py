"""File names as text. A name that is not valid UTF-8 reaches Python as a str holding lone
surrogates (PEP 383, os.fsdecode): it opens fine but cannot be written as UTF-8. Such a name
is kept as is for opening, and escaped (`caf\\xe9.jsonl`) wherever it is shown or stored: error
messages, the `source` column, stats.json, reports, the terminal."""

from __future__ import annotations

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
