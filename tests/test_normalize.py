"""The one normalisation vocabulary: old switch spellings, engine checks, and the same preset
reached from every stage's config keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.dedup.exact import ExactDedupConfig, value_hashes
from pipeline.dedup.lines import LineDedupConfig, line_hashes
from pipeline.dedup.minhash import MinHashDedupConfig
from pipeline.text.normalize import PRESETS, TextNorm, normalize, normalize_lines


def test_original_switch_spellings_are_accepted() -> None:
    old = ExactDedupConfig(
        normalization={"strip_accents": True, "digits": True, "punctuation": True}
    ).normalization
    assert old == TextNorm(strip_diacritics=True, digits="zero", punctuation="remove")
    assert TextNorm(digits=False, punctuation=False) == PRESETS["none"]
    assert normalize("Ça coûte 12,50 €!", old) == "Ca coute 0000 €"


def test_switches_of_the_other_engine_are_refused() -> None:
    with pytest.raises(ValidationError, match="need whitespace: tokens"):
        TextNorm(digits="number")
    with pytest.raises(ValidationError, match="need whitespace: tokens"):
        LineDedupConfig(normalization={"punctuation": "split"})
    with pytest.raises(ValidationError, match="does not combine with nfc, digits: zero"):
        TextNorm(whitespace="tokens", nfc=True, digits="zero")
    with pytest.raises(ValidationError):
        ExactDedupConfig(normalization="fineweb-ish")


def test_minhash_keys_are_the_fineweb_preset() -> None:
    assert MinHashDedupConfig().normalization() == PRESETS["fineweb"]
    raw = MinHashDedupConfig(remove_punctuation=False, normalize_digits=False).normalization()
    assert raw == TextNorm(lowercase=True, strip_diacritics=True, whitespace="tokens")
    assert normalize("Naïve, 3.14!", raw) == "naive, 3.14!"


def test_tokens_engine_in_exact_and_line_dedup() -> None:
    a, b = "Héllo,  WORLD 3.14!", "hello world 7"
    assert normalize(a, "fineweb") == normalize(b, "fineweb") == "hello world 0"
    h = value_hashes([a, b, "!!!"], "fineweb")
    assert h[0] == h[1] is not None and h[2] is None  # no token: never a duplicate
    assert normalize_lines("Héllo, World\n\n 42 ", "fineweb") == ["hello world", "", "0"]
    numbers, hashes = line_hashes("Héllo, World\nhello world!", "fineweb")
    assert numbers == [0, 1] and hashes[0] == hashes[1]


def test_token_tables_come_from_the_disk_cache_equal_to_a_fresh_build(tmp_path, monkeypatch):
    """The per-code-point tables are cached on disk (built once per machine, not per process);
    the cached arrays equal a fresh build, and an unreadable cache is rebuilt."""
    import numpy as np

    from pipeline.text import normalize as norm

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    args = (True, True, False, True)
    path = norm.tables_cache_path(*args)
    assert path.startswith(f"{tmp_path}/curate/normalize-tables-") and path.endswith("-1101.npz")
    norm._tables.cache_clear()
    built = norm._tables(*args)
    assert (tmp_path / "curate").is_dir() and norm.tables_cache_path(*args) == path
    norm._tables.cache_clear()
    loaded = norm._tables(*args)
    fresh = norm._build_tables(*args)
    for a, b, c in zip(
        (built.cls, built.fold, built.unspaced),
        (loaded.cls, loaded.fold, loaded.unspaced),
        fresh,
        strict=True,
    ):
        assert np.array_equal(a, b) and np.array_equal(b, c) and not b.flags.writeable
    assert loaded.fold[ord("A")] == ord("a") and loaded.cls[ord("7")] == norm.DIGIT
    with open(path, "wb") as f:
        f.write(b"not an npz")
    norm._tables.cache_clear()
    assert np.array_equal(norm._tables(*args).fold, fresh[1])
    norm._tables.cache_clear()
