"""All detectors over one text, overlaps resolved: the items the `pii` stage counts and masks."""

from __future__ import annotations

from pipeline.pii.card import find_cards
from pipeline.pii.email import find_emails
from pipeline.pii.found import Found, digit_runs
from pipeline.pii.iban import find_ibans
from pipeline.pii.ip import find_ipv4, find_ipv6
from pipeline.pii.phone import find_phones
from pipeline.pii.secret import find_secrets

# Every kind, in the order that wins when two items of different kinds start at the same
# character with the same length (the most specific shape first).
KINDS: tuple[str, ...] = ("secret", "email", "iban", "card", "ipv6", "ipv4", "phone")


def find_all(
    text: str, kinds: frozenset[str], regions: tuple[str, ...], public_ip_only: bool = True
) -> list[Found]:
    """The items of `kinds` in `text`, sorted and non-overlapping: of overlapping items the one
    starting first wins, then the longer, then the kind listed first in KINDS."""
    found: list[Found] = []
    if "secret" in kinds:
        found += find_secrets(text)
    if "email" in kinds:
        found += find_emails(text)
    if "iban" in kinds:
        found += find_ibans(text)
    runs = digit_runs(text) if "card" in kinds or "phone" in kinds else []
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
    rank = {k: i for i, k in enumerate(KINDS)}
    found.sort(key=lambda f: (f.start, f.start - f.end, rank[f.kind]))
    out: list[Found] = []
    end = 0
    for f in found:
        if f.start >= end:
            out.append(f)
            end = f.end
    return out
