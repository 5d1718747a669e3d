"""HTML -> main text backends (trafilatura, resiliparse) as plain functions.

Kept free of pyarrow/pydantic so the sandbox child that imports it starts fast. Each factory
takes a plain dict of options (the stage config's backend section) and returns
`extract(html, url) -> str` ("" when nothing was found), where `html` is the page as UTF-8
bytes (what the stage takes from Arrow without building a str, and cheap to send to the
sandbox child).
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable
from typing import Any

Extractor = Callable[[bytes, "str | None"], str]


def build_extractor(backend: str, options: dict[str, Any]) -> Extractor:
    """The extraction function for `backend` configured with `options`."""
    if backend == "trafilatura":
        return _trafilatura(**options)
    if backend == "resiliparse":
        return _resiliparse(**options)
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
) -> Extractor:
    """trafilatura on a tree we parse ourselves.

    Parsing here (lxml, UTF-8, comments and processing instructions dropped, as trafilatura
    does) instead of handing trafilatura the string avoids its "not valid HTML" rejection of
    pages without an <html> root (fragments, CleanEval's <text> wrapper), and lets `prune_tags`
    (elements removed with their subtree before extraction, e.g. nav/footer/aside) shrink the
    tree that trafilatura's many XPath passes walk. The parser maps every element to
    HtmlElement in C instead of lxml.html's per-element Python lookup: same output, ~5-10%
    faster. `compiled_selectors` swaps trafilatura's XPath selectors for compiled ones
    (pipeline/stages/fast_xpath.py: same elements, so the same text, in about half the time).
    `recall_escalation: False` turns off trafilatura's recall retry of short extractions.
    """
    import lxml.html
    import trafilatura
    from lxml import etree
    from trafilatura.settings import Extractor

    from pipeline.stages import fast_xpath

    if compiled_selectors:
        fast_xpath.install()
    else:
        fast_xpath.uninstall()
    set_recall_escalation(recall_escalation)

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
    # Built once: trafilatura otherwise builds its options per call from its ConfigParser
    # (~3% of the time per page); per page only the URL changes.
    base = Extractor(
        fast=fast,
        precision=favor_precision,
        recall=favor_recall,
        comments=include_comments,
        tables=include_tables,
        dedup=deduplicate,
        with_metadata=False,
    )

    def extract(html: bytes, url: str | None) -> str:
        try:
            tree = lxml.html.document_fromstring(html, parser=parser)
        except (etree.ParserError, ValueError):  # "Document is empty" and the like
            return ""
        if tags:
            etree.strip_elements(tree, *tags, with_tail=False)
        options = copy.copy(base)
        options.url = url
        options.source = url
        text = trafilatura.extract(tree, url=url, options=options) or ""
        if not table_outer_pipes and "| " in text:
            text = strip_outer_pipes(text)
        return text

    return extract


# trafilatura's own recall-escalation limit, saved before the first change to it.
_ESCALATION_LIMIT: list[int] = []


def set_recall_escalation(enabled: bool) -> None:
    """Turn trafilatura's recall retry of short extractions on or off, process-wide.

    trafilatura.core retries a balanced-focus extraction shorter than ESCALATION_MAX_LENGTH
    characters in recall mode; the limit is read on every call, so 0 switches the retry (and
    the whole-page text pass that decides it) off. trafilatura versions without the retry
    have no such constant and nothing to switch.
    """
    import trafilatura.core  # noqa: F401  (loaded; taken below from sys.modules as a module)

    core = sys.modules["trafilatura.core"]
    if not hasattr(core, "ESCALATION_MAX_LENGTH"):
        return
    if not _ESCALATION_LIMIT:
        _ESCALATION_LIMIT.append(core.ESCALATION_MAX_LENGTH)
    core.ESCALATION_MAX_LENGTH = _ESCALATION_LIMIT[0] if enabled else 0


def strip_outer_pipes(text: str) -> str:
    """Table rows "| a | b | " as "a | b"; other lines unchanged."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("| "):
            row = line.rstrip()
            if row.endswith("|"):
                lines[i] = row[1:-1].strip()
    return "\n".join(lines)


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
