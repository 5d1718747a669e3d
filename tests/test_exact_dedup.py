"""exact_dedup: hand-made documents across shards, keep policies, normalisation, and the
archive-it WARC whose 44 byte-identical text/html bodies are checked independently (sha1)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipeline.dedup.exact import COUNT, HASH, IS_KEPT, ExactDedupConfig, ExactDedupStage
from pipeline.stages.global_base import GlobalStage, LocalContext, ShardRef
from pipeline.text.normalize import PRESETS, TextNorm, normalize, normalize_lines

# --- helpers shared by the three dedup test files ---------------------------------------------


def write_shards(tmp: Path, shards: list[list[dict]]) -> list[ShardRef]:
    """One Parquet file per non-empty list of rows (an empty list is a shard with no file)."""
    refs = []
    for i, rows in enumerate(shards):
        if not rows:
            refs.append(ShardRef(i, None, 0))
            continue
        path = tmp / f"shard-{i:03d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        refs.append(ShardRef(i, str(path), len(rows)))
    return refs


def docs(texts: list[str], prefix: str) -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "text": t, "url": f"http://x/{prefix}{i}"}
        for i, t in enumerate(texts)
    ]


def run_stage(
    stage: GlobalStage, refs: list[ShardRef], tmp: Path, parts: int = 3
) -> tuple[dict, pa.Table, pa.Table]:
    """prepare() then apply_shard() on every shard: (summary, kept rows, rejected rows)."""
    ctx = LocalContext(str(tmp / "work"), num_partitions=parts)
    summary = stage.prepare(ctx, refs)
    kept, rejected = [], []
    for ref in refs:
        table = ref.read(ctx.fs)
        if ref.path is None:
            continue
        k, r = stage.apply_shard(ctx, ref, table)
        kept.append(k)
        rejected.append(r)
    return summary, pa.concat_tables(kept), pa.concat_tables(rejected)


# --- normalisation ------------------------------------------------------------------------------


def test_normalize_presets() -> None:
    text = "  Cafe\u0301  au\tLAIT 2024!\n"
    assert normalize(text, "none") == text
    assert normalize(text, "strip") == "Cafe\u0301  au\tLAIT 2024!"
    assert normalize(text, "nfc_strip") == "Café  au\tLAIT 2024!"
    assert normalize(text, "nfc_whitespace") == "Café au LAIT 2024!"
    assert normalize(text, "lowercase") == "café au lait 2024!"
    assert normalize("É,x 1\u200b٣", "ccnet") == "éx 00"
    assert normalize("Crème", TextNorm(strip_accents=True, lowercase=True)) == "creme"
    # Lines stay aligned with text.split("\n") whatever the steps.
    for spec in PRESETS:
        lines = normalize_lines("a\r\n\n B,  c \n\u2028x", spec)
        assert len(lines) == 4, spec
    assert normalize_lines(" A, b \n\nC-3 ", "ccnet") == ["a b", "", "c0"]


# --- hand-made documents -----------------------------------------------------------------------

A = "The quick brown fox jumps over the lazy dog."
B = "Lorem ipsum dolor sit amet, consectetur adipiscing elit."
C = "A completely different document about exact deduplication."


def _shards(tmp: Path) -> list[ShardRef]:
    return write_shards(
        tmp,
        [
            docs([A, B, "  " + A + "\n"], "s0-"),  # s0-2 equals A after strip
            [],  # an empty shard (no file)
            docs([C, A.upper(), B + " (longer copy)", " \n"], "s2-"),
            docs([B, A, ""], "s3-"),
        ],
    )


def test_keep_first_with_strip(tmp_path: Path) -> None:
    stage = ExactDedupStage(ExactDedupConfig(normalization="strip"))
    summary, kept, rejected = run_stage(stage, _shards(tmp_path), tmp_path)
    assert sorted(rejected.column("id").to_pylist()) == ["s0-2", "s3-0", "s3-1"]
    assert set(rejected.column("reason").to_pylist()) == {"exact_duplicate"}
    assert kept.num_rows + rejected.num_rows == 10
    assert summary["documents"] == 10 and summary["duplicates"] == 3
    assert summary["duplicate_groups"] == 2
    by_id = {r["id"]: r for r in kept.to_pylist() + rejected.to_pylist()}
    assert by_id["s0-0"][COUNT] == 3 and by_id["s0-0"][IS_KEPT]
    assert by_id["s0-1"][COUNT] == 2 and by_id["s2-0"][COUNT] == 1
    assert by_id["s0-0"][HASH] == by_id["s3-1"][HASH] and len(by_id["s0-0"][HASH]) == 32
    assert by_id["s0-0"][HASH] != by_id["s2-1"][HASH]
    # Empty keys (after strip) are never duplicates of each other.
    assert by_id["s2-3"][HASH] is None and by_id["s3-2"][HASH] is None
    assert by_id["s2-3"][COUNT] == 1 and by_id["s3-2"][IS_KEPT]


def test_normalisation_off_and_lowercase(tmp_path: Path) -> None:
    refs = _shards(tmp_path)
    _, _, rejected = run_stage(
        ExactDedupStage(ExactDedupConfig(normalization="none")), refs, tmp_path / "a"
    )
    assert sorted(rejected.column("id").to_pylist()) == ["s3-0", "s3-1"]
    _, _, rejected = run_stage(
        ExactDedupStage(ExactDedupConfig(normalization="lowercase")), refs, tmp_path / "b"
    )
    assert sorted(rejected.column("id").to_pylist()) == ["s0-2", "s2-1", "s3-0", "s3-1"]


def test_keep_longest_and_random(tmp_path: Path) -> None:
    refs = _shards(tmp_path)
    stage = ExactDedupStage(ExactDedupConfig(normalization="strip", keep="longest"))
    _, kept, rejected = run_stage(stage, refs, tmp_path / "l")
    # The padded copy s0-2 is the longest raw value of A's group.
    assert sorted(rejected.column("id").to_pylist()) == ["s0-0", "s3-0", "s3-1"]
    assert "s0-2" in kept.column("id").to_pylist()
    winners = set()
    for seed in range(8):
        stage = ExactDedupStage(ExactDedupConfig(normalization="strip", keep="random", seed=seed))
        _, kept, rejected = run_stage(stage, refs, tmp_path / f"r{seed}")
        assert rejected.num_rows == 3
        kept_ids = set(kept.column("id").to_pylist())
        assert len(kept_ids & {"s0-0", "s0-2", "s3-1"}) == 1
        winners |= kept_ids & {"s0-0", "s0-2", "s3-1"}
        # The same seed gives the same choice.
        _, kept2, _ = run_stage(stage, refs, tmp_path / f"r{seed}b", parts=1)
        assert set(kept2.column("id").to_pylist()) == kept_ids
    assert len(winners) > 1


def test_all_empty_and_config_errors(tmp_path: Path) -> None:
    refs = [ShardRef(0, None, 0), ShardRef(1, None, 0)]
    summary = ExactDedupStage(ExactDedupConfig()).prepare(LocalContext(str(tmp_path / "w")), refs)
    assert summary["documents"] == 0 and summary["duplicates"] == 0
    with pytest.raises(ValidationError):
        ExactDedupConfig(keep="last")
    with pytest.raises(ValidationError):
        ExactDedupConfig(normalization="fancy")
    with pytest.raises(ValidationError):
        ExactDedupConfig(colum="text")


# --- acceptance: archive-it 2008 ------------------------------------------------------------------


def _raw_html_bodies(path: Path) -> list[tuple[str, str, int]]:
    """(record id, sha1 of the raw body bytes, status) of every text/html response."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    out = []
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
            headers = rec.http_headers
            if headers is None or "text/html" not in headers.get("Content-Type", "").lower():
                continue
            body = rec.reader.read()
            out.append((rec.record_id, hashlib.sha1(body).hexdigest(), headers.status_code))
    return out


def test_archive_it_byte_identical_pages(shared_data: Path, tmp_path: Path) -> None:
    from pipeline.io.base import ReaderStats
    from pipeline.io.options import InputConfig
    from pipeline.io.sources import get_reader, plan_units

    warc = shared_data / "warc" / "archive-it-2008.warc.gz"
    bodies = _raw_html_bodies(warc)
    assert len(bodies) == 140
    first_seen: set[str] = set()
    expected_dups: set[str] = set()
    empty = hashlib.sha1(b"").hexdigest()
    for rid, digest, _ in bodies:
        if digest in first_seen:
            expected_dups.add(rid)
        first_seen.add(digest)
    assert len(expected_dups) == 44
    empties = [rid for rid, digest, _ in bodies if digest == empty]
    # 5 empty bodies (302 redirects): 4 of the 44 copies, which the reader skips as empty_body.
    assert len(empties) == 5 and len(set(empties) & expected_dups) == 4

    cfg = InputConfig(paths=[str(warc)], keep_http_status=[200, 301, 302, 404])
    (unit,) = plan_units(cfg)
    stats = ReaderStats()
    table = pa.concat_tables(list(get_reader(unit.format, cfg).read(unit, stats, 64)))
    assert table.num_rows == 135 and stats.skipped["empty_body"] == 5
    refs = []
    for i, start in enumerate(range(0, table.num_rows, 40)):  # four shards
        path = tmp_path / f"warc-{i}.parquet"
        piece = table.slice(start, 40)
        pq.write_table(piece, path)
        refs.append(ShardRef(i, str(path), piece.num_rows))

    stage = ExactDedupStage(ExactDedupConfig(column="html", normalization="none"))
    summary, kept, rejected = run_stage(stage, refs, tmp_path, parts=4)
    assert set(rejected.column("id").to_pylist()) == expected_dups - set(empties)
    assert rejected.num_rows == 40 and kept.num_rows == 95
    assert summary["duplicates"] == 40
    # Every kept page is unique by the independent sha1 of its raw body.
    sha_by_id = {rid: digest for rid, digest, _ in bodies}
    kept_sha = Counter(sha_by_id[rid] for rid in kept.column("id").to_pylist())
    assert max(kept_sha.values()) == 1


def gold_text_shards(shared_data: Path, tmp_path: Path) -> tuple[list[str], list[ShardRef]]:
    """The non-empty gold texts of both extraction benchmarks, dealt into 4 shards."""
    rows = []
    for name in ("cleaneval", "scrapinghub"):
        with open(shared_data / "extraction" / f"{name}.gold.jsonl") as f:
            rows += [json.loads(line) for line in f]
    texts = [r["gold"] for r in rows if r.get("gold")]
    return texts, write_shards(tmp_path, [docs(texts[i::4], f"g{i}-") for i in range(4)])


def test_gold_texts(shared_data: Path, tmp_path: Path) -> None:
    """Real extracted text: no two gold texts are equal once NFC-stripped (3 are blank)."""
    texts, refs = gold_text_shards(shared_data, tmp_path)
    summary, kept, rejected = run_stage(ExactDedupStage(ExactDedupConfig()), refs, tmp_path)
    assert summary["documents"] == len(texts) == 916
    assert rejected.num_rows == 0 and summary["hashed"] == 913
    lowered = ExactDedupStage(ExactDedupConfig(normalization="lowercase"))
    assert run_stage(lowered, refs, tmp_path / "l")[0]["duplicates"] == 0
