"""`curate inspect PATH`: schema, counts and a sample of a run directory, Parquet data or raw input;
with `--stage` (and `--reason`), the documents a run's stage removed."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.utils import get_protocol

from pipeline.errors import CurateError, InputError
from pipeline.io.output_shards import is_shard, read_shard, shard_columns
from pipeline.io.pathnames import display_path
from pipeline.io.sources import detect_format, filesystem, open_binary
from pipeline.io.writer import output_url
from pipeline.runner.kernel import error_text, excerpt
from pipeline.schema import HTML, ID, REASON, TEXT, URL

SAMPLE_CHARS = 300


@dataclass(frozen=True)
class _Place:
    """What `curate inspect` was given: its filesystem (local disk, S3, ...), its path there,
    and the path as the user typed it (what names are shown under)."""

    fs: fsspec.AbstractFileSystem
    root: str
    typed: str

    @classmethod
    def of(cls, path: str) -> _Place:
        fs, root = filesystem(path, fresh=True)
        return cls(fs, root.rstrip("/") or "/", path.rstrip("/") or path)

    def join(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def name(self, p: str) -> str:
        """`p` (a path of `fs` under the root) as the user would write it, escaped for display."""
        return display_path(self.typed + p[len(self.root) :] if p.startswith(self.root) else p)

    def url(self, p: str) -> str:
        """`p` as a location open_binary opens (a local path, or `s3://bucket/key`)."""
        return output_url(self.fs, p)

    def shards(self, directory: str) -> list[str]:
        """The output shards directly in `directory` of the run, sorted; [] when it is absent."""
        if not self.fs.isdir(directory):
            return []
        names = (posixpath.basename(f.rstrip("/")) for f in self.fs.ls(directory, detail=False))
        return sorted(posixpath.join(directory, n) for n in names if is_shard(n))


def inspect_path(path: str, sample: int = 3) -> str:
    """A human-readable summary of `path` (local, or a URL such as s3://); InputError (one line)
    when nothing in it is readable."""
    place = _Place.of(path)
    if place.fs.isdir(place.root) and place.fs.isdir(place.join("_run")):
        return _inspect_run(place, sample)
    files = _parquet_files(place)
    if files:
        return _inspect_parquet(place, files, sample)
    return _inspect_input(path, sample)


def inspect_rejected(path: str, stage: str, reason: str | None, n: int = 5) -> str:
    """The first `n` documents stage `stage` of run `path` removed (as `reason`, when given),
    from its rejected/<stage>/ shards in input order: id, URL, excerpt and the stage's scores.
    A run that kept no rejected shards shows the examples in its stats.json. InputError (one
    line) naming the stages or reasons that exist when `stage` or `reason` is not one of them."""
    run = _Place.of(path)
    stats_path = run.join("stats.json")
    if not run.fs.isdir(run.join("_run")):
        raise InputError(
            f"{display_path(path)} is not a run directory (no _run/): --stage "
            "reads a run's rejected documents"
        )
    if not run.fs.isfile(stats_path):
        raise InputError(
            f"{display_path(path)} holds no finished run (no stats.json); rerun "
            "`curate run` to finish it"
        )
    stages = {s["name"]: s for s in json.loads(run.fs.cat_file(stats_path))["stages"]}
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
    shards = run.shards(run.join("rejected", stage))
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
    scores = _score_columns(stage, shard_columns(run.fs, shards[0]))
    docs = []
    for shard in shards:
        for table in read_shard(run.fs, shard, [ID, URL, TEXT, HTML, REASON, *scores]):
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


def _parquet_files(place: _Place, directory: str | None = None) -> list[str]:
    """The place (or its `directory`) if it is a Parquet file, or the Parquet files of a
    directory holding no other input format (names starting with '.' or '_' skipped, as Arrow
    does); [] otherwise."""
    fs, p = place.fs, directory or place.root
    if fs.isfile(p):
        return [p] if p.endswith(".parquet") else []
    if not fs.isdir(p):
        return []
    files = []
    found = fs.find(p, detail=True)
    for f in sorted(found):
        hidden = any(part.startswith((".", "_")) for part in f[len(p) :].strip("/").split("/"))
        if hidden or found[f].get("type") != "file":  # a FIFO or socket is no data file
            continue
        fmt = detect_format(f)
        if fmt == "parquet":
            files.append(f)
        elif fmt is not None:
            return []  # mixed formats: read every unit as `curate run` would
    return files


def _inspect_run(place: _Place, sample: int) -> str:
    fs = place.fs
    out = [f"run directory {place.name(place.root)}"]
    stats_path = place.join("stats.json")
    if fs.exists(stats_path):
        try:
            out += _run_summary(json.loads(fs.cat_file(stats_path)))
        except (ValueError, KeyError, TypeError) as e:
            out.append(f"stats.json is unreadable ({type(e).__name__}: {e}); rerun `curate run`")
    else:
        units = place.join("_run", "units")
        done = len([f for f in fs.find(units) if f.endswith(".json")]) if fs.isdir(units) else 0
        out.append(f"incomplete run: {done} tasks finished; rerun `curate run` to finish it")
    files = _parquet_files(place, place.join("data"))
    if files:
        out.append(_inspect_parquet(place, files, sample))
    elif shards := place.shards(place.join("data")):
        out.append(_inspect_jsonl_shards(fs, shards, sample))
    return "\n".join(out)


def _inspect_jsonl_shards(fs: fsspec.AbstractFileSystem, paths: list[str], sample: int) -> str:
    """Rows, columns (metadata's keys among them) and a sample of a run's JSONL shards."""
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


def _inspect_parquet(place: _Place, files: list[str], sample: int) -> str:
    """Rows, schema (of the first readable file), problems by file and a sample. A file that is
    not Parquet, is cut short or has a column twice is named in a `problem:` line."""
    schema: pa.Schema | None = None
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    total = readable = 0
    for f in files:
        name = place.name(f)
        try:
            with open_binary(place.url(f)) as fh:
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

    # The path typed is read whatever its protocol (a recipe's inputs are limited to
    # input.allowed_protocols; here the user names the location themselves).
    cfg = InputConfig(paths=[path], allowed_protocols=sorted({"file", get_protocol(path)}))
    units = plan_units(cfg, where="the PATH argument")
    out = []
    rows: list[dict[str, Any]] = []
    for unit in units:
        stats = ReaderStats()
        for batch in get_reader(unit.format, cfg).read(unit, stats, 1024):
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
