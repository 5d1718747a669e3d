"""`classifier`: a model's score per document, kept above (or below) a threshold.

`score` writes the score column named by `column` (float32: the probability of `label` for a
fastText model; the transformers backend's score for a Hugging Face model directory), so several
classifiers can run in one recipe. `keep` rejects `<column>_below_threshold` (keep: above, the
score < threshold) or `<column>_above_threshold` (keep: below, the score > threshold); both are
threshold keys, re-applied to cached scores in ablations. Nothing is downloaded: a model path
that is missing or unusable is a config error before any work.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from pipeline.classify.fasttext_backend import label_name
from pipeline.classify.preprocess import Preprocess
from pipeline.errors import ConfigError
from pipeline.schema import TEXT
from pipeline.stages.base import (
    Stage,
    StageConfig,
    TextStageConfig,
    column_as_list,
    reasons_from_checks,
)
from pipeline.stages.contract import Contract, Resources
from pipeline.stages.fasttext_check import check_fasttext_model
from pipeline.text.batch import with_columns

DEFAULT_COLUMN = "classifier_score"
_COLUMN = re.compile(r"[a-z_][a-z0-9_]*")
# Columns of the documents themselves, never a score column.
_RESERVED = frozenset({"id", "url", "source", "fetch_date", "html", "text", "metadata", "reason"})


class Scorer(Protocol):
    """What a backend offers the stage (FastTextScorer, TransformersScorer)."""

    def load(self) -> None: ...

    def predict(self, texts: list[str]) -> np.ndarray: ...


class ClassifierConfig(TextStageConfig):
    """A model file or directory, the label it scores, the score column and the cut."""

    stage: Literal["classifier"] = "classifier"
    # fasttext: a .bin/.ftz model; transformers: a local Hugging Face model directory.
    backend: Literal["fasttext", "transformers"] = "fasttext"
    # The model on disk (nothing is downloaded); unset or missing: a config error before any work.
    model_path: str | None = None
    # The label whose probability is the score (`hq` or `__label__hq`; any label of a
    # multi-class model; transformers: a label of the model's config, unused by a regressor).
    label: str = "hq"
    # Name of the score column (several classifiers in one recipe need different names).
    column: str = DEFAULT_COLUMN
    # The cut: documents on the wrong side of it (see keep) are rejected. null: score only,
    # reject nothing (e.g. for a later global cut on the column, such as a top fraction).
    threshold: float | None = 0.5
    # above: keep score >= threshold (quality), else `<column>_below_threshold`; below: keep
    # score <= threshold (toxicity, NSFW), else `<column>_above_threshold`.
    keep: Literal["above", "below"] = "above"
    # fastText: lowercase the text before scoring (as the model was trained; see MODEL.json).
    lowercase: bool = False
    # fastText: runs of whitespace as one space before scoring (as the model was trained).
    collapse_whitespace: bool = False
    # transformers: tokens per document (longer ones truncated).
    max_length: int = Field(default=512, gt=0)
    # transformers: documents per forward pass.
    batch_size: int = Field(default=32, gt=0)
    # transformers: auto (a GPU when the cluster has one), cpu, or cuda (a GPU reserved).
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("column")
    @classmethod
    def _column_name(cls, value: str) -> str:
        if not _COLUMN.fullmatch(value) or value in _RESERVED:
            raise ValueError(
                f"{value!r} must be lowercase letters, digits and _ and not one of the "
                f"document's own columns ({', '.join(sorted(_RESERVED))})"
            )
        return value

    def preprocess(self) -> Preprocess:
        return Preprocess(lowercase=self.lowercase, collapse_whitespace=self.collapse_whitespace)


def scorer_for(config: ClassifierConfig) -> Scorer:
    """The backend's scorer for a config (the transformers one imported only when used)."""
    if config.model_path is None:
        raise ConfigError("classifier.model_path is not set")
    path = str(Path(config.model_path).expanduser())
    if config.backend == "transformers":
        from pipeline.classify.transformers_backend import TransformersScorer

        return TransformersScorer(
            path, config.label, config.max_length, config.batch_size, config.device
        )
    from pipeline.classify.fasttext_backend import FastTextScorer

    return FastTextScorer(path, config.label, config.preprocess())


def _trained_preprocess(model_path: Path) -> dict[str, Any] | None:
    """The preprocessing recorded in the MODEL.json beside a fastText model, if there is one."""
    from pipeline.classify.train import metadata_path

    try:
        meta = json.loads(Path(metadata_path(str(model_path))).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = meta.get("preprocess") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else None


class ClassifierStage(Stage):
    """Annotate a model's score; reject documents on the wrong side of the threshold."""

    config_cls: ClassVar[type[StageConfig]] = ClassifierConfig
    threshold_keys: ClassVar[frozenset[str]] = frozenset({"threshold", "keep"})
    requires: ClassVar[tuple[str, ...]] = (TEXT,)
    score_columns: ClassVar[tuple[str, ...]] = (DEFAULT_COLUMN,)

    config: ClassifierConfig

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__(config)
        self._scorer: Scorer | None = None

    @classmethod
    def contract(cls, config: ClassifierConfig) -> Contract:  # type: ignore[override]
        """The score column the config names; a GPU reserved when device is cuda."""
        gpus: float | None = 0.0
        if config.backend == "transformers":
            gpus = {"cuda": 1.0, "auto": None}.get(config.device, 0.0)
        base = super().contract(config)
        return replace(base, produces=(config.column,), resources=Resources(gpus=gpus))

    @classmethod
    def verify(cls, config: ClassifierConfig, key: str, runtime: Any) -> None:  # type: ignore[override]
        """The model exists and fits the backend; a fastText model loads, has `label`, and
        was trained with the preprocessing configured here (its MODEL.json, when present)."""
        if config.model_path is None:
            raise ConfigError(
                f"{key}.model_path: not set; name a {config.backend} model on disk "
                "(`curate train-classifier` writes a fastText one)"
            )
        path = Path(config.model_path).expanduser()
        if config.backend == "transformers":
            try:  # the directory, its head and `label`, max_length: all without torch
                scorer_for(config).check()  # type: ignore[attr-defined]
            except ConfigError as e:
                raise ConfigError(f"{key}: {e}") from None
            return
        if not path.is_file():
            raise ConfigError(
                f"{key}.model_path: {config.model_path}: no such file; train one with "
                "`curate train-classifier` or point it at a fastText model on disk"
            )
        labels = check_fasttext_model(str(path), f"{key}.model_path")
        if not labels:
            raise ConfigError(
                f"{key}.model_path: {config.model_path}: not a fastText classifier (no labels: "
                "word vectors?); nothing was run"
            )
        if label_name(config.label) not in labels:
            raise ConfigError(
                f"{key}.label: {config.label!r} is not a label of {config.model_path} "
                f"(its labels: {', '.join(labels[:20])})"
            )
        trained = _trained_preprocess(path)
        here = config.preprocess().to_dict()
        if trained is not None and trained != here:
            raise ConfigError(
                f"{key}: the model was trained with preprocessing {trained} (its MODEL.json) "
                f"but the stage sets {here}; set the same keys"
            )

    def __getstate__(self) -> dict[str, Any]:
        # Shipped to Ray workers as config only; each worker loads (or reuses) its own model.
        return {**self.__dict__, "_scorer": None}

    def setup(self) -> None:
        """Load the model (fastText's once per process; later stages reuse it)."""
        if self._scorer is None:
            scorer = scorer_for(self.config)
            scorer.load()
            self._scorer = scorer

    def score(self, batch: pa.Table) -> pa.Table:
        if self._scorer is None:
            self.setup()
        texts = [t or "" for t in column_as_list(batch, TEXT)]
        scores = np.asarray(self._scorer.predict(texts), dtype=np.float32)  # type: ignore[union-attr]
        return with_columns(batch, {self.config.column: pa.array(scores, pa.float32())})

    def keep(self, batch: pa.Table) -> pa.Array:
        column = self.config.column
        if self.config.threshold is None:
            return reasons_from_checks(batch.num_rows, [])
        scores = batch.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
        if self.config.keep == "above":
            failed, reason = ~(scores >= self.config.threshold), f"{column}_below_threshold"
        else:
            failed, reason = ~(scores <= self.config.threshold), f"{column}_above_threshold"
        return reasons_from_checks(batch.num_rows, [(failed, reason)])
