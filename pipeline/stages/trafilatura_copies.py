"""trafilatura 2.3 without the whole-tree copies that our own parse makes redundant.

trafilatura copies the page's tree defensively: `bare_extraction` copies a tree handed in by
the caller (ours is parsed for this one extraction and never used again), `_prepare_tree` keeps
a copy of the cleaned tree that only the readability/jusText comparison and comment capture read
(skipped in fast mode without comments), and `_extract_and_compare` gives that comparison a copy
of the raw tree, which in precision focus nothing reads afterwards. Each copy costs a
tree-sized allocation and walk (~5% of the default's and ~7% of fast mode's instructions for the
two saved per page). The replacements below are trafilatura 2.3.1's functions with those copies
left out, so the extracted text is identical; pipeline/stages/trafilatura_adapter.py installs
them together with the compiled selectors, behind its version pin and text self-check.
"""

from __future__ import annotations

import sys
from copy import copy
from typing import Any

# trafilatura.core's functions replaced here, and those the replacements call.
REPLACED = ("load_html", "_prepare_tree", "_extract_and_compare")
CALLED = ("tree_cleaning", "convert_tags", "extract_content", "compare_extraction")

_originals: dict[str, Any] = {}


class _Owned:
    """A tree the caller hands over: trafilatura may change it instead of copying it first."""

    __slots__ = ("tree",)

    def __init__(self, tree: Any) -> None:
        self.tree = tree


def hand_over(tree: Any) -> Any:
    """What to pass trafilatura.extract for a tree the caller will not use again: the tree
    marked as handed over while the replacements are installed, else the tree itself."""
    return _Owned(tree) if _originals else tree


def _core() -> Any:
    import trafilatura.core  # noqa: F401 - sys.modules: trafilatura exports a `core` name too

    return sys.modules["trafilatura.core"]


def _load_html(htmlobject: Any, max_size: int | None = None) -> Any:
    if type(htmlobject) is _Owned:
        return htmlobject.tree  # not the caller's object, so bare_extraction does not copy it
    return _originals["load_html"](htmlobject, max_size)


def _prepare_tree(tree: Any, options: Any, url: str | None) -> tuple[Any, Any]:
    core = _core()
    cleaned = core.tree_cleaning(copy(tree), options)
    # the backup feeds only compare_extraction (not run in fast mode) and comment capture
    backup = None if options.fast and not options.comments else copy(cleaned)
    return core.convert_tags(cleaned, options, url), backup


def _extract_and_compare(cleaned: Any, backup: Any, tree: Any, options: Any) -> tuple[Any, str]:
    core = _core()
    postbody, temp_text = core.extract_content(cleaned, options)
    if not options.fast:
        # in precision focus trafilatura_sequence reads the raw tree no more after this call
        raw = tree if options.focus == "precision" else copy(tree)
        postbody, temp_text = core.compare_extraction(backup, raw, postbody, temp_text, options)
    return postbody, temp_text


_REPLACEMENTS = {
    "load_html": _load_html,
    "_prepare_tree": _prepare_tree,
    "_extract_and_compare": _extract_and_compare,
}


def install() -> None:
    """Swap the replacements into trafilatura.core (idempotent)."""
    if _originals:
        return
    core = _core()
    for name, fn in _REPLACEMENTS.items():
        _originals[name] = getattr(core, name)
        setattr(core, name, fn)


def uninstall() -> None:
    """Give trafilatura.core its own functions back (no-op when not installed)."""
    core = _core()
    for name, fn in _originals.items():
        setattr(core, name, fn)
    _originals.clear()


def installed() -> bool:
    return bool(_originals)
