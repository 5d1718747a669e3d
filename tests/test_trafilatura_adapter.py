"""trafilatura behind one adapter (pipeline/stages/trafilatura_adapter.py): the version pin, the
set-up self-check and its fallback to plain trafilatura, the recall-escalation switch, and the
refusal of conflicting process-wide settings."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import lxml.html
import pytest
import trafilatura.core
import trafilatura.xpaths

from pipeline.config import recipe_from_dict
from pipeline.errors import ConfigError
from pipeline.runner.run import run_recipe
from pipeline.stages import (
    fast_xpath,
    trafilatura_adapter,
    trafilatura_copies,
    trafilatura_loops,
)
from pipeline.stages.extract import ExtractConfig, ExtractStage
from pipeline.stages.extractors import build_extractor
from tests.test_extract import ARTICLE, BODY, html_batch

REPO = Path(__file__).resolve().parents[1]
OPTIONS = ExtractConfig(backend="trafilatura").backend_options()
# A selector the shipped pages exercise: trafilatura's first overall-discard expression
# (navigation, share bars, cookie banners, ...).
BROKEN_PATH = trafilatura.xpaths.OVERALL_DISCARD_XPATH[0].path


@pytest.fixture
def adapter(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A fresh process state (no holders, no cached verdicts), restored afterwards."""
    modules = (fast_xpath, trafilatura_copies, trafilatura_loops)
    was = [m.installed() for m in modules]
    for m in modules:
        m.uninstall()
    monkeypatch.setattr(trafilatura_adapter, "_state", trafilatura_adapter._ProcessState())
    limit = trafilatura.core.ESCALATION_MAX_LENGTH
    yield trafilatura_adapter
    trafilatura.core.ESCALATION_MAX_LENGTH = limit
    for m, installed in zip(modules, was, strict=True):
        m.uninstall()
        if installed:
            m.install()


class _Nothing:
    """A broken compiled selector: selects nothing."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, node: Any) -> list[Any]:
        return []


@pytest.fixture
def broken_selector(monkeypatch: pytest.MonkeyPatch, adapter: ModuleType) -> None:
    """Compile one trafilatura selector to one that returns nothing."""
    compile_xpath = fast_xpath.compile_xpath

    def compile_broken(path: str) -> Any:
        return _Nothing(path) if path == BROKEN_PATH else compile_xpath(path)

    monkeypatch.setattr(fast_xpath, "compile_xpath", compile_broken)


def _extractor(**overrides: Any) -> Any:
    return build_extractor("trafilatura", {**OPTIONS, **overrides})


# ---------------------------------------------------------------------------------------------
# The version pin and the shipped pages


def test_pyproject_pins_the_tested_range_and_it_holds_the_installed_version() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.match(r"trafilatura\b", d)]
    assert pin == f"trafilatura{trafilatura_adapter.SUPPORTED}"
    assert trafilatura_adapter.version_supported(trafilatura_adapter.trafilatura_version())
    for version, ok in [("2.3.1", True), ("2.3.9", True), ("2.3.0", False), ("2.4.0", False)]:
        assert trafilatura_adapter.version_supported(version) is ok, version
    assert trafilatura_adapter.version_supported("2.3.2rc1")
    assert not trafilatura_adapter.version_supported("3.0")
    assert not trafilatura_adapter.version_supported("dev")


def test_shipped_pages_exercise_most_selectors(adapter: ModuleType) -> None:
    """The self-check means something only if lxml's selectors find elements on its pages."""
    pages = adapter.check_pages()
    assert [name for name, _ in pages] == [
        "blog-post.html",
        "libffi-manual-index.html",
        "npm-whoami.html",
    ]
    assert all(len(html) < 8_000 for _, html in pages)
    fast_xpath.install()
    originals = [original for _, original in adapter._swapped_pairs()]
    trees = [lxml.html.document_fromstring(html) for _, html in pages]
    used = [o for o in originals if any(o(tree) for tree in trees)]
    assert len(originals) == 25
    assert len(used) >= 22


def test_self_check_passes_on_the_installed_trafilatura(adapter: ModuleType) -> None:
    extract = _extractor()
    try:
        assert extract.notes == ()
        assert fast_xpath.installed() and trafilatura_copies.installed()
        assert adapter.missing_attributes() == []
        assert adapter.check_ms() > 0
    finally:
        extract.close()


# ---------------------------------------------------------------------------------------------
# Fallback to plain trafilatura


@pytest.mark.slow
def test_broken_selector_falls_back_to_plain_trafilatura(
    broken_selector: None, adapter: ModuleType, shared_data: Path
) -> None:
    """The acceptance test: a compiled selector that selects nothing is caught at set-up; the
    extractor runs plain trafilatura and gives its text on real pages."""
    extract = _extractor()
    try:
        (note,) = extract.notes
        assert not fast_xpath.installed()
        pages = _scrapinghub_pages(shared_data)
        texts = [extract(html, url) for html, url in pages]
    finally:
        extract.close()
    assert note.startswith("extract: compiled selectors off, plain trafilatura used: ")
    assert "selects 0 elements where lxml selects" in note
    assert "\n" not in note

    plain = _extractor(compiled_selectors=False)
    try:
        assert plain.notes == ()
        expected = [plain(html, url) for html, url in pages]
    finally:
        plain.close()
    assert texts == expected
    assert sum(1 for t in texts if t) > 0.9 * len(pages)

    # Without the self-check the broken selector would have changed real output.
    fast_xpath.install()
    try:
        unchecked = [plain(html, url) for html, url in pages]
    finally:
        fast_xpath.uninstall()
    assert sum(a != b for a, b in zip(unchecked, expected, strict=True)) >= 10


def _scrapinghub_pages(shared_data: Path) -> list[tuple[bytes, str | None]]:
    sys.path.insert(0, str(REPO / "scripts"))
    import eval_extract

    docs = eval_extract.load_dataset("scrapinghub", shared_data / "extraction")
    return [(d.html.encode("utf-8"), d.url) for d in docs]


def test_untested_version_falls_back(adapter: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adapter, "trafilatura_version", lambda: "2.4.0")
    extract = _extractor()
    try:
        assert extract.notes == (
            "extract: compiled selectors off, plain trafilatura used: trafilatura 2.4.0 is "
            "outside the tested range >=2.3.1,<2.4",
        )
        assert not fast_xpath.installed()
        assert f"Paragraph 5. {BODY}" in extract(ARTICLE.encode(), None)
    finally:
        extract.close()


def test_moved_attribute_falls_back(adapter: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    main_extractor = sys.modules["trafilatura.main_extractor"]
    monkeypatch.delattr(main_extractor, "TEASER_DISCARD_XPATH")
    extract = _extractor()
    try:
        (note,) = extract.notes
        assert note.endswith(
            "trafilatura.main_extractor.TEASER_DISCARD_XPATH not found (moved in this "
            "trafilatura release?)"
        )
        assert not fast_xpath.installed()
    finally:
        extract.close()


def test_a_selector_call_that_raises_falls_back(
    adapter: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release that calls selectors differently (here: every compiled call fails)."""

    def refuse(self: Any, node: Any) -> list[Any]:
        raise TypeError("unexpected call")

    monkeypatch.setattr(fast_xpath._Selector, "__call__", refuse)
    extract = _extractor()
    try:
        (note,) = extract.notes
        assert note.endswith("compiled selector raised TypeError on blog-post.html")
        assert not fast_xpath.installed()
    finally:
        extract.close()


@pytest.mark.e2e
def test_fallback_warning_reaches_stats_json(
    broken_selector: None, adapter: ModuleType, shared_data: Path, tmp_path: Path
) -> None:
    """In-process extraction on the local executor (the monkeypatch reaches the extractor):
    the note is in stats.json under the stage's `warnings`, and the run's text is plain
    trafilatura's."""
    warc = shared_data / "warc" / "wget-2024-sample-0000.warc.gz"
    out = tmp_path / "run"
    recipe = recipe_from_dict(
        {
            "input": {"paths": [str(warc)]},
            "output": {"path": str(out)},
            "runtime": {"executor": "local"},
            "stages": [{"stage": "extract", "timeout_s": None}],
        }
    )
    run_recipe(recipe)
    (extract,) = json.loads((out / "stats.json").read_text())["stages"]
    (warning,) = extract["warnings"]
    assert warning.startswith("extract: compiled selectors off, plain trafilatura used: ")
    assert extract["docs_kept"] > 0
    assert not fast_xpath.installed()


# ---------------------------------------------------------------------------------------------
# The recall-escalation switch and conflicting process-wide settings


def test_recall_escalation_off_without_the_switch_is_a_config_error(
    adapter: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(trafilatura.core, "ESCALATION_MAX_LENGTH")
    stage = ExtractStage(
        ExtractConfig(
            backend="trafilatura", timeout_s=None, trafilatura={"recall_escalation": False}
        )
    )
    with pytest.raises(ConfigError, match=r"^extract.trafilatura.recall_escalation: false cannot"):
        stage.setup()
    # the default (escalation on) has nothing to switch and works
    extract = _extractor()
    try:
        assert f"Paragraph 5. {BODY}" in extract(ARTICLE.encode(), None)
    finally:
        extract.close()


def test_conflicting_in_process_extract_configs_are_refused(adapter: ModuleType) -> None:
    first = ExtractStage(ExtractConfig(backend="trafilatura", timeout_s=None))
    second = ExtractStage(
        ExtractConfig(
            backend="trafilatura", timeout_s=None, trafilatura={"compiled_selectors": False}
        )
    )
    same = ExtractStage(
        ExtractConfig(backend="trafilatura", timeout_s=None, trafilatura={"include_tables": False})
    )
    first.setup()
    try:
        with pytest.raises(ConfigError, match="need different process-wide trafilatura") as info:
            second.setup()
        assert "compiled_selectors=True, recall_escalation=True held" in str(info.value)
        assert fast_xpath.installed()  # the first one's settings stay
        same.setup()  # only per-extractor options differ: fine
        same.close()
        # each sandboxed stage has its own process: no conflict
        sandboxed = ExtractStage(
            ExtractConfig(
                backend="trafilatura", timeout_s=30.0, trafilatura={"recall_escalation": False}
            )
        )
        sandboxed.setup()
        sandboxed.close()
        kept, _ = first.apply(html_batch([ARTICLE]))
        assert kept.num_rows == 1
        assert trafilatura.core.ESCALATION_MAX_LENGTH > 0
    finally:
        first.close()
    second.setup()  # free once the first is closed
    try:
        assert not fast_xpath.installed()
    finally:
        second.close()


# ---------------------------------------------------------------------------------------------
# The tree copies left out (pipeline/stages/trafilatura_copies.py)


def _copies_per_page(
    monkeypatch: pytest.MonkeyPatch, extract: Any, pages: list[tuple[str, bytes]]
) -> tuple[list[str], int]:
    """Texts of `pages` and how many whole trees trafilatura.core (or the replacements) copied."""
    calls = [0]
    real = trafilatura.core.copy

    def counting(tree: Any) -> Any:
        calls[0] += 1
        return real(tree)

    monkeypatch.setattr(trafilatura.core, "copy", counting)
    monkeypatch.setattr(trafilatura_copies, "copy", counting)
    texts = [extract(html, None) for _, html in pages]
    monkeypatch.undo()
    return texts, calls[0]


@pytest.mark.parametrize(
    ("mode", "plain_copies", "lean_copies"),
    [
        ({}, 4, 2),  # precision: the input tree, cleaned, backup, the comparison's raw tree
        ({"fast": True, "favor_precision": False, "recall_escalation": False}, 3, 1),
        ({"fast": True, "favor_precision": False, "include_comments": True}, 3, 2),
        ({"favor_precision": False, "favor_recall": True}, 4, 3),
    ],
)
def test_tree_copies_left_out_same_text(
    adapter: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    mode: dict[str, Any],
    plain_copies: int,
    lean_copies: int,
) -> None:
    """Per page, trafilatura copies the tree 3-4 times; with our parse handed over 1-3 of the
    copies are not needed, and the text of the shipped pages stays byte-identical."""
    pages = adapter.check_pages()
    extract = _extractor(**mode)
    try:
        assert extract.notes == () and trafilatura_copies.installed()
        lean, lean_n = _copies_per_page(monkeypatch, extract, pages)
        trafilatura_copies.uninstall()
        plain, plain_n = _copies_per_page(monkeypatch, extract, pages)
    finally:
        extract.close()
    assert lean == plain
    assert sum(1 for t in plain if len(t) > 200) == len(pages)
    assert (plain_n, lean_n) == (plain_copies * len(pages), lean_copies * len(pages))
    assert not trafilatura_copies.installed()  # close() released the process-wide settings


def test_a_tree_handed_over_without_the_replacements_is_the_tree(adapter: ModuleType) -> None:
    tree = lxml.html.document_fromstring(ARTICLE)
    assert trafilatura_copies.hand_over(tree) is tree  # plain trafilatura copies it itself
    original = trafilatura.core.load_html
    trafilatura_copies.install()
    try:
        handed = trafilatura_copies.hand_over(tree)
        assert handed is not tree and trafilatura.core.load_html(handed) is tree
        assert trafilatura.core.load_html(tree) is tree  # other callers' input unchanged
    finally:
        trafilatura_copies.uninstall()
    assert trafilatura.core.load_html is original
