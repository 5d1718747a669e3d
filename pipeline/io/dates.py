"""Normalise the many date spellings found in crawl data to ISO 8601 UTC, or None."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_CANONICAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_DIGITS14 = re.compile(r"^\d{14}$")  # ARC / Heritrix style 20080430204825


def iso_utc(value: object) -> str | None:
    """`YYYY-MM-DDTHH:MM:SSZ` for a parseable date (naive = UTC); None when invalid or absent."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            if _DIGITS14.match(text):
                dt = datetime.strptime(text, "%Y%m%d%H%M%S")
            else:
                dt = datetime.fromisoformat(text)
        except ValueError:
            return None
        if _CANONICAL.match(text):
            return text
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError):
        return None
