"""Phone numbers, validated by Google's libphonenumber (the `phonenumbers` package).

A cheap regex first picks the places where digits could form a phone number: a run of at least
7 digits with phone separators (space, `-`, `.`, `/`, parentheses) that starts with `+` or holds
at least one separator, so a bare digit run (an id, a long number in a table) is never a
candidate. Each candidate, with a little context on its line, then goes through
`PhoneNumberMatcher` with leniency VALID (the number must be a valid number for its region:
right length and prefix per the metadata; the matcher also drops dates, timestamps and page
ranges): a number in international form (`+44 ...`) is found whatever the regions, one in
national form only for the first region in `regions` that validates it. VALID rather than
POSSIBLE because POSSIBLE takes any digit run of a plausible length; rather than
STRICT_GROUPING because web text groups numbers in many ways the metadata does not list.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.pii.found import Found

# `(?>...)`: an atomic group, so a candidate that ends at a letter is not shortened to fit.
CANDIDATE = re.compile(
    r"(?<![\w+.,/-])(?>(?:\+|\(\+?)?\d(?:[ \u00a0\-./()]{1,2}\d|\d){6,20})(?![^\W\d_])"
)
_SEPARATOR = re.compile(r"[^\d]")
_CONTEXT = 24  # characters of context either side given to the matcher


def _phonenumbers() -> Any:
    import phonenumbers  # deferred: 70 ms of import most stages never need

    return phonenumbers


def check_regions(regions: tuple[str, ...]) -> tuple[str, ...]:
    """`regions` upper-cased, each a region libphonenumber knows (ValueError naming it if not)."""
    known = _phonenumbers().SUPPORTED_REGIONS
    out = tuple(r.upper() for r in regions)
    for region in out:
        if region not in known:
            raise ValueError(f"unknown phone region {region!r} (ISO 3166 alpha-2, e.g. US, GB)")
    return out


def candidates(text: str) -> list[tuple[int, int]]:
    """(start, end) of the digit runs that may be phone numbers: 7+ digits, and a `+` or a
    separator among them (bare digit runs are never phone numbers here)."""
    out = []
    for m in CANDIDATE.finditer(text):
        raw = m.group()
        if raw[0] == "+" or _SEPARATOR.search(raw) is not None:
            out.append((m.start(), m.end()))
    return out


def find_phones(text: str, regions: tuple[str, ...]) -> list[Found]:
    """The phone numbers in `text` valid in international form or in one of `regions`."""
    spans = candidates(text)
    if not spans:
        return []
    pn = _phonenumbers()
    out: list[Found] = []
    taken = 0  # end of the last number found: matches never overlap
    for start, end in spans:
        if start < taken:
            continue
        lo = max(0, start - _CONTEXT)
        hi = min(len(text), end + _CONTEXT)
        line_start = text.rfind("\n", lo, start)
        lo = line_start + 1 if line_start >= 0 else lo
        line_end = text.find("\n", end, hi)
        hi = line_end if line_end >= 0 else hi
        window = text[lo:hi]
        for region in regions or ("ZZ",):
            found = [
                m
                for m in pn.PhoneNumberMatcher(window, region, leniency=pn.Leniency.VALID)
                if lo + m.start < end
                and lo + m.end > start
                and lo + m.start >= taken
                # The matcher may cut a bare digit run out of a candidate: not a phone here.
                and (m.raw_string[0] == "+" or _SEPARATOR.search(m.raw_string) is not None)
            ]
            if found:
                for m in found:
                    value = pn.format_number(m.number, pn.PhoneNumberFormat.E164)
                    out.append(Found(lo + m.start, lo + m.end, "phone", value))
                taken = lo + found[-1].end
                break
    return out
