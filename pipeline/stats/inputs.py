"""What `curate stats` reads: a run directory (optionally per stage) or plain data files.

Per stage of a run without rerunning it: a document rejected at stage k (0-based, recipe order)
was in the input of stages 0..k, and a kept one in every set. So the input of stage k is
    S_k = data/ + rejected/<stage j>/ for all j >= k,
and S_n (n stages) is the output. Each file therefore carries one number, `reached` = the last
set its documents belong to, and a document is in S_k iff reached >= k. This needs the run to
have kept its rejects (output.keep_rejected); the reconstructed counts are checked against the
run's stats.json. Sets are named by the last stage applied: "input" for S_0, else the label of
stage k-1 (the final set carries the last stage's label). Texts are the ones stored: a kept
document contributes its final text (after text-rewriting stages such as line_corrections) to
every set, and a document rejected before extraction has no text (counted as a document only).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import InputError
from pipeline.io.fields import is_string_type
from pipeline.io.output_shards import is_shard
from pipeline.io.pathnames import display_path
from pipeline.io.sources import filesystem
from pipeline.io.writer import output_url
from pipeline.runner.kernel import error_text

DATA_DIR, REJECTED_DIR, RUN_CONFIG = "data", "rejected", "_run/config.json"
DOLMA = "dolma"  # SourceFile.format of a run's JSONL shard (output.format: jsonl)


@dataclass(frozen=True)
class SourceFile:
    """One input file of the statistics and the last set (index) its documents belong to."""

    index: int
    path: str
    format: str  # parquet, dolma (a run's JSONL shard), or a reader format (jsonl, wet, hf)
    reached: int
    shard: int = 0
    num_shards: int = 1


@dataclass
class StatsInput:
    """The files to read and the names of the nested sets S_0 > S_1 > ... they form."""

    kind: str  # "run" or "data"
    root: str
    sets: list[str]
    files: list[SourceFile]
    expected_docs: list[int] | None = None  # documents per set according to the run
    run_stats: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def num_files(self) -> int:
        return len(self.files)


def is_run_dir(fs: Any, root: str) -> bool:
    return fs.isdir(root) and (fs.exists(f"{root}/{RUN_CONFIG}") or fs.exists(f"{root}/stats.json"))


def resolve_input(path: str, per_stage: bool = False) -> StatsInput:
    """Plan the files of a run directory or of plain data (Parquet, JSONL, WET, HF)."""
    fs, root = filesystem(path, fresh=True)  # a run's files may be rewritten by a rerun
    root = root.rstrip("/") or "/"
    if is_run_dir(fs, root):  # its root as a URL: RUN/stats is written beside it, on its store
        return _run_input(fs, output_url(fs, root), per_stage)
    if per_stage:
        raise InputError(f"--per-stage needs a run directory (made by `curate run`), not {path}")
    return _data_input(path)


def _run_input(fs: Any, root: str, per_stage: bool) -> StatsInput:
    if not fs.exists(f"{root}/stats.json"):
        raise InputError(
            f"{root} holds an unfinished run (no stats.json); rerun the same `curate run` to "
            "finish it first"
        )
    try:
        with fs.open(f"{root}/stats.json", "r", encoding="utf-8") as f:
            stats = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(
            f"{root}/stats.json is unreadable ({error_text(e)}); rerun `curate run`"
        ) from e
    if not (isinstance(stats, dict) and isinstance(stats.get("output"), dict)):
        raise InputError(f"{root}/stats.json is not a run's statistics; rerun `curate run`")
    labels = [s["name"] for s in stats.get("stages", [])]
    n = len(labels)
    data = _shards(fs, f"{root}/{DATA_DIR}")
    if not per_stage:
        name = labels[-1] if labels else "input"
        files = [SourceFile(i, p, shard_format(p), 0) for i, p in enumerate(data)]
        return StatsInput("run", root, [name], files, [stats["output"]["documents"]], stats)
    rejected_total = sum(s.get("docs_rejected", 0) for s in stats.get("stages", []))
    if rejected_total and not _kept_rejected(fs, root):
        raise InputError(
            f"per-stage statistics need the documents each stage removed, but the run in {root} "
            "did not keep them; rerun it with output.keep_rejected: true (curate run "
            "--keep-rejected)"
        )
    paths: list[tuple[str, int]] = [(p, n) for p in data]
    base = f"{root}/{REJECTED_DIR}"
    if fs.exists(base):
        for d in sorted(fs.ls(base, detail=False)):
            label = posixpath.basename(d.rstrip("/"))
            if label not in labels:
                raise InputError(f"{d}: no stage {label!r} in this run's stats.json {labels}")
            paths += [(p, labels.index(label)) for p in _shards(fs, d)]
    files = [SourceFile(i, p, shard_format(p), r) for i, (p, r) in enumerate(paths)]
    expected = [s["docs_in"] for s in stats["stages"]] + [stats["output"]["documents"]]
    return StatsInput("run", root, ["input", *labels], files, expected, stats)


def _glob(fs: Any, pattern: str) -> list[str]:
    """Sorted matches as paths every process can open (the protocol kept for remote files)."""
    return [output_url(fs, p) for p in sorted(fs.glob(pattern))]


def _shards(fs: Any, directory: str) -> list[str]:
    """The output shards (Parquet or JSONL, by output.format) of a run's directory."""
    return [p for p in _glob(fs, f"{directory}/*") if is_shard(p)]


def shard_format(path: str) -> str:
    """`parquet`, or `dolma` for a run's JSONL shard (id, text, source, metadata)."""
    return "parquet" if path.endswith(".parquet") else DOLMA


def _kept_rejected(fs: Any, root: str) -> bool:
    try:
        with fs.open(f"{root}/{RUN_CONFIG}", "r") as f:
            return bool(json.load(f)["recipe"]["output"].get("keep_rejected"))
    except (FileNotFoundError, KeyError, ValueError):
        return fs.exists(f"{root}/{REJECTED_DIR}")


def _data_input(path: str) -> StatsInput:
    from pipeline.io.options import InputConfig
    from pipeline.io.sources import plan_units

    units = plan_units(InputConfig(paths=[path]), where="the RUN_OR_DATA argument")
    bad = sorted({u.path for u in units if u.format == "warc"})
    if bad:
        raise InputError(
            f"{bad[0]} is a WARC file: its records hold HTML, not text; run a recipe with "
            "`extract` (curate run) and point `curate stats` at the run directory"
        )
    files = [SourceFile(u.index, u.path, u.format, 0, u.shard, u.num_shards) for u in units]
    return StatsInput("data", path, ["data"], files)


def parquet_metadata(
    fs: Any, path: str, read_columns: Callable[[list[str]], list[str]]
) -> pq.FileMetaData:
    """The footer of one Parquet file to count, or an InputError naming the file: not Parquet
    (or cut short), one of the columns the statistics read (`read_columns(names)`) twice, or
    `text` / `lang` not a string."""
    name = display_path(path)
    try:
        with fs.open(path, "rb") as fh:
            md = pq.ParquetFile(fh).metadata
        schema = md.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as e:
        raise InputError(
            f"{name}: not a readable Parquet file ({error_text(e)}); repair or remove it"
        ) from e
    names = schema.names
    read = set(read_columns(names))
    twice = sorted({c for c in names if c in read and names.count(c) > 1})
    if twice:
        raise InputError(
            f"{name}: column {', '.join(repr(c) for c in twice)} appears more than once; rename "
            "or drop the duplicate"
        )
    for col in ("text", "lang"):
        if col in read and not is_string_type(schema.field(col).type):
            raise InputError(
                f"{name}: column '{col}' is {schema.field(col).type}, not a string; "
                "`curate stats` counts string columns only"
            )
    return md
