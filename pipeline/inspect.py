"""`curate inspect PATH`: schema, counts and a sample of a run directory, Parquet data or raw input;
with `--stage` (and `--reason`), the documents a run's stage removed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import CurateError, InputError
from pipeline.io.output_shards import is_shard, read_shard, shard_columns
from pipeline.io.pathnames import display_path
from pipeline.io.sources import detect_format, open_binary
from pipeline.runner.kernel import error_text, excerpt
from pipeline.schema import HTML, ID, REASON, TEXT, URL

SAMPLE_CHARS = 300


def inspect_path(path: str, sample: int = 3) -> str:
    """A human-readable summary of `path`; InputError (one line) when nothing in it is readable."""
    p = Path(path)
    if p.is_dir() and (p / "_run").is_dir():
        return _inspect_run(p, sample)
    files = _parquet_files(p)
    if files:
        return _inspect_parquet(files, sample)
    return _inspect_input(path, sample)


def inspect_rejected(path: str, stage: str, reason: str | None, n: int = 5) -> str:
    """The first `n` documents stage `stage` of run `path` removed (as `reason`, when given),
    from its rejected/<stage>/ shards in input order: id, URL, excerpt and the stage's scores.
    A run that kept no rejected shards shows the examples in its stats.json. InputError (one
    line) naming the stages or reasons that exist when `stage` or `reason` is not one of them."""
    run = Path(path)
    stats_path = run / "stats.json"
    if not (run / "_run").is_dir():
        raise InputError(
            f"{display_path(path)} is not a run directory (no _run/): --stage "
            "reads a run's rejected documents"
        )
    if not stats_path.is_file():
        raise InputError(
            f"{display_path(path)} holds no finished run (no stats.json); rerun "
            "`curate run` to finish it"
        )
    stages = {s["name"]: s for s in json.loads(stats_path.read_text(encoding="utf-8"))["stages"]}
    if stage not in stages:
        raise InputError(f"the run has no stage {stage!r}; its stages: {', '.join(stages)}")
    removed: dict[str, int] = stages[stage]["removed_by_reason"]
    if not removed:
        raise InputError(f"stage {stage} removed no document in this run")
    if reason is not None and reason not in removed:
        raise InputError(
            f"stage {stage} removed no document as {reason!r}; its reasons: {_fmt_counts(removed)}"
        )
    count = removed[reason] if reason is not None else sum(removed.values())
    what = f"{stage} removed {count:,} document{'s' * (count != 1)}" + (
        f" as {reason}" if reason else ""
    )
    shards = sorted(str(f) for f in (run / "rejected" / stage).glob("*") if is_shard(f.name))
    if not shards:
        examples = stages[stage].get("examples", {})
        docs = [{**d, REASON: r} for r, ds in examples.items() if reason in (None, r) for d in ds][
            :n
        ]
        head = (
            f"{what}; the run kept no rejected/{stage}/ shards (rerun with --keep-rejected "
            f"for all of them): {len(docs)} example(s) from stats.json"
        )
        return "\n".join([head, *_fmt_removed(docs, [])])
    fs = fsspec.filesystem("file")
    scores = _score_columns(stage, shard_columns(fs, shards[0]))
    docs = []
    for shard in shards:
        for table in read_shard(fs, shard, [ID, URL, TEXT, HTML, REASON, *scores]):
            if reason is not None:
                table = table.filter(pc.equal(table.column(REASON), reason))
            docs += table.slice(0, n - len(docs)).to_pylist()
            if len(docs) >= n:
                break
        if len(docs) >= n:
            break
    head = f"{what}; the first {len(docs)} from rejected/{stage}/"
    return "\n".join([head, *_fmt_removed(docs, scores)])


def _score_columns(label: str, columns: list[str]) -> list[str]:
    """The measurement columns stage `label` (`name` or `name.2`) declares that a shard has."""
    from pipeline.registry import stage_class

    try:
        produced = stage_class(label.split(".")[0]).score_columns
    except (KeyError, CurateError):  # a plugin stage no longer installed: no scores shown
        return []
    return [c for c in produced if c in columns and c not in (TEXT, HTML)]


def _fmt_score(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _fmt_removed(docs: list[dict[str, Any]], scores: list[str]) -> list[str]:
    out = []
    for i, d in enumerate(docs):
        out.append(f"[{i}] {d.get(ID)}  {d.get(REASON)}")
        out.append(f"    url: {d.get(URL) or '-'}")
        out += [f"    {c}: {_fmt_score(d[c])}" for c in scores]
        text = d.get("excerpt", excerpt(d.get(TEXT)))
        out.append(f"    text: {text or '(empty)'}")
        if d.get(HTML):
            out.append(f"    html: {excerpt(d[HTML])}")
    return out


def _parquet_files(p: Path) -> list[Path]:
    """`p` if it is a Parquet file, or the Parquet files of a directory holding no other input
    format (names starting with '.' or '_' skipped, as Arrow does); [] otherwise."""
    if p.is_file():
        return [p] if p.suffix == ".parquet" else []
    if not p.is_dir():
        return []
    files = []
    for f in sorted(p.rglob("*")):
        if any(part.startswith((".", "_")) for part in f.relative_to(p).parts) or not f.is_file():
            continue
        fmt = detect_format(f.name)
        if fmt == "parquet":
            files.append(f)
        elif fmt is not None:
            return []  # mixed formats: read every unit as `curate run` would
    return files


def _inspect_run(p: Path, sample: int) -> str:
    out = [f"run directory {display_path(str(p))}"]
    stats_path = p / "stats.json"
    if stats_path.exists():
        try:
            out += _run_summary(json.loads(stats_path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as e:
            out.append(f"stats.json is unreadable ({type(e).__name__}: {e}); rerun `curate run`")
    else:
        done = len(list((p / "_run" / "units").rglob("*.json")))
        out.append(f"incomplete run: {done} tasks finished; rerun `curate run` to finish it")
    files = _parquet_files(p / "data")
    if files:
        out.append(_inspect_parquet(files, sample))
    elif shards := sorted(str(f) for f in (p / "data").glob("*") if is_shard(f.name)):
        out.append(_inspect_jsonl_shards(shards, sample))
    return "\n".join(out)


def _inspect_jsonl_shards(paths: list[str], sample: int) -> str:
    """Rows, columns (metadata's keys among them) and a sample of a run's JSONL shards."""
    fs = fsspec.filesystem("file")
    columns = shard_columns(fs, paths[0])
    rows: list[dict[str, Any]] = []
    total = 0
    for path in paths:
        for table in read_shard(fs, path, columns):
            total += table.num_rows
            if len(rows) < sample:
                rows += table.slice(0, sample - len(rows)).to_pylist()
    out = [f"jsonl: {len(paths)} files, {total:,} rows", "columns (metadata keys flattened):"]
    out += [f"  {c}" for c in columns]
    out.append(_fmt_rows(rows))
    return "\n".join(out)


def _run_summary(stats: dict[str, Any]) -> list[str]:
    """Reader totals, one line per stage and the output count, from a run's stats.json."""
    r = stats["reader"]
    out = [
        f"records {r['records']:,} -> documents {r['documents']:,} "
        f"(skipped: {_fmt_counts(r['skipped'])})"
    ]
    for s in stats["stages"]:
        out.append(
            f"  {s['name']:<20} in {s['docs_in']:>9,}  kept {s['docs_kept']:>9,}  "
            f"rejected {s['docs_rejected']:>8,}  {_fmt_counts(s['removed_by_reason'])}"
            + (f"  tokens {s['tokens_in']:,} -> {s['tokens_out']:,}" if "tokens_in" in s else "")
        )
    out.append(f"output: {stats['output']['documents']:,} documents")
    return out


def _inspect_parquet(files: list[Path], sample: int) -> str:
    """Rows, schema (of the first readable file), problems by file and a sample. A file that is
    not Parquet, is cut short or has a column twice is named in a `problem:` line."""
    schema: pa.Schema | None = None
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    total = readable = 0
    for f in files:
        name = display_path(str(f))
        try:
            with open_binary(str(f)) as fh:
                pf = pq.ParquetFile(fh)
                total += pf.metadata.num_rows
                readable += 1
                names = pf.schema_arrow.names
                schema = schema or pf.schema_arrow
                twice = sorted({n for n in names if names.count(n) > 1})
                if twice:
                    cols = ", ".join(f"'{n}'" for n in twice)
                    problems.append(f"{name}: column {cols} appears more than once")
                if len(rows) < sample:
                    for batch in pf.iter_batches(batch_size=sample - len(rows)):
                        rows += batch.to_pylist()
                        break
        except (OSError, pa.ArrowException) as e:
            problems.append(f"{name}: not a readable Parquet file ({error_text(e)})")
    if not readable:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{problems[0]}{more}")
    out = [f"parquet: {len(files)} files, {total:,} rows", "schema:"]
    out += [f"  {f.name}: {f.type}" for f in schema or []]
    out += [f"problem: {p}" for p in problems]
    out.append(_fmt_rows(rows))
    return "\n".join(out)


def _inspect_input(path: str, sample: int) -> str:
    from pipeline.io.base import ReaderStats
    from pipeline.io.options import InputConfig
    from pipeline.io.sources import get_reader, plan_units

    units = plan_units(InputConfig(paths=[path]), where="the PATH argument")
    out = []
    rows: list[dict[str, Any]] = []
    for unit in units:
        stats = ReaderStats()
        for batch in get_reader(unit.format, InputConfig(paths=[path])).read(unit, stats, 1024):
            if len(rows) < sample:
                rows.extend(batch.slice(0, sample - len(rows)).to_pylist())
        out.append(
            f"{display_path(unit.path)} [{unit.format}]: records {stats.records:,}, documents "
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
