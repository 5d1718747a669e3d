"""Tiny Hugging Face models made in a test's directory, no download: classifiers with random
weights (seeded) and a WordPiece tokenizer of a fixed vocabulary (the `transformers` classifier
backend's tests), and byte-level BPE tokenizers trained on given texts (tokenize, stats)."""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

# The tokenizer's whole words (other ASCII words are split into characters).
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "education science history mathematics lesson students teacher school",
    "buy now cheap price discount offer click here free shipping",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_classifier(
    directory: Path,
    num_labels: int = 1,
    labels: list[str] | None = None,
    *,
    seed: int = 0,
    max_positions: int = 128,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
) -> Path:
    """A BERT sequence classifier with random weights saved in `directory` (created).

    num_labels 1 makes a regression head (FineWeb-Edu's layout); more makes a single-label
    classification head whose classes are `labels` (default LABEL_0 ...). The sizes make a
    BERT-base-sized model too (hidden_size 768, layers 12, heads 12, max_positions 512)."""
    import torch
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # A fixed vocabulary (the same ids every time): the special tokens, the corpus's words, and
    # each ASCII letter, digit and punctuation mark alone and as a word-continuation piece, so
    # ASCII text tokenizes without [UNK].
    words = sorted({w for line in CORPUS for w in line.split()})
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    pieces = SPECIAL + words + [c for c in chars if c not in words] + [f"##{c}" for c in chars]
    tok = Tokenizer(WordPiece({p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_positions,
    )
    tokenizer.save_pretrained(directory)
    names = labels or [f"LABEL_{i}" for i in range(num_labels)]
    if len(names) != num_labels:
        raise ValueError(f"{len(names)} label names for {num_labels} labels")
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 4,
        max_position_embeddings=max_positions,
        num_labels=num_labels,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        problem_type="regression" if num_labels == 1 else "single_label_classification",
        initializer_range=0.2,  # random scores spread enough to tell documents apart
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).eval().save_pretrained(directory)
    return directory


def train_byte_level_bpe(
    path: Path, texts: Iterable[str], vocab_size: int, special: list[str]
) -> Path:
    """A GPT-2 style byte-level BPE (no prefix space, all 256 bytes, `special` first) trained on
    `texts`, saved as tokenizer.json at `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.save(str(path))
    return path
