"""`url_filter`: malformed URLs, domain and URL block lists, curated sources, RefinedWeb word
scores (hard, soft with its threshold edge, strict sub-words), and the URLs of the real gold data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from pipeline.stages.url_filter import (
    UrlFilterConfig,
    UrlFilterStage,
    parent_domains,
    parse_host,
    url_prefixes,
)


def decide(urls: list[str | None], **kw: object) -> tuple[pa.Table, list[str | None]]:
    s = UrlFilterStage(UrlFilterConfig(**kw))
    table = s.score(pa.table({"url": pa.array(urls, type=pa.string())}))
    return table, s.keep(table).to_pylist()


def reason(url: str | None, **kw: object) -> str | None:
    return decide([url], **kw)[1][0]


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "notaurl",
        "http://",
        "example.com/path",  # no scheme
        "mailto:someone@example.com",  # no host
        "http://exa mple.com/",
        "http://[::1",
        "http://a..b.com/",
        "https://example.com:99999/",
        "https://example.com:port/",
    ],
)
def test_malformed(url: str) -> None:
    assert parse_host(url) is None
    assert reason(url) == "url_malformed"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Example.COM/Path", "example.com"),
        ("http://127.0.0.1:8080/x", "127.0.0.1"),
        ("http://[::1]/", "::1"),
        ("https://bücher.de/", "bücher.de"),
        ("https://example.com./", "example.com"),
        ("ftp://files.example.org/a", "files.example.org"),
    ],
)
def test_well_formed(url: str, host: str) -> None:
    assert parse_host(url) == host
    assert reason(url) is None


@pytest.mark.parametrize("url", [None, "", "   "])
def test_missing_url(url: str | None) -> None:
    assert reason(url) == "url_missing"
    assert reason(url, missing_url="keep") is None


def test_missing_url_column() -> None:
    s = UrlFilterStage(UrlFilterConfig())
    table = s.score(pa.table({"text": ["x"]}))
    assert s.keep(table).to_pylist() == ["url_missing"]


def test_parent_domains_and_prefixes() -> None:
    assert parent_domains("a.b.example.com") == [
        "a.b.example.com",
        "b.example.com",
        "example.com",
        "com",
    ]
    assert parent_domains("10.0.0.1") == ["10.0.0.1"]
    assert url_prefixes("https://www.Example.com/a/b/?q=1#frag") == [
        "example.com",
        "example.com/a",
        "example.com/a/b",
        "example.com/a/b?q=1",
    ]


# --- block lists ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.pornhub.com/view", "url_blocked_domain"),  # subdomain of a listed domain
        ("https://pornhub.com", "url_blocked_domain"),
        ("https://notpornhub.com/", None),  # not a parent domain
        ("https://pornhub.com.example.org/", None),
        ("https://anything.xxx/", "url_blocked_domain"),  # listed top-level domain
    ],
)
def test_default_domain_list(url: str, expected: str | None) -> None:
    assert reason(url) == expected
    assert reason(url, use_default_lists=False) is None


def test_user_domain_files(tmp_path: Path) -> None:
    plain = tmp_path / "domains.txt"
    plain.write_text("# comment\nbad.example\n*.Worse.Example\n\n")
    packed = tmp_path / "more.txt.gz"
    packed.write_bytes(gzip.compress(b"packed.example\n"))
    kw = {"blocked_domains_files": (str(plain), str(packed))}
    assert reason("https://sub.bad.example/x", **kw) == "url_blocked_domain"
    assert reason("https://worse.example/", **kw) == "url_blocked_domain"
    assert reason("https://packed.example/", **kw) == "url_blocked_domain"
    assert reason("https://bad.example.org/", **kw) is None
    assert reason("https://pornhub.com/", **kw) == "url_blocked_domain"  # defaults still apply


def test_user_url_file(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("example.com/bad/page\nhttps://example.org/x?id=3\n")
    kw = {"blocked_urls_files": (str(urls),)}
    assert reason("https://www.example.com/bad/page", **kw) == "url_blocked_url"
    assert reason("http://example.com/bad/page/sub?x=1", **kw) == "url_blocked_url"
    assert reason("http://example.com/bad/pages", **kw) is None
    assert reason("http://example.com/bad", **kw) is None
    assert reason("http://example.org/x?id=3", **kw) == "url_blocked_url"
    assert reason("http://example.org/x?id=4", **kw) is None


def test_missing_list_file_fails_validation(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="file not found"):
        UrlFilterConfig(blocked_domains_files=(str(tmp_path / "nope.txt"),))


# --- curated sources --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "curated"),
    [
        ("https://en.wikipedia.org/wiki/Python", True),
        ("https://arxiv.org/abs/2306.01116", True),
        ("https://stackoverflow.com/questions/1", True),
        ("https://notwikipedia.org/", False),
        ("https://example.com/wikipedia.org", False),
    ],
)
def test_curated_sources(url: str, curated: bool) -> None:
    table, reasons = decide([url])
    assert table.column("url_curated").to_pylist() == [curated]
    assert reasons == ["url_curated_source" if curated else None]
    assert decide([url], exclude_curated=False)[1] == [None]


# --- word scores ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/free-porn-videos", "url_banned_word"),
        ("https://example.com/PORN", "url_banned_word"),
        ("https://example.com/free%20porn", "url_banned_word"),  # percent-decoded
        ("https://example.com/free_porn", "url_banned_word"),
        ("https://example.com/pornography-laws", None),  # one soft word only
        ("https://example.com/bigtitsvideo", "url_banned_subword"),
        ("https://example.com/big-tits.html", "url_banned_subword"),  # '-' and '.' ignored
        ("http://londonmark.blogspot.com/", None),  # the `g-spot` entry never matches
        ("https://example.com/sex-education", None),  # 1 soft word
        ("https://example.com/sex-and-nude", "url_soft_banned_words"),  # 2 soft words
        ("https://example.com/sex/sex/sex", None),  # distinct soft words are counted
        ("https://www.essex.ac.uk/", None),
    ],
)
def test_word_scores(url: str, expected: str | None) -> None:
    assert reason(url) == expected


def test_soft_word_threshold_edge() -> None:
    table, reasons = decide(
        ["https://example.com/sex-and-nude", "https://example.com/sex-nude-xxx-boob"]
    )
    assert table.column("url_soft_word_count").to_pylist() == [2, 3]
    assert reasons == ["url_soft_banned_words", "url_banned_word"]  # xxx is a hard word
    assert decide(["https://example.com/sex-and-nude"], soft_word_threshold=3)[1] == [None]


def test_user_word_files(tmp_path: Path) -> None:
    hard = tmp_path / "hard.txt"
    hard.write_text("casino\n")
    sub = tmp_path / "sub.txt"
    sub.write_text("freespins\n")
    kw = {"hard_words_files": (str(hard),), "strict_subwords_files": (str(sub),)}
    assert reason("https://example.com/online-casino", **kw) == "url_banned_word"
    assert reason("https://example.com/get-free-spins", **kw) == "url_banned_subword"
    assert reason("https://example.com/casinos", **kw) is None


def test_thresholds_do_not_change_scores() -> None:
    urls = ["https://en.wikipedia.org/", "https://example.com/sex-and-nude", None]
    a, reasons_a = decide(urls)
    b, reasons_b = decide(urls, exclude_curated=False, soft_word_threshold=5, missing_url="keep")
    assert a.equals(b)
    assert reasons_a == ["url_curated_source", "url_soft_banned_words", "url_missing"]
    assert reasons_b == [None, None, None]
    s = UrlFilterStage(UrlFilterConfig())
    assert set(s.threshold_keys) <= set(UrlFilterConfig.model_fields)
    assert set(s.score_columns) <= set(a.column_names)


# --- real URLs --------------------------------------------------------------------------------


def test_gold_urls(shared_data) -> None:
    urls = [
        json.loads(line)["url"]
        for name in ("cleaneval", "scrapinghub")
        for line in (shared_data / "extraction" / f"{name}.gold.jsonl").open()
    ]
    table, reasons = decide(urls)
    assert not any(table.column("url_malformed").to_pylist())
    assert sum(r is None for r in reasons) / len(reasons) > 0.98
