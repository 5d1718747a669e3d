"""Compiled trafilatura selectors (pipeline/stages/fast_xpath.py): the same elements as lxml's
XPath on hand-made edge cases and inside real extractions, and byte-identical extracted text."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from lxml import etree

from pipeline.stages import fast_xpath
from pipeline.stages.extractors import build_extractor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import eval_extract  # noqa: E402

NS = {"re": "http://exslt.org/regular-expressions"}

EDGE_PAGE = """<html><body>
<div id="main" class="post entry">
  <div class="Comment-list" id="x">one</div>
  <div id="y" class="Comment-z">five</div>
  <div id="comments" class="zzz">two</div>
  <section class="a" id="comment-list">three</section>
  <div class="" id="">empty attributes</div>
  <div data-lp-replacement-content="">flag</div>
  <span role="Navigation">nav role</span>
  <p class="FULLTEXT body">case</p>
  <p style="display: none">hidden</p>
  <div class="TeaserBox">teaser</div>
  <div id="MAIN-Content">translated</div>
  <ul><li><p class="k">first p</p><p class="k">second p</p></li>
      <li><p class="k">third p</p></li></ul>
  <article><h1>heading</h1><div class="infinite-scroll">has h1 above</div></article>
  <div class="infinite-scroll"><h1>own h1</h1></div>
  <div class="mvp-post-add-box"><h1>kept by re:test</h1></div>
  <main>main element</main>
  <cite>a cite</cite><quote>a quote</quote>
</div>
</body></html>"""

EDGE_EXPRESSIONS = [
    # attribute unions take the first attribute in source order (id before class, and back)
    ".//*[self::div or self::section][re:test(@id|@class, '^comment')]",
    ".//*[re:test(@class|@id, '^Comment')]",
    ".//*[starts-with(@id|@class, 'comment')]",
    # missing vs empty attributes
    ".//div[@class='']",
    ".//div[not(@class='zzz')]",
    ".//*[@data-lp-replacement-content]",
    ".//*[contains(@class, '')]",
    # translate, the 'i' flag, contains, starts-with, equality, merged in one `or`
    ".//*[contains(translate(@role, 'N', 'n'), 'nav') or re:test(@class, 'fulltext', 'i')]",
    ".//*[contains(translate(@id, 'CM', 'cm'), 'main-content') or @id='main' or "
    "contains(translate(@class, 'T', 't'), 'teaser') or starts-with(@class, 'post')]",
    ".//*[contains(translate(@id, 'M', ''), 'AIN')]",  # translate that deletes characters
    ".//*[re:test(translate(@id, 'MAIN', 'main'), '^main-C')]",
    ".//*[contains(@style, 'display:none') or contains(@style, 'display: none')]",
    ".//*[re:test(@class, '(^|\\s)body(\\s|$)') or re:test(@id, '(a)\\1')]",  # a backreference
    # positions: first per parent, first overall, unions with and without positions
    ".//p[@class='k'][1]",
    "(.//p[@class='k'])[1]",
    "(.//*[self::div or self::section][starts-with(@class, 'main') or "
    "starts-with(@id, 'main')])[1]|(.//main)[1]",
    ".//cite|.//quote",
    ".//cite|.//*[self::div][@id='x']",
    # descendant tests, and/not
    ".//*[self::div or self::section][re:test(@class, 'infinite-?scroll|mvp-post-add-box')]"
    "[not(.//h1) or re:test(@class, 'mvp-post-add-(?:box|wrap)')]",
    ".//div[@id and not(@class='zzz') and contains(@class, 'e')]",
]


def _lxml(expr: str) -> etree.XPath:
    return etree.XPath(expr, namespaces=NS)


@pytest.mark.parametrize("expr", EDGE_EXPRESSIONS)
def test_compiled_selector_matches_lxml_on_edge_cases(expr: str) -> None:
    tree = lxml.html.document_fromstring(EDGE_PAGE)
    expected = _lxml(expr)(tree)
    got = fast_xpath.compile_xpath(expr)(tree)
    assert got == expected
    assert [e.text for e in got] == [e.text for e in expected]


def test_remembered_verdicts_survive_the_memo_starting_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Verdicts are remembered per attribute value; a full memo is emptied, not trusted."""
    monkeypatch.setattr(fast_xpath, "_MEMO_SIZE", 2)
    tree = lxml.html.document_fromstring(EDGE_PAGE)
    for expr in EDGE_EXPRESSIONS:
        compiled = fast_xpath.compile_xpath(expr)
        expected = _lxml(expr)(tree)
        assert compiled(tree) == expected  # fills (and overflows) the memo
        assert compiled(tree) == expected  # answered partly from it


def test_edge_cases_select_what_xpath_1_says() -> None:
    """Spot values, so both sides cannot be wrong together."""
    tree = lxml.html.document_fromstring(EDGE_PAGE)

    def texts(expr: str) -> list[str | None]:
        return [e.text for e in fast_xpath.compile_xpath(expr)(tree)]

    # a union's string is its first attribute in source order, whatever order the union names:
    # "one" has class first, "five" has id first (so its class is never tested)
    assert texts(".//*[re:test(@id|@class, '^Comment')]") == ["one"]
    assert texts(".//*[re:test(@class|@id, '^Comment')]") == ["one"]
    assert texts(".//div[@class='']") == ["empty attributes"]
    assert texts(".//p[@class='k'][1]") == ["first p", "third p"]
    assert texts("(.//p[@class='k'])[1]") == ["first p"]
    assert texts(".//*[contains(translate(@role, 'N', 'n'), 'nav')]") == ["nav role"]
    # translate deletes the characters it has no replacement for
    assert texts(".//*[contains(translate(@id, 'M', ''), 'AIN-C')]") == ["translated"]
    assert texts(".//*[contains(translate(@id, 'M', ''), 'MAIN')]") == []
    assert texts(".//*[contains(translate(@id, 'MAIN', 'main'), 'main-C')]") == ["translated"]
    assert texts(".//*[contains(translate(@id, 'MAIN', 'main'), 'MAIN')]") == []
    assert len(texts(".//*[contains(@class, '')]")) == len(list(tree.iterdescendants()))


@pytest.mark.parametrize(
    "expr",
    [
        "//div[@class='a']",  # absolute path
        ".//div[2]",  # positions other than 1
        ".//div[@class!='a']",
        ".//div[re:test(@class, 'a', 'g')]",  # flags other than i
        ".//a/b",  # child steps
        ".//*[local-name()='annotation']",
    ],
)
def test_expressions_outside_the_subset_are_left_to_lxml(expr: str) -> None:
    with pytest.raises(fast_xpath.Unsupported):
        fast_xpath.compile_xpath(expr)


def test_install_and_uninstall_swap_trafilatura_selectors() -> None:
    import trafilatura.main_extractor as me
    import trafilatura.xpaths as xp

    was = fast_xpath.installed()
    fast_xpath.uninstall()
    try:
        original = xp.OVERALL_DISCARD_XPATH[0]
        assert isinstance(original, etree.XPath)
        counts = fast_xpath.install()
        assert counts["compiled"] >= 20  # every selector the extraction path runs
        assert fast_xpath.install() == counts  # idempotent
        assert not isinstance(xp.OVERALL_DISCARD_XPATH[0], etree.XPath)
        assert me.OVERALL_DISCARD_XPATH is xp.OVERALL_DISCARD_XPATH  # shared list, swapped
        # globals imported by name into other modules are swapped there too
        baseline = sys.modules["trafilatura.baseline"]  # (trafilatura.baseline is a function)
        assert not isinstance(baseline.BASIC_CLEAN_XPATH, etree.XPath)
        assert not isinstance(sys.modules["trafilatura.settings"].BASIC_CLEAN_XPATH, etree.XPath)
        fast_xpath.uninstall()
        assert xp.OVERALL_DISCARD_XPATH[0] is original
        assert isinstance(baseline.BASIC_CLEAN_XPATH, etree.XPath)
        assert not fast_xpath.installed()
    finally:
        if was:
            fast_xpath.install()


# --------------------------------------------------------------------------------------------
# Real pages


def _real_pages(shared_data: Path) -> list[tuple[bytes, str | None]]:
    """ScrapingHub, every sixth CleanEval page and every third crawl-WARC page under 300 KB."""
    pages = [
        (d.html.encode("utf-8"), d.url)
        for d in eval_extract.load_dataset("scrapinghub", shared_data / "extraction")
    ]
    cleaneval = eval_extract.load_dataset("cleaneval", shared_data / "extraction")
    pages += [(d.html.encode("utf-8"), d.url) for d in cleaneval[::6]]
    crawl = []
    for warc in sorted((shared_data / "warc").glob("*.warc.gz")):
        for batch in eval_extract._iter_html_batches(warc):
            for html, url in zip(
                batch.column("html").to_pylist(), batch.column("url").to_pylist(), strict=True
            ):
                if html and len(html) < 300_000:
                    crawl.append((html.encode("utf-8"), url))
    return pages + crawl[::3]


@pytest.fixture(scope="module")
def real_pages(shared_data: Path) -> list[tuple[bytes, str | None]]:
    return _real_pages(shared_data)


MODES: dict[str, dict[str, Any]] = {
    "precision": {"favor_precision": True, "fast": False},
    "fast": {"favor_precision": False, "fast": True},
    "recall-comments": {"favor_precision": False, "favor_recall": True, "include_comments": True},
}


def _options(**overrides: Any) -> dict[str, Any]:
    base = {
        "favor_precision": True,
        "favor_recall": False,
        "include_comments": False,
        "include_tables": True,
        "deduplicate": False,
        "fast": False,
        "prune_tags": ["script", "style", "noscript", "svg", "template", "iframe"],
        "table_outer_pipes": False,
        "compiled_selectors": False,
    }
    return {**base, **overrides}


class _Shadow:
    """A compiled selector that also runs lxml's original and records any difference."""

    def __init__(self, compiled: Any, original: etree.XPath, log: list[str]) -> None:
        self.compiled, self.original, self.log = compiled, original, log
        self.calls = 0

    def __call__(self, node: Any) -> list[Any]:
        got, expected = self.compiled(node), self.original(node)
        self.calls += 1
        if got != expected:
            self.log.append(f"{self.original.path.strip()[:80]}: {len(got)} vs {len(expected)}")
        return got


def _shadowed(log: list[str]) -> Iterator[_Shadow]:
    """Wrap every installed selector in a _Shadow, in place."""
    for module, attr, original in fast_xpath._globals_swapped:
        shadow = _Shadow(getattr(module, attr), original, log)
        setattr(module, attr, shadow)
        yield shadow
    for items, j, original in fast_xpath._items_swapped:
        shadow = _Shadow(items[j], original, log)
        items[j] = shadow
        yield shadow


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_compiled_selectors_agree_with_lxml_inside_real_extractions(
    real_pages: list[tuple[bytes, str | None]], mode: str
) -> None:
    """Every selector call trafilatura makes on ~400 real pages returns lxml's elements, and the
    extracted texts are byte-identical with and without the compiled selectors."""
    plain = build_extractor("trafilatura", _options(**MODES[mode]))
    assert not fast_xpath.installed()
    try:
        expected = [plain(html, url) for html, url in real_pages]
    finally:
        plain.close()

    fast = build_extractor("trafilatura", _options(**MODES[mode], compiled_selectors=True))
    assert fast_xpath.installed() and fast.notes == ()  # the set-up self-check passed
    log: list[str] = []
    shadows = list(_shadowed(log))
    try:
        texts = [fast(html, url) for html, url in real_pages]
    finally:
        fast.close()
        fast_xpath.uninstall()
    assert texts == expected
    assert log == []
    called = sum(1 for s in shadows if s.calls)
    assert called >= (12 if mode == "fast" else 15), "the extraction path exercises the selectors"
    assert sum(1 for t in expected if t) > 0.9 * len(real_pages)
