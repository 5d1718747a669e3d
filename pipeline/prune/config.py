"""Config keys shared by `semdedup` and `d4`: embedder, k-means, SemDeDup, what is persisted.

SemDeDup removes either by `eps` (max similarity to an earlier member > 1 - eps) or by keep ratio
`r_dedup` (the 1 - r_dedup fraction with the highest max similarity; ALGORITHMS.md 1.2 and 1.4).
Setting `eps` alone switches the default ratio off; setting both is an error.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.prune.embed import Device, EmbedderName, EmbedSpec, Pooling
from pipeline.stages.base import StageConfig

DEFAULT_R_DEDUP = 0.75  # D4's default SemDeDup keep ratio


def exclusive_default(data: Any, explicit: str, defaulted: str, stage: str) -> Any:
    """Before validation: when `explicit` is given, the default of `defaulted` is dropped."""
    if isinstance(data, dict) and data.get(explicit) is not None:
        if data.get(defaulted) is not None:
            raise ValueError(f"{stage}: set {explicit} or {defaulted}, not both")
        return {**data, defaulted: None}
    return data


class PruneConfig(StageConfig):
    """Keys common to the embedding-based pruning stages (no `stage` key here)."""

    # Embedder (ALGORITHMS.md 1.1).
    embedder: EmbedderName = "minilm"  # minilm (packaged) | hf (local model_path) | light
    model_path: str | None = None  # local Hugging Face model directory, for embedder: hf
    pooling: Pooling = "mean"  # mean | last (last real token, as SemDeDup on C4)
    max_tokens: int = Field(default=256, gt=0)  # neural embedders truncate to this many tokens
    embed_batch_size: int = Field(default=64, gt=0)  # texts per embedder batch
    device: Device = "auto"  # auto (CUDA when torch sees a GPU) | cpu | cuda
    # GPUs each embedding task reserves on Ray (fractions share a GPU); None = 1 for a neural
    # embedder not on `device: cpu` when the cluster has GPUs, else 0.
    num_gpus: float | None = Field(default=None, ge=0)
    max_chars: int = Field(default=20_000, gt=0)  # texts are cut to this before embedding
    light_features: int = Field(default=2**17, ge=2**8)  # hashed n-gram buckets
    light_ngram_max: int = Field(default=1, ge=1, le=3)  # word n-grams 1..n
    light_dim: int = Field(default=256, ge=2)  # SVD dimensions
    light_fit_docs: int = Field(default=20_000, gt=0)  # sample the idf and SVD are fitted on
    # k-means (spherical, cosine).
    n_clusters: int | None = Field(default=None, gt=0)  # k-means k; None: round(sqrt(documents))
    kmeans_iters: int = Field(default=20, gt=0)  # max k-means iterations
    kmeans_max_train: int = Field(default=200_000, gt=0)  # training sample cap (also 256 per K)
    seed: int = Field(default=0, ge=0)  # seed of sampling, k-means and which_to_keep: random
    # SemDeDup (ALGORITHMS.md 1.2).
    which_to_keep: Literal["hard", "easy", "random"] = "hard"  # hard: farthest from centroid first
    block_size: int = Field(default=2048, gt=0)  # similarity blocks of block_size^2 float64
    eps: float | None = Field(default=None, gt=0, le=1)  # remove max_sim > 1 - eps
    # Or by ratio: keep this fraction, removing the 1 - r_dedup with the highest max_sim.
    r_dedup: float | None = Field(default=DEFAULT_R_DEDUP, gt=0, le=1)
    # Persistence of the embedding: a column, a side file per shard, or nothing.
    embeddings: Literal["column", "side_file", "none"] = "column"
    embeddings_dir: str | None = None  # for embeddings: side_file (fsspec URL or path)

    @model_validator(mode="before")
    @classmethod
    def _eps_or_ratio(cls, data: Any) -> Any:
        return exclusive_default(data, "eps", "r_dedup", "semdedup")

    @model_validator(mode="after")
    def _check(self) -> PruneConfig:
        if self.eps is None and self.r_dedup is None:
            raise ValueError("set eps or r_dedup")
        if (self.embedder == "hf") != (self.model_path is not None):
            raise ValueError("model_path is required with embedder: hf, and only then")
        if (self.embeddings == "side_file") != (self.embeddings_dir is not None):
            raise ValueError("embeddings_dir is required with embeddings: side_file, and only then")
        return self

    def embed_gpus(self) -> float | None:
        """GPUs per embedding task for `GlobalContext.map` (None: one if the cluster has any)."""
        if self.embedder == "light" or self.device == "cpu":
            return self.num_gpus or 0
        return self.num_gpus

    def embed_spec(self, light_model: str | None = None) -> EmbedSpec:
        """The embedder spec of this config (`light_model`: the fitted light model file)."""
        return EmbedSpec(
            kind=self.embedder,
            model_path=self.model_path,
            pooling=self.pooling,
            max_tokens=self.max_tokens,
            batch_size=self.embed_batch_size,
            device=self.device,
            max_chars=self.max_chars,
            light_model=light_model,
        )
