"""The tiktoken encoder of a byte-level BPE (pipeline/stats/tiktoken_bpe.py): a 50k BPE trained on
shared text passes the static check and gives the tokenizers library's ids on the shared texts of
75 languages, the extraction gold texts and hand-made edge cases; shards are byte-identical
between encoders; tokenizers that break a condition of the check are detected and fall back; the
check's verdict is cached per file content, and `auto` skips it on inputs below its break-even."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import InputError
from pipeline.stats import tiktoken_bpe, tiktoken_verdict
from pipeline.stats.tiktoken_bpe import GPT2_PATTERN, TiktokenPlan, byte_decoder, tiktoken_plan
from pipeline.stats.tiktoken_verdict import checked_plan
from pipeline.stats.tokenizers import file_hash, load_tokenizer
from pipeline.tokenize.run import TokenizeOptions, tokenize
from tests.tiny_models import train_byte_level_bpe

EOS = "<|endoftext|>"
EDGE_CASES = [
    "",
    "Hello world's it's THEY'RE we'll I'd you've I'm 'S 's's '''",
    "emoji 😀👍🏽 👨‍👩‍👧‍👦 🇩🇪 flags and ZWJ‍joiners",
    "中文文本，日本語のテキスト、한국어 텍스트。ﾊﾝｶｸ",
    "   leading and trailing   ",
    "tabs\t\tand\n\n\nnewlines \r\n\u00a0nbsp \u3000 ideographic \u2028 \u0085 \u200b",
    "a" * 3000,
    " " * 1000 + "x",
    "\n" * 500,
    "!!!!????" * 200,
    "1234567890" * 50 + " 3.14159 -42 ٣٤٥ ⅷ",
    f"text{EOS}more {EOS}{EOS} <|endoftext| |endoftext|>",
    "combining e\u0301 a\u0308 \u0915\u094d\u0937 مرحبا שלום Ελληνικά Привет",
    "\ufffd\ufeff\x00\x01\x7f control \U0010fffd \U000e0001",
]


@pytest.fixture(scope="module")
def bpe50k(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The benchmark's tokenizer: 50,000 ids trained on the DCLM and extraction gold texts."""
    texts = [json.loads(x)["text"] for x in (shared_data / "quality/dclm-agreement.jsonl").open()]
    for name in ("scrapinghub", "cleaneval"):
        path = shared_data / f"extraction/{name}.gold.jsonl"
        texts += [json.loads(x)["gold"] for x in path.open()]
    path = tmp_path_factory.mktemp("bpe50k") / "tokenizer.json"
    return train_byte_level_bpe(path, texts, 50_000, [EOS])


def both(path: Path, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each text's ids with tiktoken and with the tokenizers library."""
    fast, slow = load_tokenizer(str(path), "tiktoken"), load_tokenizer(str(path), "tokenizers")
    out = []
    for tok in (fast, slow):
        flat, sizes = tok.encode_ids(texts)  # type: ignore[attr-defined]
        out.append(np.split(flat, np.cumsum(sizes)[:-1]))
    return out[0], out[1]


def test_trained_bpe_passes_the_check(bpe50k: Path) -> None:
    plan = tiktoken_plan(bpe50k)
    assert isinstance(plan, TiktokenPlan)
    assert len(plan.ranks) == 49_999 and plan.specials == {EOS: 0}
    assert load_tokenizer(str(bpe50k)).info["encoder"].startswith("tiktoken ")
    assert load_tokenizer(str(bpe50k), "tokenizers").info["encoder"].startswith("tokenizers ")


def test_same_ids_on_75_languages(bpe50k: Path, shared_data: Path) -> None:
    files = sorted((shared_data / "langid" / "lingua-sentences").glob("*.txt"))
    assert len(files) == 75
    texts = [f.read_text(encoding="utf-8") for f in files]
    texts += [line for f in files[:10] for line in f.read_text(encoding="utf-8").splitlines()]
    fast, slow = both(bpe50k, texts)
    assert sum(a.size for a in slow) > 500_000
    assert [a.tolist() for a in fast] == [a.tolist() for a in slow]


def test_same_ids_on_edge_cases(bpe50k: Path) -> None:
    fast, slow = both(bpe50k, EDGE_CASES)
    assert [a.tolist() for a in fast] == [a.tolist() for a in slow]
    assert slow[0].size == 0
    assert fast[11].tolist().count(0) == 3  # the EOS written in a text is the special token


def test_whitespace_run_past_tiktoken_regex_stack(bpe50k: Path) -> None:
    """tiktoken's regex engine raises on a whitespace run of ~1M characters (`\\s+(?!\\S)`
    backtracks); that text is encoded by the tokenizers library instead, the others by tiktoken."""
    texts = ["a b", " " * 1_200_000 + "x", "c d"]
    fast = load_tokenizer(str(bpe50k), "tiktoken")
    with pytest.raises(ValueError, match="Max stack size exceeded"):
        fast.fast.encode_to_numpy(texts[1])  # type: ignore[attr-defined]
    got, want = both(bpe50k, texts)
    assert [a.tolist() for a in got] == [a.tolist() for a in want]
    # 1,199,999 spaces: 37,499 tokens of 32 and one of 31; then " x"
    assert want[1].size == 37_501


@pytest.mark.slow
def test_same_ids_on_gold_texts(bpe50k: Path, shared_data: Path) -> None:
    """The 920 extraction gold texts (12 MB): 6.5 CPU-s with tokenizers, 0.8 with tiktoken."""
    texts = []
    for name in ("scrapinghub", "cleaneval"):
        path = shared_data / f"extraction/{name}.gold.jsonl"
        texts += [json.loads(x)["gold"] for x in path.open()]
    fast, slow = both(bpe50k, texts)
    assert len(texts) == 920 and sum(a.size for a in slow) > 2_000_000
    assert [a.tolist() for a in fast] == [a.tolist() for a in slow]


def test_shards_byte_identical_between_encoders(bpe50k: Path, tmp_path: Path) -> None:
    """Through the command, with a lone surrogate escape in the JSONL (the reader repairs it
    before any encoder sees it)."""
    src = tmp_path / "in"
    src.mkdir()
    lines = [json.dumps({"id": str(i), "text": t}) for i, t in enumerate(EDGE_CASES) if t]
    lines.append('{"id": "s", "text": "x\\ud800y \\ud83d\\ude00"}')
    (src / "docs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    files = []
    for encoder in ("tiktoken", "tokenizers"):
        out = tmp_path / encoder
        summary = tokenize(
            TokenizeOptions(
                inputs=(str(src),),
                tokenizer=str(bpe50k),
                output=str(out),
                format="megatron",
                eos_token=EOS,
                encoder=encoder,
                executor="local",
            )
        )
        assert summary["tokenizer"]["encoder"].startswith(encoder)
        assert summary["documents"] == len(lines)
        files.append({p.name: p.read_bytes() for p in sorted(out.glob("tokens-*"))})
    assert files[0] == files[1] and len(files[0]) == 2


FLAGS = {"single_word": False, "lstrip": False, "rstrip": False}
BYTE_LEVEL = {
    "type": "ByteLevel",
    "add_prefix_space": False,
    "trim_offsets": True,
    "use_regex": True,
}


def byte_level_json(merges: list[tuple[str, str]], ids: dict[str, int] | None = None) -> dict:
    alphabet = sorted(byte_decoder(), key=byte_decoder().__getitem__)
    vocab = {c: i for i, c in enumerate(alphabet)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab.update(ids or {})
    return {
        "version": "1.0",
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": BYTE_LEVEL,
        "post_processor": None,
        "decoder": BYTE_LEVEL,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [list(m) for m in merges],
        },
    }


def save(tmp_path: Path, config: dict[str, Any], name: str = "tokenizer.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def test_token_reached_by_an_unlisted_merge_falls_back(tmp_path: Path) -> None:
    """`abc` is made by (ab, c) but `bc` merges first, so on its own it ends as [a, bc], whose
    join `abc` tiktoken would take (it merges any adjacent pair that makes a token)."""
    path = save(tmp_path, byte_level_json([("b", "c"), ("a", "b"), ("ab", "c")]))
    why = tiktoken_plan(path)
    assert why == "token 'abc' does not come out whole from the merges (T)"
    tok = load_tokenizer(str(path))
    assert tok.info["encoder"].startswith("tokenizers") and tok.info["encoder_fallback"] == why
    flat, _ = tok.encode_ids(["xabc"])  # type: ignore[attr-defined]
    vocab = tok.tokenizer.get_vocab()  # type: ignore[attr-defined]
    assert flat.tolist() == [vocab["x"], vocab["a"], vocab["bc"]]
    import tiktoken

    wrong = tiktoken.Encoding(
        "x", pat_str=GPT2_PATTERN, mergeable_ranks=_ranks(vocab), special_tokens={}
    )
    assert wrong.encode("xabc") == [vocab["x"], vocab["abc"]]  # what the check prevents


def _ranks(vocab: dict[str, int]) -> dict[bytes, int]:
    return {bytes(byte_decoder()[c] for c in t): i for t, i in vocab.items()}


def test_ids_out_of_merge_order_fall_back(tmp_path: Path) -> None:
    """(a, b) merges before (b, c) but `bc` has the lower id: tiktoken would merge `bc` first."""
    config = byte_level_json([("a", "b"), ("b", "c"), ("ab", "c")], {"ab": 257, "bc": 256})
    path = save(tmp_path, config)
    assert tiktoken_plan(path) == "token 'ab' (id 257) is merged before a token of a lower id (O)"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"normalizer": {"type": "NFC"}}, "normalizer NFC (tiktoken has none)"),
        (
            {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True}},
            "ByteLevel pre-tokenizer adds a prefix space",
        ),
        ({"pre_tokenizer": {"type": "Whitespace"}}, "pre-tokenizer Whitespace"),
        ({"model.dropout": 0.1}, "BPE dropout 0.1"),
        ({"model.continuing_subword_prefix": "##"}, "BPE continuing_subword_prefix '##'"),
        (
            {"post_processor": {"type": "Sequence", "processors": [{"type": "Custom"}]}},
            "post-processor Custom",
        ),
        ({"added": [("<s>", False), ("<s>x", False)]}, "added tokens '<s>' and '<s>x' overlap"),
        ({"added": [("<a|", False), ("|b>", False)]}, "added tokens '<a|' and '|b>' overlap"),
        ({"added": [("<t>", True)]}, "added token '<t>' has lstrip"),
        ({"added": [("ab", False)]}, "merge 'ab' 'c' joins or makes a token outside"),
        ({"model.vocab+": {"xyz": 400}}, "token 'xyz' is made by no merge"),
        ({"model.vocab-": "\u0100"}, "1 of the 256 single bytes are not tokens (e.g. byte 0)"),
    ],
)
def test_rule_breakers_are_named(tmp_path: Path, change: dict[str, Any], reason: str) -> None:
    config = byte_level_json([("a", "b"), ("ab", "c")])
    for key, value in change.items():
        if key == "added":
            config["added_tokens"] = [
                {"id": 500 + i, "content": t, "special": True, "normalized": False}
                | FLAGS
                | {"lstrip": strip}
                for i, (t, strip) in enumerate(value)
            ]
        elif key.startswith("model."):
            name = key[6:].rstrip("+-")
            target = config["model"]
            if key.endswith("+"):
                target[name] = (
                    target[name] + value if isinstance(value, list) else target[name] | value
                )
            elif key.endswith("-"):
                target[name] = {k: v for k, v in target[name].items() if k != value}
            else:
                target[name] = value
        else:
            config[key] = value
    why = tiktoken_plan(save(tmp_path, config))
    assert isinstance(why, str) and why.startswith(reason)


def test_hand_made_equivalent_tokenizer_passes(tmp_path: Path) -> None:
    """Two added tokens, a Sequence of passive post-processors, ids in merge order."""
    config = byte_level_json([("a", "b"), ("ab", "c"), ("Ġ", "abc")])
    config["added_tokens"] = [
        {"id": 300 + i, "content": t, "special": True, "normalized": False, **FLAGS}
        for i, t in enumerate(["<s>", "</s>"])
    ]
    config["post_processor"] = {"type": "Sequence", "processors": [BYTE_LEVEL]}
    path = save(tmp_path, config)
    plan = tiktoken_plan(path)
    # the tokenizers library numbers added tokens outside the vocabulary itself: its ids count
    assert isinstance(plan, TiktokenPlan) and plan.specials == {"<s>": 259, "</s>": 260}
    fast, slow = both(path, ["<s>abc abc abcabc</s>", "ab abcab c"])
    assert [a.tolist() for a in fast] == [a.tolist() for a in slow]


def test_token_made_by_two_merges_passes(tmp_path: Path) -> None:
    """`abc` listed as (ab, c) and, after `Ġabc`, as (a, bc): on its own it ends with (ab, c),
    the only pair that can ever stand before it, so its rank is (ab, c)'s (taking (a, bc)'s
    would put `abc` after `Ġabc` and fail the order) and tiktoken's single rank for it is safe."""
    merges = [("a", "b"), ("b", "c"), ("ab", "c"), ("Ġ", "abc"), ("a", "bc")]
    path = save(tmp_path, byte_level_json(merges))
    assert isinstance(tiktoken_plan(path), TiktokenPlan)
    texts = ["abc bc abcbc aabcc abcabc", "cab bca abab bcbc", " abc  abc"]
    fast, slow = both(path, texts)
    assert [a.tolist() for a in fast] == [a.tolist() for a in slow]
    assert slow[0].tolist()[:1] == [258]  # abc


def test_tiktoken_on_a_failing_tokenizer_exits_2(tmp_path: Path, capsys: Any) -> None:
    path = save(tmp_path, byte_level_json([("b", "c"), ("a", "b"), ("ab", "c")]))
    src = tmp_path / "docs.jsonl"
    src.write_text('{"id": "1", "text": "abc"}\n', encoding="utf-8")
    out = tmp_path / "out"
    argv = ["tokenize", str(src), "--tokenizer", str(path), "--output", str(out)]
    code = main([*argv, "--format", "nanogpt", "--encoder", "tiktoken", "--executor", "local"])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert f"tiktoken is not exact for {path}:" in err
    assert "token 'abc' does not come out whole from the merges (T)" in err
    with pytest.raises(InputError, match="does not come out whole"):
        load_tokenizer(str(path), "tiktoken")


# ---------------------------------------------------------------------------------------------
# The check's verdict, cached per file content, and `--encoder auto` on inputs below its
# break-even (stats/tiktoken_verdict.py).


@pytest.fixture
def verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty verdict cache of this test's own (directory and in-process memo); its folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(tiktoken_verdict, "_memo", {})
    return tmp_path / "xdg" / "curate" / tiktoken_verdict.VERDICT_DIR


def _forbidden(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the check ran again")


def test_the_verdict_is_cached_per_file_content(
    bpe50k: Path, verdicts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first check stores its verdict under the file's content hash; a later process
    (empty memo) builds the same plan from it without checking the merges (T, O) again."""
    from tokenizers import Tokenizer

    loaded, digest = Tokenizer.from_file(str(bpe50k)), file_hash(bpe50k)
    plan, how = checked_plan(bpe50k, loaded, digest)
    assert how == "run" and isinstance(plan, TiktokenPlan) and len(plan.ranks) == 49_999
    (stored,) = verdicts.iterdir()
    assert stored.name == f"{digest}-{tiktoken_verdict.check_version()}.json"
    assert json.loads(stored.read_text())["why"] is None
    monkeypatch.setattr(tiktoken_verdict, "_memo", {})
    monkeypatch.setattr(tiktoken_bpe, "_merge_problem", _forbidden)
    assert checked_plan(bpe50k, loaded, digest) == (plan, "cached")


def test_a_failed_verdict_is_cached_and_an_edit_misses(
    tmp_path: Path, verdicts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why tiktoken is not exact comes back from the cache, also for a copy of the file under
    another name; an edited file, a corrupt cache file or an unwritable cache means a check."""
    path = save(tmp_path, byte_level_json([("b", "c"), ("a", "b"), ("ab", "c")]))
    why = "token 'abc' does not come out whole from the merges (T)"
    assert checked_plan(path, None, file_hash(path)) == (why, "run")
    monkeypatch.setattr(tiktoken_verdict, "_memo", {})
    with monkeypatch.context() as m:
        m.setattr(tiktoken_verdict, "tiktoken_plan", _forbidden)
        copy = save(tmp_path, byte_level_json([("b", "c"), ("a", "b"), ("ab", "c")]), "copy.json")
        assert checked_plan(copy, None, file_hash(copy)) == (why, "cached")
        assert load_tokenizer(str(copy)).info["encoder_fallback"] == why
    fixed = save(tmp_path, byte_level_json([("a", "b"), ("b", "c"), ("ab", "c")]), "fixed.json")
    plan, how = checked_plan(fixed, None, file_hash(fixed))
    assert how == "run" and isinstance(plan, TiktokenPlan)
    # A corrupt cache file is a miss, and the check's verdict replaces it.
    stored = Path(tiktoken_verdict.verdict_path(file_hash(path)))
    stored.write_text("{not json")
    monkeypatch.setattr(tiktoken_verdict, "_memo", {})
    assert checked_plan(path, None, file_hash(path)) == (why, "run")
    assert json.loads(stored.read_text())["why"] == why
    # A cache directory that cannot be made: the check runs, nothing is written, no error.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache directory would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(tiktoken_verdict, "_memo", {})
    assert checked_plan(path, None, file_hash(path)) == (why, "run")
    assert blocker.is_file()


def test_break_even_grows_with_the_vocabulary() -> None:
    """The input size below which `auto` skips the check: what the check costs over what
    tiktoken saves per byte; a size not known is taken as large."""
    even = tiktoken_verdict.break_even_bytes
    assert 2_000_000 < even(50_000) < 2_500_000 and 200_000 < even(2_000) < 300_000
    limit = even(50_000)
    why = tiktoken_verdict.small_input(50_000, [limit // 2, limit // 2 - 1])
    assert why is not None and why.startswith(f"input of {limit - 1:,} bytes < {limit:,}")
    assert tiktoken_verdict.small_input(50_000, [limit // 2, limit // 2]) is None
    assert tiktoken_verdict.small_input(50_000, [10, None]) is None
    endless = itertools.repeat(limit // 4)  # stops at the limit: a large input is not all stat'ed
    assert tiktoken_verdict.small_input(50_000, endless) is None


def _dclm_input(shared_data: Path, path: Path, size: int) -> Path:
    """A JSONL file of at least `size` bytes: the DCLM documents in order, cycled."""
    docs = (shared_data / "quality" / "dclm-agreement.jsonl").read_text().splitlines()
    with path.open("w", encoding="utf-8") as f:
        written = 0
        for i, line in enumerate(itertools.cycle(docs)):
            text = json.loads(line)["text"]
            written += f.write(json.dumps({"id": str(i), "text": text}) + "\n")
            if written >= size:
                break
    return path


def test_auto_skips_the_check_below_the_break_even(
    bpe50k: Path, shared_data: Path, tmp_path: Path, verdicts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three documents: the tokenizers library, no check run (summary.json says why), the same
    shards as tiktoken's, and the same choice with the verdict cached. Past the break-even:
    tiktoken, from the cached verdict in a later process (no check)."""
    bpe = tmp_path / "bpe50k.json"  # a path of its own: no tokenizer loaded earlier in-process
    bpe.write_bytes(bpe50k.read_bytes())
    tiny = _dclm_input(shared_data, tmp_path / "tiny.jsonl", 1)
    tiny.write_text(tiny.read_text() * 3)

    def run(inp: Path, encoder: str, tok: Path = bpe) -> tuple[dict[str, Any], dict[str, bytes]]:
        out = tmp_path / f"out-{inp.stem}-{encoder}-{len(list(tmp_path.iterdir()))}"
        opts = TokenizeOptions((str(inp),), str(tok), str(out), encoder=encoder, executor="local")
        summary = tokenize(opts)
        return summary["tokenizer"], {p.name: p.read_bytes() for p in out.glob("tokens-*")}

    info, shards = run(tiny, "auto")
    limit = tiktoken_verdict.break_even_bytes(50_000)
    assert info["encoder"].startswith("tokenizers") and info["encoder_fallback"] == (
        f"input of {tiny.stat().st_size:,} bytes < {limit:,} (break-even for 50,000 ids): the "
        "exactness check would cost more than tiktoken saves"
    )
    assert not verdicts.exists()  # the check did not run
    checked, same = run(tiny, "tiktoken")
    assert checked["encoder"].startswith("tiktoken") and len(list(verdicts.iterdir())) == 1
    assert same == shards and len(shards) == 2
    assert run(tiny, "auto") == (info, shards)  # a cached verdict changes nothing here
    big = _dclm_input(shared_data, tmp_path / "big.jsonl", limit)
    later = tmp_path / "later" / "bpe50k.json"  # as a later process would load it
    later.parent.mkdir()
    later.write_bytes(bpe.read_bytes())
    monkeypatch.setattr(tiktoken_bpe, "_merge_problem", _forbidden)
    info, fast = run(big, "auto", later)
    assert info["encoder"].startswith("tiktoken") and "encoder_fallback" not in info
    assert run(big, "tokenizers")[1] == fast


@pytest.mark.slow
def test_regex_engines_agree_on_every_code_point() -> None:
    """tokenizers runs the pre-tokenizer regex on Oniguruma, tiktoken on fancy-regex, each with
    its own Unicode tables: for every code point, whether it joins a letter, a digit, a
    punctuation mark and a space before it (one piece or two) is the same in both. Planes 0-3
    and 14 (planes 4-13 hold no character yet, 15-16 are private use)."""
    import tiktoken
    from tokenizers import pre_tokenizers

    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    probes = ("a", "0", "!", " ")
    cps = [c for c in [*range(0x40000), *range(0xE0000, 0xF0000)] if not 0xD800 <= c <= 0xDFFF]
    singles = {bytes([b]): b for b in range(256)}
    differ = []
    for start in range(0, len(cps), 1 << 16):
        block = cps[start : start + (1 << 16)]
        ranks = dict(singles)
        for c in block:
            for p in probes:
                ranks.setdefault((p + chr(c)).encode(), len(ranks))
        enc = tiktoken.Encoding(
            "probe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={}
        )
        for c in block:  # a probe is a token: one token exactly when the regex keeps it whole
            theirs = tuple(len(enc.encode_ordinary(p + chr(c))) == 1 for p in probes)
            ours = tuple(len(pre.pre_tokenize_str(p + chr(c))) == 1 for p in probes)
            if theirs != ours:
                differ.append(c)
    assert differ == []
