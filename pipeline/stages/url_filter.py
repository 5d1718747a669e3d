"""`url_filter`: reject documents by URL before anything expensive runs (RefinedWeb step 1).

Checks, in order: malformed URL, domain block list (the domain or any parent domain), full-URL
block list, curated sources (Wikipedia, arXiv, ... as RefinedWeb/DCLM excluded), then the
RefinedWeb-style word scores: strict sub-words (substring of the URL with `-` and `.` removed),
hard words (any whole URL token rejects) and soft words (reject when `soft_word_threshold` or
more distinct ones appear). Lists ship in pipeline/resources/url_filter (see its README);
user files extend them. Nothing is fetched at run time.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import SplitResult, unquote, urlsplit

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from pipeline.schema import URL
from pipeline.stages.base import Stage, StageConfig, column_as_list, reasons_from_checks
from pipeline.text.batch import columns_from_rows, with_columns

RESOURCES = "resources/url_filter"
# Package files read at run time (in the ablation cache key: pipeline.ablate.fingerprint).
RESOURCE_FILES = (RESOURCES,)
# The Pile's sources, excluded by the DCLM reproduction of RefinedWeb (refinedweb.yaml).
CURATED_DOMAINS = (
    "arxiv.org",
    "askubuntu.com",
    "stackoverflow.com",
    "stackapps.com",
    "stackexchange.com",
    "mathoverflow.net",
    "exporter.nih.gov",
    "ncbi.nlm.nih.gov",
    "github.com",
    "irclogs.ubuntu.com",
    "news.ycombinator.com",
    "courtlistener.com",
    "reddit.com",
    "statmt.org",
    "uspto.gov",
    "wikipedia.org",
)

_TOKEN_SPLIT = re.compile(r"[\W_]+")
# A host label: anything but separators, whitespace and characters a URL host can never hold.
_HOST_LABEL = re.compile(r"[^\s/\\?#@:\[\]<>\"'`{}|^%]+")


class UrlFilterConfig(StageConfig):
    """Block lists and word lists (score keys) and the decision switches (threshold keys)."""

    stage: Literal["url_filter"] = "url_filter"
    use_default_lists: bool = True  # also use the lists in pipeline/resources/url_filter
    blocked_domains_files: tuple[str, ...] = ()  # one domain per line ('#' comments, .gz ok)
    blocked_urls_files: tuple[str, ...] = ()  # one URL per line, scheme optional
    hard_words_files: tuple[str, ...] = ()  # extra hard words: any one as a URL token rejects
    soft_words_files: tuple[str, ...] = ()  # extra soft words, counted per URL (distinct)
    strict_subwords_files: tuple[str, ...] = ()  # extra sub-words (URL without - and .)
    curated_domains: tuple[str, ...] = CURATED_DOMAINS  # curated sources (and their subdomains)
    # Threshold keys (used only by keep()).
    exclude_curated: bool = True  # reject documents from curated_domains
    soft_word_threshold: int = Field(default=2, ge=1)  # reject when >= this many soft words
    missing_url: Literal["reject", "keep"] = "reject"  # reject or keep docs with no (or blank) URL

    @field_validator(
        "blocked_domains_files",
        "blocked_urls_files",
        "hard_words_files",
        "soft_words_files",
        "strict_subwords_files",
    )
    @classmethod
    def _files_exist(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        missing = [p for p in paths if not Path(p).expanduser().is_file()]
        if missing:
            raise ValueError(f"file not found: {', '.join(missing)}")
        return paths


def _read_lines(source: Path | Traversable) -> Iterator[str]:
    """Non-empty, non-comment, stripped lines of a text list (gzip when the name ends in .gz)."""
    raw = source.read_bytes()
    if source.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    for line in raw.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def _load(default_name: str | None, files: Iterable[str]) -> Iterator[str]:
    """Lines of the shipped default list (when given) followed by the user's files."""
    if default_name is not None:
        yield from _read_lines(resources.files("pipeline").joinpath(RESOURCES, default_name))
    for path in files:
        yield from _read_lines(Path(path).expanduser())


def normalize_domain(entry: str) -> str:
    """A block-list domain entry in the form hosts are compared: lowercase, no `*.`/dots at ends."""
    entry = entry.strip().lower()
    if entry.startswith("*."):
        entry = entry[2:]
    return entry.strip(".")


def normalize_url_entry(entry: str) -> str:
    """`host/path?query` without scheme, `www.`, fragment or trailing slash, host lowercased."""
    entry = entry.strip()
    if "://" not in entry:
        entry = "http://" + entry
    try:
        parts = urlsplit(entry)
    except ValueError:
        return entry.lower()
    host = (parts.hostname or "").rstrip(".")
    host = host.removeprefix("www.")
    out = host + (f":{parts.port}" if _safe_port(parts) else "") + parts.path.rstrip("/")
    if parts.query:
        out += "?" + parts.query
    return out


def _safe_port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def parse_host(url: str) -> str | None:
    """The lowercase host of an absolute URL, or None when the URL is malformed.

    Malformed: unparsable, no scheme, no host, an invalid port, or a host with empty labels or
    characters no host can hold.
    """
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    host = parts.hostname
    if not host:
        return None
    host = host.rstrip(".")
    if ":" in host:  # IPv6 literal, already validated by urlsplit's bracket parsing
        return host
    labels = host.split(".")
    if any(not label or not _HOST_LABEL.fullmatch(label) for label in labels):
        return None
    return host


def parent_domains(host: str) -> list[str]:
    """`a.b.c` -> [`a.b.c`, `b.c`, `c`]: the host and every parent domain."""
    if ":" in host or host.replace(".", "").isdigit():  # IP addresses have no parents
        return [host]
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def url_prefixes(url: str) -> list[str]:
    """Normalised URL and its path prefixes at segment boundaries (block-list entries match them)."""
    norm = normalize_url_entry(url)
    base, _, query = norm.partition("?")
    host, _, path = base.partition("/")
    out = [host]
    segments = [s for s in path.split("/") if s] if path else []
    for i in range(1, len(segments) + 1):
        out.append(host + "/" + "/".join(segments[:i]))
    if query:
        out.append(norm)
    return out


def url_tokens(url: str) -> set[str]:
    """Lowercase alphanumeric tokens of the percent-decoded URL (split on anything else)."""
    return {t for t in _TOKEN_SPLIT.split(unquote(url).lower()) if t}


def strict_form(text: str) -> str:
    """The form strict sub-words are matched in: lowercase, percent-decoded, `-` and `.` removed."""
    return unquote(text).lower().replace("-", "").replace(".", "")


class UrlFilterStage(Stage):
    """Block lists, curated-source exclusion and RefinedWeb URL word scores."""

    config_cls: ClassVar[type[StageConfig]] = UrlFilterConfig
    threshold_keys: ClassVar[frozenset[str]] = frozenset(
        {"exclude_curated", "soft_word_threshold", "missing_url"}
    )
    requires: ClassVar[tuple[str, ...]] = (URL,)
    score_columns: ClassVar[tuple[str, ...]] = (
        "url_missing",
        "url_malformed",
        "url_blocked_domain",
        "url_blocked_url",
        "url_curated",
        "url_strict_subword",
        "url_hard_word",
        "url_soft_word_count",
    )
    column_thresholds: ClassVar[dict[str, tuple[str, ...]]] = {
        "url_soft_word_count": ("soft_word_threshold",)
    }

    def __init__(self, config: StageConfig) -> None:
        super().__init__(config)
        self._loaded = False

    def setup(self) -> None:
        """Load the block and word lists (once per worker)."""
        if self._loaded:
            return
        cfg: UrlFilterConfig = self.config  # type: ignore[assignment]
        default = cfg.use_default_lists
        self.blocked_domains = {
            normalize_domain(d)
            for d in _load("blocked_domains.txt" if default else None, cfg.blocked_domains_files)
        }
        self.blocked_urls = {normalize_url_entry(u) for u in _load(None, cfg.blocked_urls_files)}
        self.curated = {normalize_domain(d) for d in cfg.curated_domains}
        self.hard_words = {
            w.lower() for w in _load("hard_words.txt" if default else None, cfg.hard_words_files)
        }
        self.soft_words = {
            w.lower() for w in _load("soft_words.txt" if default else None, cfg.soft_words_files)
        }
        # Entries are matched as written (lowercased) against the URL without `-` and `.`, as
        # in DCLM, so an entry holding one of those characters can never match.
        subwords = sorted(
            {
                w.lower()
                for w in _load(
                    "strict_subwords.txt" if default else None, cfg.strict_subwords_files
                )
            },
            key=len,
            reverse=True,
        )
        self.strict_re = re.compile("|".join(map(re.escape, subwords))) if subwords else None
        self._loaded = True

    def score_url(self, url: str | None) -> dict[str, object]:
        """All score values of one URL (None values where a check could not run)."""
        out: dict[str, object] = dict.fromkeys(self.score_columns)
        out["url_missing"] = url is None or not url.strip()
        if out["url_missing"]:
            return out
        assert url is not None
        host = parse_host(url)
        out["url_malformed"] = host is None
        if host is None:
            return out
        domains = parent_domains(host)
        out["url_blocked_domain"] = any(d in self.blocked_domains for d in domains)
        out["url_blocked_url"] = bool(self.blocked_urls) and any(
            p in self.blocked_urls for p in url_prefixes(url)
        )
        out["url_curated"] = any(d in self.curated for d in domains)
        out["url_strict_subword"] = bool(self.strict_re and self.strict_re.search(strict_form(url)))
        tokens = url_tokens(url)
        out["url_hard_word"] = not tokens.isdisjoint(self.hard_words)
        out["url_soft_word_count"] = len(tokens & self.soft_words)
        return out

    def score(self, batch: pa.Table) -> pa.Table:
        self.setup()
        urls = column_as_list(batch, URL) if URL in batch.column_names else [None] * batch.num_rows
        rows = [self.score_url(u) for u in urls]
        types = {
            col: pa.int32() if col == "url_soft_word_count" else pa.bool_()
            for col in self.score_columns
        }
        return with_columns(batch, columns_from_rows(rows, types))

    def keep(self, batch: pa.Table) -> pa.Array:
        cfg: UrlFilterConfig = self.config  # type: ignore[assignment]

        def flag(col: str) -> np.ndarray:
            return np.array([bool(v) for v in column_as_list(batch, col)], dtype=bool)

        soft = np.array(
            [v or 0 for v in column_as_list(batch, "url_soft_word_count")], dtype=np.int64
        )
        missing = flag("url_missing")
        checks = [
            (missing & (cfg.missing_url == "reject"), "url_missing"),
            (flag("url_malformed"), "url_malformed"),
            (flag("url_blocked_domain"), "url_blocked_domain"),
            (flag("url_blocked_url"), "url_blocked_url"),
            (flag("url_curated") & cfg.exclude_curated, "url_curated_source"),
            (flag("url_strict_subword"), "url_banned_subword"),
            (flag("url_hard_word"), "url_banned_word"),
            (soft >= cfg.soft_word_threshold, "url_soft_banned_words"),
        ]
        return reasons_from_checks(batch.num_rows, checks)
