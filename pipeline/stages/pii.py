"""`pii`: finds personal data and secrets, and masks them, rejects their documents or marks them.

Kinds (each switchable in `kinds`): e-mail addresses, public IPv4 and IPv6 addresses (as FineWeb:
private, loopback, link-local, documentation and reserved ranges stay), phone numbers
(libphonenumber, valid in international form or in one of `regions`), payment card numbers
(Luhn + issuer prefix and length), IBANs (mod 97 + country length) and secrets with a published
shape (private-key blocks, cloud and API tokens); pipeline/pii has one module per kind and says
what each takes and leaves. `mode: mask` rewrites `text` in score() (as line_corrections does),
so the `max_items` threshold re-applies to stored scores; `reject` drops documents with more
than `max_items` items (default: any); `annotate` leaves the text and adds `pii_spans`.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import Field, field_validator

from pipeline.config_model import ConfigModel
from pipeline.pii.detect import KINDS, find_all
from pipeline.pii.found import Found
from pipeline.pii.phone import check_regions
from pipeline.schema import TEXT
from pipeline.stages.base import (
    Stage,
    StageConfig,
    TextStageConfig,
    column_as_list,
    reasons_from_checks,
)
from pipeline.stages.contract import Contract
from pipeline.text.batch import above, numeric_column, with_columns

Kind = Literal["email", "ipv4", "ipv6", "phone", "card", "iban", "secret"]
PSEUDONYM = "pseudonym"
# The tag of each kind: the default replacement `<TAG>` and the pseudonym `<TAG_xxxxxxxxxx>`.
TAGS: dict[str, str] = {
    "email": "EMAIL",
    "ipv4": "IP",
    "ipv6": "IP",
    "phone": "PHONE",
    "card": "CARD",
    "iban": "IBAN",
    "secret": "SECRET",
}
ITEMS = "pii_items"
SPANS = "pii_spans"
SPAN_TYPE = pa.list_(pa.struct([("kind", pa.string()), ("start", pa.int64()), ("end", pa.int64())]))


def count_column(kind: str) -> str:
    """The score column counting items of `kind`."""
    return f"pii_{kind}"


class PiiReplacement(ConfigModel):
    """What replaces an item of each kind in `mask` mode: a fixed string, or `pseudonym`."""

    email: str = "<EMAIL>"  # replaces an e-mail address
    ipv4: str = "<IP>"  # replaces a public IPv4 address
    ipv6: str = "<IP>"  # replaces a public IPv6 address
    phone: str = "<PHONE>"  # replaces a phone number
    card: str = "<CARD>"  # replaces a payment card number
    iban: str = "<IBAN>"  # replaces an IBAN
    secret: str = "<SECRET>"  # replaces a private key or access token


class PiiConfig(TextStageConfig):
    """Kinds, mode, replacements; `max_items` is the only threshold."""

    stage: Literal["pii"] = "pii"
    # mask: replace items in `text`; reject: drop documents holding items; annotate: keep the
    # text, add `pii_spans` (kind, start, end of each item, in characters).
    mode: Literal["mask", "reject", "annotate"] = "mask"
    # The kinds looked for (email, ipv4, ipv6, phone, card, iban, secret).
    kinds: tuple[Kind, ...] = ("email", "ipv4", "ipv6", "phone", "card", "iban", "secret")
    # Only public IP addresses are items (private, loopback, documentation... ranges stay).
    public_ip_only: bool = True
    # Regions (ISO 3166 alpha-2) whose national phone formats count; `+` numbers always do.
    regions: tuple[str, ...] = ("US", "GB", "DE", "FR")
    # Per kind: the fixed replacement string, or `pseudonym` for `<TAG_` + keyed hash + `>`.
    replacement: PiiReplacement = PiiReplacement()
    # Key of the pseudonym hash (BLAKE2b): the same value gets the same pseudonym on every
    # worker and run with one key; change it to unlink pseudonyms from another corpus's.
    pseudonym_key: str = Field(default="curate-pii", min_length=1, max_length=64)
    # Threshold key: reject documents with more items than this (None: no limit in mask and
    # annotate modes, 0 in reject mode).
    max_items: int | None = Field(default=None, ge=0)

    @field_validator("regions")
    @classmethod
    def _known_regions(cls, regions: tuple[str, ...]) -> tuple[str, ...]:
        return check_regions(regions)

    @field_validator("kinds")
    @classmethod
    def _some_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        if not kinds:
            raise ValueError("at least one kind (email, ipv4, ipv6, phone, card, iban, secret)")
        return tuple(dict.fromkeys(kinds))

    @field_validator("pseudonym_key")
    @classmethod
    def _key_bytes(cls, key: str) -> str:
        if len(key.encode("utf-8")) > 64:
            raise ValueError("at most 64 bytes in UTF-8 (the BLAKE2b key size)")
        return key


def pseudonym(kind: str, value: str, key: str) -> str:
    """`<TAG_xxxxxxxxxx>`: 40 bits of a BLAKE2b hash of the normalised value keyed by `key`."""
    digest = hashlib.blake2b(
        f"{TAGS[kind]}\0{value}".encode(), key=key.encode("utf-8"), digest_size=5
    )
    return f"<{TAGS[kind]}_{digest.hexdigest()}>"


class PiiStage(Stage):
    """Counts PII items per kind; masks them in `text`, or rejects, or annotates."""

    config_cls: ClassVar[type[StageConfig]] = PiiConfig
    threshold_keys: ClassVar[frozenset[str]] = frozenset({"max_items"})
    score_columns: ClassVar[tuple[str, ...]] = (
        TEXT,
        *(count_column(k) for k in PiiConfig().kinds),
        ITEMS,
    )

    config: PiiConfig

    @classmethod
    def contract(cls, config: PiiConfig) -> Contract:  # type: ignore[override]
        """A count column per kind looked for; `text` rewritten only in mask mode."""
        columns = (*(count_column(k) for k in config.kinds), ITEMS)
        if config.mode == "mask":
            columns = (TEXT, *columns)
        elif config.mode == "annotate":
            columns = (*columns, SPANS)
        return replace(super().contract(config), produces=columns)

    def __init__(self, config: StageConfig) -> None:
        super().__init__(config)
        cfg = self.config
        self._kinds = frozenset(cfg.kinds)
        self._replacement = {k: getattr(cfg.replacement, k) for k in cfg.kinds}

    def find(self, text: str) -> list[Found]:
        """The items of the configured kinds in `text`, in order, non-overlapping."""
        cfg = self.config
        return find_all(text, self._kinds, cfg.regions, cfg.public_ip_only)

    def _substitute(self, item: Found) -> str:
        fixed = self._replacement[item.kind]
        if fixed == PSEUDONYM:
            return pseudonym(item.kind, item.value, self.config.pseudonym_key)
        return fixed

    def mask(self, text: str, items: list[Found]) -> str:
        """`text` with each of `items` (sorted, non-overlapping) replaced."""
        if not items:
            return text
        parts: list[str] = []
        pos = 0
        for item in items:
            parts += (text[pos : item.start], self._substitute(item))
            pos = item.end
        parts.append(text[pos:])
        return "".join(parts)

    def score(self, batch: pa.Table) -> pa.Table:
        cfg = self.config
        texts = column_as_list(batch, TEXT)
        counts: dict[str, list[int]] = {k: [] for k in cfg.kinds}
        totals: list[int] = []
        out_text: list[str | None] = []
        spans: list[list[dict[str, object]]] = []
        for text in texts:
            items = self.find(text) if text else []
            for kind in cfg.kinds:
                counts[kind].append(sum(1 for i in items if i.kind == kind))
            totals.append(len(items))
            if cfg.mode == "mask":
                out_text.append(self.mask(text, items) if items else text)
            elif cfg.mode == "annotate":
                spans.append([{"kind": i.kind, "start": i.start, "end": i.end} for i in items])
        columns: dict[str, pa.Array] = {}
        if cfg.mode == "mask":
            columns[TEXT] = pa.array(out_text, type=pa.string())
        for kind in cfg.kinds:
            columns[count_column(kind)] = pa.array(counts[kind], type=pa.int64())
        columns[ITEMS] = pa.array(totals, type=pa.int64())
        if cfg.mode == "annotate":
            columns[SPANS] = pa.array(spans, type=SPAN_TYPE)
        return with_columns(batch, columns)

    def keep(self, batch: pa.Table) -> pa.Array:
        cfg = self.config
        limit = cfg.max_items
        if limit is None and cfg.mode == "reject":
            limit = 0
        items = numeric_column(batch, ITEMS)
        return reasons_from_checks(batch.num_rows, [(above(items, limit), "pii_items")])


assert set(TAGS) == set(KINDS)
