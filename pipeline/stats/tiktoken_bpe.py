"""A `tiktoken` encoder for a Hugging Face byte-level BPE tokenizer.json, built only when a static
check over the whole file proves that both give the same ids for every text.

The two algorithms differ. Hugging Face merges the adjacent pair with the lowest rank among the
pairs listed in `merges` (leftmost first on ties); tiktoken merges any adjacent pair whose bytes
together are a vocabulary token, the lowest id first (leftmost first on ties), and takes a whole
pre-token that is a token at once. A trained BPE has many tokens with unlisted splits (in the
50k BPE of the benchmark 32,884 tokens split into two tokens some way that is not a merge), so
"every split is a merge" is too strong; the check proves instead:

1. *Every multi-byte token t comes out whole when Hugging Face's merges run on t alone* (T).
   While both encoders have done the same merges, two adjacent symbols x, y with x + y = t have
   only been merged inside t's bytes, in the order Hugging Face's merges run on t alone (a merge
   is the lowest-ranked pair of the whole word, so also of t's span). That run ends at [t], so
   from [x, y] it must merge (x, y): every pair that tiktoken could merge is the last merge f(t)
   of t alone, a listed merge; and every listed merge joins into a token. The candidate pairs
   are the same on both sides, and T also makes tiktoken's whole-token shortcut harmless.
2. *Ids in the order of those merges* (O): id(t1) < id(t2) exactly when rank(f(t1)) <
   rank(f(t2)), so both pick the same pair; equal ids are the same token, so the same pair f(t),
   with the same rank, and both take the leftmost.
3. The rest of the pipeline the same: no normalizer, ByteLevel pre-tokenizer with GPT-2's regex
   and no prefix space, all 256 bytes tokens, BPE without dropout, subword prefix/suffix or byte
   fallback, added tokens matched as plain strings (no strip/single-word flags, none
   overlapping another so any matching order finds the same ones, none built by a merge), and a
   post-processor that adds nothing without special tokens. The regex runs on Oniguruma in
   tokenizers and on fancy-regex in tiktoken: tests/test_tiktoken_bpe.py checks that the two
   split every code point alike (tokenizers 0.23.3, tiktoken 0.14.0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

# The ByteLevel pre-tokenizer's regex (tokenizers' byte_level.rs), GPT-2's.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Post-processors that add nothing when encoding with add_special_tokens=False.
PASSIVE_POST = {"ByteLevel", "TemplateProcessing", "RobertaProcessing", "BertProcessing"}


@dataclass(frozen=True)
class TiktokenPlan:
    """What a tiktoken Encoding equal to the tokenizer.json is built from."""

    ranks: dict[bytes, int]  # token bytes -> id (the rank tiktoken merges by)
    specials: dict[str, int]  # added tokens -> id


@cache
def byte_decoder() -> dict[str, int]:
    """The ByteLevel map from its printable characters back to bytes (GPT-2's bytes_to_unicode)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def tiktoken_plan(path: Path, loaded: Any = None, proven: bool = False) -> TiktokenPlan | str:
    """The plan of an exact tiktoken encoder for `path`, or why there is none (one line).
    `loaded`: the file as the tokenizers library loaded it (the authority on added tokens'
    ids: it renumbers those outside the vocabulary). `proven`: this file passed the check
    before (a cached verdict, stats/tiktoken_verdict.py), so conditions T and O, three quarters
    of the cost, are not checked again."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        why = _pipeline_problem(config)
        if why:
            return why
        if loaded is None:
            from tokenizers import Tokenizer

            loaded = Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises a bare Exception
        return f"cannot load {path}: {exc}"
    if getattr(loaded, "encode_special_tokens", False):
        return "added tokens are not split out (encode_special_tokens)"
    model = config["model"]
    vocab: dict[str, int] = model.get("vocab") or {}
    added_tokens = loaded.get_added_tokens_decoder()
    why = _added_problem(added_tokens, vocab)
    if why:
        return why
    added = {a.content: i for i, a in added_tokens.items()}
    plain = {t: i for t, i in vocab.items() if i not in added_tokens}
    strange = set("".join(plain)) - byte_decoder().keys()
    if strange:
        token = next(t for t in plain if strange.intersection(t))
        return f"vocabulary token {token!r} is not byte-level text"
    to_latin1 = str.maketrans({c: chr(b) for c, b in byte_decoder().items()})
    ranks = {t.translate(to_latin1).encode("latin-1"): i for t, i in plain.items()}
    if len(set(ranks.values())) != len(ranks):
        return "two vocabulary tokens share an id"
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        return f"{len(missing)} of the 256 single bytes are not tokens (e.g. byte {missing[0]})"
    why = None if proven else _merge_problem(model, vocab, plain)
    return why or TiktokenPlan(ranks, added)


def _pipeline_problem(config: dict[str, Any]) -> str | None:
    """Why the normalizer, pre-tokenizer, model or post-processor rule tiktoken out, or None."""
    if config.get("normalizer") is not None:
        return f"normalizer {config['normalizer'].get('type')} (tiktoken has none)"
    pre = config.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel":
        return f"pre-tokenizer {pre.get('type')} (tiktoken needs ByteLevel)"
    if not pre.get("use_regex", True):
        return "ByteLevel pre-tokenizer without its regex"
    if pre.get("add_prefix_space", True):
        return "ByteLevel pre-tokenizer adds a prefix space"
    post = config.get("post_processor")
    posts = (
        (post.get("processors") or [] if post.get("type") == "Sequence" else [post]) if post else []
    )
    for p in posts:
        if p.get("type") not in PASSIVE_POST:
            return f"post-processor {p.get('type')}"
    model = config.get("model") or {}
    if model.get("type") != "BPE":
        return f"model {model.get('type')} (tiktoken runs BPE)"
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            return f"BPE {key} {model[key]!r}"
    if model.get("dropout"):
        return f"BPE dropout {model['dropout']}"
    if model.get("byte_fallback"):
        return "BPE byte_fallback"
    return None


def _added_problem(added: dict[int, Any], vocab: dict[str, int]) -> str | None:
    """Added tokens (id -> AddedToken) that tiktoken would match differently (flags, overlaps)
    or whose id the vocabulary gives another token, or None."""
    by_id = {i: t for t, i in vocab.items()}
    for i, a in added.items():
        for flag in ("single_word", "lstrip", "rstrip"):
            if getattr(a, flag):
                return f"added token {a.content!r} has {flag}"
        if by_id.get(i, a.content) != a.content:
            return f"added token {a.content!r} has the id of vocabulary token {by_id[i]!r}"
    texts = [a.content for a in added.values()]
    if not all(texts):
        return "an empty added token"
    for i, x in enumerate(texts):
        for j, y in enumerate(texts):
            if i == j:
                continue
            if x in y or any(x.endswith(y[:k]) for k in range(1, min(len(x), len(y)))):
                return f"added tokens {x!r} and {y!r} overlap"
    return None


def _merge_problem(
    model: dict[str, Any], vocab: dict[str, int], plain: dict[str, int]
) -> str | None:
    """Whether conditions T and O (module docstring) fail over the whole vocabulary; `plain` is
    the vocabulary without added tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    if len(set(merges)) != len(merges):
        return "a merge is listed twice"
    produced: dict[str, list[int]] = {}
    for rank, (a, b) in enumerate(merges):
        produced.setdefault(a + b, []).append(rank)
    odd = next((m for m in merges if m[0] not in plain or m[1] not in plain), None)
    odd = odd or next((m for m in merges if m[0] + m[1] not in plain), None)
    if odd:
        return f"merge {odd[0]!r} {odd[1]!r} joins or makes a token outside the plain vocabulary"
    tokens = [t for t in plain if len(t) > 1]
    unmade = next((t for t in tokens if t not in produced), None)
    if unmade:
        return f"token {unmade!r} is made by no merge"
    # T: Hugging Face's merges alone (no whole-word shortcut) on each token, the tokens joined
    # by a character outside the byte-level alphabet that only separates them.
    bare = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    bare.pre_tokenizer = pre_tokenizers.Split("\x00", "removed")
    got = bare.encode("\x00".join(tokens), add_special_tokens=False).ids
    if got != [plain[t] for t in tokens]:
        for token in tokens:
            if bare.encode(token, add_special_tokens=False).ids != [plain[token]]:
                return f"token {token!r} does not come out whole from the merges (T)"
    # f(t): the one merge making t, else the last merge of the merges run on t alone.
    rank = {m: r for r, m in enumerate(merges)}
    last = {t: r[0] if len(r) == 1 else _last_merge(t, rank) for t, r in produced.items()}
    ids = np.array([vocab[t] for t in last], np.int64)
    by_id = np.argsort(ids)
    order = np.array(list(last.values()), np.int64)[by_id]
    late = np.flatnonzero(np.diff(order) <= 0)
    if late.size:
        token = list(last)[int(by_id[late[0] + 1])]
        return f"token {token!r} (id {vocab[token]}) is merged before a token of a lower id (O)"
    return None


def _last_merge(token: str, rank: dict[tuple[str, str], int]) -> int:
    """Rank of the last merge when Hugging Face's merges run on `token` alone (lowest rank,
    leftmost first, as tokenizers' Word::merge_all)."""
    parts = list(token)
    final = -1
    while len(parts) > 1:
        best = min(
            ((rank[p], i) for i, p in enumerate(zip(parts, parts[1:], strict=False)) if p in rank),
            default=None,
        )
        if best is None:
            break
        final, i = best
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return final


def build_encoding(plan: TiktokenPlan, name: str) -> Any:
    """The tiktoken Encoding of a plan."""
    import tiktoken

    return tiktoken.Encoding(
        name, pat_str=GPT2_PATTERN, mergeable_ranks=plan.ranks, special_tokens=plan.specials
    )
