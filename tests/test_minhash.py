"""minhash_dedup: datasketch compatibility, normalisation, banding maths and the stage phases."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipeline.dedup import kernels, lsh
from pipeline.dedup.components import connected_components, representatives
from pipeline.dedup.minhash import (
    CLUSTER_ID,
    CLUSTER_SIZE,
    IS_REPRESENTATIVE,
    REASON_DUPLICATE,
    MinHashDedupConfig,
    MinHashDedupStage,
)
from pipeline.dedup.shingles import ngram_strings, shingle_hashes
from pipeline.dedup.signatures import MinHasher, permutations
from pipeline.stages.global_base import LocalContext, ShardRef
from pipeline.text.normalize import TextNorm, normalize, normalize_batch

HAS_NUMBA = importlib.util.find_spec("numba") is not None

TEXTS = [
    "The quick brown fox jumps over the lazy dog, again and again, in 2024.",
    "Ünïcödé TÉXT — with 3.14 numbers, punctuation!! and «quotes».",
    "short",
    "",
    None,
    "日本語のテキストです。東京は大きい都市です。",
    "这是一个中文句子，我们来看看分词的效果。",
    "สวัสดีครับ ยินดีต้อนรับสู่ประเทศไทย",
    "Привет, мир! Это тест с цифрами 1,000 и 2.5.",
]


def letters(v: int) -> str:
    """A number spelt in letters (digits would all normalise to "0")."""
    out = ""
    while True:
        v, r = divmod(v, 26)
        out += chr(97 + r)
        if not v:
            return out


def base_words(seed: int, n: int = 120) -> list[str]:
    """n random letter-only words, distinct between seeds."""
    rng = np.random.default_rng(seed)
    return [f"{letters(seed)}q{letters(int(v))}" for v in rng.integers(0, 100_000, n)]


# --- datasketch compatibility -------------------------------------------------------------------


@pytest.fixture
def datasketch():
    """datasketch (a test dependency); only its compatibility tests skip without it."""
    return pytest.importorskip("datasketch")


@pytest.mark.parametrize("scheme", ["mersenne", "affine64"])
def test_permutations_are_datasketchs(datasketch, scheme: str) -> None:
    ds_scheme = "legacy" if scheme == "mersenne" else "affine64"
    a, b = permutations(200, 42, scheme)
    ref = datasketch.MinHash(num_perm=200, seed=42, scheme=ds_scheme).permutations
    assert np.array_equal(a, ref[0]) and np.array_equal(b, ref[1])


def test_signatures_bit_compatible_with_datasketch_end_to_end(datasketch) -> None:
    """sha1_32 shingles + 32-bit mersenne == datasketch MinHash(scheme="legacy") on the strings."""
    hasher = MinHasher(num_perm=128, seed=7, hash_bits=32, shingle_hash="sha1_32")
    sig, counts = hasher.signatures(TEXTS)
    for i, text in enumerate(normalize_batch(TEXTS)):
        grams = ngram_strings(text.split(), 5)
        m = datasketch.MinHash(num_perm=128, seed=7, scheme="legacy")
        m.update_batch([g.encode("utf-8") for g in grams])
        assert counts[i] == len(grams)
        assert np.array_equal(m.hashvalues, sig[i]), i


@pytest.mark.parametrize(("scheme", "bits"), [("mersenne", 32), ("affine64", 64)])
def test_signatures_of_raw_hash_values_match_datasketch(datasketch, scheme: str, bits: int) -> None:
    """Same 64-bit shingle hashes in, same signature out (datasketch with an identity hashfunc)."""
    hasher = MinHasher(num_perm=64, seed=3, scheme=scheme, hash_bits=bits)
    batch = hasher.shingles(TEXTS[:2])
    sig = hasher.from_shingles(batch)
    for d in range(2):
        values = batch.hashes[batch.offsets[d] : batch.offsets[d + 1]].tolist()
        ds_scheme = "legacy" if scheme == "mersenne" else scheme
        m = datasketch.MinHash(num_perm=64, seed=3, scheme=ds_scheme, hashfunc=lambda x: x)
        m.update_batch(values)
        assert np.array_equal(m.hashvalues, sig[d])


def test_unmasked_mersenne_is_exact_mod_p() -> None:
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**64 - 1, 50, dtype=np.uint64)
    a, b = permutations(8, 1)
    sig = kernels.minhash(h, np.array([0, 50]), a, b, "mersenne")
    p, m64 = (1 << 61) - 1, (1 << 64) - 1
    expect = [
        min(((int(ai) * int(x) + int(bi)) & m64) % p for x in h)
        for ai, bi in zip(a, b, strict=True)
    ]
    assert sig[0].tolist() == expect


# --- normalisation and shingles -----------------------------------------------------------------


def test_normalize_rules() -> None:
    assert normalize("Héllo, WORLD!! It costs 3.14 $ or 2,000 — naïve café_x", "fineweb") == (
        "hello world it costs 0 or 0 naive cafe x"
    )
    assert (
        normalize("a\u00adb  c\n\td", "fineweb") == "ab c d"
    )  # soft hyphen ignored, whitespace collapsed
    assert normalize("1..2 x1.y", "fineweb") == "0 0 x0 y"
    assert normalize("", "fineweb") == normalize(None, "fineweb") == ""
    assert normalize("!!! ...", "fineweb") == ""
    assert normalize("这是中文", "fineweb") == "这是 中文"
    kept = TextNorm(strip_diacritics=True, whitespace="tokens")
    assert normalize("Héllo, World 42!", kept) == "Hello, World 42!"


def test_short_and_empty_documents() -> None:
    batch = shingle_hashes(["one two three", "", None, "a b c d e f"], n=5)
    assert batch.counts.tolist() == [1, 0, 0, 2]


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
def test_numba_and_numpy_engines_agree() -> None:
    texts = [*TEXTS, " ".join(base_words(1, 400)), "x 1,2,3 y 4.5.6 z", "é\u0301 ﬁ İstanbul ß"]
    for n in (1, 3, 5):
        a = shingle_hashes(texts, n=n, engine="numba")
        b = shingle_hashes(texts, n=n, engine="numpy")
        assert np.array_equal(a.hashes, b.hashes) and np.array_equal(a.offsets, b.offsets)
    for scheme, bits in (("mersenne", 64), ("mersenne", 32), ("affine64", 64)):
        sa = MinHasher(num_perm=40, scheme=scheme, hash_bits=bits, engine="numba").signatures(texts)
        sb = MinHasher(num_perm=40, scheme=scheme, hash_bits=bits, engine="numpy").signatures(texts)
        assert np.array_equal(sa[0], sb[0])


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
def test_auto_engine_keeps_small_calls_on_numpy_until_numba_is_loaded(monkeypatch) -> None:
    """Loading numba costs seconds; under `auto` a small call uses numpy (same values) unless
    numba is already loaded or the engine is forced."""
    monkeypatch.delenv("PIPELINE_MINHASH_ENGINE", raising=False)
    monkeypatch.delitem(sys.modules, "pipeline.dedup._numba", raising=False)
    small = kernels.SMALL_TEXT_BYTES
    assert kernels.engine_for("auto", small, small) == "numpy"
    assert kernels.engine_for("auto", small + 1, small) == "numba"
    assert kernels.engine_for("numba", 1, small) == "numba"
    monkeypatch.setenv("PIPELINE_MINHASH_ENGINE", "numba")
    assert kernels.engine_for("auto", 1, small) == "numba"
    monkeypatch.delenv("PIPELINE_MINHASH_ENGINE")
    monkeypatch.setitem(sys.modules, "pipeline.dedup._numba", object())
    assert kernels.engine_for("auto", 1, small) == "numba"


def test_arrow_and_list_inputs_agree() -> None:
    texts = [t for t in TEXTS if t is not None]
    arrow = pa.array(texts).slice(1)
    a = shingle_hashes(arrow)
    b = shingle_hashes(texts[1:])
    assert np.array_equal(a.hashes, b.hashes)


def test_words64_matches_a_python_reference() -> None:
    """words64 = fmix64(S + sum_t K_t * fmix64(poly(token_t))) over the normalised tokens."""
    m64 = (1 << 64) - 1

    def fmix(h: int) -> int:
        h ^= h >> 33
        h = (h * 0xFF51AFD7ED558CCD) & m64
        h ^= h >> 33
        h = (h * 0xC4CEB9FE1A85EC53) & m64
        return h ^ (h >> 33)

    text = "Ärger über 12 Äpfel, und noch mehr Wörter hier"
    tokens = normalize(text, "fineweb").split()
    words = []
    for tok in tokens:
        h = 0
        for ch in tok:
            h = (h * int(kernels.BASE) + ord(ch) + 1) & m64
        words.append(fmix(h))
    mult = [fmix(t + 1) | 1 for t in range(5)]
    expect = []
    for j in range(len(words) - 4):
        g = int(kernels.FOLD_SEED)
        for t in range(5):
            g = (g + mult[t] * words[j + t]) & m64
        expect.append(fmix(g))
    assert shingle_hashes([text]).hashes.tolist() == expect


def test_signature_estimates_jaccard() -> None:
    words = base_words(5, 600)
    other = words[:300] + base_words(6, 300)  # shares 296 of 596 + 596 - 296 5-grams
    sig, _ = MinHasher(num_perm=2000).signatures([" ".join(words), " ".join(other)])
    true = 296 / (596 + 596 - 296)
    assert abs(float(np.mean(sig[0] == sig[1])) - true) < 4 * np.sqrt(true * (1 - true) / 2000)


# --- banding -------------------------------------------------------------------------------------


def test_s_curve_values() -> None:
    fw = lsh.s_curve(14, 8)
    assert (fw["0.70"], fw["0.75"], fw["0.80"]) == pytest.approx((0.565, 0.772, 0.924), abs=1e-3)
    rw = lsh.s_curve(450, 20)
    assert (rw["0.70"], rw["0.75"], rw["0.80"]) == pytest.approx((0.302, 0.761, 0.995), abs=1e-3)
    assert lsh.half_point(14, 8) == pytest.approx(0.685, abs=1e-3)
    assert lsh.half_point(20, 450) == pytest.approx(0.993, abs=1e-3)  # the banding trap


def test_bands_from_threshold_as_datasketch() -> None:
    assert lsh.optimal_params(0.5, 128) == (25, 5)
    assert lsh.optimal_params(0.7, 128) == (14, 9)
    assert lsh.optimal_params(0.8, 128) == (9, 13)
    assert lsh.optimal_params(0.9, 128) == (5, 25)
    assert lsh.optimal_params(0.8, 256) == (17, 15)
    assert lsh.optimal_params(0.8, 128, 0.1, 0.9) == (14, 9)


def test_config_banding_and_validation() -> None:
    assert MinHashDedupConfig().banding() == (14, 8)
    assert MinHashDedupConfig(preset="refinedweb").banding() == (450, 20)
    assert MinHashDedupConfig(num_bands=20, rows_per_band=5).banding() == (20, 5)
    assert MinHashDedupConfig(threshold=0.8).banding() == (9, 13)
    for bad in (
        {"num_bands": 3},
        {"threshold": 0.8, "preset": "fineweb"},
        {"threshold": 0.8, "false_positive_weight": 0.3},
        {"permutation": "affine64", "hash_bits": 32},
        {"nonsense": 1},
    ):
        with pytest.raises(ValidationError):
            MinHashDedupConfig(**bad)


def test_band_hashes_separate_bands() -> None:
    sig = np.zeros((2, 12), dtype=np.uint64)
    bh = lsh.band_hashes(sig, 3, 4)
    assert len(set(bh[0].tolist())) == 3 and np.array_equal(bh[0], bh[1])


# --- components ----------------------------------------------------------------------------------


def test_components_chain_and_policies() -> None:
    comp = connected_components(np.array([5, 9, 30, 31]), np.array([9, 12, 31, 40]))
    assert comp.keys.tolist() == [5, 9, 12, 30, 31, 40]
    assert comp.cluster_id.tolist() == [5, 5, 5, 30, 30, 30]
    assert comp.size.tolist() == [3] * 6
    assert representatives(comp, "first").tolist() == [True, False, False, True, False, False]
    longest = representatives(comp, "longest", np.array([1, 7, 7, 2, 2, 2]))
    assert longest.tolist() == [False, True, False, True, False, False]
    rand = representatives(comp, "random", seed=3)
    assert rand[:3].sum() == 1 and rand[3:].sum() == 1
    assert np.array_equal(rand, representatives(comp, "random", seed=3))


def test_components_long_path_converges() -> None:
    order = np.random.default_rng(0).permutation(2000)
    comp = connected_components(order[:-1], order[1:])
    assert (comp.cluster_id == 0).all() and comp.size[0] == 2000


# --- the stage -----------------------------------------------------------------------------------


def write_shards(tmp_path, shards: list[list[str] | None]) -> list[ShardRef]:
    refs = []
    for i, texts in enumerate(shards):
        if texts is None:
            refs.append(ShardRef(i, None, 0))
            continue
        path = tmp_path / f"shard{i}.parquet"
        ids = [f"s{i}-{j}" for j in range(len(texts))]
        pq.write_table(pa.table({"id": ids, "text": texts}), path, row_group_size=2)
        refs.append(ShardRef(i, str(path), len(texts)))
    return refs


def run_stage(tmp_path, shards: list[list[str] | None], **config) -> tuple[dict, dict[str, dict]]:
    refs = write_shards(tmp_path, shards)
    stage = MinHashDedupStage(MinHashDedupConfig(**config))
    ctx = LocalContext(str(tmp_path / "work"), num_partitions=3)
    summary = stage.prepare(ctx, refs)
    rows: dict[str, dict] = {}
    for ref in refs:
        table = ref.read(ctx.fs) if ref.path else pa.table({"id": pa.array([], pa.string())})
        scored = stage.score_shard(ctx, ref, table)
        assert scored.num_rows == table.num_rows
        assert scored.schema.field(CLUSTER_ID).type == pa.int64()
        assert scored.schema.field(CLUSTER_SIZE).type == pa.int32()
        assert scored.schema.field(IS_REPRESENTATIVE).type == pa.bool_()
        kept, rejected = stage.apply_shard(ctx, ref, table)
        assert kept.num_rows + rejected.num_rows == table.num_rows
        assert set(rejected.column("reason").to_pylist()) <= {REASON_DUPLICATE}
        reasons = stage.keep(scored).to_pylist()
        for row, reason in zip(scored.to_pylist(), reasons, strict=True):
            rows[row["id"]] = {**row, "reason": reason}
    return summary, rows


def edit(words: list[str], positions: list[int], tag: str) -> list[str]:
    out = list(words)
    for p in positions:
        out[p] = f"{tag}z{letters(p)}"
    return out


def test_stage_cross_shard_chain_and_singletons(tmp_path) -> None:
    a = base_words(1)
    b = edit(a, [20, 60], "b")  # A ~ B
    c = edit(b, [40, 80, 100], "c")  # B ~ C, A vs C further apart
    shards = [
        [" ".join(a), " ".join(base_words(2))],
        None,
        [" ".join(base_words(3)), " ".join(b), "", "tiny doc"],
        [" ".join(c)],
    ]
    summary, rows = run_stage(tmp_path, shards, num_bands=20, rows_per_band=5)
    root = 0  # shard 0, row 0
    assert rows["s0-0"][CLUSTER_ID] == rows["s2-1"][CLUSTER_ID] == rows["s3-0"][CLUSTER_ID] == root
    assert rows["s0-0"][CLUSTER_SIZE] == 3 and rows["s0-0"][IS_REPRESENTATIVE]
    assert rows["s2-1"]["reason"] == rows["s3-0"]["reason"] == REASON_DUPLICATE
    for single in ("s0-1", "s2-0", "s2-2", "s2-3"):
        assert rows[single][CLUSTER_SIZE] == 1 and rows[single][IS_REPRESENTATIVE]
        assert rows[single]["reason"] is None
    assert rows["s2-3"][CLUSTER_ID] == (2 << 32) + 3  # a singleton's id is its own key
    assert summary["clusters"] == 1 and summary["duplicates"] == 2
    assert summary["documents"] == 7 and summary["documents_without_shingles"] == 1
    assert summary["s_curve"]["0.80"] == pytest.approx(
        lsh.collision_probability(0.8, 20, 5), abs=1e-4
    )


def test_stage_transitive_chain_joins_dissimilar_ends(tmp_path) -> None:
    """A~B and B~C but A!~C: one cluster (components are transitive)."""
    p1, p2, p3, p4 = base_words(7, 50), base_words(8, 150), base_words(9, 150), base_words(10, 50)
    a, b, c = p1 + p2, p2 + p3, p3 + p4
    verify = MinHasher(num_perm=1).shingles  # exact Jaccard of the pairs, for the premise

    def jac(x: list[str], y: list[str]) -> float:
        bx, by = verify([" ".join(x)]), verify([" ".join(y)])
        sx, sy = set(bx.hashes.tolist()), set(by.hashes.tolist())
        return len(sx & sy) / len(sx | sy)

    assert jac(a, b) > 0.4 and jac(b, c) > 0.4 and jac(a, c) == 0
    shards = [[" ".join(a)], [" ".join(c), " ".join(b)]]
    _, rows = run_stage(tmp_path, shards, num_bands=100, rows_per_band=2)  # P(0.4) ~ 1
    assert rows["s0-0"][CLUSTER_ID] == rows["s1-0"][CLUSTER_ID] == rows["s1-1"][CLUSTER_ID] == 0
    assert rows["s1-0"][CLUSTER_SIZE] == 3


@pytest.mark.parametrize(("keep", "winner"), [("first", "s0-0"), ("longest", "s1-0")])
def test_stage_keep_policies(tmp_path, keep: str, winner: str) -> None:
    a = base_words(11)
    longer = [*a, "extra", "words"]
    _, rows = run_stage(tmp_path, [[" ".join(a)], [" ".join(longer)]], keep=keep)
    assert rows[winner][IS_REPRESENTATIVE]
    assert sum(r[IS_REPRESENTATIVE] for r in rows.values()) == 1


def test_stage_keep_random_is_seeded(tmp_path) -> None:
    a = " ".join(base_words(12))
    picks = set()
    for seed in range(8):
        (tmp_path / str(seed)).mkdir()
        _, rows = run_stage(tmp_path / str(seed), [[a, a, a, a]], keep="random", seed=seed)
        reps = [k for k, r in rows.items() if r[IS_REPRESENTATIVE]]
        assert len(reps) == 1
        picks.add(reps[0])
    assert len(picks) > 1


@pytest.mark.parametrize("verify", ["signature", "jaccard"])
def test_stage_verify_drops_false_candidates(tmp_path, verify: str) -> None:
    """With 1 row per band, almost any shared shingle makes a candidate; verify removes it."""
    a = base_words(21, 100)
    b = a[:30] + base_words(22, 70)  # true Jaccard ~0.15
    copy = edit(a, [50], "x")
    texts = [[" ".join(a), " ".join(b), " ".join(copy)]]
    summary, rows = run_stage(
        tmp_path, texts, num_bands=64, rows_per_band=1, verify=verify, verify_threshold=0.6
    )
    assert summary["edges"] < summary["candidate_edges"]
    assert rows["s0-1"][CLUSTER_SIZE] == 1 and rows["s0-2"][CLUSTER_SIZE] == 2


def test_stage_all_empty_and_no_shards(tmp_path) -> None:
    summary, rows = run_stage(tmp_path, [None, ["", ""]])
    assert summary["clusters"] == 0 and summary["documents"] == 2
    assert all(r[CLUSTER_SIZE] == 1 and r[IS_REPRESENTATIVE] for r in rows.values())
    stage = MinHashDedupStage(MinHashDedupConfig())
    assert stage.prepare(LocalContext(str(tmp_path / "w2")), [])["documents"] == 0


def test_stage_exact_copies_unicode_and_lang(tmp_path) -> None:
    zh = "我们今天去公园散步，天气非常好，大家都很开心。" * 3
    shards = [[zh, zh.replace("，", "、")], [TEXTS[1], TEXTS[1].upper()]]
    _, rows = run_stage(tmp_path, shards)
    assert rows["s0-1"]["reason"] == REASON_DUPLICATE
    assert rows["s1-1"]["reason"] == REASON_DUPLICATE
