"""trafilatura's hot loops without their repeated text measurements
(pipeline/stages/trafilatura_loops.py): the same text on every shared page, what the set-up
self-check covers, and its fallback to trafilatura's own loops."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from pipeline.stages import fast_xpath, trafilatura_adapter, trafilatura_loops
from pipeline.stages.extract import ExtractConfig
from pipeline.stages.extractors import BuiltExtractor, build_extractor
from tests.test_trafilatura_adapter import adapter  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import eval_extract  # noqa: E402

OPTIONS = ExtractConfig(backend="trafilatura").backend_options()  # precision, as the recipes
FAST = {"fast": True, "favor_precision": False}


def _extractor(**overrides: Any) -> BuiltExtractor:
    return build_extractor("trafilatura", {**OPTIONS, **overrides})


@pytest.fixture(scope="module")
def shared_pages(shared_data: Path) -> list[tuple[bytes, str | None]]:
    return eval_extract.shared_pages(shared_data)


@pytest.fixture
def lean() -> Iterator[BuiltExtractor]:
    """The default extractor (compiled selectors, copies left out, loop replacements)."""
    extract = _extractor()
    try:
        assert extract.notes == () and trafilatura_loops.installed()
        yield extract
    finally:
        extract.close()
    assert not trafilatura_loops.installed()  # released with the extractor


def _texts_with_and_without_loops(
    extract: BuiltExtractor, pages: list[tuple[bytes, str | None]]
) -> tuple[list[str], list[str]]:
    texts = [extract(html, url) for html, url in pages]
    trafilatura_loops.uninstall()
    try:
        assert fast_xpath.installed()  # only the loops differ
        return texts, [extract(html, url) for html, url in pages]
    finally:
        trafilatura_loops.install()


@pytest.mark.slow
def test_same_text_on_every_shared_page(
    shared_pages: list[tuple[bytes, str | None]], lean: BuiltExtractor
) -> None:
    """The acceptance test: the 1,145 shared pages (workload 4's pages, ScrapingHub and
    CleanEval among them) give byte-identical text with and without the loop replacements."""
    assert len(shared_pages) == 1145
    with_loops, without = _texts_with_and_without_loops(lean, shared_pages)
    assert with_loops == without
    assert sum(1 for t in without if t) > 0.9 * len(shared_pages)


@pytest.mark.slow
def test_same_text_in_fast_mode(shared_pages: list[tuple[bytes, str | None]]) -> None:
    """Fast mode runs no readability, only the link-density loop: every third shared page."""
    extract = _extractor(**FAST)
    try:
        assert trafilatura_loops.installed()
        with_loops, without = _texts_with_and_without_loops(extract, shared_pages[::3])
    finally:
        extract.close()
    assert with_loops == without
    assert sum(1 for t in without if t) > 0.9 * len(with_loops)


# Hand-made: links inside nested candidates and blocks inside links (a dropped block changes the
# text of the link holding it), a misused div with loose text, short link lists.
_LONG = "The quick brown fox jumps over the lazy dog, again and again, until the page ends. " * 3
EDGE_PAGES = [
    f"""<html><body><div id="main"><div class="post">
      <p>{_LONG} <a href="/a">a link inside a paragraph, long enough to count for something</a></p>
      <p>{_LONG}</p>
      <div class="related"><a href="/b"><div class="x">one</div> block in a link</a></div>
      <ul><li><a href="/1">One</a></li><li><a href="/2">Two</a></li></ul>
      <table><tr><td>{_LONG} <a href="/t">cell link</a></td><td>{_LONG}</td></tr></table>
    </div></div></body></html>""",
    f"""<html><body><div>loose text before a block<p>{_LONG}</p>tail text after it<br/>
      <a href="/x">link</a> more loose text, with commas, and more</div>
      <div class="content"><a href="/y"><div>{_LONG}</div></a><p>{_LONG}</p></div>
      <div class="sidebar"><a href="/1">Home</a> <a href="/2">About</a> <a href="/3">Blog</a>
      <a href="/4">Contact</a> <a href="/5">Archive</a></div></body></html>""",
    """<html><body><div><p>short</p><a href="/only">only a link here</a></div></body></html>""",
]


def test_same_text_on_edge_cases(lean: BuiltExtractor) -> None:
    pages = [(html.encode(), None) for html in EDGE_PAGES]
    with_loops, without = _texts_with_and_without_loops(lean, pages)
    assert with_loops == without
    assert "until the page ends" in with_loops[0] and "cell link" in with_loops[0]
    assert "more loose text, with commas" in with_loops[1]


def test_same_readability_summary_on_deeply_nested_candidates() -> None:
    """3,000 nested divs each holding a paragraph (libxml2 keeps 255 levels): every div is a
    candidate inside the next; readability's summary is the same with the replacements."""
    html = (f"<div><p>{_LONG}</p>" * 3000 + "</div>" * 3000).encode()
    readability = sys.modules["trafilatura.readability_lxml"]
    was = trafilatura_loops.installed()
    try:
        trafilatura_loops.install()
        lean = readability.Document(lxml.html.document_fromstring(html), 25).summary()
        trafilatura_loops.uninstall()
        plain = readability.Document(lxml.html.document_fromstring(html), 25).summary()
    finally:
        trafilatura_loops.uninstall()
        if was:
            trafilatura_loops.install()
    assert lean == plain
    assert lean.count("The quick brown fox") > 100


def _text_measurements(extract: BuiltExtractor, pages: list[tuple[str, bytes]]) -> int:
    """How many times lxml.html's text_content() runs while `extract` does `pages`."""
    calls = [0]
    real = lxml.html.HtmlMixin.text_content

    def counting(self: Any) -> str:
        calls[0] += 1
        return real(self)

    lxml.html.HtmlMixin.text_content = counting  # type: ignore[method-assign]
    try:
        for _, html in pages:
            extract(html, None)
    finally:
        lxml.html.HtmlMixin.text_content = real  # type: ignore[method-assign]
    return calls[0]


@pytest.mark.usefixtures("adapter")
def test_self_check_runs_every_replacement(monkeypatch: pytest.MonkeyPatch) -> None:
    """The set-up self-check runs each replaced function on the shipped pages (so its
    comparison covers them all), and with them trafilatura measures texts less often."""
    calls: dict[tuple[str, str], int] = {}
    for key, fn in list(trafilatura_loops._REPLACEMENTS.items()):
        if fn is None:  # the Paragraph class, made at install: counted through its __init__
            continue

        def counting(*args: Any, _fn: Any = fn, _key: Any = key, **kwargs: Any) -> Any:
            calls[_key] = calls.get(_key, 0) + 1
            return _fn(*args, **kwargs)

        monkeypatch.setitem(trafilatura_loops._REPLACEMENTS, key, counting)
    extract = _extractor()
    try:
        assert extract.notes == () and trafilatura_loops.installed()
        assert sorted(calls) == sorted(k for k, f in trafilatura_loops._REPLACEMENTS.items() if f)
        paragraphs = sys.modules["justext.core"].Paragraph
        assert paragraphs.__name__ == "LazyPathParagraph"

        pages = trafilatura_adapter.check_pages()
        with_loops = _text_measurements(extract, pages)
        trafilatura_loops.uninstall()
        try:
            without = _text_measurements(extract, pages)
        finally:
            trafilatura_loops.install()
    finally:
        extract.close()
    assert 0 < with_loops < without


@pytest.mark.usefixtures("adapter")
@pytest.mark.parametrize(
    ("replaced", "broken", "check", "page"),
    [
        # readability finds no candidate: its summary differs (the final text need not)
        (
            ("readability_lxml", "Document.score_paragraphs"),
            lambda self: {},
            "readability's summary differs",
            "blog-post.html",
        ),
        # every paragraph good: jusText's classes differ (the final text need not)
        (
            ("external", "classify_paragraphs"),
            lambda paragraphs, *args: [
                (setattr(p, "cf_class", "good"), setattr(p, "heading", False)) for p in paragraphs
            ],
            "jusText's classification differs",
            "blog-post.html",
        ),
        # no block is deleted for its links: the text differs
        (
            ("main_extractor", "delete_by_link_density"),
            lambda subtree, *args, **kwargs: subtree,
            "extracted text differs",
            "libffi-manual-index.html",
        ),
    ],
)
def test_a_loop_that_changes_a_decision_falls_back_to_trafilaturas_own(
    monkeypatch: pytest.MonkeyPatch,
    replaced: tuple[str, str],
    broken: Any,
    check: str,
    page: str,
) -> None:
    """A replacement that changes a decision is caught at set-up: the compiled selectors and
    copies stay, trafilatura's own loops run, one note says why."""
    monkeypatch.setitem(trafilatura_loops._REPLACEMENTS, replaced, broken)
    extract = _extractor()
    try:
        (note,) = extract.notes
        assert note == (
            "extract: trafilatura's own loops used (loop replacements off): "
            f"{check} with trafilatura_loops' loops on {page}"
        )
        assert fast_xpath.installed() and not trafilatura_loops.installed()
        assert "until the page ends" in extract(EDGE_PAGES[0].encode(), None)
    finally:
        extract.close()


@pytest.mark.usefixtures("adapter")
@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            lambda mp: mp.setattr(trafilatura_adapter, "justext_version", lambda: "3.1.0"),
            "jusText 3.1.0 is outside the tested range >=3.0.2,<3.1",
        ),
        (
            lambda mp: mp.delattr(
                sys.modules["trafilatura.htmlprocessing"], "is_paragraph_listing"
            ),
            "trafilatura.htmlprocessing.is_paragraph_listing not found (moved in this "
            "trafilatura release?)",
        ),
    ],
)
def test_an_untested_justext_or_a_moved_function_falls_back(
    monkeypatch: pytest.MonkeyPatch, change: Any, why: str
) -> None:
    change(monkeypatch)
    extract = _extractor()
    try:
        (note,) = extract.notes
        assert note == f"extract: trafilatura's own loops used (loop replacements off): {why}"
        assert fast_xpath.installed() and not trafilatura_loops.installed()
    finally:
        extract.close()


def test_pyproject_pins_the_tested_justext() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d.split("#")[0].strip() for d in deps if d.lower().startswith("justext")]
    assert pin == f"jusText{trafilatura_adapter.JUSTEXT_SUPPORTED}"
    assert trafilatura_adapter.version_supported(
        trafilatura_adapter.justext_version(), trafilatura_adapter.JUSTEXT_SUPPORTED
    )
    for version, ok in [("3.0.2", True), ("3.0.9", True), ("3.0.1", False), ("3.1", False)]:
        assert trafilatura_adapter.version_supported(version, ">=3.0.2,<3.1") is ok, version


def test_install_and_uninstall_swap_the_functions() -> None:
    readability = sys.modules["trafilatura.readability_lxml"]
    main_extractor = sys.modules["trafilatura.main_extractor"]
    was = trafilatura_loops.installed()
    trafilatura_loops.uninstall()
    original = readability.Document.score_paragraphs, main_extractor.delete_by_link_density
    try:
        trafilatura_loops.install()
        trafilatura_loops.install()  # idempotent
        assert readability.Document.score_paragraphs is trafilatura_loops._score_paragraphs
        assert main_extractor.delete_by_link_density is trafilatura_loops._delete_by_link_density
        trafilatura_loops.uninstall()
        assert (
            readability.Document.score_paragraphs,
            main_extractor.delete_by_link_density,
        ) == original
        assert trafilatura_loops.missing() == []
    finally:
        if was:
            trafilatura_loops.install()
