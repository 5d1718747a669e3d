"""E-mail addresses: a dotted local part, `@`, and a domain of at least two labels.

The local part is limited to the characters real addresses use (letters, digits, `._%+-`), so
quotes or slashes around an address are never taken into it. A domain whose last label is an
image extension (`icon@2x.png`, retina image names) is a file name, not an address.
"""

from __future__ import annotations

import re

from pipeline.pii.found import Found, finditer_near

# The lookbehind starts a match only at the start of a run of local-part characters: without it
# every position inside a long run would scan to its end again (quadratic on `a.a.a...`).
EMAIL = re.compile(
    r"(?<![A-Za-z0-9_%+.-])"
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})"
    r"(?![A-Za-z0-9-]|\.[A-Za-z0-9])"
)
_AT = re.compile("@")
_LOCAL_MAX, _DOMAIN_MAX = 80, 260  # past RFC 5321's 64 and 255
_FILE_EXTENSIONS = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "avif"}
)


def find_emails(text: str) -> list[Found]:
    """The e-mail addresses in `text`."""
    if "@" not in text:
        return []
    ats = [(m.start(), m.start()) for m in _AT.finditer(text)]
    return [
        Found(m.start(), m.end(), "email", m.group().lower())
        for m in finditer_near(EMAIL, text, ats, before=_LOCAL_MAX, after=_DOMAIN_MAX)
        if m.group(1).lower() not in _FILE_EXTENSIONS
    ]
