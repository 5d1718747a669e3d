"""Public IPv4 and IPv6 addresses (FineWeb masks public addresses and keeps the rest).

Public means what Python's `ipaddress` calls global, less multicast: private, loopback,
link-local, shared (100.64/10), documentation, benchmarking and reserved ranges are kept. For
IPv6 only global unicast (2000::/3) counts, whose first group is always four hex digits: that is
the anchor the regex needs, and it keeps `dead::beef`-like words and C++ `a::b` out (so with
`public_only` off, IPv6 addresses outside 2000::/3, e.g. fd00::1, are still not looked for).

Version numbers look like addresses (`1.2.3.4`). An address is therefore taken only when it is
not part of a longer dotted run (`1.2.3.4.5`, `v1.2.3.4`, `x.1.2.3.4`: a letter, digit or dot
touching it on either side) and not right after a version word (`version 4.0.1.2`, `v.`,
`build`, `release`, `firmware`...). Leading zeros (`01.02.03.04`) are not an address.
"""

from __future__ import annotations

import ipaddress
import re

from pipeline.pii.found import Found, finditer_near

IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
# Triggers led by a literal (a fast search): the last three octets' dots, and two colons.
_IPV4_TRIGGER = re.compile(r"\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]")
IPV6 = re.compile(r"(?<![\w:.])[23][0-9A-Fa-f]{3}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:]|\.\d)")
_IPV6_TRIGGER = re.compile(r":[0-9A-Fa-f]{0,4}:")
_VERSION_BEFORE = re.compile(
    r"\b(?:v|ver|version|versions|release|build|rev|revision|firmware|update|patch)\.?:?\s*$",
    re.IGNORECASE,
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Global and not multicast; for IPv6 also inside global unicast (2000::/3)."""
    if address.version == 6 and address not in _GLOBAL_UNICAST:
        return False
    return address.is_global and not address.is_multicast


def _after_version_word(text: str, start: int) -> bool:
    return _VERSION_BEFORE.search(text, max(0, start - 16), start) is not None


def find_ipv4(text: str, public_only: bool = True) -> list[Found]:
    """The IPv4 addresses in `text` (only public ones unless `public_only` is False)."""
    triggers = [m.span() for m in _IPV4_TRIGGER.finditer(text)]
    out = []
    for m in finditer_near(IPV4, text, triggers, before=4, after=8):
        try:
            address = ipaddress.IPv4Address(m.group())
        except ValueError:  # an octet above 255, or a leading zero
            continue
        if public_only and not is_public(address):
            continue
        if _after_version_word(text, m.start()):
            continue
        out.append(Found(m.start(), m.end(), "ipv4", str(address)))
    return out


def find_ipv6(text: str, public_only: bool = True) -> list[Found]:
    """The IPv6 addresses in `text` that start with a 2000::/3 group (global unicast), only
    public ones unless `public_only` is False. A colon ending a sentence is not part of one."""
    triggers = [m.span() for m in _IPV6_TRIGGER.finditer(text)]
    out = []
    for m in finditer_near(IPV6, text, triggers, before=40, after=40):
        raw = m.group()
        if raw.endswith(":") and not raw.endswith("::"):
            raw = raw[:-1]
        try:
            address = ipaddress.IPv6Address(raw)
        except ValueError:
            continue
        if public_only and not is_public(address):
            continue
        out.append(Found(m.start(), m.start() + len(raw), "ipv6", address.compressed))
    return out
