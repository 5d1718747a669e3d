"""fastText scoring: the probability of one label per document, for the `classifier` stage.

A model is loaded once per process (`load_model`, shared with `langid`) and each document is
classified whole as one line (pipeline.classify.preprocess), with every label's probability
asked for so that the chosen label's is read even when it is not the top one.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.classify.preprocess import Preprocess

LABEL_PREFIX = "__label__"


@cache
def load_model(path: str) -> Any:
    """A fastText model, loaded once per process and shared by every stage instance."""
    import fasttext

    return fasttext.load_model(path)


def predict_line(model: Any, line: str, k: int) -> list[tuple[float, str]]:
    """The binding's (probability, label) pairs for one line ending in a newline, top `k`
    (-1: all); a line with lone surrogates, which the binding rejects, is read with them
    replaced."""
    predict = model.f.predict  # the binding: (text, k, threshold, on_unicode_error)
    try:
        return predict(line, k, 0.0, "replace")
    except (UnicodeError, TypeError):
        return predict(line.encode("utf-8", "replace").decode("utf-8"), k, 0.0, "replace")


def label_name(label: str) -> str:
    """A label as fastText spells it: `hq` -> `__label__hq` (a prefixed label is kept)."""
    return label if label.startswith(LABEL_PREFIX) else LABEL_PREFIX + label


class FastTextScorer:
    """Scores texts with a fastText classifier: the probability of `label`, float32 in [0, 1]."""

    def __init__(self, model_path: str, label: str, preprocess: Preprocess | None = None) -> None:
        self.model_path = str(Path(model_path).expanduser())
        self.label = label_name(label)
        self.preprocess = preprocess or Preprocess()
        self._model: Any = None

    def load(self) -> None:
        """Load the model (cached per process); ValueError when `label` is not one of its own."""
        model = load_model(self.model_path)
        labels = list(model.get_labels())
        if self.label not in labels:
            raise ValueError(
                f"label {self.label!r} is not a label of {self.model_path} "
                f"(its labels: {', '.join(labels[:20])})"
            )
        self._model = model

    def predict(self, texts: list[str]) -> np.ndarray:
        """The probability of `label` for each text (None reads as the empty text)."""
        if self._model is None:
            self.load()
        return label_probabilities(self._model, texts, self.label, self.preprocess)


def label_probabilities(
    model: Any, texts: list[str], label: str, preprocess: Preprocess
) -> np.ndarray:
    """float32 probability of `label` (fastText's spelling) for each text, read as one line."""
    out = np.zeros(len(texts), dtype=np.float32)
    line_of = preprocess.line
    for i, text in enumerate(texts):
        for prob, name in predict_line(model, line_of(text) + "\n", -1):
            if name == label:
                out[i] = min(max(prob, 0.0), 1.0)
                break
    return out
