"""All detectors over one text, overlaps resolved: the items the `pii` stage counts and masks."""

from __future__ import annotations

import bisect

from pipeline.pii.card import find_cards
from pipeline.pii.email import find_emails
from pipeline.pii.found import Found, digit_runs
from pipeline.pii.iban import find_ibans
from pipeline.pii.ip import find_ipv4, find_ipv6
from pipeline.pii.phone import find_phones
from pipeline.pii.secret import find_secrets

# Every kind, in the order that wins when items of different kinds overlap (the most specific
# shape first: a card number is no phone number, an IPv4 address with `/24` no phone either).
KINDS: tuple[str, ...] = ("secret", "email", "iban", "card", "ipv6", "ipv4", "phone")


def find_all(
    text: str, kinds: frozenset[str], regions: tuple[str, ...], public_ip_only: bool = True
) -> list[Found]:
    """The items of `kinds` in `text`, sorted and non-overlapping: of overlapping items, the
    kind listed first in KINDS wins, then the one starting first."""
    found: list[Found] = []
    if "secret" in kinds:
        found += find_secrets(text)
    if "email" in kinds:
        found += find_emails(text)
    runs = digit_runs(text) if kinds & {"iban", "card", "phone"} else []
    if "iban" in kinds:
        found += find_ibans(text, runs)
    if "card" in kinds:
        found += find_cards(text, runs)
    if "ipv6" in kinds:
        found += find_ipv6(text, public_only=public_ip_only)
    if "ipv4" in kinds:
        found += find_ipv4(text, public_only=public_ip_only)
    if "phone" in kinds:
        found += find_phones(text, regions, runs)
    if len(found) < 2:
        return found
    return non_overlapping(found)


def non_overlapping(found: list[Found]) -> list[Found]:
    """`found` less the items overlapping one of an earlier kind in KINDS (or, within a kind,
    one starting earlier), sorted by start. Each detector's own items never overlap."""
    rank = {k: i for i, k in enumerate(KINDS)}
    starts: list[int] = []  # of the items kept so far, sorted
    kept: list[Found] = []
    for f in sorted(found, key=lambda f: (rank[f.kind], f.start)):
        i = bisect.bisect_right(starts, f.start)
        if i and kept[i - 1].end > f.start:  # the item before overlaps
            continue
        if i < len(kept) and kept[i].start < f.end:  # the item after overlaps
            continue
        starts.insert(i, f.start)
        kept.insert(i, f)
    return kept
