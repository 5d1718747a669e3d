"""IBANs: a country code, two check digits and the account part, checked by mod 97 (ISO 13616).

Written bare (`DE89370400440532013000`) or in the printed groups of four separated by single
spaces (`DE89 3704 0044 0532 0130 00`); upper case only, as IBANs are printed. The length must
be the country's (SWIFT IBAN registry) and the number mod 97 must be 1, so a random code of the
right shape passes by chance once in 97 and only in a listed country. Only IBANs holding a run
of 8 digits and spaces are looked for (the digit runs phone and card numbers need too, so no
scan of its own); every country's account format has one.
"""

from __future__ import annotations

import re

from pipeline.pii.found import Found, digit_runs, finditer_near

IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}"
    r"(?:(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?|[A-Z0-9]{11,30})"
    r"(?![A-Za-z0-9])"
)

_MAX_CHARS = 34 + 8  # the longest IBAN, printed in groups of four

# Country -> IBAN length (SWIFT IBAN registry).
LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_ok(iban: str) -> bool:
    """Whether `iban` (no spaces, upper case) has its country's length and mod-97 remainder 1."""
    if LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def find_ibans(text: str, runs: list[tuple[int, int]] | None = None) -> list[Found]:
    """The IBANs in `text` (`runs`: its `digit_runs`, when already known)."""
    runs = digit_runs(text) if runs is None else runs
    out = []
    for m in finditer_near(IBAN, text, runs, before=_MAX_CHARS, after=_MAX_CHARS):
        compact = m.group().replace(" ", "")
        if iban_ok(compact):
            out.append(Found(m.start(), m.end(), "iban", compact))
    return out
