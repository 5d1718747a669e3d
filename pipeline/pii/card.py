"""Payment card numbers: 13-19 digits, Luhn-valid, with an issuer prefix (IIN) and a length
that issuer uses.

Written bare (`4111111111111111`) or grouped the way cards are printed: groups of four with
one space or dash (`4111 1111 1111 1111`, 19 digits as 4-4-4-4-3), or 4-6-5 / 4-6-4 (American
Express, Diners). Any other grouping (`4 1 1 1 ...` in a table) is not a card. Issuers and
lengths (ISO/IEC 7812 ranges as the card networks publish them):

| network | IIN prefixes | lengths |
|---|---|---|
| Visa | 4 | 16, 19 (13-digit Visa is retired; 13 digits starting with 4 are mostly EAN barcodes) |
| Mastercard | 51-55, 2221-2720 | 16 |
| American Express | 34, 37 | 15 |
| Discover | 6011, 644-649, 65 | 16-19 |
| Diners Club | 300-305, 36, 38, 39 | 14-19 |
| JCB | 3528-3589 | 16-19 |
| UnionPay | 62 | 16-19 |
| Maestro | 5018, 5020, 5038, 5893, 6304, 6759, 6761-6763 | 13-19 |
"""

from __future__ import annotations

import re

from pipeline.pii.found import Found, digit_runs, finditer_near

CARD = re.compile(
    r"(?<![\w.,+-])(?:"
    r"\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?"  # 4-4-4-4(-3)
    r"|\d{4}([ -])\d{6}\2\d{4,5}"  # 4-6-5, 4-6-4
    r"|\d{13,19}"  # bare
    r")(?!\w|[.,]\d)"
)

# (first, last) of the 6-digit IIN range (prefixes padded), and the lengths allowed.
_ISSUERS: tuple[tuple[int, int, frozenset[int]], ...] = (
    (400000, 499999, frozenset({16, 19})),  # Visa
    (510000, 559999, frozenset({16})),  # Mastercard
    (222100, 272099, frozenset({16})),  # Mastercard 2-series
    (340000, 349999, frozenset({15})),  # American Express
    (370000, 379999, frozenset({15})),
    (601100, 601199, frozenset(range(16, 20))),  # Discover
    (644000, 659999, frozenset(range(16, 20))),
    (300000, 305999, frozenset(range(14, 20))),  # Diners Club
    (360000, 369999, frozenset(range(14, 20))),
    (380000, 399999, frozenset(range(14, 20))),
    (352800, 358999, frozenset(range(16, 20))),  # JCB
    (620000, 629999, frozenset(range(16, 20))),  # UnionPay
    (501800, 501899, frozenset(range(13, 20))),  # Maestro
    (502000, 502099, frozenset(range(13, 20))),
    (503800, 503899, frozenset(range(13, 20))),
    (589300, 589399, frozenset(range(13, 20))),
    (630400, 630499, frozenset(range(13, 20))),
    (675900, 675999, frozenset(range(13, 20))),
    (676100, 676399, frozenset(range(13, 20))),
)


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def issuer_ok(digits: str) -> bool:
    """Whether `digits` starts with a known issuer's prefix and has a length it issues."""
    iin = int(digits[:6])
    return any(lo <= iin <= hi and len(digits) in lengths for lo, hi, lengths in _ISSUERS)


def find_cards(text: str, runs: list[tuple[int, int]] | None = None) -> list[Found]:
    """The payment card numbers in `text` (`runs`: its `digit_runs`, when already known)."""
    long_runs = [(s, e) for s, e in (digit_runs(text) if runs is None else runs) if e - s >= 13]
    out = []
    for m in finditer_near(CARD, text, long_runs, before=0, after=2):
        digits = re.sub(r"[ -]", "", m.group())
        if issuer_ok(digits) and luhn_ok(digits):
            out.append(Found(m.start(), m.end(), "card", digits))
    return out
