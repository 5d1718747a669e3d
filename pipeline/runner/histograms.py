"""Score histograms of kept vs rejected documents, per stage and thresholded score column.

Counted during the run by the kernel at the cost of one `searchsorted` per column and batch.
Every column uses the same fixed bins, chosen before any data is seen, so the histograms of
units merge by adding counts and Ray and local runs agree exactly: bins of width 0.02 on [-1, 1]
(fractions, probabilities; 1 in the last of them), then 20 log-spaced bins per decade out to +-1e9 (counts, lengths);
values beyond land in the outermost bins. Rejected means rejected by the stage, by any of its rules.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.text.batch import numeric_column

LINEAR_BINS = 50  # bins on [0, 1] (mirrored on [-1, 0])
PER_DECADE = 20  # log-spaced bins per decade beyond 1
DECADES = 9  # out to 1e9


def _edges() -> np.ndarray:
    linear = np.linspace(0.0, 1.0, LINEAR_BINS + 1)
    log = 10.0 ** (np.arange(1, PER_DECADE * DECADES + 1) / PER_DECADE)
    positive = np.array([float(f"{x:.6g}") for x in np.concatenate([linear, log])])
    return np.concatenate([-positive[:0:-1], positive])


EDGES = _edges()  # ascending, symmetric about 0; bin i is [EDGES[i], EDGES[i + 1])


def bin_index(values: np.ndarray) -> np.ndarray:
    """The bin of each (finite) value; values beyond the outermost edges go to the end bins.
    Exactly 1 (a full fraction) counts in [0.98, 1], not in [1, 1.12), and -1 likewise."""
    idx = np.searchsorted(EDGES, values, side="right") - 1
    idx[values == 1.0] -= 1
    return np.clip(idx, 0, len(EDGES) - 2)


@dataclass
class ScoreHistogram:
    """One column's counts: per bin, kept and rejected documents; `missing` counts null scores."""

    thresholds: dict[str, float]  # config key -> value the stage compares the column with
    kept: Counter[int] = field(default_factory=Counter)
    rejected: Counter[int] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)  # "kept" / "rejected"

    def observe(self, values: np.ndarray, kept_mask: np.ndarray) -> None:
        """Count one batch's scores (`kept_mask`: the stage kept the document). The finite
        values are binned once, then counted per side."""
        finite = np.isfinite(values)
        binned = bin_index(values[finite])
        kept_finite = kept_mask[finite]
        for side, counts in ((kept_finite, self.kept), (~kept_finite, self.rejected)):
            if side.any():
                per_bin = np.bincount(binned[side])
                nonzero = np.flatnonzero(per_bin)
                counts.update(dict(zip(nonzero.tolist(), per_bin[nonzero].tolist(), strict=True)))
        absent = len(values) - len(binned)
        if absent:
            missing_kept = int((kept_mask & ~finite).sum())
            if missing_kept:
                self.missing["kept"] += missing_kept
            if absent - missing_kept:
                self.missing["rejected"] += absent - missing_kept

    def add(self, other: ScoreHistogram) -> None:
        self.kept.update(other.kept)
        self.rejected.update(other.rejected)
        self.missing.update(other.missing)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the thresholds, the non-empty bins in ascending order, the null counts."""
        return {
            "thresholds": dict(self.thresholds),
            "bins": [
                {
                    "lo": float(EDGES[i]),
                    "hi": float(EDGES[i + 1]),
                    "kept": self.kept.get(i, 0),
                    "rejected": self.rejected.get(i, 0),
                }
                for i in sorted(set(self.kept) | set(self.rejected))
            ],
            "missing": {
                "kept": self.missing.get("kept", 0),
                "rejected": self.missing.get("rejected", 0),
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreHistogram:
        h = cls(dict(d["thresholds"]))
        for b in d["bins"]:
            i = int(np.searchsorted(EDGES, b["lo"]))
            if b["kept"]:
                h.kept[i] = b["kept"]
            if b["rejected"]:
                h.rejected[i] = b["rejected"]
        h.missing.update({k: v for k, v in d["missing"].items() if v})
        return h


def observe_scores(
    histograms: dict[str, ScoreHistogram],
    stage: Any,
    table: pa.Table,
    kept_mask: np.ndarray,
) -> None:
    """Count the scored rows of one batch into the stage's histograms, one per numeric score
    column that its config thresholds (`score_thresholds`)."""
    if table.num_rows == 0:
        return
    schema = table.schema
    for column, thresholds in stage.score_thresholds(stage.config).items():
        at = schema.get_field_index(column)
        if at < 0 or not is_numeric(schema.field(at).type):
            continue
        if column not in histograms:
            histograms[column] = ScoreHistogram(thresholds)
        histograms[column].observe(numeric_column(table, column), kept_mask)


def is_numeric(t: pa.DataType) -> bool:
    """Integer or floating point (not boolean, not a string)."""
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def dense_counts(h: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A stored histogram (`to_dict`) over consecutive bins, from the first to the last that
    holds a count or a threshold: (edges, kept, rejected); None when it has neither."""
    idx = [int(np.searchsorted(EDGES, b["lo"])) for b in h["bins"]]
    marks = bin_index(np.array(list(h["thresholds"].values()), dtype=np.float64)).tolist()
    if not idx and not marks:
        return None
    lo, hi = min(idx + marks), max(idx + marks)
    kept, rejected = np.zeros(hi - lo + 1, np.int64), np.zeros(hi - lo + 1, np.int64)
    for i, b in zip(idx, h["bins"], strict=True):
        kept[i - lo], rejected[i - lo] = b["kept"], b["rejected"]
    return EDGES[lo : hi + 2], kept, rejected


def threshold_text(h: dict[str, Any]) -> str:
    """'key value, ...' of a stored histogram's thresholds, or 'no threshold'."""
    return ", ".join(f"{k} {v:g}" for k, v in h["thresholds"].items()) or "no threshold"
