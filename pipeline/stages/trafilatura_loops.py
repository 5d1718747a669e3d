"""trafilatura 2.3's hot loops (and jusText 3.0's, which trafilatura calls) without their
repeated text measurements.

On workload 4's pages the default extraction measured the same texts over and over while the
tree stood still: readability's `score_paragraphs` took every link's whitespace-trimmed length
once per candidate holding it (~4 times) and every candidate's whole text (4x the page's text:
candidates nest), `sanitize` a block's text three times and links again, `delete_by_link_density`
the links of nested blocks once per block, jusText's paragraph text (a property that joins and
normalises on every read) 6-7 times per paragraph. The replacements take each once: lengths are
remembered for the loop, and a candidate's length is composed from its children's (a text's
whitespace-normalised length follows from its parts' lengths and whether they start or end with
whitespace). Smaller items: readability's `remove_unlikely_candidates` without a tuple, filter
and join per element, its "<p/>" wrappers made instead of parsed, jusText's stop words counted
in C loops and its paragraphs' DOM path strings built only when read.

They are trafilatura 2.3.1's and jusText 3.0.2's functions with only those changes, so every
decision and the extracted text are identical (13% fewer instructions per page on workload 4's
pages, docs/benchmarks.md "Extraction, round four"); pipeline/stages/trafilatura_adapter.py
installs them behind both version pins and a self-check on its shipped pages (text, readability
summaries and jusText classes with and without them), falling back to trafilatura's own loops
with a note.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable
from typing import Any

# module: attributes replaced here (the adapter checks they exist before installing)
REPLACED = {
    "readability_lxml": (
        "Document.remove_unlikely_candidates",
        "Document.score_paragraphs",
        "Document.sanitize",
        "Document.transform_misused_divs_into_paragraphs",
    ),
    "main_extractor": ("delete_by_link_density",),  # its import of htmlprocessing's
    "external": ("classify_paragraphs",),
    "justext_core": ("Paragraph",),
}
# ... and what the replacements call there
CALLED = {
    "readability_lxml": (
        "trim",
        "text_length",
        "tostring",
        "Counter",
        "REGEXES",
        "TEXT_CLEAN_ELEMS",
        "LIST_TAGS",
        "DIV_TO_P_PREFIXES",
        "FRAME_TAGS",
        "Document.class_weight",
        "Document.get_link_density",
    ),
    "htmlprocessing": ("trim", "is_paragraph_listing", "delete_element", "LINK_FARM_RATIO"),
}

_originals: dict[tuple[str, str], Any] = {}


def _module(name: str) -> Any:
    import trafilatura.external
    import trafilatura.htmlprocessing
    import trafilatura.main_extractor
    import trafilatura.readability_lxml  # noqa: F401

    if name == "justext_core":  # jusText, whose paragraphs trafilatura's rescue classifies
        return sys.modules["justext.core"]
    return sys.modules[f"trafilatura.{name}"]


def _score_paragraphs(self: Any) -> dict[Any, Any]:
    """readability_lxml.Document.score_paragraphs, each text measured once: a paragraph's
    length from the paragraph loop, a candidate's (the parent or grandparent of paragraphs)
    from its children's (spans, below), each link's once for all candidates holding it."""
    rl = _module("readability_lxml")
    trim = rl.trim
    candidates: dict[Any, Any] = {}
    spans: dict[Any, tuple[int, bool, bool]] = {}  # paragraphs' and candidates' text
    for elem in self.doc.iter("p", "pre", "td"):
        parent_node = elem.getparent()
        if parent_node is None:
            continue
        grand_parent_node = parent_node.getparent()

        raw = elem.text_content()
        elem_text = trim(raw)
        elem_text_len = len(elem_text)
        spans[elem] = _span_of(raw, elem_text_len)

        # discard too short paragraphs
        if elem_text_len < self.min_text_length:
            continue

        for node in (parent_node, grand_parent_node):
            if node is not None and node not in candidates:
                candidates[node] = self.score_node(node)

        # len(elem_text.split(",")): one piece more than there are commas
        score = 1 + (elem_text.count(",") + 1) + min((elem_text_len / 100), 3)

        candidates[parent_node].score += score
        if grand_parent_node is not None:
            candidates[grand_parent_node].score += score / 2

    # get_link_density of each candidate; nothing above changes the tree, so a link's length
    # (one per candidate holding it in the original) is the same every time
    link_lengths: dict[Any, int] = {}
    for elem, candidate in candidates.items():
        total_length = _element_span(elem, spans, candidates)[0] or 1
        # elem.iterdescendants("a") = elem.findall(".//a")
        link_length = _link_info(trim, elem.iterdescendants("a"), link_lengths)[0]
        candidate.score *= 1 - link_length / total_length

    return candidates


# The whitespace-normalised form of a text (trafilatura's trim: words joined by one space) as
# (length, starts with whitespace, ends with whitespace); a text without words is (0, w, w),
# w telling whether it holds whitespace at all. Two texts' spans give their concatenation's:
# the lengths add, plus one space when whitespace separates two non-empty sides.
_NO_TEXT = (0, False, False)
# Candidates nested deeper than this below the one measured are measured whole (libxml2's parser
# stops at 255 levels anyway; this keeps the recursion bounded on any tree)
_SPAN_DEPTH = 100


def _span_of(text: str | None, length: int | None = None) -> tuple[int, bool, bool]:
    """The span of `text` (`length`: its trimmed length, when known)."""
    if not text:
        return _NO_TEXT
    if length is None:
        length = len(" ".join(text.split()))
    if not length:
        return (0, True, True)
    return (length, text[0].isspace(), text[-1].isspace())


def _joined(a: tuple[int, bool, bool], b: tuple[int, bool, bool]) -> tuple[int, bool, bool]:
    if not a[0]:
        return (b[0], a[1] or b[1], b[2] if b[0] else a[2] or b[2])
    if not b[0]:
        return (a[0], a[1], a[2] or b[2])
    return (a[0] + b[0] + (1 if a[2] or b[1] else 0), a[1], b[2])


def _element_span(
    elem: Any,
    spans: dict[Any, tuple[int, bool, bool]],
    candidates: dict[Any, Any],
    depth: int = 0,
) -> tuple[int, bool, bool]:
    """The span of elem.text_content() (XPath string(): its text, then each child's content and
    tail), from the spans already known (paragraphs, candidates done), the rest measured; child
    candidates first, down to _SPAN_DEPTH levels (below, measured whole: the same span)."""
    span = spans.get(elem)
    if span is not None:
        return span
    span = _span_of(elem.text)
    for child in elem:
        if not isinstance(child.tag, str):  # a comment or the like: measure the whole
            span = _span_of(elem.text_content())
            break
        inner = spans.get(child)
        if inner is None:
            inner = (
                _element_span(child, spans, candidates, depth + 1)
                if depth < _SPAN_DEPTH and child in candidates
                else _span_of(child.text_content())
            )
        span = _joined(_joined(span, inner), _span_of(child.tail))
    spans[elem] = span
    return span


def _remove_unlikely_candidates(self: Any) -> None:
    """readability_lxml.Document.remove_unlikely_candidates, the class and id joined without
    a tuple, a filter and a join per element (most elements have neither)."""
    rl = _module("readability_lxml")
    unlikely, maybe = rl.REGEXES["unlikelyCandidatesRe"], rl.REGEXES["okMaybeItsACandidateRe"]
    frame_tags = rl.FRAME_TAGS
    verdicts: dict[str, bool] = {}
    for elem in self.doc.findall(".//*"):
        # " ".join(filter(None, (class, id))): the non-empty ones, space-separated
        classes, ident = elem.get("class"), elem.get("id")
        if classes:
            attrs = f"{classes} {ident}" if ident else classes
        elif ident:
            attrs = ident
        else:
            continue
        if len(attrs) < 2 or elem.tag in frame_tags:
            continue
        verdict = verdicts.get(attrs)
        if verdict is None:
            low = attrs.lower()
            verdict = verdicts[attrs] = bool(unlikely.search(low)) and not maybe.search(low)
        if verdict:
            elem.drop_tree()


def _sanitize(self: Any, node: Any, candidates: dict[Any, Any]) -> str:
    """readability_lxml.Document.sanitize, the conditional clean-up measuring each block's text
    once (its comma count, length and link density read the same text) and each link's length
    once: blocks go in reverse document order, so a link is measured for the first time by a
    block holding it after every block inside the link is done, and a dropped block is never
    visited again (its ancestors come later, with it gone)."""
    rl = _module("readability_lxml")
    trim, regexes = rl.trim, rl.REGEXES
    for header in list(node.iter("h1", "h2", "h3", "h4", "h5", "h6")):
        if self.class_weight(header) < 0 or self.get_link_density(header) > 0.33:
            header.drop_tree()

    for elem in list(node.iter("form", "textarea")):
        elem.drop_tree()

    for elem in list(node.iter("iframe")):
        if "src" in elem.attrib and regexes["videoRe"].search(elem.attrib["src"]):
            elem.text = (
                "VIDEO"  # ADD content to iframe text node to force <iframe></iframe> proper output
            )
        else:
            elem.drop_tree()

    link_lengths: dict[Any, int] = {}
    # Conditionally clean <table>s, <ul>s, and <div>s
    for elem in reversed(
        list(node.iter("table", "ul", "div", "aside", "header", "footer", "section"))
    ):
        weight = self.class_weight(elem)
        score = candidates[elem].score if elem in candidates else 0
        if weight + score < 0:
            elem.drop_tree()
            continue
        text = elem.text_content()
        if text.count(",") < 10:
            to_remove = True
            counts = rl.Counter(e.tag for e in elem.iterdescendants(*rl.TEXT_CLEAN_ELEMS))
            counts["li"] -= 100
            counts["input"] -= len(elem.findall('.//input[@type="hidden"]'))

            # Count the text length excluding any surrounding whitespace
            content_length = len(trim(text))
            # get_link_density: elem.iterdescendants("a") = elem.findall(".//a")
            link_length = _link_info(trim, elem.iterdescendants("a"), link_lengths)[0]
            link_density = link_length / (content_length or 1)
            if counts["p"] and counts["img"] > 1 + counts["p"] * 1.3:
                pass  # too many images
            elif counts["li"] > counts["p"] and elem.tag not in rl.LIST_TAGS:
                pass  # more <li>s than <p>s
            elif counts["input"] > (counts["p"] / 3):
                pass  # less than 3x <p>s than <input>s
            elif content_length < self.min_text_length and counts["img"] == 0:
                pass  # too short content length without a single image
            elif content_length < self.min_text_length and counts["img"] > 2:
                pass  # too short content length and too many images
            elif link_density > (0.5 if weight >= 25 else 0.2):
                pass  # too many links for its weight
            elif (counts["embed"] == 1 and content_length < 75) or counts["embed"] > 1:
                pass  # <embed>s with too short content length, or too many <embed>s
            elif not content_length:
                # no content: kept between long neighbours, the nearest non-empty sibling on
                # each side
                nearest = (
                    next((n for sib in sibs if (n := rl.text_length(sib))), 0)
                    for sibs in (elem.itersiblings(), elem.itersiblings(preceding=True))
                )
                to_remove = sum(nearest) <= 1000
            else:
                to_remove = False

            if to_remove:
                elem.drop_tree()

    return rl.tostring(node, encoding=str, method="xml")


def _transform_misused_divs_into_paragraphs(self: Any) -> None:
    """readability_lxml.Document.transform_misused_divs_into_paragraphs, the <p> wrappers made
    (`makeelement`) instead of parsed from "<p/>"."""
    prefixes = _module("readability_lxml").DIV_TO_P_PREFIXES
    for elem in self.doc.findall(".//div"):
        # a div without block descendants becomes a <p>, a link wrapper only if it has loose text
        if not any(str(e.tag).startswith(prefixes) for e in elem.iterdescendants("*")) and (
            elem.find(".//a") is None or elem.xpath("text()[normalize-space()]")
        ):
            elem.tag = "p"

    for elem in self.doc.findall(".//div"):
        if elem.text and elem.text.strip():
            p_elem = elem.makeelement("p")
            p_elem.text, elem.text = elem.text, None
            elem.insert(0, p_elem)

        for pos, child in reversed(list(enumerate(elem))):
            if child.tail and child.tail.strip():
                p_elem = elem.makeelement("p")
                p_elem.text, child.tail = child.tail, None
                elem.insert(pos + 1, p_elem)
            if child.tag == "br":
                child.drop_tree()


def _delete_by_link_density(
    subtree: Any, tagname: str, backtracking: bool = False, favor_precision: bool = False
) -> Any:
    """htmlprocessing.delete_by_link_density: deletions happen after the loop, so the lengths of
    links (and of a block measured twice) are taken once per call."""
    hp = _module("htmlprocessing")
    deletions = []
    len_threshold = 200 if favor_precision else 100
    depth_threshold = 1 if favor_precision else 3
    link_lengths: dict[Any, int] = {}

    for elem in subtree.iter(tagname):
        result, short_with_links, elemlen = _link_density_test(
            hp, elem, favor_precision, link_lengths
        )
        if result or (
            backtracking
            and short_with_links
            and len(elem) >= depth_threshold
            and elemlen < len_threshold  # short_with_links: elemlen is the block's length
        ):
            # a paragraph that holds the content of a list item is kept: the
            # link density of the whole list is checked separately, and
            # removing it here would leave the item empty (GH #788)
            parent = elem.getparent()
            if tagname == "p" and parent is not None and parent.tag in ("item", "td", "th"):
                continue
            deletions.append(elem)

    for elem in dict.fromkeys(deletions):
        hp.delete_element(elem)

    return subtree


def _link_density_test(
    hp: Any, element: Any, favor_precision: bool, link_lengths: dict[Any, int]
) -> tuple[bool, bool, int]:
    """htmlprocessing.link_density_test, plus the element's trimmed text length (0 when not
    measured); link lengths come from and go to `link_lengths`."""
    links_xpath = list(element.iterdescendants("ref"))  # = element.findall(".//ref")
    if not links_xpath:
        return False, False, 0
    # preserve image containers
    if next(element.iterdescendants("graphic"), None) is not None:
        return False, False, 0
    trim = hp.trim
    elemlen = len(trim(element.text_content()))
    # shortcut
    if len(links_xpath) == 1:
        len_threshold = 10 if favor_precision else 100
        link_len = _link_length(trim, links_xpath[0], link_lengths)
        if link_len > len_threshold and link_len > elemlen * 0.9:
            return True, False, elemlen
    if element.tag == "p":
        limitlen = 60 if element.getnext() is None else 30
    elif element.getnext() is None:
        limitlen = 300
    else:
        limitlen = 100
    if elemlen < limitlen:
        linklen, elemnum, shortelems = _link_info(trim, links_xpath, link_lengths)
        if elemnum == 0:
            return True, False, elemlen
        return (
            linklen > elemlen * 0.8 or (elemnum > 1 and shortelems / elemnum > 0.8),
            True,
            elemlen,
        )
    # large near-total-link farms (see trafilatura's link_density_test)
    if len(links_xpath) > 4:
        linklen, elemnum, _ = _link_info(trim, links_xpath, link_lengths)
        if (
            linklen > elemlen * hp.LINK_FARM_RATIO
            and linklen < 100 * elemnum
            and not hp.is_paragraph_listing(links_xpath)
        ):
            return True, False, elemlen
    return False, False, elemlen


def _link_length(trim: Any, link: Any, link_lengths: dict[Any, int]) -> int:
    n = link_lengths.get(link)
    if n is None:
        n = link_lengths[link] = len(trim(link.text_content()))
    return n


def _link_info(
    trim: Any, links: Iterable[Any], link_lengths: dict[Any, int]
) -> tuple[int, int, int]:
    """htmlprocessing.collect_link_info's (total length, non-empty links, short ones); each
    link's trimmed length is taken from and kept in `link_lengths`."""
    total = count = short = 0
    for link in links:
        n = _link_length(trim, link, link_lengths)
        if n:
            total += n
            count += 1
            if n < 10:
                short += 1
    return total, count, short


def _classify_paragraphs(
    paragraphs: list[Any],
    stoplist: Any,
    length_low: int = 70,
    length_high: int = 200,
    stopwords_low: float = 0.30,
    stopwords_high: float = 0.32,
    max_link_density: float = 0.2,
    no_headings: bool = False,
) -> None:
    """justext.core.classify_paragraphs (jusText 3.0), each paragraph's text built once: its
    `text` property joins and whitespace-normalises the paragraph's text nodes on every read,
    and the classification read it six to seven times per paragraph (length, word and
    stop-word counts, link density, the copyright tests). The text nodes do not change here."""
    stoplist = sys.modules["justext.core"].define_stoplist(stoplist)
    for paragraph in paragraphs:
        text = paragraph.text
        length = len(text)
        words = text.split()
        # Paragraph.stopwords_density and links_density, from the one text
        if words:  # sum(word.lower() in stoplist for word in words), in C loops
            stopwords = sum(map(stoplist.__contains__, map(str.lower, words)))
            stopword_density = stopwords / len(words)
        else:
            stopword_density = 0
        link_density = paragraph.chars_count_in_links / length if length else 0
        paragraph.heading = bool(not no_headings and paragraph.is_heading)

        if (
            link_density > max_link_density
            or ("\xa9" in text)
            or ("&copy" in text)
            or "select" in paragraph.dom_path
        ):
            paragraph.cf_class = "bad"
        elif length < length_low:
            if paragraph.chars_count_in_links > 0:
                paragraph.cf_class = "bad"
            else:
                paragraph.cf_class = "short"
        elif stopword_density >= stopwords_high:
            if length > length_high:
                paragraph.cf_class = "good"
            else:
                paragraph.cf_class = "neargood"
        elif stopword_density >= stopwords_low:
            paragraph.cf_class = "neargood"
        else:
            paragraph.cf_class = "bad"


def _paragraph_class() -> type:
    """justext's Paragraph with its DOM path strings built when first read: ParagraphMaker
    starts a paragraph at every block tag and keeps only those that get text (about a third on
    the pages jusText rescues), and each start formatted the whole path twice."""
    paragraph = sys.modules["justext.paragraph"].Paragraph

    class LazyPathParagraph(paragraph):  # type: ignore[misc, valid-type]
        def __init__(self, path: Any) -> None:
            self._steps = tuple(path._elements)  # (tag, order, children) per level, as now
            self.text_nodes = []
            self.chars_count_in_links = 0
            self.tags_count = 0
            self.class_type = ""  # short | neargood | good | bad

        @functools.cached_property
        def dom_path(self) -> str:  # PathInfo.dom
            return ".".join(e[0] for e in self._steps)

        @functools.cached_property
        def xpath(self) -> str:  # PathInfo.xpath
            return "/" + "/".join("%s[%d]" % e[:2] for e in self._steps)  # noqa: UP031

    return LazyPathParagraph


_REPLACEMENTS: dict[tuple[str, str], Any] = {
    ("readability_lxml", "Document.remove_unlikely_candidates"): _remove_unlikely_candidates,
    ("readability_lxml", "Document.score_paragraphs"): _score_paragraphs,
    ("readability_lxml", "Document.sanitize"): _sanitize,
    (
        "readability_lxml",
        "Document.transform_misused_divs_into_paragraphs",
    ): _transform_misused_divs_into_paragraphs,
    ("main_extractor", "delete_by_link_density"): _delete_by_link_density,
    ("external", "classify_paragraphs"): _classify_paragraphs,
    ("justext_core", "Paragraph"): None,  # _paragraph_class(), made at install
}


def _owner(module: str, dotted: str) -> tuple[Any, str]:
    """The object holding attribute `dotted` of trafilatura.`module`, and its last name."""
    owner = _module(module)
    *path, name = dotted.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def missing() -> list[str]:
    """What the replacements need that this trafilatura lacks (empty: all present)."""
    out = []
    for table in (REPLACED, CALLED):
        for module, names in table.items():
            for dotted in names:
                try:
                    owner, name = _owner(module, dotted)
                except (AttributeError, KeyError, ImportError):
                    out.append(f"trafilatura.{module}.{dotted}")
                    continue
                if not hasattr(owner, name):
                    out.append(f"trafilatura.{module}.{dotted}")
    return out


def install() -> None:
    """Swap the replacements in (idempotent)."""
    if _originals:
        return
    for key, fn in _REPLACEMENTS.items():
        owner, name = _owner(*key)
        _originals[key] = getattr(owner, name)
        setattr(owner, name, _paragraph_class() if fn is None else fn)


def uninstall() -> None:
    """Give trafilatura its own loops back (no-op when not installed)."""
    for key, fn in _originals.items():
        owner, name = _owner(*key)
        setattr(owner, name, fn)
    _originals.clear()


def installed() -> bool:
    return bool(_originals)
