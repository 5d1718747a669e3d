"""Word, line and paragraph splitting shared by the quality stages (Gopher, FineWeb, C4, ...).

`split_words` returns word tokens with punctuation as separate tokens, so callers can count
"non-symbol" words (tokens with at least one character that is not punctuation or a symbol) the
way the reference filters do. Space-delimited text goes through one regex (an ASCII fast path and
a Unicode path whose `\\w` includes combining marks, so Devanagari or Thai vowel signs stay inside
their word). Runs of scripts written without spaces are handed to a segmenter:

- Thai: nlpO3 (PyThaiNLP's Rust `newmm`, ~12x faster than PyThaiNLP's Python one) with
  PyThaiNLP's word list (CC0, bundled in pipeline/resources/thai, so PyThaiNLP itself is not
  needed); falls back to grapheme clusters.
- Chinese: rjieba (jieba-rs, same dictionary and output as jieba, ~30x faster).
- Japanese: MeCab through fugashi with the IPAdic dictionary (`ipadic` wheel, 51 MB); falls back
  to runs of one script (kanji / hiragana / katakana).
- Lao, Khmer, Myanmar: no light segmenter exists; each grapheme cluster is a token.

All segmenters are offline (their dictionaries ship inside the wheels) and are loaded lazily, once
per process, the first time a document needs them.
"""

from __future__ import annotations

import gzip
import logging
import re
import tempfile
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from itertools import compress
from pathlib import Path

import regex

log = logging.getLogger(__name__)

# PyThaiNLP's Thai word list (CC0), see pipeline/resources/thai/README.md.
THAI_WORDS = "resources/thai/words_th.txt.gz"
# Package files read at run time (in the ablation cache key: pipeline.ablate.fingerprint).
RESOURCE_FILES = (THAI_WORDS,)

# A word is a run of word characters, optionally joined by an inner apostrophe, hyphen or period
# ("don't", "e-mail", "3.5", "www.example.com"); any other run of non-space characters is one
# punctuation/symbol token ("...", "),", "“").
_ASCII_TOKENS = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]+", re.ASCII)
# `regex`'s \w covers letters, combining marks, digits and connector punctuation.
_UNICODE_TOKENS = regex.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]+")

# Scripts written without spaces between words. `ー` (prolonged sound mark) and `〆` are Common.
_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}ー〆"
_THAI = r"\p{Thai}"
_OTHER_UNSPACED = r"\p{Lao}\p{Khmer}\p{Myanmar}"
# Cheap pre-check (a superset of the blocks above, plain `re` is ~5x faster than `regex` here).
_UNSPACED_HINT = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff\u2e80-\u2fdf\u3005-\u30ff"
    "\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua9e0-\ua9ff\uaa60-\uaa7f\uf900-\ufaff"
    "\uff66-\uff9f\U00016fe0-\U0001b16f\U0001f200\U00020000-\U0003ffff]"
)
_UNSPACED_RUN = regex.compile(
    f"(?P<cjk>[{_CJK}]+)|(?P<thai>[{_THAI}]+)|(?P<other>[{_OTHER_UNSPACED}]+)"
)
_GRAPHEMES = regex.compile(r"\X")
_KANA = regex.compile(r"[\p{Hiragana}\p{Katakana}ー]")
_SCRIPT_RUNS_JA = regex.compile(r"\p{Han}+|[\p{Hiragana}]+|[\p{Katakana}ー]+|.")

# Token made only of punctuation (P*), symbols (S*) or invisible/control characters (C*: format
# characters such as U+200B, private-use icon glyphs); such tokens are not "words".
_NON_SYMBOL_CHAR = regex.compile(r"[^\p{P}\p{S}\p{C}]")

_PARAGRAPHS = re.compile(r"\n{2,}")

_ZH_CODES = frozenset({"zh", "zho", "chi", "cmn", "yue", "wuu", "lzh", "gan", "hak", "nan"})
_JA_CODES = frozenset({"ja", "jpn"})
# Languages whose running text has no spaces between words.
UNSPACED_LANGS = frozenset(
    {*_ZH_CODES, *_JA_CODES, "th", "tha", "lo", "lao", "km", "khm", "my", "mya", "bur"}
)


def base_lang(lang: str | None) -> str | None:
    """Normalise a language label ("__label__zh", "zh-Hans", "zho_Hans", "JA") to its base code."""
    if not lang:
        return None
    code = lang.removeprefix("__label__").strip().lower()
    code = re.split(r"[-_]", code, maxsplit=1)[0]
    return code or None


def split_words(text: str, lang: str | None = None) -> list[str]:
    """Word and punctuation tokens of `text`, no whitespace; `lang` (ISO code) picks segmenters.

    With `lang=None` the script decides: runs of Han/kana/Thai/Lao/Khmer/Myanmar characters are
    segmented (Han runs as Japanese when the text contains kana, else as Chinese).
    """
    return split_words_spacing(text, lang)[0]


def split_words_spacing(text: str, lang: str | None = None) -> tuple[list[str], bool]:
    """`split_words` plus whether the text separates words by spaces (see `is_spaced`)."""
    code = base_lang(lang)
    if text.isascii():
        return _ASCII_TOKENS.findall(text), code not in UNSPACED_LANGS
    if _UNSPACED_HINT.search(text) is None:
        return _UNICODE_TOKENS.findall(text), code not in UNSPACED_LANGS
    words, found = _split_mixed(text, code)
    return words, code not in UNSPACED_LANGS if code is not None else not found


def split_words_by_line(
    text: str, lang: str | None = None, known: Mapping[str, list[str]] | None = None
) -> tuple[list[list[str]], bool] | None:
    """`split_words_spacing` per `\\n`-separated line (the text's tokens are the lines' in order:
    no token holds a newline), or None for a text with a script written without spaces (its
    segmenters see the whole text). `known`: tokens of lines split before, reused by the line's
    string (a line's tokens depend on nothing else)."""
    if not text.isascii() and _UNSPACED_HINT.search(text) is not None:
        return None
    lines = text.split("\n")
    if known:
        by_line = [known.get(line) or _line_tokens(line) for line in lines]
    else:
        by_line = list(map(_line_tokens, lines))
    return by_line, base_lang(lang) not in UNSPACED_LANGS


def _line_tokens(line: str) -> list[str]:
    """Tokens of one line of a text without unspaced scripts: an ASCII line takes the ASCII
    pattern (on ASCII the Unicode one's tokens, found faster)."""
    return _ASCII_TOKENS.findall(line) if line.isascii() else _UNICODE_TOKENS.findall(line)


def _split_mixed(text: str, lang: str | None) -> tuple[list[str], bool]:
    """Regex-tokenise the spaced parts and segment each run of an unspaced script.

    Returns the tokens and whether any unspaced run was found.
    """
    if lang in _JA_CODES:
        cjk = _segment_ja
    elif lang in _ZH_CODES:
        cjk = _segment_zh
    else:
        cjk = _segment_ja if _KANA.search(text) else _segment_zh
    out: list[str] = []
    pos = 0
    for m in _UNSPACED_RUN.finditer(text):
        if m.start() > pos:
            out.extend(_UNICODE_TOKENS.findall(text, pos, m.start()))
        run = m.group()
        kind = m.lastgroup
        if kind == "cjk":
            out.extend(cjk(run))
        elif kind == "thai":
            out.extend(_thai_segmenter()(run))
        else:
            out.extend(_GRAPHEMES.findall(run))
        pos = m.end()
    if pos == 0:
        return _UNICODE_TOKENS.findall(text), False
    if pos < len(text):
        out.extend(_UNICODE_TOKENS.findall(text, pos))
    return out, True


def is_spaced(text: str, lang: str | None = None) -> bool:
    """True when words in `text` are separated by spaces (decides n-gram string lengths).

    A known language decides (zh, ja, th, lo, km, my are unspaced); otherwise the script does.
    """
    code = base_lang(lang)
    if code is not None:
        return code not in UNSPACED_LANGS
    if text.isascii() or _UNSPACED_HINT.search(text) is None:
        return True
    return _UNSPACED_RUN.search(text) is None


def is_punctuation_token(tok: str) -> bool:
    """True when every character of `tok` is punctuation, a symbol or an invisible control."""
    return _NON_SYMBOL_CHAR.search(tok) is None


def non_symbol_words(words: list[str]) -> list[str]:
    """The tokens that contain at least one character that is not punctuation or a symbol."""
    return list(compress(words, non_symbol_mask(words)))


def non_symbol_mask(words: list[str]) -> list[bool]:
    """Per token: does it contain a character that is not punctuation or a symbol?"""
    search = _NON_SYMBOL_CHAR.search
    # A letter or digit first settles it without the regex (the common case).
    return [w[:1].isalnum() or search(w) is not None for w in words]


def split_lines(text: str) -> list[str]:
    """Lines of `text`: split on runs of newlines (`\\n+`) after stripping outer whitespace.

    The stripped text neither starts nor ends with a newline, so its `\\n+` parts are exactly
    the non-empty parts of `str.split("\\n")` (which is several times faster than the regex)."""
    return list(filter(None, text.strip().split("\n")))


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs of `text`: split on two or more newlines (`\\n{2,}`) after stripping."""
    text = text.strip()
    if "\n\n" not in text:  # one paragraph (or none): no need for the regex
        return [text] if text else []
    return _PARAGRAPHS.split(text)


# --- segmenters (lazy, one per process) ---------------------------------------------------------


def _segment_zh(run: str) -> list[str]:
    return _zh_segmenter()(run)


def _segment_ja(run: str) -> list[str]:
    return _ja_segmenter()(run)


@cache
def _zh_segmenter() -> Callable[[str], list[str]]:
    """rjieba (jieba-rs) with its HMM for unknown words; per-character Han as the fallback."""
    try:
        import rjieba
    except ImportError:
        log.warning("rjieba is not installed; Chinese is split per character")
        return list
    return rjieba.cut


@cache
def _ja_segmenter() -> Callable[[str], list[str]]:
    """MeCab (fugashi + IPAdic) in wakati mode; single-script runs as the fallback."""
    try:
        import fugashi
        import ipadic
    except ImportError:
        log.warning("fugashi/ipadic are not installed; Japanese is split into script runs")
        return _SCRIPT_RUNS_JA.findall
    tagger = fugashi.GenericTagger(f"{ipadic.MECAB_ARGS} -Owakati")
    return lambda run: tagger.parse(run).split()


@cache
def _thai_segmenter() -> Callable[[str], list[str]]:
    """nlpO3 newmm over the bundled PyThaiNLP word list; grapheme clusters as the fallback."""
    try:
        import nlpo3
    except ImportError:
        log.warning("nlpo3 is not installed; Thai is split into grapheme clusters")
        return _GRAPHEMES.findall
    name = "pipeline_th"
    # nlpO3 loads a dictionary from a plain-text path; the package ships it gzipped.
    words = resources.files("pipeline").joinpath(THAI_WORDS).read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "words_th.txt"
        path.write_bytes(gzip.decompress(words))
        message, ok = nlpo3.load_dict(str(path), name)
    if not ok:
        raise RuntimeError(f"could not load the Thai word list: {message}")
    return lambda run: nlpo3.segment(run, name, safe=True)
