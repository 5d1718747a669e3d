"""The `transformers` classifier backend: a local Hugging Face sequence-classification model
directory scores documents, batched, truncated to `max_length` tokens.

Heads (from the model's config.json):
- regression (`problem_type: regression`, or a single output): the output itself is the score,
  e.g. FineWeb-Edu's classifier (a BERT regressor whose output is the 0-5 educational score);
- single-label classification: the softmax probability of the class named by `label` (a name
  from `id2label`, or an index);
- multi-label classification: the sigmoid probability of that class.

Nothing is downloaded: the model is read with `local_files_only` and the hub switched off; a
missing or unloadable directory is a ConfigError naming the path. torch runs on the GPU when
`device` is `cuda` (or `auto` and one is visible), else on as many CPU threads as the process is
allotted (its affinity mask, a cgroup CPU quota, OMP_NUM_THREADS as Ray sets it per worker).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipeline.errors import ConfigError
from pipeline.prune.embed import hf_model_problem

Device = Literal["auto", "cpu", "cuda"]
Head = Literal["regression", "single_label", "multi_label"]
# A tokenizer's vocabulary files; without one, transformers 5 silently builds an empty tokenizer
# that reads every word as [UNK].
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def cpu_allotment() -> int:
    """CPUs this process may use: its affinity mask, capped by the cgroup v2 CPU quota and by
    OMP_NUM_THREADS when set (Ray sets it to a worker's CPUs)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = cpus or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            limit = min(limit, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        limit = min(limit, int(omp))
    return limit


def _head(config: dict[str, Any]) -> tuple[Head, dict[int, str]]:
    """The head kind and the class names of a model's config.json."""
    labels = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    num_labels = int(config.get("num_labels") or len(labels) or 2)
    if not labels:
        labels = {i: f"LABEL_{i}" for i in range(num_labels)}
    problem = config.get("problem_type")
    if problem == "regression" or len(labels) == 1:
        return "regression", labels
    return ("multi_label" if problem == "multi_label_classification" else "single_label"), labels


def _label_index(label: str | int | None, labels: dict[int, str], path: str) -> int:
    """The class `label` names: a name from id2label, else an index (int or digits)."""
    names = ", ".join(f"{i}={n}" for i, n in sorted(labels.items()))
    if label is None:
        raise ConfigError(
            f"classifier label: the model at {path} has {len(labels)} classes ({names}); "
            f"name the one whose probability is the score"
        )
    by_name = {n: i for i, n in labels.items()}
    if isinstance(label, str) and label in by_name:
        return by_name[label]
    text = str(label)
    if text.lstrip("-").isdigit() and int(text) in labels:
        return int(text)
    raise ConfigError(f"classifier label {label!r} is not a class of the model at {path} ({names})")


class TransformersScorer:
    """Scores texts with a local sequence-classification or regression model (float32)."""

    def __init__(
        self,
        model_path: str,
        label: str | int | None = None,
        max_length: int = 512,
        batch_size: int = 32,
        device: Device = "auto",
    ) -> None:
        self.model_path = str(model_path)
        self.label = label
        self.max_length = max_length
        self.batch_size = batch_size
        self.device_name = device
        self.head: Head = "regression"
        self.index = 0
        self._model: Any = None

    def check(self) -> None:
        """The cheap checks, without torch: the directory holds a model, its head and `label`
        agree, `max_length` fits its positions. ConfigError naming the path otherwise."""
        path = Path(self.model_path)
        problem = hf_model_problem(path)
        if problem is not None:
            raise ConfigError(f"classifier model_path {self.model_path}: {problem}")
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise ConfigError(
                f"classifier model_path {self.model_path}: no tokenizer "
                f"({', '.join(TOKENIZER_FILES)})"
            )
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.head, labels = _head(config)
        if self.head != "regression":
            self.index = _label_index(self.label, labels, self.model_path)
        positions = config.get("max_position_embeddings")
        if isinstance(positions, int) and self.max_length > positions:
            raise ConfigError(
                f"classifier max_length {self.max_length} exceeds the {positions} positions of "
                f"the model at {self.model_path}"
            )
        if self.max_length < 2 or self.batch_size < 1:
            raise ConfigError("classifier max_length must be >= 2 and batch_size >= 1")

    def load(self) -> None:
        """Check, then load the tokenizer and the model onto the device (once)."""
        if self._model is not None:
            return
        self.check()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        cuda = torch.cuda.is_available()
        if self.device_name == "cuda" and not cuda:
            raise ConfigError("classifier device is cuda but no CUDA GPU is visible")
        self.device = torch.device("cuda" if cuda and self.device_name != "cpu" else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_allotment())
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                self.model_path, local_files_only=True
            )
        except Exception as exc:  # OSError, ValueError, KeyError ... from a broken directory
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConfigError(
                f"classifier model_path {self.model_path}: cannot load it with transformers "
                f"({type(exc).__name__}: {first[:200]})"
            ) from None
        self._model = model.to(self.device).eval()
        self._torch = torch

    def predict(self, texts: list[str]) -> np.ndarray:
        """One score per text (None counts as empty), float32, in the order given. Texts are
        batched longest first to limit padding; each is cut to `max_length` tokens."""
        self.load()
        torch = self._torch
        cleaned = [t or "" for t in texts]
        order = np.argsort([-len(t) for t in cleaned], kind="stable")
        out = np.empty(len(cleaned), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(cleaned), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self._tokenizer(
                    [cleaned[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self._model(**batch).logits.float()
                if self.head == "regression":
                    scores = logits[:, 0]
                elif self.head == "multi_label":
                    scores = torch.sigmoid(logits[:, self.index])
                else:
                    scores = torch.softmax(logits, dim=-1)[:, self.index]
                out[rows] = scores.cpu().numpy()
        return out
