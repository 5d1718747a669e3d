"""`caps_filter`: reject documents written mostly in capital letters (shouting, spam banners).

The whole stage contract in one file: a config class naming the stage and its keys, a Stage
subclass declaring what it needs and makes, `score` adding a measurement column and `keep`
turning it into rejection reasons. The runner counts, isolates failures and writes shards.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import Field

from pipeline.schema import TEXT
from pipeline.stages.base import Stage, StageConfig, TextStageConfig, reasons_from_checks

CAPS_RATIO = "caps_ratio"
REASON = "caps_filter_shouting"


class CapsFilterConfig(TextStageConfig):
    """The threshold on the share of capitals among a document's cased letters."""

    stage: Literal["caps_filter"] = "caps_filter"
    # Reject a document whose cased letters are more than this share capitals.
    max_caps_ratio: float = Field(default=0.5, ge=0, le=1)
    # Documents with fewer cased letters than this are kept unjudged (a list of acronyms).
    min_letters: int = Field(default=20, ge=0)


def caps_ratio(text: str | None, min_letters: int) -> float | None:
    """Capitals / cased letters of `text`; None when it has fewer than `min_letters`."""
    upper = lower = 0
    for ch in text or "":
        if ch.isupper():
            upper += 1
        elif ch.islower():
            lower += 1
    letters = upper + lower
    return upper / letters if letters and letters >= min_letters else None


class CapsFilterStage(Stage):
    """Reject documents whose cased letters are mostly capitals (`caps_filter_shouting`)."""

    config_cls: ClassVar[type[StageConfig]] = CapsFilterConfig
    requires: ClassVar[tuple[str, ...]] = (TEXT,)
    score_columns: ClassVar[tuple[str, ...]] = (CAPS_RATIO,)
    threshold_keys: ClassVar[frozenset[str]] = frozenset({"max_caps_ratio"})
    # Histogram CAPS_RATIO in stats.json and report.html, the threshold drawn.
    column_thresholds: ClassVar[dict[str, tuple[str, ...]]] = {CAPS_RATIO: ("max_caps_ratio",)}

    config: CapsFilterConfig

    def score(self, batch: pa.Table) -> pa.Table:
        texts = batch.column(TEXT).to_pylist()
        ratios = [caps_ratio(t, self.config.min_letters) for t in texts]
        return batch.append_column(CAPS_RATIO, pa.array(ratios, pa.float64()))

    def keep(self, batch: pa.Table) -> pa.Array:
        ratios = batch.column(CAPS_RATIO).to_pylist()
        limit = self.config.max_caps_ratio
        shouting = [r is not None and r > limit for r in ratios]
        return reasons_from_checks(batch.num_rows, [(shouting, REASON)])
