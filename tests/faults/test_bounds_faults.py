"""Bounded work per document: over-long JSONL lines, decompression bombs, endless devices, huge
Parquet values, documents over a stage's `max_chars` and documents that exhaust the per-document
CPU limit are each a counted rejection, and the run goes on. The hostile inputs are built at test
time from the real DCLM texts, at a small scale with the limits set low."""

from __future__ import annotations

import gzip
import io
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.bounded import SKIP_CHUNK, bounded_lines
from pipeline.io.jsonl import JsonlReader
from pipeline.io.options import InputConfig
from pipeline.io.parquet import ParquetReader
from pipeline.runner import kernel
from pipeline.runner.accounting import StageStats
from pipeline.runner.guard import CpuTimeout, cpu_limit
from pipeline.stages.gopher_quality import GopherQualityConfig, GopherQualityStage
from tests.conftest import SHARED_DATA
from tests.faults.helpers import (
    assert_reconciles,
    curate,
    kept_ids,
    rejected,
    stats_of,
    write_recipe,
)

pytestmark = pytest.mark.timeout(300)

DCLM = SHARED_DATA / "quality" / "dclm-agreement.jsonl"
URL = "https://example.com/page"


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    """The 281 real web texts."""
    rows = [json.loads(line) for line in DCLM.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 281
    return [r["text"] for r in rows]


def records(texts: list[str], n: int = 20) -> list[str]:
    """`n` JSONL lines of real texts with ids and a URL."""
    return [json.dumps({"id": f"doc{i}", "url": URL, "text": t}) for i, t in enumerate(texts[:n])]


def read(path: Path, **options: Any) -> tuple[pa.Table, ReaderStats]:
    cfg = InputConfig(paths=[str(path)], **options)
    fmt = "parquet" if path.suffix == ".parquet" else "jsonl"
    reader = ParquetReader(cfg) if fmt == "parquet" else JsonlReader(cfg)
    stats = ReaderStats()
    batches = list(reader.read(InputUnit(0, str(path), fmt), stats, 8))
    assert stats.balanced()
    return pa.concat_tables(batches) if batches else pa.table({}), stats


class _Spy(io.BytesIO):
    """A stream that remembers the longest piece any readline() handed out."""

    longest = 0

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        line = super().readline(size)
        self.longest = max(self.longest, len(line))
        return line


# --- readers ----------------------------------------------------------------------------------


def test_long_line_is_read_through_in_chunks_never_whole() -> None:
    """A 5 MB line with a 64 KB limit comes out as None while no read exceeds a chunk."""
    stream = _Spy(b'{"text": "a"}\n' + b"x" * 5_000_000 + b"\n" + b'{"text": "b"}\n')
    out = list(bounded_lines(stream, 65_536))
    assert out == [b'{"text": "a"}\n', None, b'{"text": "b"}\n']
    assert stream.longest <= max(65_537, SKIP_CHUNK)
    # A line of exactly the limit (plus its newline) is still a line; one byte more is not.
    assert list(bounded_lines(io.BytesIO(b"abc\nabcd\n"), 3)) == [b"abc\n", None]
    assert list(bounded_lines(io.BytesIO(b"abcd"), 3)) == [None]


def test_jsonl_line_over_max_record_bytes_is_too_large(tmp_path, texts) -> None:
    """One line over the limit between real records: 1 `too_large`, every other record read."""
    lines = records(texts)
    huge = json.dumps({"id": "huge", "url": URL, "text": " ".join(texts) * 4})  # ~3.2 MB
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join([*lines[:10], huge, *lines[10:]]) + "\n")
    table, stats = read(path, max_record_bytes=1_000_000)
    assert stats.skipped == {"too_large": 1}
    assert table.column("id").to_pylist() == [f"doc{i}" for i in range(20)]
    assert table.column("text").to_pylist() == texts[:20]


def test_gzip_bomb_line_is_skipped_and_file_cap_stops_reading(tmp_path, texts) -> None:
    """A 64 MB line in a ~64 KB .jsonl.gz: `too_large`, the lines after it read; with
    max_file_bytes below the file's size, reading stops there: one `file_too_large`."""
    lines = records(texts, 6)
    bomb = b'{"id": "bomb", "text": "' + b"a" * (64 << 20) + b'"}\n'
    path = tmp_path / "bomb.jsonl.gz"
    body = ("\n".join(lines[:3]) + "\n").encode() + bomb + ("\n".join(lines[3:]) + "\n").encode()
    path.write_bytes(gzip.compress(body, compresslevel=6, mtime=0))
    assert path.stat().st_size < 200_000
    table, stats = read(path, max_record_bytes=1_000_000)
    assert stats.skipped == {"too_large": 1}
    assert table.column("id").to_pylist() == [f"doc{i}" for i in range(6)]
    table, stats = read(path, max_record_bytes=1_000_000, max_file_bytes=8 << 20)
    assert table.column("id").to_pylist() == ["doc0", "doc1", "doc2"]
    assert stats.skipped == {"file_too_large": 1}  # the cap came first, inside the long line
    assert "input.max_file_bytes" in stats.errors[0]


def test_plain_file_over_max_file_bytes(tmp_path, texts) -> None:
    """An uncompressed file larger than max_file_bytes: its first records, then one
    `file_too_large` naming the key."""
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(records(texts, 281)) + "\n")
    table, stats = read(path, max_file_bytes=100_000)
    assert 0 < table.num_rows < 281 and stats.skipped == {"file_too_large": 1}
    assert table.column("text").to_pylist() == texts[: table.num_rows]
    assert "input.max_file_bytes" in stats.errors[0]


def test_symlink_to_dev_zero_ends_counted(capsys, tmp_path) -> None:
    """A JSONL name in an input directory pointing at /dev/zero (one endless line): the run
    ends, counted once, and fails because the input gave no document."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    link = tmp_path / "in" / "zero.jsonl"
    link.parent.mkdir()
    link.symlink_to("/dev/zero")
    out = tmp_path / "out"
    recipe = write_recipe(
        tmp_path / "r.yaml",
        [link.parent],
        out,
        [{"stage": "gopher_quality"}],
        input_options={"max_record_bytes": 1 << 20, "max_file_bytes": 32 << 20},
    )
    result = curate(capsys, "run", recipe)
    assert result.code == 2 and "the input gave no document: 1 file(s), 1 record(s)" in result.err
    stats = stats_of(out)
    assert_reconciles(stats)
    skipped = stats["reader"]["skipped"]
    # Counted as the file cap (this module), or refused up front as a device where only regular
    # files are opened: one record either way, nothing kept.
    assert sum(skipped.values()) == 1 and set(skipped) <= {"file_too_large", "unreadable_file"}
    assert stats["output"]["documents"] == 0


def test_parquet_value_over_max_record_bytes(tmp_path, texts) -> None:
    """A Parquet row whose text is over the limit is `too_large`; the fallback ids of the other
    rows keep their row numbers."""
    big = " ".join(texts)  # ~800 KB
    rows = texts[:5] + [big] + texts[5:10]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": rows}), path)
    table, stats = read(path, max_record_bytes=200_000)
    assert stats.skipped == {"too_large": 1} and stats.documents == 10
    assert table.column("text").to_pylist() == texts[:10]
    full, _ = read(path)
    expected = full.column("id").to_pylist()
    assert table.column("id").to_pylist() == expected[:5] + expected[6:]


def test_hf_dataset_value_over_max_record_bytes(tmp_path, texts) -> None:
    """A save_to_disk dataset row whose text is over the limit: `too_large`, the rest read."""
    datasets = pytest.importorskip("datasets")
    from pipeline.io.hf import HFReader

    rows = [*texts[:4], " ".join(texts), *texts[4:8]]
    datasets.Dataset.from_dict({"text": rows}).save_to_disk(str(tmp_path / "ds"))
    cfg = InputConfig(paths=[str(tmp_path / "ds")], max_record_bytes=200_000)
    stats = ReaderStats()
    unit = InputUnit(0, str(tmp_path / "ds"), "hf")
    table = pa.concat_tables(HFReader(cfg).read(unit, stats, 4))
    assert stats.skipped == {"too_large": 1} and stats.balanced()
    assert table.column("text").to_pylist() == texts[:8]


# --- stages: max_chars and the CPU guard ------------------------------------------------------


def test_max_chars_rejects_unscored_with_a_reason(texts) -> None:
    """Documents over gopher_quality's max_chars are `gopher_quality_too_large` without being
    scored; the others get the same decision as without the limit."""
    batch = pa.table({"id": [str(i) for i in range(30)], "text": texts[:30]})
    limit = sorted(len(t) for t in texts[:30])[-4]  # three documents are longer
    plain = GopherQualityStage(GopherQualityConfig())
    bounded = GopherQualityStage(GopherQualityConfig(max_chars=limit))
    base_kept, base_rej = kernel.run_stage(plain, batch, StageStats("gopher_quality"))
    stats = StageStats("gopher_quality")
    kept, rej = kernel.run_stage(bounded, batch, stats)
    long_ids = {str(i) for i, t in enumerate(texts[:30]) if len(t) > limit}
    assert len(long_ids) == 3
    assert stats.reasons["gopher_quality_too_large"] == 3
    too_large = rej.filter(pa.compute.equal(rej.column("reason"), "gopher_quality_too_large"))
    assert set(too_large.column("id").to_pylist()) == long_ids
    assert "gopher_quality_word_count" not in too_large.column_names  # never scored
    assert set(kept.column("id").to_pylist()) == set(base_kept.column("id").to_pylist()) - long_ids
    assert stats.docs_in == 30 == stats.docs_kept + stats.docs_rejected


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_cpu_limit_counts_a_timeout_python_dropped() -> None:
    """A limit spent inside a `__del__` (or a weakref / GC callback, as numpy's and pyarrow's
    objects run): Python prints and drops the CpuTimeout raised there, and the block still ends
    in CpuTimeout, not as if it had finished in time."""

    class Slow:
        def __del__(self) -> None:
            spent = time.process_time() + 0.5
            while time.process_time() < spent:
                pass

    with pytest.raises(CpuTimeout), cpu_limit(0.05):
        Slow()  # dropped at once: __del__ runs here, and the timeout raised in it is dropped


def test_cpu_limit_counts_a_timeout_reported_as_another_error() -> None:
    """C code that returns after the handler raised (a numba function) reports the pending
    CpuTimeout as a SystemError of its own: the block still ends in CpuTimeout."""

    def compiled_call() -> None:
        spent = time.process_time() + 0.5
        try:
            while time.process_time() < spent:
                pass
        except CpuTimeout as exc:
            raise SystemError("returned a result with an exception set") from exc

    with pytest.raises(CpuTimeout), cpu_limit(0.05):
        compiled_call()
    with pytest.raises(SystemError), cpu_limit(5.0):  # an error before the limit stays itself
        raise SystemError("not a timeout")


def test_cpu_limit_raises_in_the_main_thread_only() -> None:
    """The guard stops a runaway block even through `except Exception`, and is inactive off
    the main thread and inside another guard."""

    def burn() -> None:
        n = 0
        while True:
            try:
                n += 1
            except Exception:  # a stage's own broad handler must not swallow the timeout
                n = 0

    with pytest.raises(CpuTimeout), cpu_limit(0.2) as on:
        assert on
        burn()
    with cpu_limit(5) as outer, cpu_limit(0.1) as inner:
        assert outer and not inner
    seen: list[bool] = []

    def in_thread() -> None:
        with cpu_limit(0.1) as on:
            seen.append(on)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert seen == [False]
    with cpu_limit(None) as on:
        assert not on


def big_document(texts: list[str], chars: int) -> str:
    """Real text repeated to `chars` characters."""
    joined = "\n".join(texts) + "\n"
    return (joined * (chars // len(joined) + 1))[:chars]


def test_stage_timeout_is_counted_and_the_run_goes_on(capsys, tmp_path, texts) -> None:
    """A 4 MB document costs gopher_repetition seconds of CPU: with a 0.1 s limit per document
    it is `gopher_repetition_timeout`, every other document is decided as without the limit."""
    lines = records(texts, 40)
    big = json.dumps({"id": "big", "url": URL, "text": big_document(texts, 4_000_000)})
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([*lines[:20], big, *lines[20:]]) + "\n")
    stages = [{"stage": "gopher_repetition"}]
    limited = write_recipe(
        tmp_path / "a.yaml", [path], tmp_path / "a", stages, stage_cpu_s_per_doc=0.1
    )
    free = write_recipe(tmp_path / "b.yaml", [path], tmp_path / "b", stages)
    assert curate(capsys, "run", limited).code == 0
    assert curate(capsys, "run", free).code == 0
    stats = stats_of(tmp_path / "a")
    assert_reconciles(stats)
    reasons = stats["stages"][0]["removed_by_reason"]
    assert reasons["gopher_repetition_timeout"] == 1
    rej = rejected(tmp_path / "a", "gopher_repetition")
    timed_out = rej.filter(pa.compute.equal(rej.column("reason"), "gopher_repetition_timeout"))
    assert timed_out.column("id").to_pylist() == ["big"]
    assert set(kept_ids(tmp_path / "a")) == set(kept_ids(tmp_path / "b")) - {"big"}


def test_ablation_cache_keeps_the_kernels_reasons(tmp_path, texts) -> None:
    """The ablation score cache stores why a document went unscored: a variant's
    `<stage>_too_large` and `<stage>_timeout` counts equal those of the direct run."""
    from pipeline.ablate.run import run_ablation
    from pipeline.ablate.spec import load_ablation
    from pipeline.runner.run import run_recipe

    lines = records(texts, 30)
    big = json.dumps({"id": "big", "url": URL, "text": big_document(texts, 4_000_000)})
    slow = json.dumps({"id": "slow", "url": URL, "text": big_document(texts, 2_500_000)})
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join([*lines[:10], big, *lines[10:20], slow, *lines[20:]]) + "\n")
    base = {
        "input": {"paths": [str(path)]},
        "output": {"path": "unused", "keep_rejected": True},
        "runtime": {"executor": "local", "batch_size": 8, "stage_cpu_s_per_doc": 0.1},
        "stages": [
            {"stage": "gopher_repetition", "max_chars": 3_000_000},
            {"stage": "gopher_quality"},
        ],
    }
    (tmp_path / "base.yaml").write_text(json.dumps(base))
    (tmp_path / "abl.yaml").write_text(
        f"name: t\nbase: base.yaml\noutput:\n  path: {tmp_path / 'out'}\nvariants:\n"
        "  a: {}\n  b: {set: {gopher_quality.min_doc_words: 80}}\n"
    )
    ablation = load_ablation(tmp_path / "abl.yaml")
    result = run_ablation(ablation)
    for name, recipe in ablation.variants.items():
        direct = run_recipe(recipe.with_overrides(output={"path": str(tmp_path / name)})).stats
        ours = result.variants[name]["stages"][0]["removed_by_reason"]
        assert ours == direct["stages"][0]["removed_by_reason"], name
        assert ours["gopher_repetition_too_large"] == 1
        assert ours["gopher_repetition_timeout"] == 1


def test_max_chars_is_never_a_threshold_key() -> None:
    """max_chars decides what is scored, so an ablation must not re-apply it to stored scores."""
    from pipeline.registry import available_stages

    with_key = [c for c in available_stages().values() if "max_chars" in c.config_cls.model_fields]
    assert len(with_key) >= 7
    for cls in with_key:
        if cls.config_cls.__mro__[1].__name__ == "TextStageConfig":
            assert "max_chars" not in cls.threshold_keys, cls.name


def test_bounds_hold_in_ray_actors(tmp_path, texts, ray_session) -> None:
    """On the Ray executor (actor methods run on the worker's main thread) the same input gives
    the same counted outcome as locally: the bomb line `too_large`, the slow document
    `gopher_repetition_timeout`, no actor lost."""
    from pipeline.config import load_recipe
    from pipeline.runner.run import run_recipe
    from tests.faults.helpers import read_output

    lines = records(texts, 20)
    bomb = b'{"id": "bomb", "text": "' + b"a" * (64 << 20) + b'"}\n'
    big = json.dumps({"id": "big", "url": URL, "text": big_document(texts, 4_000_000)})
    src = tmp_path / "in"
    src.mkdir()
    body = ("\n".join(lines[:10]) + "\n").encode() + bomb + ("\n".join(lines[10:]) + "\n").encode()
    (src / "a.jsonl.gz").write_bytes(gzip.compress(body, mtime=0))
    (src / "b.jsonl").write_text(big + "\n" + "\n".join(lines) + "\n")
    outcomes = {}
    for executor in ("local", "ray"):
        recipe = write_recipe(
            tmp_path / f"{executor}.yaml",
            [src],
            tmp_path / executor,
            [{"stage": "gopher_repetition"}],
            input_options={"max_record_bytes": 8 << 20},
            executor=executor,
            stage_cpu_s_per_doc=0.1,
        )
        stats = run_recipe(load_recipe(recipe)).stats
        assert_reconciles(stats)
        outcomes[executor] = (stats["reader"]["skipped"], stats["stages"][0]["removed_by_reason"])
    assert outcomes["ray"] == outcomes["local"]
    skipped, reasons = outcomes["ray"]
    assert skipped == {"too_large": 1} and reasons["gopher_repetition_timeout"] == 1
    assert read_output(tmp_path / "ray").equals(read_output(tmp_path / "local"))


def test_extract_keeps_its_own_limit() -> None:
    """The sandboxed extractor enforces its own per-page `timeout_s`, so the kernel's CPU guard
    leaves it alone; in-process extraction (`timeout_s` null or 0) gets the guard."""
    from pipeline.stages.extract import ExtractConfig, ExtractStage

    assert kernel.cpu_budget(ExtractStage(ExtractConfig()), 60.0) is None
    for off in (None, 0):
        assert kernel.cpu_budget(ExtractStage(ExtractConfig(timeout_s=off)), 60.0) == 60.0
    assert kernel.cpu_budget(GopherQualityStage(GopherQualityConfig()), 60.0) == 60.0
