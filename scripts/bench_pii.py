"""Recall, precision and docs/s of the `pii` stage; which shared texts it changes, and why.

Planted set: real texts of ../shared/data (extraction gold texts in which the stage finds
nothing) each get items of one kind planted at sentence starts, generated at random with a fixed
seed (valid by construction: public addresses, phone numbers libphonenumber validates in the
stage's regions, Luhn-valid cards of real issuer prefixes, IBANs with their check digits, shaped
secrets), in the formats people write them; plus traps that must stay (private and
documentation IPs, version numbers, dates, ISBNs, prices, coordinates, table numbers, cards and
IBANs failing their checksum). An item counts as found when the stage reports its kind at its
exact span; anything else it reports in those texts is a false positive of its kind.

    python scripts/bench_pii.py [--seed 0] [--per-kind 400] [--repeat 3] [--extracted DIR]

`--extracted` names the output directory of a `curate run` with the extract stage (the WARC
extract output), whose texts are scanned as the gold texts are.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import string
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.pii.card import luhn_ok
from pipeline.pii.found import Found
from pipeline.pii.iban import LENGTHS
from pipeline.pii.ip import is_public
from pipeline.stages.pii import PiiConfig, PiiStage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_filters import load_texts  # noqa: E402  (the gold texts, markers stripped)

KINDS = ("email", "ipv4", "ipv6", "phone", "card", "iban", "secret")
FIRST = ["anna", "john", "li", "maria", "o.brien", "jean-luc", "k_smith", "wei", "sam+news"]
LAST = ["smith", "meyer", "dupont", "nguyen", "garcia", "kowalski", "rossi", "tanaka"]
DOMAINS = ["gmail.com", "example.org", "mail.uni-hamburg.de", "wanadoo.fr", "yahoo.co.uk"]
ISSUERS = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15)]
ISSUERS += [("6011", 16), ("65", 16), ("3530", 16), ("36", 14), ("62", 19)]
IBAN_COUNTRIES = ["DE", "GB", "FR", "NL", "ES", "IT", "CH", "BE", "AT", "PL", "NO", "SE"]
TRAPS = [
    "Released as version 1.2.3.4 last week",
    "The router sits at 192.168.1.1 on the LAN",
    "Use 10.0.0.12 and 172.16.5.4 internally",
    "See 203.0.113.7 in the RFC 5737 examples",
    "Loopback 127.0.0.1 and link-local 169.254.10.20 stay",
    "Documentation prefix 2001:db8::1 and fe80::1 stay",
    "Build v2.14.3.1 fixed it; firmware 4.0.1.2 too",
    "Sections 1.2.3.4.5 and 3.1.4.1.5 follow",
    "It happened on 2024-01-15 and again on 15/01/2024 and 01.02.2023",
    "ISBN 978-3-16-148410-0 and ISBN 0-306-40615-2 are cited",
    "ISSN 0271-6062 is the journal",
    "Prices: $1,234.56, EUR 2.499,00 and 1 299 000 won",
    "Coordinates 40.7128, -74.0060 and 51.5074 N, 0.1278 W",
    "Population 1234567890 and 9876543210123 in the table",
    "Score 5040 5 1 17 27 and 2380 2 3 12 21 in the standings",
    "Card 4111 1111 1111 1112 fails Luhn",
    "IBAN DE89 3704 0044 0532 0130 01 fails its check",
    "The years 1980-1996 and 2004/2005 and Jul 07 2004 03:49PM",
    "Order 8.8.8.8.8 and time 12:30:45 and ratio 3:2",
    "icon@2x.png and @handle and user@localhost",
]


def email(rng: random.Random) -> str:
    sep = rng.choice([".", "_", ""])
    address = (
        f"{rng.choice(FIRST)}{sep}{rng.choice(LAST)}{rng.randint(0, 99)}@{rng.choice(DOMAINS)}"
    )
    return address.title() if rng.random() < 0.2 else address


def ipv4(rng: random.Random) -> str:
    while True:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if is_public(address):
            return str(address)


def ipv6(rng: random.Random) -> str:
    while True:
        address = ipaddress.IPv6Address((1 << 125) | rng.getrandbits(125))  # in 2000::/3
        if is_public(address):
            return address.compressed if rng.random() < 0.5 else address.exploded


def phone(rng: random.Random, regions: tuple[str, ...]) -> str:
    """A valid number of one of `regions` in a form people write: national (spaces now and then
    replaced by dashes, dots or slashes), international (`+44 (0)20 ...`, `0044 20 ...`,
    `+1 (201) 555-0123` now and then) or E.164."""
    import phonenumbers as pn

    region = rng.choice(regions)
    kind = rng.choice([pn.PhoneNumberType.FIXED_LINE, pn.PhoneNumberType.MOBILE])
    example = pn.example_number_for_type(region, kind)
    national = str(example.national_number)
    while True:
        digits = national[:-4] + "".join(rng.choice(string.digits) for _ in range(4))
        number = pn.PhoneNumber(country_code=example.country_code, national_number=int(digits))
        if pn.is_valid_number(number):
            break
    form = rng.choice(
        [
            pn.PhoneNumberFormat.NATIONAL,
            pn.PhoneNumberFormat.NATIONAL,
            pn.PhoneNumberFormat.INTERNATIONAL,
            pn.PhoneNumberFormat.E164,
        ]
    )
    text = pn.format_number(number, form)
    if form == pn.PhoneNumberFormat.NATIONAL and rng.random() < 0.5:
        if region == "US":  # (201) 555-0123 -> 201-555-0123 / 201.555.0123
            sep = rng.choice(["-", "."])
            text = text.replace("(", "").replace(") ", sep).replace("-", sep)
        else:  # 01 42 68 53 00 -> 01.42.68.53.00, 030 123456 -> 030/123456 or 030-123456
            text = text.replace(" ", rng.choice(["-", ".", "/"]) if region != "FR" else ".")
    elif form == pn.PhoneNumberFormat.INTERNATIONAL and rng.random() < 0.6:
        code = f"+{number.country_code} "
        if region == "US":  # +1 201-555-0123 -> +1 (201) 555-0123
            text = code + "(" + text[len(code) :].replace("-", ") ", 1)
        elif rng.random() < 0.5:  # +44 20 ... -> +44 (0)20 ..., the trunk zero kept
            text = text.replace(code, code + "(0)", 1)
        else:  # dialled from Europe: 0044 20 ...
            text = "00" + text[1:]
    return text


def card(rng: random.Random) -> str:
    prefix, length = rng.choice(ISSUERS)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    digits = next(body + d for d in string.digits if luhn_ok(body + d))
    style = rng.choice(["bare", "space", "dash"])
    if style == "bare":
        return digits
    sep = " " if style == "space" else "-"
    if length == 15:
        return sep.join((digits[:4], digits[4:10], digits[10:]))
    if length == 14:
        return sep.join((digits[:4], digits[4:10], digits[10:]))
    return sep.join(digits[i : i + 4] for i in range(0, length, 4))


def iban(rng: random.Random) -> str:
    country = rng.choice(IBAN_COUNTRIES)
    n = LENGTHS[country] - 4
    bank = (
        "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
        if country in ("GB", "NL")
        else "".join(rng.choice(string.digits) for _ in range(4))
    )
    bban = bank + "".join(rng.choice(string.digits) for _ in range(n - 4))
    numeric = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    compact = f"{country}{98 - numeric % 97:02d}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def secret(rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits
    choice = rng.randrange(5)
    if choice == 0:
        return rng.choice(["AKIA", "ASIA"]) + "".join(
            rng.choice(string.ascii_uppercase + "234567") for _ in range(16)
        )
    if choice == 1:
        return "ghp_" + "".join(rng.choice(alnum) for _ in range(36))
    if choice == 2:
        return "AIza" + "".join(rng.choice(alnum + "_-") for _ in range(35))
    if choice == 3:
        return "sk_live_" + "".join(rng.choice(alnum) for _ in range(24))
    lines = ["".join(rng.choice(alnum + "+/") for _ in range(64)) for _ in range(4)]
    body = "\n".join(lines)
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"


TEMPLATES = {
    "email": [
        "Write to {} for details. ",
        "Contact: {}\n",
        "({}) ",
        "mailto:{} ",
        "<{}>, ",
        "e-mail:{}. ",
    ],
    "ipv4": [
        "The server at {} answered. ",
        "IP: {}\n",
        "Connect to {}:8080 now. ",
        "(host {}) ",
        "Block {}/24, ",
        "from {}.\n",
    ],
    "ipv6": ["The host [{}]:443 answered. ", "IPv6 {}\n", "Route {}/64, ", "addr={}; "],
    "phone": ["Call {} today. ", "Tel: {}\n", "Phone {} or write. ", "(tel. {}), ", "Fax:{}\n"],
    "card": ["Card number {} expires soon. ", "CC: {}\n", "card {}, exp 12/27. "],
    "iban": ["Pay to IBAN {} by Friday. ", "IBAN: {}\n", "account {}. "],
    "secret": ["The key {} leaked. ", "{}\n", "aws_access_key_id = {}\n", "token: '{}'. "],
}


def plant(rng: random.Random, carrier: str, kind: str, item: str) -> tuple[str, int, int]:
    """`carrier` with `item` (in one of its kind's templates) at a random line or sentence
    start; returns the text and the item's span."""
    starts = [0] + [i + 1 for i, ch in enumerate(carrier) if ch == "\n"]
    starts += [i + 2 for i in range(len(carrier) - 1) if carrier[i : i + 2] == ". "]
    at = rng.choice(starts)
    before, after = rng.choice(TEMPLATES[kind]).split("{}")
    text = carrier[:at] + before + item + after + carrier[at:]
    start = at + len(before)
    return text, start, start + len(item)


def planted_set(
    rng: random.Random, carriers: list[str], per_kind: int, regions: tuple[str, ...]
) -> list[tuple[str, str, int, int]]:
    """(text, kind, start, end): `per_kind` planted items of each kind, then the traps
    (kind `trap`, span of the trap sentence)."""
    makers = {
        "email": email,
        "ipv4": ipv4,
        "ipv6": ipv6,
        "phone": lambda r: phone(r, regions),
        "card": card,
        "iban": iban,
        "secret": secret,
    }
    out = []
    for kind in KINDS:
        for _ in range(per_kind):
            text, start, end = plant(rng, rng.choice(carriers), kind, makers[kind](rng))
            out.append((text, kind, start, end))
    for trap in TRAPS:
        for _ in range(max(1, per_kind // 20)):
            carrier = rng.choice(carriers)
            at = rng.choice([0] + [i + 1 for i, ch in enumerate(carrier) if ch == "\n"])
            out.append((carrier[:at] + trap + ". " + carrier[at:], "trap", at, at + len(trap)))
    return out


def recall_precision(
    stage: PiiStage, cases: list[tuple[str, str, int, int]]
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Per kind: true positives, false negatives, false positives; and examples of errors."""
    counts = {k: Counter() for k in KINDS}
    errors: list[str] = []
    for text, kind, start, end in cases:
        found = stage.find(text)
        hit = False
        for f in found:
            if kind != "trap" and (f.kind, f.start, f.end) == (kind, start, end):
                hit = True
                counts[kind]["tp"] += 1
            else:
                counts[f.kind]["fp"] += 1
                if len(errors) < 40:
                    errors.append(f"FP {f.kind} {text[f.start : f.end]!r} (planted {kind})")
        if kind != "trap" and not hit:
            counts[kind]["fn"] += 1
            if len(errors) < 40:
                errors.append(f"FN {kind} {text[start:end]!r} found {_spans(text, found)}")
    return {k: dict(v) for k, v in counts.items()}, errors


def _spans(text: str, found: list[Found]) -> list[str]:
    return [f"{f.kind}:{text[f.start : f.end]!r}" for f in found]


def throughput(stage: PiiStage, texts: list[str], repeat: int) -> float:
    """Best-of-`repeat` docs per CPU second of score + keep over `texts`, in batches of 1,000."""
    best = 0.0
    for _ in range(repeat):
        t0 = time.process_time()
        for i in range(0, len(texts), 1000):
            batch = stage.score(pa.table({"text": texts[i : i + 1000]}))
            stage.keep(batch)
        best = max(best, len(texts) / (time.process_time() - t0))
    return best


def changes(stage: PiiStage, texts: list[str]) -> tuple[int, Counter, Counter]:
    """Texts changed by the default mask, items per kind, and texts per kind."""
    changed, items, docs = 0, Counter(), Counter()
    for text in texts:
        found = stage.find(text)
        changed += bool(found)
        items.update(f.kind for f in found)
        docs.update({f.kind for f in found})
    return changed, items, docs


def extracted_texts(directory: Path) -> list[str]:
    return [
        t
        for f in sorted((directory / "data").glob("*.parquet"))
        for t in pq.read_table(f, columns=["text"]).column("text").to_pylist()
        if t
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-kind", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--extracted", type=Path, help="output directory of an extract run")
    args = parser.parse_args()
    stage = PiiStage(PiiConfig())
    sets = load_texts()
    gold = [r["text"] for name in ("scrapinghub", "cleaneval") for r in sets[name]]
    carriers = [t for t in gold if t.strip() and not stage.find(t)]
    rng = random.Random(args.seed)
    cases = planted_set(rng, carriers, args.per_kind, stage.config.regions)
    counts, errors = recall_precision(stage, cases)
    print(f"planted set: {len(cases)} texts, {len(carriers)} clean carriers, seed {args.seed}")
    print("| kind | planted | recall | precision | false positives |")
    print("|---|---:|---:|---:|---:|")
    for kind in KINDS:
        c = counts[kind]
        tp, fn, fp = c.get("tp", 0), c.get("fn", 0), c.get("fp", 0)
        precision = tp / (tp + fp) if tp + fp else 1.0
        print(f"| {kind} | {tp + fn} | {tp / (tp + fn):.4f} | {precision:.4f} | {fp} |")
    for line in errors:
        print("  ", line)
    print(
        f"\nthroughput (gold texts, {len(gold)} docs): {throughput(stage, gold, args.repeat):,.0f} docs/CPU-s"
    )
    corpora = {name: [r["text"] for r in rows] for name, rows in sets.items()}
    if args.extracted:
        corpora["warc extract"] = extracted_texts(args.extracted)
    for name, texts in corpora.items():
        changed, items, docs = changes(stage, texts)
        print(
            f"{name}: {changed}/{len(texts)} texts changed; items {dict(items)}; texts {dict(docs)}"
        )


if __name__ == "__main__":
    main()
