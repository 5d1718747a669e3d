"""Phone numbers, validated by Google's libphonenumber (the `phonenumbers` package).

A cheap scan first picks the places where digits could form a phone number: a run of 8 to 17
digits with phone separators (space, `-`, `.`, `/`, parentheses) that starts with `+` or holds
at least one separator, so a bare digit run (an id, a long number in a table) is never a
candidate. Shapes that are something else are dropped before any parsing: dates (`2004-07-12`,
`12/07/2004`, `12.07.2004`, `07 2004`), year ranges (`1980-1996`), IPv4 addresses, US ZIP+4
codes (`02205-5819`), numbers labelled ISSN, ISBN, DOI and the like, an unclosed parenthesis
(`(1950-1984`), and two or more one-digit groups (`5040 5 1 17 27`, a row of a table; `+1`, a
trunk `(0)` is none, a leading `1-` one).

A candidate is then parsed for each region of `regions` (international `+` numbers for none):
in national form only where it starts with the region's trunk prefix when the region writes one
(`0` in GB, DE, FR: `32768-65535`, a range of numbers, is a valid German number without it),
and for North America (country code 1) only when grouped 3-3-4 as such numbers are written
(`32768-65535` is valid there too). The region where it is a valid number (of several, the one
whose national format groups the digits as the text does: `06 12 34 56 78` is French, though
valid in Germany) runs `PhoneNumberMatcher` with leniency VALID over the candidate and a little
context on its line, and the matcher's numbers there are the items (it also drops timestamps
and page ranges). VALID rather than POSSIBLE because POSSIBLE takes any digit run of a
plausible length; rather than STRICT_GROUPING because that misses numbers web text groups in
ways the metadata does not list (it found 92% of the planted set, French mobiles not at all).
Only ASCII digits are looked at.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.pii.found import Found, digit_runs, finditer_near

# `(?>...)`: an atomic group, so a candidate that ends at a letter is not shortened to fit.
CANDIDATE = re.compile(
    r"(?<![\w+.,/-])(?>(?:\+|\(\+?)?[0-9](?:[ \u00a0\-./()]{1,2}[0-9]|[0-9]){7,16})(?![^\W\d_])"
)
_DIGIT = re.compile(r"[0-9]")
_NOT_PHONE = re.compile(
    # d/m/y, m-d-y, d.m.y, y-m-d, not continued by their separator (`01.23.45.67.89` is French)
    r"(?:[0-9]{1,2}([-/.])[0-9]{1,2}\1[0-9]{2,4}(?!\1[0-9])"
    r"|[0-9]{4}([-/.])[0-9]{1,2}\2[0-9]{1,2}(?!\2[0-9]))"
    r"|[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?![0-9]|\.[0-9])"  # an IPv4 address
    r"|(?:19|20)[0-9]{2} ?[-/] ?(?:19|20)?[0-9]{2}(?![0-9])"  # year range
    r"|[0-9]{1,2},? (?:19|20)[0-9]{2}(?![0-9])"  # day and year (`Jul 07 2004 03:49`)
    r"|[0-9]{5}-[0-9]{4}$"  # US ZIP+4
)
# Labels of numbers that look like phone numbers (`ISSN 0271-6062` is a valid German number).
_LABEL_BEFORE = re.compile(r"\b(?:ISSN|ISBN|DOI|PMID|ARK|OCLC)\b[\s:#.-]*$", re.IGNORECASE)
_GROUPS = re.compile(r"[0-9]+")
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


def plausible(raw: str) -> bool:
    """Whether candidate `raw` can be a phone number by its shape alone (see the module doc)."""
    if raw[0] != "+" and _DIGIT.sub("", raw) == "":
        return False  # a bare digit run
    if _NOT_PHONE.match(raw) is not None:
        return False
    if raw.count("(") != raw.count(")"):
        return False
    groups = _GROUPS.findall(raw.replace("(0)", "", 1))  # `+33 (0)1 23 ...`: one group `1`
    return sum(len(g) == 1 for g in groups[1:]) + (len(groups[0]) == 1 and raw[0] != "+") < 2


def candidates(text: str, runs: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """(start, end) of the places that may hold a phone number (`runs`: the text's
    `digit_runs`, when already known)."""
    runs = digit_runs(text) if runs is None else runs
    return [
        m.span()
        for m in finditer_near(CANDIDATE, text, runs, before=2, after=2)
        if plausible(m.group())
    ]


def find_phones(
    text: str, regions: tuple[str, ...], runs: list[tuple[int, int]] | None = None
) -> list[Found]:
    """The phone numbers in `text` valid in international form or in one of `regions`."""
    spans = candidates(text, runs)
    if not spans:
        return []
    pn = _phonenumbers()
    out: list[Found] = []
    taken = 0  # end of the last number found: numbers never overlap
    for start, end in spans:
        if start < taken or _LABEL_BEFORE.search(text, max(0, start - 12), start):
            continue
        region = _valid_region(pn, text[start:end], regions)
        if region is None:
            continue
        lo = max(0, start - _CONTEXT)
        hi = min(len(text), end + _CONTEXT)
        line_start = text.rfind("\n", lo, start)
        lo = line_start + 1 if line_start >= 0 else lo
        line_end = text.find("\n", end, hi)
        hi = line_end if line_end >= 0 else hi
        for m in pn.PhoneNumberMatcher(text[lo:hi], region, leniency=pn.Leniency.VALID):
            s, e = lo + m.start, lo + m.end
            # Only numbers within this candidate; the matcher may cut a bare digit run out of
            # it, which is not a phone number here.
            if s < start or e > end or s < taken or not plausible(m.raw_string):
                continue
            out.append(Found(s, e, "phone", pn.format_number(m.number, pn.PhoneNumberFormat.E164)))
            taken = e
    return out


def _valid_region(pn: Any, raw: str, regions: tuple[str, ...]) -> str | None:
    """The region (of `regions`; `ZZ` for a `+` number) where `raw` parses as a valid number,
    else None. Of several, the first whose national format groups the digits as `raw` does
    (`06 12 34 56 78` is French, though valid in Germany too), else the first."""
    if raw.startswith(("+", "(+")):
        regions = ("ZZ",)
    first = _DIGIT.search(raw)
    valid: list[tuple[str, Any]] = []
    for region in regions:
        if first is not None and not _trunk_ok(pn, region, first.group()):
            continue
        if (
            region != "ZZ"
            and pn.country_code_for_region(region) == 1
            and not _nanp_grouping_ok(raw)
        ):
            continue
        try:
            number = pn.parse(raw, region)
        except pn.NumberParseException:
            continue
        if pn.is_valid_number(number):
            valid.append((region, number))
    if len(valid) > 1:
        groups = _GROUPS.findall(raw)
        for region, number in valid:
            national = pn.format_number(number, pn.PhoneNumberFormat.NATIONAL)
            if _GROUPS.findall(national) == groups:
                return region
    return valid[0][0] if valid else None


def _trunk_ok(pn: Any, region: str, first_digit: str) -> bool:
    """Whether a national number starting with `first_digit` is written as `region` writes
    them: where the national (trunk) prefix is `0` (most of Europe), with that `0`; numbers of
    North America (country code 1), where the prefix `1` is optional, and of regions without
    one, any way."""
    metadata = pn.PhoneMetadata.metadata_for_region(region)
    prefix = metadata.national_prefix if metadata is not None else None
    if not prefix or metadata.country_code == 1:
        return True
    return first_digit == prefix[0]


def _nanp_grouping_ok(raw: str) -> bool:
    """Whether a national North American number is grouped 3-3-4 (after an optional `1`), as
    they are written (`(415) 555-2671`, `1-800-562-6000`); libphonenumber's VALID accepts any
    grouping, and `32768-65535` or `2409 1-65000` (ranges in tables) are valid numbers."""
    if raw.startswith("011"):  # dialled abroad: the grouping is the other country's
        return True
    groups = [len(g) for g in _GROUPS.findall(raw)]
    if groups and groups[0] == 1:
        groups = groups[1:]
    return groups == [3, 3, 4]
