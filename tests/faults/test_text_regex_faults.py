"""Regular expressions applied to document text run in linear time: lines built to make a
backtracking pattern retry every start position finish under a time guard, and the rewritten
patterns match exactly what the old ones did on real extracted text."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.stages import line_corrections as lc
from pipeline.stages.c4_quality import _SENTENCE_END, count_sentences
from pipeline.stages.line_corrections import URL_PATTERN, remove_urls
from pipeline.text import split_words
from tests.conftest import SHARED_DATA

# The URL pattern before it was made linear: the reference for "same matches on real text".
_QUADRATIC_URL = re.compile(
    rf"[ \t]*(?:"
    rf"(?:https?|ftp)://{lc._URL_TAIL}"
    rf"|\bwww\.[\w-]+(?:\.[\w-]+)+{lc._URL_TAIL}"
    rf"|[\w.+-]+@(?:{lc._LABEL}\.)+[a-z]{{2,}}\b"
    rf"|\b(?:{lc._LABEL}\.)+(?:{lc._COMMON_TLDS})\b(?:[:/]{lc._URL_TAIL})?"
    rf"|\b(?:\d{{1,3}}\.){{3}}\d{{1,3}}(?::\d+)?(?:/{lc._URL_TAIL})?"
    rf")",
    re.IGNORECASE,
)
_QUADRATIC_SENTENCE_END = re.compile(r"([.!?]+)[\"'”’»)\]]*(?=\s|$)|[。！？]+")
_REAL_TEXT = [
    (SHARED_DATA / "extraction" / "scrapinghub.gold.jsonl", "gold"),
    (SHARED_DATA / "extraction" / "cleaneval.gold.jsonl", "gold"),
    (SHARED_DATA / "quality" / "dclm-agreement.jsonl", "text"),
]


@pytest.fixture(scope="module")
def real_lines(shared_data) -> list[str]:
    """Every line of the extraction gold texts and the DCLM sample, and the pages' URLs."""
    lines = []
    for path, key in _REAL_TEXT:
        for row in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(row)
            lines += record[key].split("\n")
            lines += [record["url"]] if "url" in record else []
    return lines


def test_url_pattern_matches_as_before_on_real_text(real_lines) -> None:
    """The same spans as the quadratic pattern on every real line that could hold a URL (2,621
    lines, 2,032 URLs, e-mail addresses and domains)."""
    candidates = [line for line in real_lines if lc._URL_TRIGGER.search(line)]
    assert len(candidates) > 2500
    spans = [[m.span() for m in URL_PATTERN.finditer(line)] for line in candidates]
    before = [[m.span() for m in _QUADRATIC_URL.finditer(line)] for line in candidates]
    assert spans == before
    assert sum(map(len, spans)) > 2000


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("see http://example.com/a?b=c. next", "see. next"),
        ("Mail me@example.org, or you@sub.example.co.uk!", "Mail, or!"),
        ("visit www.example.com/path) now", "visit) now"),
        ("go to example.com or foo.bar.io/x", "go to or"),
        ("host 192.168.0.1:8080/admin ok", "host ok"),
        ("first.last+tag@mail.example.com wrote", " wrote"),
        ("e-mail: JOHN.DOE@EXAMPLE.COM.", "e-mail:."),
        ("josé@example.com", ""),
        ("us...example.com", "us..."),
        ("v1.2.example.com and fig.1.example.com", " and"),
        ("example.com+me@foo.org", ""),
        ("a@b@example.com", "a@"),
        ("(https://en.wikipedia.org/wiki/Foo_(bar))", "())"),
        (
            "setup.py notes.md www.example 1.2.3.4.5 user@localhost",
            "setup.py notes.md www.example.5 user@localhost",
        ),
        # Where the rewrite differs from the old pattern: a domain right after a dotted word
        # that is not a host name label is no longer cut out of it.
        ("a_b.example.com", None),
    ],
)
def test_url_removal_on_hand_made_lines(line: str, expected: str | None) -> None:
    assert remove_urls(line) == (line if expected is None else expected)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("size", [32_768, 102_400])
def test_url_removal_on_the_pathological_line_finishes(size: int) -> None:
    """`"Write to me@example.org about " + "a." * n + "zz"`: 8/16/32 KB cost 10/47/163 s with
    the quadratic pattern (every `a` started a scan to the end of the line); now under 0.5 s."""
    head = "Write to me@example.org about "
    line = head + "a." * ((size - len(head) - 2) // 2) + "zz"
    assert remove_urls(line) == "Write to about " + line[len(head) :]


_DOMAIN = "example.com "  # a URL first, so the line is searched at all


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("me@example.org" + " " * 100_000 + "z", " " * 100_000 + "z"),  # each space could start
        ("x@" + "a." * 50_000 + "1", None),  # a long domain that ends in no TLD
        ("x@" * 50_000, None),  # addresses that never complete
        ("www." + "a" * 100_000, None),  # www. without a second label
        (_DOMAIN + "1." * 50_000, "." * 12_500),  # dotted digits: 12,500 IPv4 addresses
        (_DOMAIN + "a-" * 50_000, " " + "a-" * 50_000),  # labels that never end
        (_DOMAIN + ("a" * 63 + ".") * 1_600, " " + ("a" * 63 + ".") * 1_600),
        (_DOMAIN + "a_a." * 25_000, " " + "a_a." * 25_000),  # labels broken by underscores
        (_DOMAIN + "." * 100_000, " " + "." * 100_000),
    ],
    ids=["spaces", "domain-no-tld", "at-signs", "www", "digits", "hyphens", "label63", "_", "dots"],
)
def test_url_removal_on_other_long_runs_finishes(line: str, expected: str | None) -> None:
    """Other runs a backtracking URL pattern could rescan from every position (100 KB each)."""
    assert remove_urls(line) == (line if expected is None else expected)


def test_sentence_ends_as_before_on_real_text(real_lines) -> None:
    """c4_quality's sentence terminators: the same spans as the quadratic pattern, and the same
    sentence count per line (the last-space search was rewritten too)."""
    lines = [line for line in real_lines if line.strip()]
    spans = [[m.span() for m in _SENTENCE_END.finditer(line)] for line in lines]
    assert spans == [[m.span() for m in _QUADRATIC_SENTENCE_END.finditer(x)] for x in lines]
    assert sum(map(len, spans)) > 50_000
    assert count_sentences('Dr. Smith came.\tMr. X left... Why?! "Yes." e.g. this') == 5


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("line", "sentences"),
    [
        ("." * 100_000 + "x", 1),  # a run of dots not followed by a space: 32 KB cost 78 s
        ("!." * 50_000 + "x", 1),
        ("x.\t" * 33_000, 1),  # 33,000 initials: the space search went back to the line start
        ("Word. " * 20_000, 20_000),
    ],
    ids=["dots", "bangs", "initials", "sentences"],
)
def test_sentence_count_on_long_runs_finishes(line: str, sentences: int) -> None:
    assert count_sentences(line) == sentences


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "text",
    ["a." * 50_000, "a-" * 50_000 + "-", "é-'" * 33_000, "ab. " * 25_000, "[" * 100_000],
    ids=["dotted", "hyphens", "unicode-joiners", "words", "brackets"],
)
def test_word_splitting_on_long_runs_finishes(text: str) -> None:
    """The word tokenizer (every Gopher, FineWeb and C4 measure) on runs of joiners."""
    assert len(split_words(text)) >= 1
