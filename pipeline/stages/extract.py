"""`extract`: raw HTML -> main text (RefinedWeb step 2), with trafilatura, resiliparse or their
cascade (the default: resiliparse for small pages, trafilatura's fast setting for the others).

Input batches carry `html` (HTML_SCHEMA); output batches drop it and carry `text`, plus the
measurements `html_bytes` (UTF-8 size of the page) and `extract_status`
(ok | empty | too_large | timeout | error). `keep` turns a non-ok status into the reason
`extract_<status>`; a failing page never fails the batch.

With `timeout_s` set (the default), pages are extracted in a persistent child process
(pipeline.stages.sandbox) that ends and is restarted when one page uses more than `timeout_s` of
CPU time (a wall-clock backstop of 30x that, sandbox.WALL_BACKSTOP_FACTOR, covers a stalled
child): the only way to stop a long lxml C call, one that works off the main thread inside Ray
workers, and one that load on the machine does not change. `timeout_s: null` (or 0) extracts in-process
without a limit, the fastest choice for trusted input. Metrics in stats.json:
`pages_near_time_limit` (pages that used at least half the limit) and `time_limit_wall_backstops`.
trafilatura's process-wide settings go through pipeline/stages/trafilatura_adapter.py (its
self-check's fallback is reported under `warnings`). Measured quality and speed:
docs/benchmarks.md ("Extraction").
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.errors import ConfigError
from pipeline.schema import HTML, TEXT, URL
from pipeline.stages.allocator import jemalloc
from pipeline.stages.base import Stage, StageConfig, column_as_list, reasons_from_checks
from pipeline.stages.contract import Contract, Resources
from pipeline.stages.extractors import BuiltExtractor, build_extractor, to_trafilatura
from pipeline.stages.sandbox import CRASH, ERROR, OK, TIMEOUT, Sandbox, in_process

log = logging.getLogger(__name__)

HTML_BYTES = "html_bytes"
EXTRACT_STATUS = "extract_status"
STATUSES = ("ok", "empty", "too_large", "timeout", "error")
# Statuses -> rejection reasons (documented names; keep() emits these).
REASONS = {s: f"extract_{s}" for s in STATUSES if s != "ok"}
# Bounds of the sandbox limits: a page needing an hour of CPU is not a page (and the wall-clock
# backstop must stay a finite wait); below ~256 MiB of address space the extractor process
# cannot load lxml and trafilatura; above 2^43 MiB the byte count overflows setrlimit.
MAX_TIMEOUT_S = 3600.0
MIN_MEMORY_LIMIT_MB = 256
MAX_MEMORY_LIMIT_MB = (1 << 43) - 1


PRUNE_TAGS = ("script", "style", "noscript", "svg", "template", "iframe", "nav", "footer", "aside")
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrafilaturaOptions(_Options):
    """trafilatura settings. favor_precision and no comments as FineWeb used them (also the best
    F1 on ScrapingHub and CleanEval here); see docs/benchmarks.md."""

    favor_precision: bool = True  # trafilatura's precision focus: drop more doubtful sections
    favor_recall: bool = False  # trafilatura's recall focus: keep more doubtful sections
    include_comments: bool = False  # keep a page's comment section in the text
    include_tables: bool = True  # keep table contents (rows as "a | b")
    # trafilatura's LRU deduplication is process-wide: a paragraph seen in earlier documents of
    # the same worker is dropped, so output depends on document order (FineWeb used it; off by
    # default here so reruns and resumes are reproducible).
    deduplicate: bool = False
    # Skip trafilatura's readability/jusText comparison ("fast" mode): 1.2-1.5x faster; with
    # favor_precision: false and recall_escalation: false it keeps ScrapingHub F1 (0.962) at
    # >= 150 docs/s per core, see docs/benchmarks.md.
    fast: bool = False
    # Elements removed with their subtree before trafilatura runs. trafilatura deletes these
    # in its own cleaning anyway; removing them first in one cheap lxml pass saves its XPath
    # passes the work (~30% faster on modern pages, F1 unchanged). [] = vanilla trafilatura.
    # Do not add "form": ASP.NET pages wrap the whole body in one.
    prune_tags: tuple[str, ...] = PRUNE_TAGS
    # trafilatura 2.x writes table rows as "| a | b | "; drop the outer pipes so a row reads as a
    # line ("a | b") that ends in its last cell's punctuation, as trafilatura 1.x (FineWeb's)
    # wrote it. Layout tables otherwise fail line-wise filters such as FineWeb's punct ratio.
    table_outer_pipes: bool = False
    # Run trafilatura's XPath selectors compiled to lxml tag iteration plus fused regexes
    # (pipeline/stages/fast_xpath.py) instead of lxml's XPath with Python re:test callbacks,
    # and leave out the whole-tree copies that our per-page parse makes redundant
    # (pipeline/stages/trafilatura_copies.py): byte-identical text, 1.3-1.6x faster. Also runs
    # trafilatura's readability, link-density and jusText loops measuring each text once
    # (pipeline/stages/trafilatura_loops.py): byte-identical text, ~10% fewer instructions. A
    # self-check at set-up falls back to plain trafilatura (with a warning in stats.json) on
    # an untested trafilatura release or when the texts differ (to trafilatura's own loops
    # when only theirs differ). Process-wide: two in-process extract stages must agree.
    # false: trafilatura's own XPath objects, copies and loops.
    compiled_selectors: bool = True
    # trafilatura (2.3+) retries a short balanced-focus extraction in recall mode when it
    # holds < 20% of the page's text; measuring that text costs a whole-page pass on every
    # short extraction (~16% of fast mode's instructions). false skips the retry: ScrapingHub
    # F1 unchanged (0.962), CleanEval 0.847 -> 0.841 (10 of 739 pages lose text), fast mode
    # 1.2-1.3x faster. Only with favor_precision and favor_recall false. Process-wide, like
    # compiled_selectors (each sandboxed stage has its own process). false is a config error
    # with a trafilatura that has no such retry switch.
    recall_escalation: bool = True

    @field_validator("prune_tags")
    @classmethod
    def _tag_names(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in tags if not _TAG_NAME.fullmatch(t)]
        if bad:
            raise ValueError(f"not HTML tag names: {', '.join(bad)}")
        return tuple(t.lower() for t in tags)


class ResiliparseOptions(_Options):
    """resiliparse `extract_plain_text` settings (defaults chosen on ScrapingHub/CleanEval)."""

    main_content: bool = True  # resiliparse's rule-based main-content (boilerplate) filter
    preserve_formatting: bool = True  # block elements end lines; off: one line of text
    list_bullets: bool = False  # prefix list items with a bullet
    alt_texts: bool = False  # include the alt text of images
    links: bool = False  # include link targets after link texts
    form_fields: bool = False  # include the text of form fields and buttons
    noscript: bool = False  # include <noscript> content
    comments: bool = False  # True treats comment sections as main content
    skip_elements: tuple[str, ...] = ()  # extra CSS selectors to drop


# trafilatura's fast setting, the cascade's for its large pages (CascadeOptions.fast_trafilatura)
CASCADE_FAST = {"fast": True, "favor_precision": False, "recall_escalation": False}


class CascadeOptions(_Options):
    """backend: cascade: resiliparse below a page size, trafilatura's fast setting from it up
    (fitted on ScrapingHub, checked on CleanEval; see docs/benchmarks.md)."""

    # Pages of at least this many UTF-8 bytes go to trafilatura, smaller ones to resiliparse.
    # 45000: the most pages to resiliparse that keeps ScrapingHub F1 within 0.003 of
    # trafilatura's. 0: every page to trafilatura.
    min_html_bytes: int = Field(default=45_000, ge=0)
    # Run trafilatura in its fast setting (fast: true, favor_precision: false,
    # recall_escalation: false, in place of the `trafilatura` section's values for these three
    # keys; its other keys apply): what the bound was fitted with. false: the `trafilatura`
    # section as written (slower, no better F1).
    fast_trafilatura: bool = True


class ExtractConfig(StageConfig):
    """Backend and its options, the per-page time limit and the page-size guard."""

    stage: Literal["extract"] = "extract"
    # HTML-to-text extractor; cascade: resiliparse for small pages, trafilatura for the others
    # (F1 within 0.003 of trafilatura's defaults on ScrapingHub and CleanEval at ~2x its speed)
    backend: Literal["trafilatura", "resiliparse", "cascade"] = "cascade"
    trafilatura: TrafilaturaOptions = TrafilaturaOptions()  # options of trafilatura (and cascade)
    resiliparse: ResiliparseOptions = ResiliparseOptions()  # options of resiliparse (and cascade)
    cascade: CascadeOptions = CascadeOptions()  # where backend: cascade switches extractor
    # CPU seconds one page may use before its extractor process is ended (reason
    # extract_timeout); a wall-clock backstop of 30x this covers a stalled process. At most
    # 3600. null or 0: extract in-process, no limit, no process overhead.
    timeout_s: float | None = Field(default=5.0, ge=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    # Pages whose HTML is larger than this (UTF-8 bytes) are rejected as extract_too_large
    # without being parsed (truncating would feed the extractor a broken page). null: no limit.
    max_html_bytes: int | None = Field(default=5_000_000, gt=0)
    # Address-space cap of the extractor process (MiB); a page that needs more fails as
    # extract_error instead of taking the worker down. Only with timeout_s. null: no cap.
    # At least 256 (the extractor itself needs that much).
    memory_limit_mb: int | None = Field(
        default=4096, ge=MIN_MEMORY_LIMIT_MB, le=MAX_MEMORY_LIMIT_MB
    )
    # Memory allocator of the extractor process (only with timeout_s): jemalloc (the build Ray
    # ships, preloaded; the same text with 6-8% fewer instructions per page, ~1.1x the pages per
    # CPU second, see docs/benchmarks.md) or system (glibc's malloc). Without a usable jemalloc
    # the system one is used and stats.json's warnings say why.
    allocator: Literal["jemalloc", "system"] = "jemalloc"

    def backend_options(self) -> dict[str, object]:
        """The selected backend's options as a plain dict (what the extractor factory takes)."""
        if self.backend == "cascade":
            trafilatura = self.trafilatura.model_dump()
            if self.cascade.fast_trafilatura:
                trafilatura.update(CASCADE_FAST)
            return {
                "min_html_bytes": self.cascade.min_html_bytes,
                "trafilatura": trafilatura,
                "resiliparse": self.resiliparse.model_dump(),
            }
        return getattr(self, self.backend).model_dump()


class ExtractStage(Stage):
    """Replace `html` by extracted `text`; reject empty, oversized, timed-out and failed pages."""

    config_cls: ClassVar[type[StageConfig]] = ExtractConfig
    threshold_keys: ClassVar[frozenset[str]] = frozenset()
    requires: ClassVar[tuple[str, ...]] = (HTML,)
    score_columns: ClassVar[tuple[str, ...]] = (TEXT, HTML_BYTES, EXTRACT_STATUS)
    drops: ClassVar[tuple[str, ...]] = (HTML,)

    @classmethod
    def verify(cls, config: ExtractConfig, key: str, runtime: Any) -> None:  # type: ignore[override]
        """In-process extraction (no timeout_s) is bounded only by the runner's per-document CPU
        guard: refused when that guard is off, so no page can run without a limit."""
        if not config.timeout_s and runtime.stage_cpu_s_per_doc is None:
            raise ConfigError(
                f"{key}.timeout_s: null extracts in-process, where only "
                "runtime.stage_cpu_s_per_doc limits a page, and that is null; set one of them"
            )

    @classmethod
    def contract(cls, config: ExtractConfig) -> Contract:  # type: ignore[override]
        """The sandboxed extractor (timeout_s set) runs pages in one child process."""
        helpers = 1 if config.timeout_s else 0
        return replace(super().contract(config), resources=Resources(helper_processes=helpers))

    config: ExtractConfig

    def __init__(self, config: ExtractConfig) -> None:
        super().__init__(config)
        self._sandbox: Sandbox | None = None
        self._extract: BuiltExtractor | None = None
        self._notes: list[str] = []
        self._reported = (0, 0)  # (near-limit, wall-backstop) counts already taken
        self._first_error: str | None = None  # first extract_error since take_error()
        self._routed = [0, 0]  # backend cascade: pages sent to (resiliparse, trafilatura)

    def __getstate__(self) -> dict[str, object]:
        # Shipped to Ray workers as config only: the process and extractor are per worker.
        return {
            **self.__dict__,
            "_sandbox": None,
            "_extract": None,
            "_reported": (0, 0),
            "_routed": [0, 0],
        }

    @property
    def sandboxed(self) -> bool:
        return bool(self.config.timeout_s)

    def setup(self) -> None:
        """Start the extractor process (sandboxed) or build the extractor (in-process)."""
        if self.sandboxed:
            preload, why_not = None, None
            if self.config.allocator == "jemalloc":
                preload, why_not = jemalloc()
            if self._sandbox is None:
                self._sandbox = Sandbox(
                    build_extractor,
                    (self.config.backend, self.config.backend_options()),
                    timeout_s=float(self.config.timeout_s or 0),
                    memory_limit_mb=self.config.memory_limit_mb,
                    preload=preload,
                )
            self._sandbox.start()
            notes = list(self._sandbox.notes)
            if why_not is not None:
                notes.append(f"extract: jemalloc not used ({why_not}); the system allocator is")
        elif self._extract is None:
            self._extract = build_extractor(self.config.backend, self.config.backend_options())
            notes = list(self._extract.notes)
        else:
            return
        for note in notes:
            if note not in self._notes:
                log.warning("%s", note)
                self._notes.append(note)

    def close(self) -> None:
        """Stop the extractor process, if any; release the in-process extractor's settings."""
        if self._sandbox is not None:
            self._sandbox.close()
        if self._extract is not None:
            self._extract.close()
            self._extract = None

    def warnings(self) -> list[str]:
        return list(self._notes)

    def take_error(self) -> str | None:
        message, self._first_error = self._first_error, None
        return message

    def take_metrics(self) -> dict[str, int]:
        metrics: dict[str, int] = {}
        if self.config.backend == "cascade":
            (small, large), self._routed = self._routed, [0, 0]
            metrics.update(cascade_resiliparse_pages=small, cascade_trafilatura_pages=large)
        if self._sandbox is not None:
            stats = self._sandbox.stats
            near, wall = stats.near_limit, stats.wall_timeouts
            self._reported, (near0, wall0) = (near, wall), self._reported
            metrics.update(
                pages_near_time_limit=near - near0, time_limit_wall_backstops=wall - wall0
            )
        return metrics

    def helper_cpu_s(self) -> float:
        return self._sandbox.cpu_seconds if self._sandbox is not None else 0.0

    @property
    def sandbox(self) -> Sandbox | None:
        """The extractor process handle (None in-process), for stats and tests."""
        return self._sandbox

    def score(self, batch: pa.Table) -> pa.Table:
        if HTML not in batch.column_names:
            raise ValueError(
                f"extract needs an `{HTML}` column (WARC input); got {batch.column_names}"
            )
        if self._sandbox is None and self._extract is None:
            self.setup()  # robust to callers that skip setup()
        htmls = _utf8_bytes(batch.column(HTML))  # bytes: no str round trip, cheap to pickle
        urls = column_as_list(batch, URL) if URL in batch.column_names else [None] * len(htmls)
        sizes = [len(h) if h is not None else 0 for h in htmls]
        limit = self.config.max_html_bytes
        texts = [""] * len(htmls)
        status = ["empty"] * len(htmls)
        todo = []
        for i, html in enumerate(htmls):
            if limit is not None and sizes[i] > limit:
                status[i] = "too_large"
            elif html and not html.isspace():
                todo.append(i)
        items = [(htmls[i], urls[i]) for i in todo]
        if self.config.backend == "cascade":
            bound = self.config.cascade.min_html_bytes
            large = sum(to_trafilatura(sizes[i], bound) for i in todo)
            self._routed[0] += len(todo) - large
            self._routed[1] += large
        if self._sandbox is not None:
            results = self._sandbox.map(items, sizes=[sizes[i] for i in todo])
        else:
            results = in_process(self._extract, items)  # type: ignore[arg-type]
        for i, (outcome, value) in zip(todo, results, strict=True):
            if outcome == OK:
                text = (value or "").strip()
                texts[i], status[i] = text, ("ok" if text else "empty")
            elif outcome == TIMEOUT:
                status[i] = "timeout"
            else:  # ERROR (the extractor raised) or CRASH (its process died)
                assert outcome in (ERROR, CRASH)
                status[i] = "error"
                log.debug("extract_error on %s: %s", urls[i], value or outcome)
                if self._first_error is None:
                    self._first_error = f"{urls[i] or 'a page'}: {value or outcome}"
        out = batch.drop_columns([HTML])
        return (
            out.append_column(TEXT, pa.array(texts, type=pa.string()))
            .append_column(HTML_BYTES, pa.array(sizes, type=pa.int64()))
            .append_column(EXTRACT_STATUS, pa.array(status, type=pa.string()))
        )

    def keep(self, batch: pa.Table) -> pa.Array:
        status = np.asarray(column_as_list(batch, EXTRACT_STATUS), dtype=object)
        return reasons_from_checks(
            batch.num_rows, [(status == s, reason) for s, reason in REASONS.items()]
        )


def _utf8_bytes(column: pa.ChunkedArray) -> list[bytes | None]:
    """The UTF-8 bytes of each value (None for nulls); the cast to binary is zero-copy."""
    target = pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()
    return column.cast(target).to_pylist()
