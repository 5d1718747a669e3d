"""`pii`: each kind found at its exact span on real text and in hand-made edge cases, the traps
that must stay (versions, dates, ISBNs, prices, coordinates, table numbers, private IPs), the
three modes, replacements and pseudonyms, the threshold, and the shared texts it changes."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from pipeline.pii.card import issuer_ok, luhn_ok
from pipeline.pii.detect import find_all
from pipeline.pii.iban import iban_ok
from pipeline.registry import stage_class
from pipeline.stages.pii import PiiConfig, PiiStage, pseudonym

ALL = frozenset({"email", "ipv4", "ipv6", "phone", "card", "iban", "secret"})
REGIONS = ("US", "GB", "DE", "FR")
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi4Ha0ChmSJdGiBVN/vdZt9Ic1wmM8Z\n"
    "eXoNOMgn0y7WqHzbUvXKc1yrO+9Up1ftBEFb1fCqmD2Gk8wg/S2wvB4vM1l3w3gqUWz0\n"
    "4Q==\n"
    "-----END RSA PRIVATE KEY-----"
)


def stage(**kw: object) -> PiiStage:
    return PiiStage(PiiConfig(**kw))


def items(text: str, kinds: frozenset[str] = ALL) -> list[tuple[str, str]]:
    """(kind, matched text) of every item found in `text` with the default settings."""
    return [(f.kind, text[f.start : f.end]) for f in find_all(text, kinds, REGIONS)]


@pytest.fixture(scope="module")
def gold(shared_data) -> list[str]:
    path = shared_data / "extraction" / "scrapinghub.gold.jsonl"
    return [json.loads(line)["gold"] for line in path.read_text(encoding="utf-8").splitlines()]


# --- planted in real text ---------------------------------------------------------------------


def test_items_planted_in_real_text_are_masked_exactly(gold) -> None:
    carrier = gold[0]
    assert not items(carrier)
    cut1 = carrier.index("\n\nNow")  # after the first paragraph
    cut2 = carrier.index("\n\nAll")  # after the second
    planted = (
        carrier[:cut1]
        + " Write to anna.smith@example.org or call (415) 555-2671."
        + carrier[cut1:cut2]
        + " Our server 8.8.8.8 (not 192.168.0.1), card 4111 1111 1111 1111,"
        " IBAN DE89 3704 0044 0532 0130 00, key AKIAIOSFODNN7EXAMPLE." + carrier[cut2:]
    )
    expected = [
        ("email", "anna.smith@example.org"),
        ("phone", "(415) 555-2671"),
        ("ipv4", "8.8.8.8"),
        ("card", "4111 1111 1111 1111"),
        ("iban", "DE89 3704 0044 0532 0130 00"),
        ("secret", "AKIAIOSFODNN7EXAMPLE"),
    ]
    # Each at its known offset: where it was planted, and nothing else.
    assert [(f.kind, f.start, f.end) for f in find_all(planted, ALL, REGIONS)] == [
        (kind, planted.index(text), planted.index(text) + len(text)) for kind, text in expected
    ]
    table = stage().score(pa.table({"text": [planted, carrier]}))
    assert table.column("text").to_pylist() == [
        carrier[:cut1]
        + " Write to <EMAIL> or call <PHONE>."
        + carrier[cut1:cut2]
        + " Our server <IP> (not 192.168.0.1), card <CARD>, IBAN <IBAN>, key <SECRET>."
        + carrier[cut2:],
        carrier,  # untouched, character for character
    ]
    row = table.drop_columns(["text"]).to_pylist()[0]
    assert row == {
        "pii_email": 1,
        "pii_ipv4": 1,
        "pii_ipv6": 0,
        "pii_phone": 1,
        "pii_card": 1,
        "pii_iban": 1,
        "pii_secret": 1,
        "pii_items": 6,
    }


def test_shared_gold_texts_changed_and_why(gold) -> None:
    """Under the defaults 7 of 181 ScrapingHub texts change: real e-mail addresses and phone
    numbers of their authors and newsrooms; the other 174 come back identical."""
    s = stage()
    table = s.score(pa.table({"text": gold}))
    masked = table.column("text").to_pylist()
    changed = [i for i, (a, b) in enumerate(zip(gold, masked, strict=True)) if a != b]
    assert len(changed) == 7
    assert sum(table.column("pii_email").to_pylist()) == 4
    assert sum(table.column("pii_phone").to_pylist()) == 4
    assert sum(table.column("pii_items").to_pylist()) == 8
    found = [text for i in changed for _, text in items(gold[i])]
    assert "louise_matsakis@wired.com" in found and "347-966-3806" in found
    assert "info@givewell.org" in found and "+49 (0)40 890 85-433" in found


# --- traps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Released as version 1.2.3.4 last week",
        "Build v2.14.3.1 and firmware 4.0.1.2 and release 8.8.8.8",
        "Sections 1.2.3.4.5 and x.8.8.8.8 and 8.8.8.8.1 follow",
        "Leading zeros: 08.08.08.08",
        "Private 10.0.0.12, 172.16.5.4, 192.168.1.1; loopback 127.0.0.1; link-local 169.254.1.2",
        "Documentation 192.0.2.1, 198.51.100.7, 203.0.113.5; shared 100.64.0.1; 224.0.0.251",
        "IPv6 2001:db8::1, fe80::1, ::1, fc00::5, 64:ff9b::1 and C++ std::vector, dead::beef",
        "Dates 2024-01-15, 15/01/2024, 01.02.2023, Jul 07 2004 03:49PM, years 1980-1996, 2004/05",
        "ISBN 978-3-16-148410-0, ISBN 0-306-40615-2, ISBN 9783161484100, ISSN 0271-6062",
        "Prices $1,234.56, EUR 2.499,00, 1 299 000 won, 12.99 USD",
        "Coordinates 40.7128, -74.0060 and 51.5074 N, 0.1278 W; 48°51′24″N",
        "Table 1234567890 9876543210123 and 5040 5 1 17 27 and 2380 2 3 12 21",
        "Ranges 32768-65535 and RFC 2409 1-65000 and ZIP 02205-5819",
        "Card 4111 1111 1111 1112 fails Luhn; 1234 5678 9012 3456 has no issuer",
        "IBAN DE89 3704 0044 0532 0130 01 fails mod 97; XX89370400440532013000 has no country",
        "Times 12:30:45 and ratio 3:2 and a bare run 01711234567 and 4155552671",
        "icon@2x.png, @handle, user@localhost, a@b",
        "A hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 and AKIA",
    ],
)
def test_traps_are_not_items(text: str) -> None:
    assert items(text) == []


# --- each kind ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("mail John.Smith@Example.COM.", [("email", "John.Smith@Example.COM")]),
        ("<a.b+tag@mail.uni-hamburg.de>", [("email", "a.b+tag@mail.uni-hamburg.de")]),
        ("(x_y%z@sub.domain.co.uk)", [("email", "x_y%z@sub.domain.co.uk")]),
        ("'quoted@example.org'", [("email", "quoted@example.org")]),
        ("email-rk@usc.edu", [("email", "email-rk@usc.edu")]),
    ],
)
def test_emails(text: str, found: list[tuple[str, str]]) -> None:
    assert items(text) == found


def test_email_value_is_lowercased_for_pseudonyms() -> None:
    [f] = find_all("Mail Anna@Example.org", ALL, REGIONS)
    assert f.value == "anna@example.org"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("host 8.8.8.8:53 answered", [("ipv4", "8.8.8.8")]),
        ("block 1.1.1.0/24, then", [("ipv4", "1.1.1.0")]),
        ("end of sentence 9.9.9.9.", [("ipv4", "9.9.9.9")]),
        ("[2a00:1450:4001:81b::200e]:443", [("ipv6", "2a00:1450:4001:81b::200e")]),
        ("Route 2001:4860:4860::8888/64, ok", [("ipv6", "2001:4860:4860::8888")]),
        ("ends 2001:4860:4860::8888: here", [("ipv6", "2001:4860:4860::8888")]),
        (
            "full 2606:4700:0000:0000:0000:0000:0000:1111 form",
            [("ipv6", "2606:4700:0000:0000:0000:0000:0000:1111")],
        ),
    ],
)
def test_public_ips(text: str, found: list[tuple[str, str]]) -> None:
    assert items(text) == found


def test_private_ips_only_when_asked() -> None:
    text = "LAN 192.168.1.1 and fd00::1 and 2001:db8::7"
    assert items(text) == []
    found = find_all(text, ALL, REGIONS, public_ip_only=False)
    # IPv6 is looked for in 2000::/3 only (its regex anchor): fd00::1 stays either way.
    assert [text[f.start : f.end] for f in found] == ["192.168.1.1", "2001:db8::7"]
    assert [f.value for f in find_all("at 2001:0db8:0:0:0:0:0:7", ALL, REGIONS, False)] == [
        "2001:db8::7"
    ]


@pytest.mark.parametrize(
    ("text", "number", "e164"),
    [
        ("Call (415) 555-2671 today", "(415) 555-2671", "+14155552671"),
        ("Call 415.555.2671 today", "415.555.2671", "+14155552671"),
        ("Call 1-800-562-6000 today", "1-800-562-6000", "+18005626000"),
        ("Tel: +44 20 7946 0958\n", "+44 20 7946 0958", "+442079460958"),
        ("Tel: 020 7946 0958\n", "020 7946 0958", "+442079460958"),
        ("Ruf 030 123456 an", "030 123456", "+4930123456"),
        ("Ruf +49 (0)30 1234567 an", "+49 (0)30 1234567", "+49301234567"),
        ("Fax +33 (0)1 23 45 67 89.", "+33 (0)1 23 45 67 89", "+33123456789"),
        ("Dial 0044 20 7946 0958 from Paris", "0044 20 7946 0958", "+442079460958"),
        ("Appel 01.23.45.67.89 ou", "01.23.45.67.89", "+33123456789"),
        ("Appel 06 12 34 56 78 ou", "06 12 34 56 78", "+33612345678"),
        ("E.164 +14155552671 form", "+14155552671", "+14155552671"),
        ("Seoul +82 2-751-1500 office", "+82 2-751-1500", "+8227511500"),
    ],
)
def test_phones(text: str, number: str, e164: str) -> None:
    [f] = find_all(text, ALL, REGIONS)
    assert (f.kind, text[f.start : f.end], f.value) == ("phone", number, e164)


def test_phone_regions_decide_national_forms() -> None:
    text = "Appel 01 23 45 67 89 ou +33 1 23 45 67 89"
    us_only = [text[f.start : f.end] for f in find_all(text, ALL, ("US",))]
    assert us_only == ["+33 1 23 45 67 89"]  # the international form needs no region
    assert len(find_all(text, ALL, ("FR",))) == 2


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("4111111111111111", True),  # Visa
        ("4111 1111 1111 1111", True),
        ("4111-1111-1111-1111", True),
        ("5500 0000 0000 0004", True),  # Mastercard
        ("2221 0000 0000 0009", True),  # Mastercard 2-series
        ("3782 822463 10005", True),  # Amex 4-6-5
        ("6011 1111 1111 1117", True),  # Discover
        ("3530 1113 3330 0000", True),  # JCB
        ("4111 1111 1111 1112", False),  # Luhn
        ("4111-1111 1111 1111", False),  # mixed separators
        ("41 1111 1111 1111 11", False),  # not card grouping
        ("1234 5678 9012 3452", False),  # Luhn-valid, no issuer
        ("4222222222222", False),  # 13-digit Visa: retired (EAN-13 barcodes look alike)
    ],
)
def test_cards(number: str, ok: bool) -> None:
    assert items(f"Card {number} on file", frozenset({"card"})) == (
        [("card", number)] if ok else []
    )


def test_luhn_and_issuers() -> None:
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert issuer_ok("378282246310005") and not issuer_ok("37828224631000")  # Amex is 15
    assert issuer_ok("6200000000000005") and not issuer_ok("9200000000000005")


@pytest.mark.parametrize(
    ("iban", "ok"),
    [
        ("DE89370400440532013000", True),
        ("DE89 3704 0044 0532 0130 00", True),
        ("GB82WEST12345698765432", True),
        ("GB82 WEST 1234 5698 7654 32", True),
        ("NL91ABNA0417164300", True),
        ("FR1420041010050500013M02606", True),
        ("NO9386011117947", True),
        ("DE89370400440532013001", False),  # checksum
        ("DE8937040044053201300", False),  # length
        ("de89370400440532013000", False),  # lower case: not as printed
        ("DE89 37040044 0532 0130 00", False),  # grouping
    ],
)
def test_ibans(iban: str, ok: bool) -> None:
    assert items(f"IBAN: {iban}.", frozenset({"iban"})) == ([("iban", iban)] if ok else [])


def test_iban_check() -> None:
    assert iban_ok("BE68539007547034") and not iban_ok("BE68539007547035")
    assert not iban_ok("ZZ68539007547034")


@pytest.mark.parametrize(
    "secret",
    [
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "ghp_" + "a1B2c3D4e5" * 3 + "F6g7H8",
        "glpat-" + "x1Y2z3" * 3 + "ab",
        "xoxb-1234567890-1234567890123-" + "aBcDeFgHiJkLmNoPqRsTuVwX",
        "https://hooks.slack.com/services/T00000000/B00000000/" + "X" * 24,
        "AIza" + "SyA-1234567890abcdefghijklmnopqrstu",
        "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        PEM,
    ],
)
def test_secrets(secret: str) -> None:
    assert items(f"The key\n{secret}\nleaked.", frozenset({"secret"})) == [("secret", secret)]


def test_cut_private_key_block_ends_at_its_last_full_line() -> None:
    head = PEM.split("\n")[:3]
    text = "\n".join(head) + "\nThis is where the page was cut off."
    assert items(text, frozenset({"secret"})) == [("secret", "\n".join(head))]


def test_overlaps_go_to_the_more_specific_kind() -> None:
    # A card is no phone number; an IPv4 address with its prefix length is no phone number.
    assert items("pay 4111-1111-1111-1111 now") == [("card", "4111-1111-1111-1111")]
    assert items("block 1.195.223.145/24 now") == [("ipv4", "1.195.223.145")]


def test_pathological_inputs_stay_linear() -> None:
    assert items("a." * 50_000 + "@") == []
    assert items("1 " * 50_000) == []
    assert items("2001:" * 20_000) == []
    assert items("-----BEGIN RSA PRIVATE KEY-----" + "A" * 100_000 + "!") == [
        ("secret", "-----BEGIN RSA PRIVATE KEY-----" + "A" * 100_000)
    ]


# --- modes, replacements, threshold ---------------------------------------------------------------

TEXTS = [
    "Mail anna@example.org or bob@example.org, call +44 20 7946 0958.",
    "Nothing to see at 10.0.0.1.",
    None,
]


def test_mask_mode_columns_and_contract() -> None:
    s = stage(kinds=("email", "phone"))
    table = s.score(pa.table({"text": TEXTS}))
    assert table.column("text").to_pylist() == [
        "Mail <EMAIL> or <EMAIL>, call <PHONE>.",
        TEXTS[1],
        None,
    ]
    assert table.column_names == ["text", "pii_email", "pii_phone", "pii_items"]
    assert table.column("pii_items").to_pylist() == [3, 0, 0]
    assert s.keep(table).to_pylist() == [None, None, None]  # no max_items: nothing rejected
    assert PiiStage.contract(s.config).produces == ("text", "pii_email", "pii_phone", "pii_items")


def test_reject_mode_keeps_text_and_rejects_any_item() -> None:
    s = stage(mode="reject")
    table = s.score(pa.table({"text": TEXTS}))
    assert table.column("text").to_pylist() == TEXTS
    assert s.keep(table).to_pylist() == ["pii_items", None, None]
    assert "text" not in PiiStage.contract(s.config).produces


def test_annotate_mode_spans() -> None:
    s = stage(mode="annotate", kinds=("email", "phone"))
    table = s.score(pa.table({"text": TEXTS}))
    assert table.column("text").to_pylist() == TEXTS
    assert table.column("pii_spans").to_pylist() == [
        [
            {"kind": "email", "start": 5, "end": 21},
            {"kind": "email", "start": 25, "end": 40},
            {"kind": "phone", "start": 47, "end": 63},
        ],
        [],
        [],
    ]
    assert PiiStage.contract(s.config).produces[-1] == "pii_spans"


def test_max_items_threshold_does_not_change_scores() -> None:
    texts = ["a@example.org b@example.org c@example.org", "a@example.org", "none"]
    scored = {n: stage(max_items=n).score(pa.table({"text": texts})) for n in (None, 0, 1, 3)}
    assert all(t.equals(scored[None]) for t in scored.values())
    assert stage(max_items=1).keep(scored[None]).to_pylist() == ["pii_items", None, None]
    assert stage(max_items=0).keep(scored[None]).to_pylist() == ["pii_items", "pii_items", None]
    assert stage(max_items=3).keep(scored[None]).to_pylist() == [None, None, None]
    assert stage(mode="reject", max_items=1).keep(scored[None]).to_pylist() == [
        "pii_items",
        None,
        None,
    ]
    assert PiiStage.threshold_keys == {"max_items"}


def test_replacements_fixed_and_pseudonym() -> None:
    s = stage(replacement={"email": "[email]", "phone": "pseudonym"})
    text = "Mail anna@example.org, call +44 20 7946 0958 or 020 7946 0958."
    [out] = s.score(pa.table({"text": [text]})).column("text").to_pylist()
    tag = pseudonym("phone", "+442079460958", "curate-pii")
    assert out == f"Mail [email], call {tag} or {tag}."  # one number, one pseudonym
    assert tag == "<PHONE_" + tag[7:17] + ">" and len(tag) == 18


def test_pseudonyms_are_stable_and_keyed() -> None:
    a = pseudonym("email", "anna@example.org", "k1")
    assert a == pseudonym("email", "anna@example.org", "k1")  # same on every worker and run
    assert a != pseudonym("email", "anna@example.org", "k2")
    assert a != pseudonym("email", "bob@example.org", "k1")
    assert pseudonym("ipv4", "8.8.8.8", "k1").startswith("<IP_")
    s = stage(replacement={"email": "pseudonym"})
    masked = s.score(pa.table({"text": ["Anna@Example.org", "anna@example.org"]}))
    first, second = masked.column("text").to_pylist()
    assert first == second == pseudonym("email", "anna@example.org", "curate-pii")


def test_kinds_switch_off() -> None:
    s = stage(kinds=("email",))
    table = s.score(pa.table({"text": ["call +44 20 7946 0958, 8.8.8.8, a@example.org"]}))
    assert table.column("text").to_pylist() == ["call +44 20 7946 0958, 8.8.8.8, <EMAIL>"]
    assert "pii_phone" not in table.column_names


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"regions": ["XX"]}, "unknown phone region 'XX'"),
        ({"kinds": []}, "at least one kind"),
        ({"kinds": ["ssn"]}, "kinds.0"),
        ({"mode": "redact"}, "mode"),
        ({"pseudonym_key": "é" * 40}, "at most 64 bytes"),
        ({"max_items": -1}, "max_items"),
    ],
)
def test_bad_config_names_the_key(config: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PiiConfig(**config)


def test_regions_are_upper_cased_and_registered() -> None:
    assert PiiConfig(regions=["gb", "de"]).regions == ("GB", "DE")
    assert stage_class("pii") is PiiStage


# --- through the runner ---------------------------------------------------------------------------


def test_ray_and_local_runs_give_identical_output(gold, tmp_path, ray_session) -> None:
    """Pseudonyms and counts are the same on Ray workers as in one local process."""
    from pipeline.config import recipe_from_dict
    from pipeline.runner.run import run_recipe
    from tests.test_runner import read_output

    extra = " Mail anna@example.org, call +44 20 7946 0958, host 8.8.8.8."
    docs = [
        {"id": f"d{i:03d}", "text": t + (extra if i % 3 == 0 else "")} for i, t in enumerate(gold)
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    stats = {}
    for executor in ("local", "ray"):
        recipe = recipe_from_dict(
            {
                "input": {"paths": [str(source)]},
                "output": {"path": str(tmp_path / executor), "keep_rejected": True},
                "runtime": {"executor": executor, "batch_size": 16},
                "stages": [
                    {"stage": "pii", "replacement": {"email": "pseudonym"}, "max_items": 3},
                ],
            }
        )
        stats[executor] = run_recipe(recipe).stats
    assert read_output(tmp_path / "ray").equals(read_output(tmp_path / "local"))
    [local_pii] = stats["local"]["stages"]
    assert local_pii["removed_by_reason"] == {"pii_items": 1}  # a text with 4 items of its own
    assert [s["removed_by_reason"] for s in stats["ray"]["stages"]] == [
        local_pii["removed_by_reason"]
    ]
    out = read_output(tmp_path / "local")
    masked = out.filter(pc.equal(out.column("id"), "d003")).column("text")[0].as_py()
    tag = pseudonym("email", "anna@example.org", "curate-pii")
    assert masked.endswith(f" Mail {tag}, call <PHONE>, host <IP>.")
