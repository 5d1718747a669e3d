"""HTML -> main text backends (trafilatura, resiliparse, their cascade) as plain functions.

Kept free of pyarrow/pydantic so the sandbox child that imports it starts fast. Each factory
takes a plain dict of options (the stage config's backend section) and returns
`extract(html, url) -> str` ("" when nothing was found), where `html` is the page as UTF-8
bytes (what the stage takes from Arrow without building a str, and cheap to send to the
sandbox child).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

Extractor = Callable[[bytes, "str | None"], str]


class BuiltExtractor:
    """An extraction function with its set-up notes (fallbacks taken, for the stage's
    warnings); `close()` releases the process-wide settings it holds (idempotent)."""

    __slots__ = ("_fn", "notes", "_release")

    def __init__(
        self, fn: Extractor, notes: tuple[str, ...] = (), release: Callable[[], None] | None = None
    ) -> None:
        self._fn = fn
        self.notes = notes
        self._release = release

    def __call__(self, html: bytes, url: str | None) -> str:
        return self._fn(html, url)

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


def build_extractor(backend: str, options: dict[str, Any]) -> BuiltExtractor:
    """The extraction function for `backend` configured with `options`."""
    if backend == "trafilatura":
        return _trafilatura(**options)
    if backend == "resiliparse":
        return BuiltExtractor(_resiliparse(**options))
    if backend == "cascade":
        return _cascade(**options)
    raise ValueError(f"unknown extraction backend {backend!r}")


def _trafilatura(
    favor_precision: bool,
    favor_recall: bool,
    include_comments: bool,
    include_tables: bool,
    deduplicate: bool,
    fast: bool,
    prune_tags: tuple[str, ...] | list[str],
    table_outer_pipes: bool,
    compiled_selectors: bool = True,
    recall_escalation: bool = True,
) -> BuiltExtractor:
    """trafilatura on a tree we parse ourselves.

    Parsing here (lxml, UTF-8, comments and processing instructions dropped, as trafilatura
    does) instead of handing trafilatura the string avoids its "not valid HTML" rejection of
    pages without an <html> root (fragments, CleanEval's <text> wrapper), and lets `prune_tags`
    (elements removed with their subtree before extraction, e.g. nav/footer/aside) shrink the
    tree that trafilatura's many XPath passes walk. The parser maps every element to
    HtmlElement in C instead of lxml.html's per-element Python lookup: same output, ~5-10%
    faster. `compiled_selectors` swaps trafilatura's XPath selectors for compiled ones
    (pipeline/stages/fast_xpath.py: same elements, so the same text, in about half the time)
    and leaves out trafilatura's tree copies that a tree parsed per call makes redundant
    (pipeline/stages/trafilatura_copies.py, same text) when pipeline/stages/trafilatura_adapter.py's self-check passes; `recall_escalation: False`
    turns off trafilatura's recall retry of short extractions. Both are process-wide settings
    held until `close()`.
    """
    import lxml.html
    import trafilatura
    from lxml import etree
    from trafilatura.settings import Extractor

    from pipeline.stages import trafilatura_adapter
    from pipeline.stages.trafilatura_copies import hand_over

    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)  # it logs every discarded page
    parser = lxml.html.HTMLParser(
        collect_ids=False,
        default_doctype=False,
        encoding="utf-8",
        remove_comments=True,
        remove_pis=True,
    )
    parser.set_element_class_lookup(
        etree.ElementDefaultClassLookup(
            element=lxml.html.HtmlElement,
            comment=lxml.html.HtmlComment,
            pi=lxml.html.HtmlProcessingInstruction,
            entity=lxml.html.HtmlEntity,
        )
    )
    tags = tuple(prune_tags)

    def parse(html: bytes) -> Any:
        return lxml.html.document_fromstring(html, parser=parser)

    def extractor(dedup: bool) -> Extractor:
        # Built once: trafilatura otherwise builds its options per call from its ConfigParser
        # (~3% of the time per page); per page only the URL changes.
        base = Extractor(
            fast=fast,
            precision=favor_precision,
            recall=favor_recall,
            comments=include_comments,
            tables=include_tables,
            dedup=dedup,
            with_metadata=False,
        )

        def extract(html: bytes, url: str | None) -> str:
            try:
                tree = parse(html)
            except (etree.ParserError, ValueError):  # "Document is empty" and the like
                return ""
            if tags:
                etree.strip_elements(tree, *tags, with_tail=False)
            options = copy.copy(base)
            options.url = url
            options.source = url
            # the tree is this call's alone: trafilatura need not copy it (trafilatura_copies)
            text = trafilatura.extract(hand_over(tree), url=url, options=options) or ""
            if not table_outer_pipes and "| " in text:
                text = strip_outer_pipes(text)
            return text

        return extract

    # The self-check extracts its pages twice: never through trafilatura's process-wide
    # deduplication, which would drop the second copy (and remember the pages).
    key = (fast, favor_precision, favor_recall, include_comments, include_tables, tags)
    setup = trafilatura_adapter.acquire(
        compiled_selectors, recall_escalation, parse, extractor(dedup=False), key
    )
    return BuiltExtractor(extractor(deduplicate), setup.notes, trafilatura_adapter.release)


def strip_outer_pipes(text: str) -> str:
    """Table rows "| a | b | " as "a | b"; other lines unchanged."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("| "):
            row = line.rstrip()
            if row.endswith("|"):
                lines[i] = row[1:-1].strip()
    return "\n".join(lines)


def to_trafilatura(html_bytes: int, min_html_bytes: int) -> bool:
    """The cascade's decision: does a page of `html_bytes` (UTF-8) go to trafilatura?"""
    return html_bytes >= min_html_bytes


def _cascade(
    min_html_bytes: int, trafilatura: dict[str, Any], resiliparse: dict[str, Any]
) -> BuiltExtractor:
    """resiliparse for pages under `min_html_bytes`, trafilatura for the others.

    Small pages (old, table-laid-out, little boilerplate) are where resiliparse's main-content
    rules match or beat trafilatura at ~5x its speed; large modern pages carry the
    class/id-marked boilerplate that trafilatura's heuristics remove and resiliparse keeps.
    The page size is free to know, so each page is parsed once, by one extractor.
    """
    small = _resiliparse(**resiliparse)
    large = _trafilatura(**trafilatura)

    def extract(html: bytes, url: str | None) -> str:
        if to_trafilatura(len(html), min_html_bytes):
            return large(html, url)
        return small(html, url)

    return BuiltExtractor(extract, large.notes, large.close)


def _resiliparse(
    main_content: bool,
    preserve_formatting: bool,
    list_bullets: bool,
    alt_texts: bool,
    links: bool,
    form_fields: bool,
    noscript: bool,
    comments: bool,
    skip_elements: tuple[str, ...] | list[str],
) -> Extractor:
    """resiliparse's `extract_plain_text` (lexbor parser, rule-based main-content heuristics)."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    skip = list(skip_elements) or None

    def extract(html: bytes, url: str | None) -> str:
        return extract_plain_text(
            HTMLTree.parse_from_bytes(html, "utf-8"),
            preserve_formatting=preserve_formatting,
            main_content=main_content,
            list_bullets=list_bullets,
            alt_texts=alt_texts,
            links=links,
            form_fields=form_fields,
            noscript=noscript,
            comments=comments,
            skip_elements=skip,
        )

    return extract
