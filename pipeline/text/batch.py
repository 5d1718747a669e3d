"""Column access shared by the text-quality stages: the texts and the language of each row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.schema import LANG, TEXT


def texts_and_langs(batch: pa.Table) -> tuple[list[str], list[str | None]]:
    """`text` as Python strings (null -> "") and `lang` (all None when the column is absent)."""
    texts = [t or "" for t in batch.column(TEXT).to_pylist()]
    has_lang = LANG in batch.column_names
    langs = batch.column(LANG).to_pylist() if has_lang else [None] * len(texts)
    return texts, langs


def numeric_column(batch: pa.Table, name: str) -> np.ndarray:
    """A score column as a float array (nulls become NaN, which passes every threshold check)."""
    return batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def above(values: np.ndarray, threshold: float | None) -> np.ndarray:
    """Mask of values strictly above `threshold`; all False when the rule is disabled (None)."""
    if threshold is None:
        return np.zeros(len(values), dtype=bool)
    return values > threshold


def below(values: np.ndarray, threshold: float | None) -> np.ndarray:
    """Mask of values strictly below `threshold`; all False when the rule is disabled (None)."""
    if threshold is None:
        return np.zeros(len(values), dtype=bool)
    return values < threshold


def columns_from_rows(
    rows: list[dict], types: dict[str, pa.DataType], prefix: str = ""
) -> dict[str, pa.Array]:
    """Per-document measurement dicts -> one typed Arrow column per key (named prefix + key)."""
    return {prefix + k: pa.array([r[k] for r in rows], type=t) for k, t in types.items()}


def with_columns(batch: pa.Table, columns: dict[str, pa.Array | np.ndarray]) -> pa.Table:
    """`batch` with each named column appended, or replaced when it is already there."""
    for name, values in columns.items():
        array = values if isinstance(values, pa.Array) else pa.array(values)
        index = batch.schema.get_field_index(name)
        if index >= 0:
            batch = batch.set_column(index, name, array)
        else:
            batch = batch.append_column(name, array)
    return batch
