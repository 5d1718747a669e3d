"""The one place that changes trafilatura's process-wide state: compiled selectors (with the
redundant tree copies left out, pipeline/stages/trafilatura_copies.py, and its hot loops without
their repeated text measurements, pipeline/stages/trafilatura_loops.py) and the
recall-escalation switch, each guarded so a trafilatura release we did not test cannot silently
change the extracted text.

`acquire()` is called when an extractor is built. It checks the installed version against the
range we test (SUPPORTED, also pinned in pyproject.toml), that the modules and attributes we patch
are where we expect them, and runs a self-check: every compiled selector must select the same
elements as lxml's XPath on the pages shipped in pipeline/resources/trafilatura_check/, and the
extracted text of those pages must be identical with and without them (selectors and copies). Any failure falls back to
plain trafilatura (its own XPath objects) with a one-line note that the extract stage reports in
the log and in stats.json. The loop replacements (and jusText's version, >=3.0.2,<3.1) are
checked on top: the same pages' text, readability summaries and jusText paragraph classes with
and without them; a failure there keeps selectors and copies and leaves trafilatura's own loops,
with a note of its own. `recall_escalation: false` cannot fall back (it changes the output),
so it is a ConfigError when trafilatura has no such switch.

Both settings are process-wide. Extractors that need different settings in one process (two
in-process extract stages, say) are refused while the first is held; `release()` frees it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata, resources
from typing import Any

from pipeline.errors import ConfigError
from pipeline.stages import fast_xpath, trafilatura_copies, trafilatura_loops

# The trafilatura releases tested with the patches below (pyproject.toml pins the same range).
SUPPORTED = ">=2.3.1,<2.4"
# The jusText releases whose classify_paragraphs trafilatura_loops replaces (pinned the same way)
JUSTEXT_SUPPORTED = ">=3.0.2,<3.1"
# Where trafilatura 2.3 keeps the selectors its extraction path runs, and the functions that
# trafilatura_copies replaces and calls (module: attributes).
# One missing means a release reorganised them: the compiled selectors are not used then.
_MAIN_EXTRACTOR = (
    "BODY_XPATH",
    "COMMENTS_XPATH",
    "COMMENTS_DISCARD_XPATH",
    "OVERALL_DISCARD_XPATH",
    "TEASER_DISCARD_XPATH",
    "PRECISION_DISCARD_XPATH",
    "DISCARD_IMAGE_ELEMENTS",
)
_CORE = ("REMOVE_COMMENTS_XPATH", "REMOVE_COMMENTS_AND_LISTS_XPATH", "RAW_TREE_PRUNE_XPATH")
PATCHED = {
    "xpaths": (*_MAIN_EXTRACTOR, *_CORE),
    "main_extractor": _MAIN_EXTRACTOR,
    "core": (*_CORE, *trafilatura_copies.REPLACED, *trafilatura_copies.CALLED),
    "settings": ("BASIC_CLEAN_XPATH",),
    "baseline": ("BASIC_CLEAN_XPATH",),
}
ESCALATION = ("core", "ESCALATION_MAX_LENGTH")  # read by trafilatura 2.3 on every extraction
CHECK_PAGES = "trafilatura_check"  # folder under pipeline/resources
# Package files read at run time (for the ablation cache key).
RESOURCE_FILES = (f"resources/{CHECK_PAGES}",)

Extract = Callable[[bytes, "str | None"], str]


@dataclass
class _ProcessState:
    """What this process's trafilatura runs with, who holds it, and self-check verdicts."""

    holders: int = 0
    compiled: bool = False  # compiled selectors installed
    escalation: bool = True
    selector_verdict: list[str | None] = field(default_factory=list)  # [reason] once checked
    text_verdicts: dict[Any, str | None] = field(default_factory=dict)
    loops: bool = False  # trafilatura_loops installed (only with the compiled selectors)
    loop_verdicts: dict[Any, str | None] = field(default_factory=dict)
    plain_texts: dict[Any, list[str]] = field(default_factory=dict)  # check pages, unpatched
    check_ms: float = 0.0  # time the self-checks took, for reports and tests
    limit: list[int] = field(default_factory=list)  # trafilatura's own escalation limit


_state = _ProcessState()


@dataclass(frozen=True)
class Setup:
    """What an extractor got: the effective settings and notes (fallbacks) to report."""

    compiled: bool
    escalation: bool
    notes: tuple[str, ...]
    loops: bool = False


def trafilatura_version() -> str:
    return metadata.version("trafilatura")


def version_tuple(version: str) -> tuple[int, ...]:
    """The leading numeric parts of a version string: (2, 3, 1) for "2.3.1rc1"."""
    parts = []
    for piece in version.split("."):
        digits = "".join(c for c in piece if c.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def version_supported(version: str, supported: str = SUPPORTED) -> bool:
    """Whether `version` lies in `supported` (">=A,<B", trafilatura's range by default)."""
    v = version_tuple(version)
    low, below = (version_tuple(bound.lstrip("<>=")) for bound in supported.split(","))
    return bool(v) and low <= v < below


def _module(name: str) -> Any | None:
    """trafilatura.`name` (one of PATCHED's modules), or None when this release has none.

    Taken from sys.modules after importing: `trafilatura.baseline` is also the name of a
    function the package exports.
    """
    with contextlib.suppress(ImportError):
        import trafilatura.xpaths  # noqa: F401
    with contextlib.suppress(ImportError):
        import trafilatura.main_extractor  # noqa: F401
    with contextlib.suppress(ImportError):
        import trafilatura.core  # noqa: F401
    with contextlib.suppress(ImportError):
        import trafilatura.settings  # noqa: F401
    with contextlib.suppress(ImportError):
        import trafilatura.baseline  # noqa: F401
    return sys.modules.get(f"trafilatura.{name}")


def missing_attributes() -> list[str]:
    """The patched modules or attributes not where trafilatura 2.3 keeps them."""
    missing = []
    for name, attrs in PATCHED.items():
        module = _module(name)
        if module is None:
            missing.append(f"trafilatura.{name}")
            continue
        missing += [f"trafilatura.{name}.{a}" for a in attrs if not hasattr(module, a)]
    return missing


def has_escalation_switch() -> bool:
    """Whether trafilatura has the recall-escalation limit that `recall_escalation` sets."""
    limit = getattr(_module(ESCALATION[0]), ESCALATION[1], None)
    return isinstance(limit, int) and not isinstance(limit, bool)


def check_pages() -> list[tuple[str, bytes]]:
    """The shipped self-check pages: (file name, HTML bytes), in name order."""
    folder = resources.files("pipeline").joinpath("resources", CHECK_PAGES)
    pages = [(p.name, p.read_bytes()) for p in folder.iterdir() if p.name.endswith(".html")]
    return sorted(pages)


def _swapped_pairs() -> Iterator[tuple[Any, Any]]:
    """(compiled, lxml original) for every installed selector."""
    for module, attr, original in fast_xpath._globals_swapped:
        yield getattr(module, attr), original
    for items, j, original in fast_xpath._items_swapped:
        yield items[j], original


def _selector_mismatch(parse: Callable[[bytes], Any]) -> str | None:
    """Install the compiled selectors and compare each with lxml's XPath on the shipped pages
    (from the root: the subtree semantics are covered by tests/test_fast_xpath.py)."""
    fast_xpath.install()
    for name, html in check_pages():
        tree = parse(html)
        for compiled, original in _swapped_pairs():
            try:
                got = compiled(tree)
            except Exception as exc:  # noqa: BLE001 - any failure is a mismatch
                return f"compiled selector raised {type(exc).__name__} on {name}"
            want = original(tree)
            if got != want:
                path = " ".join(original.path.split())[:60]
                return (
                    f"compiled selector `{path}` selects {len(got)} elements where lxml "
                    f"selects {len(want)} on {name}"
                )
    return None


def _install(loops: bool = False) -> None:
    """The compiled selectors and trafilatura without its redundant tree copies, together;
    with `loops`, also its hot loops without their repeated measurements."""
    fast_xpath.install()
    trafilatura_copies.install()
    if loops:
        trafilatura_loops.install()
    else:
        trafilatura_loops.uninstall()


def _uninstall() -> None:
    fast_xpath.uninstall()
    trafilatura_copies.uninstall()
    trafilatura_loops.uninstall()


def _plain_texts(extract: Extract, key: Any) -> list[str]:
    """The shipped pages' text with plain trafilatura (lxml's selectors, its own tree copies
    and loops), once per extraction options; leaves trafilatura as it found it."""
    if key not in _state.plain_texts:
        was = fast_xpath.installed(), trafilatura_loops.installed()
        _uninstall()
        try:
            _state.plain_texts[key] = [extract(html, None) for _, html in check_pages()]
        finally:
            if was[0]:
                _install(was[1])
    return _state.plain_texts[key]


def _text_mismatch(extract: Extract, key: Any, loops: bool = False) -> str | None:
    """Extract the shipped pages with plain trafilatura, then with the compiled selectors and
    without the copies (and with `loops`, the loop replacements): the texts must be identical."""
    plain = _plain_texts(extract, key)
    _install(loops)
    what = "trafilatura_loops' loops" if loops else "compiled selectors"
    for (name, html), want in zip(check_pages(), plain, strict=True):
        try:
            got = extract(html, None)
        except Exception as exc:  # noqa: BLE001
            return f"extraction with {what} raised {type(exc).__name__} on {name}"
        if got != want:
            return f"extracted text differs with {what} on {name}"
    return None


def _loop_outputs(parse: Callable[[bytes], Any]) -> list[tuple[str, list[Any]]]:
    """Per shipped page, readability's summary and jusText's classification of its paragraphs
    (as trafilatura calls them), with whatever loops are installed."""
    readability = sys.modules["trafilatura.readability_lxml"]
    external = sys.modules["trafilatura.external"]
    stoplist = external.JT_STOPLIST or external.jt_stoplist_init()
    out = []
    for _, html in check_pages():
        paragraphs = external.ParagraphMaker.make_paragraphs(parse(html))
        external.classify_paragraphs(paragraphs, stoplist, 50, 150, 0.1, 0.2, 0.25, True)
        classes = [(p.cf_class, p.heading) for p in paragraphs]
        out.append((readability.Document(parse(html), 25).summary(), classes))
    return out


def _loop_outputs_mismatch(parse: Callable[[bytes], Any]) -> str | None:
    """readability's summary and jusText's paragraph classes of each shipped page with
    trafilatura's loops and with the replacements: the final text alone need not depend on
    either on these pages."""
    trafilatura_loops.uninstall()
    try:
        plain = _loop_outputs(parse)
    finally:
        trafilatura_loops.install()
    for (name, _), want, got in zip(check_pages(), plain, _loop_outputs(parse), strict=True):
        if got[0] != want[0]:
            return f"readability's summary differs with trafilatura_loops' loops on {name}"
        if got[1] != want[1]:
            return f"jusText's classification differs with trafilatura_loops' loops on {name}"
    return None


def justext_version() -> str:
    return metadata.version("jusText")


def loops_check(parse: Callable[[bytes], Any], extract: Extract, key: Any) -> str | None:
    """Why trafilatura_loops must not be used with these options, or None; run after
    self_check passed (the compiled selectors and copies installed), once per options `key`."""
    if key not in _state.loop_verdicts:
        t0 = time.perf_counter()
        reason: str | None
        if not version_supported(justext := justext_version(), JUSTEXT_SUPPORTED):
            reason = f"jusText {justext} is outside the tested range {JUSTEXT_SUPPORTED}"
        elif missing := trafilatura_loops.missing():
            reason = f"{missing[0]} not found (moved in this trafilatura release?)"
        else:
            reason = _guarded(
                lambda: _text_mismatch(extract, key, loops=True) or _loop_outputs_mismatch(parse)
            )
        _state.loop_verdicts[key] = reason
        _state.check_ms += (time.perf_counter() - t0) * 1000
    _install(loops=_state.loop_verdicts[key] is None)
    return _state.loop_verdicts[key]


def self_check(parse: Callable[[bytes], Any], extract: Extract, key: Any) -> str | None:
    """Why the compiled selectors must not be used here, or None (then they stay installed).

    The selector comparison runs once per process; the text comparison once per distinct
    extraction options (`key`). A failure leaves trafilatura unpatched.
    """
    t0 = time.perf_counter()
    try:
        reason: str | None
        version = trafilatura_version()
        if not version_supported(version):
            reason = f"trafilatura {version} is outside the tested range {SUPPORTED}"
        elif missing := missing_attributes():
            reason = f"{missing[0]} not found (moved in this trafilatura release?)"
        else:
            if not _state.selector_verdict:
                _state.selector_verdict.append(_guarded(lambda: _selector_mismatch(parse)))
            reason = _state.selector_verdict[0]
            if reason is None:
                if key not in _state.text_verdicts:
                    _state.text_verdicts[key] = _guarded(lambda: _text_mismatch(extract, key))
                reason = _state.text_verdicts[key]
    finally:
        _state.check_ms += (time.perf_counter() - t0) * 1000
    if reason is not None:
        _uninstall()
    return reason


def _guarded(check: Callable[[], str | None]) -> str | None:
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - a check that cannot run is a failed check
        return f"self-check failed: {type(exc).__name__}: {exc}"[:200]


def acquire(
    compiled_selectors: bool,
    recall_escalation: bool,
    parse: Callable[[bytes], Any],
    extract: Extract,
    key: Any,
) -> Setup:
    """Set trafilatura's process-wide state for one extractor; pair with `release()`.

    Raises ConfigError when `recall_escalation: false` cannot be honoured, or when another
    extractor holding this process needs different settings.
    """
    if not recall_escalation and not has_escalation_switch():
        raise ConfigError(
            f"extract.trafilatura.recall_escalation: false cannot be honoured: trafilatura "
            f"{trafilatura_version()} has no trafilatura.{'.'.join(ESCALATION)} (tested: "
            f"trafilatura{SUPPORTED}); remove the key or install a tested version"
        )
    before = (_state.compiled, _state.escalation, _state.loops)
    notes: list[str] = []
    use_compiled = use_loops = compiled_selectors
    if compiled_selectors:
        reason = self_check(parse, extract, key)
        if reason is not None:
            use_compiled = use_loops = False
            notes.append(f"extract: compiled selectors off, plain trafilatura used: {reason}")
        elif (reason := loops_check(parse, extract, key)) is not None:
            use_loops = False
            notes.append(f"extract: trafilatura's own loops used (loop replacements off): {reason}")
    if _state.holders and (use_compiled, recall_escalation, use_loops) != before:
        _apply(*before)
        raise ConfigError(
            "extract: two extract stages in one process need different process-wide "
            f"trafilatura settings (compiled_selectors={before[0]}, recall_escalation="
            f"{before[1]} held; compiled_selectors={use_compiled}, recall_escalation="
            f"{recall_escalation} asked); give them the same values, or a timeout_s so each "
            "runs in its own extractor process"
        )
    _apply(use_compiled, recall_escalation, use_loops)
    _state.holders += 1
    return Setup(use_compiled, recall_escalation, tuple(notes), use_loops)


def release() -> None:
    """One extractor is done with the process-wide settings; the last one out restores plain
    trafilatura, so nothing else in the process runs with another extractor's settings."""
    _state.holders = max(0, _state.holders - 1)
    if _state.holders == 0:
        _apply(False, True)


def _apply(compiled: bool, escalation: bool, loops: bool = False) -> None:
    if compiled:
        _install(loops)
    else:
        _uninstall()
    _state.compiled = compiled
    _state.loops = compiled and loops
    _set_escalation(escalation)


def _set_escalation(enabled: bool) -> None:
    """trafilatura.core retries a balanced-focus extraction shorter than ESCALATION_MAX_LENGTH
    characters in recall mode; the limit is read on every call, so 0 switches the retry (and the
    whole-page text pass that decides it) off."""
    _state.escalation = enabled
    if not has_escalation_switch():
        return  # nothing to switch (and `enabled` is then what trafilatura does)
    core = _module(ESCALATION[0])
    if not _state.limit:
        _state.limit.append(getattr(core, ESCALATION[1]))
    setattr(core, ESCALATION[1], _state.limit[0] if enabled else 0)


def check_ms() -> float:
    """Milliseconds this process spent in self-checks so far."""
    return _state.check_ms
