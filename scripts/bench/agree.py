"""Agreement between the two sides' outputs: kept sets and per-document keep/drop decisions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

KEEP = "keep"


def sets(ours: set[Hashable], theirs: set[Hashable]) -> dict[str, Any]:
    """Sizes of both sets, their overlap and Jaccard similarity."""
    union = ours | theirs
    return {
        "ours": len(ours),
        "datatrove": len(theirs),
        "both": len(ours & theirs),
        "only_ours": len(ours - theirs),
        "only_datatrove": len(theirs - ours),
        "jaccard": round(len(ours & theirs) / len(union), 4) if union else 1.0,
    }


def decisions(
    ours: Mapping[str, str],
    theirs: Mapping[str, str],
    texts: Mapping[str, str] | None = None,
    examples: int = 5,
) -> dict[str, Any]:
    """Compare per-document decisions ('keep' or 'stage:reason') on the documents both saw.

    Returns the keep/drop confusion counts, the most common disagreeing (ours, datatrove)
    decision pairs and a few examples with the start of their text."""
    common = sorted(set(ours) & set(theirs))
    confusion: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    shown = []
    for key in common:
        a, b = ours[key], theirs[key]
        ka, kb = a == KEEP, b == KEEP
        confusion[f"{'keep' if ka else 'drop'}/{'keep' if kb else 'drop'}"] += 1
        if ka != kb:
            pairs[(a, b)] += 1
            if len(shown) < examples:
                text = (texts or {}).get(key, "")
                shown.append({"id": key, "ours": a, "datatrove": b, "text": text[:160]})
    disagree = sum(v for k, v in confusion.items() if k in ("keep/drop", "drop/keep"))
    return {
        "documents": len(common),
        "missing_ours": len(set(theirs) - set(ours)),
        "missing_datatrove": len(set(ours) - set(theirs)),
        "ours_keep_datatrove_keep": confusion["keep/keep"],
        "ours_drop_datatrove_drop": confusion["drop/drop"],
        "ours_keep_datatrove_drop": confusion["keep/drop"],
        "ours_drop_datatrove_keep": confusion["drop/keep"],
        "disagreements": disagree,
        "agreement": round(1 - disagree / len(common), 4) if common else 1.0,
        "top_disagreements": [
            {"ours": a, "datatrove": b, "count": n} for (a, b), n in pairs.most_common(8)
        ],
        "examples": shown,
    }


def read_columns(folder: Path, columns: list[str]) -> list[dict[str, Any]]:
    """Rows (only `columns`) of every Parquet file under `folder` (none if it is missing)."""
    rows: list[dict[str, Any]] = []
    if not folder.exists():
        return rows
    for path in sorted(folder.rglob("*.parquet")):
        table = pq.read_table(path)
        present = [c for c in columns if c in table.column_names]
        rows.extend(table.select(present).to_pylist())
    return rows
