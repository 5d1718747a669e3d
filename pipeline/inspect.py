"""`curate inspect PATH`: schema, counts and a sample of a run directory, Parquet data or raw input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from pipeline.errors import InputError

SAMPLE_CHARS = 300


def inspect_path(path: str, sample: int = 3) -> str:
    """A human-readable summary of `path`."""
    p = Path(path)
    if p.is_dir() and (p / "_run").is_dir():
        return _inspect_run(p, sample)
    if p.suffix == ".parquet" or (p.is_dir() and any(p.rglob("*.parquet"))):
        return _inspect_parquet(p, sample)
    return _inspect_input(path, sample)


def _inspect_run(p: Path, sample: int) -> str:
    out = [f"run directory {p}"]
    stats_path = p / "stats.json"
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
        r = stats["reader"]
        out.append(
            f"records {r['records']:,} -> documents {r['documents']:,} "
            f"(skipped: {_fmt_counts(r['skipped'])})"
        )
        for s in stats["stages"]:
            out.append(
                f"  {s['name']:<20} in {s['docs_in']:>9,}  kept {s['docs_kept']:>9,}  "
                f"rejected {s['docs_rejected']:>8,}  {_fmt_counts(s['removed_by_reason'])}"
            )
        out.append(f"output: {stats['output']['documents']:,} documents")
    else:
        done = len(list((p / "_run" / "units").rglob("*.json")))
        out.append(f"incomplete run: {done} tasks finished; rerun `curate run` to finish it")
    if (p / "data").is_dir() and any((p / "data").glob("*.parquet")):
        out.append(_inspect_parquet(p / "data", sample))
    return "\n".join(out)


def _inspect_parquet(p: Path, sample: int) -> str:
    dataset = ds.dataset(str(p), format="parquet")
    files = dataset.files
    n = dataset.count_rows()
    out = [f"parquet: {len(files)} files, {n:,} rows", "schema:"]
    out += [f"  {f.name}: {f.type}" for f in dataset.schema]
    head = dataset.head(sample) if n else pa.table({})
    out.append(_fmt_rows(head.to_pylist()))
    return "\n".join(out)


def _inspect_input(path: str, sample: int) -> str:
    from pipeline.io.base import ReaderStats
    from pipeline.io.options import InputConfig
    from pipeline.io.sources import get_reader, plan_units

    try:
        units = plan_units(InputConfig(paths=[path]))
    except InputError:
        raise
    out = []
    rows: list[dict[str, Any]] = []
    for unit in units:
        stats = ReaderStats()
        for batch in get_reader(unit.format, InputConfig(paths=[path])).read(unit, stats, 1024):
            if len(rows) < sample:
                rows.extend(batch.slice(0, sample - len(rows)).to_pylist())
        out.append(
            f"{unit.path} [{unit.format}]: records {stats.records:,}, documents "
            f"{stats.documents:,}, skipped: {_fmt_counts(stats.skipped)}"
        )
        out += [f"  error: {e}" for e in stats.errors]
    out.append(_fmt_rows(rows))
    return "\n".join(out)


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


def _fmt_rows(rows: list[dict[str, Any]]) -> str:
    out = ["sample:"]
    for i, row in enumerate(rows):
        out.append(f"  [{i}]")
        for k, v in row.items():
            s = repr(v)
            if len(s) > SAMPLE_CHARS:
                s = s[:SAMPLE_CHARS] + f"... ({len(str(v)):,} chars)"
            out.append(f"    {k}: {s}")
    return "\n".join(out)
