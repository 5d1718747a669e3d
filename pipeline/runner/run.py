"""`curate run`: plan units, guard the output directory, resume, execute, account, report.

Output layout (shown for output.format: parquet; jsonl writes part-NNNNN.jsonl.zst, .jsonl.gz or
.jsonl by output.compression, with the same names otherwise):
  data/part-NNNNN.parquet               kept documents, one shard per input unit
  rejected/<stage>/part-NNNNN.parquet   removed documents with a `reason` (output.keep_rejected)
  stats.json, report.md, report.html    run totals, written when every unit is done
  figures/<stage>.svg                   score histogram of each classifier stage
  _run/config.json, config.yaml         the resolved recipe and its hash
  _run/run.log                          every log line of the run, Ray's own warnings included
  _run/inputs.json                      the input files' identities (a rerun needs the same)
  _run/units/segNN/part-NNNNN.json      completion marker + stats of each finished task
  _run/global/segNN.json                completion marker + summary of a global stage's prepare
  _work/                                shards between segments and global stages' files (with
                                        _tasks/: their prepare tasks' records, for a resume)
                                        (removed after a successful run)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import yaml

from pipeline import __version__
from pipeline.config import Recipe, recipe_changes
from pipeline.errors import CurateError, OutputError
from pipeline.io.atomic import atomic_write, remove_temp_files, write_json_atomic
from pipeline.io.base import InputUnit
from pipeline.io.limit import limit_units
from pipeline.io.pathnames import json_safe
from pipeline.io.sources import plan_units
from pipeline.io.writer import output_fs, output_url
from pipeline.registry import stage_class
from pipeline.runner.accounting import (
    check_error_fractions,
    check_input_yielded,
    check_run,
    merge_segments,
    sum_units,
)
from pipeline.runner.executors import (
    RayPool,
    RecipeJob,
    execute,
    global_context,
    ray_pool,
    resolve_executor,
)
from pipeline.runner.inputs import check_inputs
from pipeline.runner.lock import check_unheld, output_lock
from pipeline.runner.plan import check_plan, preflight_input
from pipeline.runner.progress import PhaseLog, Progress
from pipeline.runner.report import write_report
from pipeline.runner.report_html import FIGURES_DIR, HTML_REPORT, write_report_html
from pipeline.runner.resumable import ResumableContext, stage_fingerprint
from pipeline.runner.runlog import log_path, run_log
from pipeline.runner.unit import (
    DATA_DIR,
    GLOBAL_DIR,
    REJECTED_DIR,
    RUN_DIR,
    UNITS_DIR,
    WORK_DIR,
    Segment,
    ShardTask,
    global_work_dir,
    marker_path,
    plan_segments,
    stage_labels,
    write_marker,
)
from pipeline.stages.global_base import ShardRef

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run produced."""

    output: str
    stats: dict[str, Any]
    units_run: int  # tasks run in this invocation (all segments)
    units_skipped: int  # tasks found finished from an earlier invocation
    files: int = 0  # input units (files, or shards of an HF dataset)
    files_run: int = 0  # ... of them with a task run in this invocation (the rest resumed)
    executor: str = ""  # the executor that ran it (`auto` resolved)


def run_recipe(
    recipe: Recipe,
    *,
    overwrite: bool = False,
    input_plan: tuple[list[InputUnit], int] | None = None,
) -> RunResult:
    """Run a recipe to completion (resuming finished work) and return its totals.
    `input_plan`: what plan_run_input returns, when the caller has planned (and checked) the
    same input already (an ablation's variants: `input.limit`'s documents are read once)."""
    with output_lock(recipe.output.path, "curate run"):
        return _run_locked(recipe, overwrite, input_plan)


def _run_locked(
    recipe: Recipe, overwrite: bool, input_plan: tuple[list[InputUnit], int] | None
) -> RunResult:
    """run_recipe's work, with the output directory's writer lock held."""
    started = time.perf_counter()
    units, planned = input_plan or plan_run_input(recipe)
    fs, root = output_fs(recipe.output.path)
    config_hash = recipe.config_hash()
    claim_output(fs, root, recipe, config_hash, overwrite)
    with run_log(log_path(recipe.output.path, RUN_DIR)):
        identities = check_inputs(fs, root, recipe.output.path, units, overwrite)
        sizes = [i["size"] for i in identities]
        auto = recipe.runtime.executor == "auto"
        if auto:
            chosen = resolve_executor(recipe.runtime, sizes).executor
            recipe = recipe.with_overrides(runtime={"executor": chosen})
        return _run_segments(recipe, fs, root, config_hash, units, planned, sizes, started, auto)


def _run_segments(
    recipe: Recipe,
    fs: Any,
    root: str,
    config_hash: str,
    units: list[InputUnit],
    planned: int,
    sizes: list[int | None],
    started: float,
    auto: bool,
) -> RunResult:
    """Every segment's tasks (resuming finished ones), then the run's stats and report.
    `planned`: the units of the input before `input.limit`; `auto`: the executor was chosen by
    `executor: auto` (a small prepare then runs in this process). On Ray, every segment and
    prepare phase runs on the same actors (ray_pool)."""
    remove_partial_files(fs, root)
    with ray_pool(recipe.runtime) as pool:
        markers, ran, skipped, ran_units, global_summaries = _run_all_segments(
            recipe, fs, root, units, sizes, auto, pool
        )
    remove_partial_files(fs, root)  # left by workers killed mid-write (their task was retried)
    unit_results = [merge_segments([m[u.index] for m in markers]) for u in units]
    stats = json_safe(
        _run_stats(recipe, config_hash, units, unit_results, time.perf_counter() - started)
    )
    if recipe.input.limit is not None:
        stats["inputs"].update(limit=recipe.input.limit, units_planned=planned)
    if recipe.input.sample_files is not None:
        stats["inputs"].update(sample_files=recipe.input.sample_files, seed=recipe.input.seed)
    stats["global"] = global_summaries
    _write_json(fs, f"{root}/stats.json", stats)
    write_report(fs, f"{root}/report.md", stats)
    write_report_html(fs, root, stats)
    if fs.exists(f"{root}/{WORK_DIR}"):
        fs.rm(f"{root}/{WORK_DIR}", recursive=True)
    check_input_yielded(stats["reader"], len(units))
    check_error_fractions(stats["stages"], recipe.runtime.max_error_fraction)
    return RunResult(
        recipe.output.path,
        stats,
        units_run=ran,
        units_skipped=skipped,
        files=len(units),
        files_run=len(ran_units),
        executor=recipe.runtime.executor,
    )


def _run_all_segments(
    recipe: Recipe,
    fs: Any,
    root: str,
    units: list[InputUnit],
    sizes: list[int | None],
    auto: bool,
    pool: RayPool | None,
) -> tuple[list[dict[int, dict[str, Any]]], int, int, set[int], dict[str, Any]]:
    """Every segment's tasks and every global stage's prepare, resuming finished ones: (each
    segment's results by unit index, tasks run, tasks skipped, units with a task run, the
    global stages' summaries)."""
    segments = plan_segments(recipe)
    labels = stage_labels(recipe)
    ran = skipped = 0
    ran_units: set[int] = set()
    markers: list[dict[int, dict[str, Any]]] = []
    global_summaries: dict[str, Any] = {}
    for segment in segments:
        done = _finished(fs, root, segment.index)
        if segment.global_stage is not None:
            shards = _shards_of(units, markers[-1], root)
            label = labels[segment.global_stage]
            global_summaries[label] = _prepare_global(
                recipe, fs, root, segment, label, shards, auto=auto, pool=pool
            )
            tasks: list[Any] = [
                ShardTask(segment.index, shard, unit)
                for shard, unit in zip(shards, units, strict=True)
                if unit.index not in done
            ]
            weights = {u.index: int(markers[-1][u.index]["output_bytes"]) for u in units}
        else:
            tasks = [u for u in units if u.index not in done]
            weights = {u.index: int(size or 0) for u, size in zip(units, sizes, strict=True)}
        skipped += len(units) - len(tasks)
        names = ", ".join(labels[p] for p in segment.positions) or "read"
        log.info(
            "segment %d (%s): %d units, %d already finished",
            segment.index,
            names,
            len(units),
            len(units) - len(tasks),
        )
        todo = {_unit_of(t).index for t in tasks}
        progress = Progress(
            f"segment {segment.index}/{len(segments) - 1}" if len(segments) > 1 else "curate",
            total=len(units),
            total_bytes=sum(weights.values()),
            done=len(units) - len(tasks),
            done_bytes=sum(w for i, w in weights.items() if i not in todo),
            what="files" if segment.index == 0 else "shards",
            mode=recipe.runtime.progress,
        )
        done.update(_execute(recipe, tasks, progress, weights, pool))
        units = [replace(u, preread=None) for u in units]  # read: its batches are not kept
        ran += len(tasks)
        ran_units |= todo
        markers.append(done)
    return markers, ran, skipped, ran_units, global_summaries


def plan_run_input(recipe: Recipe) -> tuple[list[InputUnit], int]:
    """(the units a run reads, how many the input has): the input planned and checked against
    the stage chain (before any work), then cut to the units that hold `input.limit` documents."""
    planned = plan_units(recipe.input, exclude=(recipe.output.path,))
    check_plan(recipe, {u.format for u in planned})
    units = limit_units(planned, recipe.input, recipe.runtime.batch_size)
    preflight_input(recipe, units)
    return units, len(planned)


def _unit_of(task: Any) -> InputUnit:
    return task.unit if isinstance(task, ShardTask) else task


def _execute(
    recipe: Recipe,
    tasks: list[Any],
    progress: Progress,
    weights: dict[int, int],
    pool: RayPool | None = None,
) -> dict[int, dict[str, Any]]:
    """Run tasks with the recipe's executor (on Ray: `pool`'s actors), showing `progress` (a
    task's bytes: `weights` by unit index); results by unit index."""
    results: dict[int, dict[str, Any]] = {}
    if not tasks:
        progress.close()
        return results
    local = recipe.runtime.executor != "ray"
    job = RecipeJob(recipe, on_batch=progress.read if local else None)
    try:
        for result in execute(job, tasks, recipe.runtime, pool):
            index = result["unit"]["index"]
            results[index] = result
            progress.advance(result, weights.get(index, 0))
    except Exception as exc:
        user_error = worker_user_error(exc)
        if user_error is not None:
            raise user_error from None
        raise CurateError(
            f"run failed: {_root_cause(exc)}. Finished units are kept; rerun the same command "
            f"to resume."
        ) from exc
    finally:
        progress.close()
    return results


def _shards_of(
    units: list[InputUnit], previous: dict[int, dict[str, Any]], root: str
) -> list[ShardRef]:
    """The previous segment's output shards, one per unit (path None when it kept nothing)."""
    refs = []
    for u in units:
        m = previous[u.index]
        path = f"{root}/{m['output_file']}" if m["output_file"] else None
        refs.append(ShardRef(u.index, path, m["output_docs"]))
    return refs


def _prepare_global(
    recipe: Recipe,
    fs: Any,
    root: str,
    segment: Segment,
    label: str,
    shards: list[ShardRef],
    auto: bool = False,
    pool: RayPool | None = None,
) -> dict[str, Any]:
    """Run a global stage's prepare() once; a finished one is found by its marker, an interrupted
    one resumes from its finished tasks (runner/resumable.py). `auto`
    (executor chosen by `executor: auto`): a prepare over few documents runs in this process
    even on Ray (executors.PREPARE_LOCAL_MAX_DOCS); on Ray, its phases run on `pool`'s actors."""
    marker = f"{root}/{GLOBAL_DIR}/seg{segment.index:02d}.json"
    if fs.exists(marker):
        with fs.open(marker, "r") as f:
            return json.load(f)["summary"]
    work = global_work_dir(root, segment.index, label)
    cfg = recipe.stages[segment.global_stage]  # type: ignore[index]
    stage = stage_class(cfg.stage)(cfg)  # type: ignore[attr-defined]
    started = time.perf_counter()
    documents = sum(s.num_rows for s in shards)
    log.info(
        "global stage %s: preparing over %d shards (%d documents)", label, len(shards), documents
    )
    try:
        inputs = stage_fingerprint(
            recipe.config_hash(), segment.index, label, shards, stage.prepare_inputs()
        )
        inner = global_context(recipe, output_url(fs, work), documents if auto else None, pool)
        tasks = ResumableContext(inner, inputs, label)
        summary = stage.prepare(PhaseLog(tasks, label), shards)
    except CurateError:
        raise
    except Exception as exc:
        user_error = worker_user_error(exc)  # e.g. a ConfigError raised in a Ray task
        if user_error is not None:
            raise user_error from None
        raise CurateError(f"global stage {label} failed: {_root_cause(exc)}") from exc
    wall = round(time.perf_counter() - started, 3)
    summary = {**summary, **tasks.counts(), "prepare_wall_s": wall}
    write_marker(fs, marker, {"stage": label, "summary": summary})
    return summary


def claim_output(fs: Any, root: str, recipe: Recipe, config_hash: str, overwrite: bool) -> None:
    """Refuse an output directory that holds another config's run, unless overwriting."""
    marker = f"{root}/{RUN_DIR}/config.json"
    if fs.exists(marker):
        with fs.open(marker, "r") as f:
            record = json.load(f)
        previous = record.get("config_hash")
        if previous != config_hash and not overwrite:
            changes = recipe_changes(record.get("recipe") or {}, recipe.to_dict())
            if record.get("version") != __version__:
                changes.append(f"curate version {record.get('version')} -> {__version__}")
            raise OutputError(
                f"{recipe.output.path} holds a run of a different config: "
                f"{'; '.join(changes) or 'the content of output.tokenizer changed'} "
                f"(hash {previous} -> {config_hash}); choose another --output or pass --overwrite"
            )
    elif any(fs.exists(f"{root}/{d}") for d in (DATA_DIR, REJECTED_DIR)) and not overwrite:
        raise OutputError(
            f"{recipe.output.path} holds data but no run record; choose another --output or "
            f"pass --overwrite"
        )
    if overwrite:
        _clear_run(fs, root)
    fs.makedirs(f"{root}/{RUN_DIR}", exist_ok=True)
    _write_json(
        fs,
        marker,
        {"config_hash": config_hash, "version": __version__, "recipe": recipe.to_dict()},
    )
    with atomic_write(fs, f"{root}/{RUN_DIR}/config.yaml", "w") as f:
        f.write(f"# the resolved recipe of {recipe.source}\n")
        f.writelines(f"# --set {setting}\n" for setting in recipe.settings)
        yaml.safe_dump(recipe.to_dict(), f, sort_keys=False, allow_unicode=True)


def _clear_run(fs: Any, root: str) -> None:
    """Delete what a run writes (and only that) from the output directory."""
    check_unheld(fs, f"{root}/stats")  # `curate stats` may be writing there
    written = ("stats", "stats.json", "report.md", HTML_REPORT, FIGURES_DIR)
    for name in (DATA_DIR, REJECTED_DIR, RUN_DIR, WORK_DIR, *written):
        path = f"{root}/{name}"
        if fs.exists(path):
            fs.rm(path, recursive=True)


def remove_partial_files(fs: Any, root: str) -> None:
    """Delete temporary files left by an interrupted run (they were never visible as shards)."""
    for base in (DATA_DIR, REJECTED_DIR, UNITS_DIR, WORK_DIR, GLOBAL_DIR):
        remove_temp_files(fs, f"{root}/{base}")


def _finished(fs: Any, root: str, segment: int) -> dict[int, dict[str, Any]]:
    """Stats of the tasks of `segment` whose completion marker exists, by unit index."""
    path = marker_path(root, segment, 0).rsplit("/", 1)[0]
    if not fs.exists(path):
        return {}
    done = {}
    for f in fs.find(path):
        if f.endswith(".json"):
            with fs.open(f, "r") as fh:
                m = json.load(fh)
            done[m["unit"]["index"]] = m
    return done


def _run_stats(
    recipe: Recipe,
    config_hash: str,
    units: list[InputUnit],
    results: list[dict[str, Any]],
    wall_s: float,
) -> dict[str, Any]:
    for r in results:  # each unit across all its segments, then the totals
        check_run(r["reader"], r["stages"], r["output_docs"])
    totals = sum_units(results, stage_labels(recipe))
    check_run(totals["reader"], totals["stages"], totals["output_docs"])
    return {
        "name": recipe.name,
        "config_hash": config_hash,
        "version": __version__,
        "inputs": {"units": len(units), "formats": sorted({u.format for u in units})},
        "reader": totals["reader"],
        "stages": totals["stages"],
        "output": {
            "documents": totals["output_docs"],
            "bytes": totals["output_bytes"],
            "format": recipe.output.format,
            "files": sorted(r["output_file"] for r in results if r["output_file"]),
        },
        "accounting": "ok",
        "wall_s": round(wall_s, 3),
        "units": [
            {
                "index": r["unit"]["index"],
                "path": r["unit"]["path"],
                "documents_in": r["reader"]["documents"],
                "documents_out": r["output_docs"],
                "errors": r["reader"]["errors"],
            }
            for r in results
        ],
    }


def _write_json(fs: Any, path: str, payload: dict[str, Any]) -> None:
    """stats.json and the run's config copy, atomically (tests/faults patch this name); file
    names escaped (json_safe)."""
    write_json_atomic(fs, path, json_safe(payload), indent=2, ensure_ascii=False)


def worker_user_error(exc: BaseException) -> CurateError | None:
    """The CurateError a task raised (a config problem found while reading, an accounting
    violation), unwrapped from Ray's task error so the user sees one line, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        wrapped = type(seen).__name__.startswith("RayTaskError") or hasattr(seen, "traceback_str")
        if isinstance(seen, CurateError) and not wrapped:
            return seen
        if isinstance(seen, CurateError):  # Ray's dual-class copy: rebuild the plain error
            cause = getattr(seen, "cause", None)
            if isinstance(cause, CurateError):
                return cause
        seen = getattr(seen, "cause", None) or seen.__cause__
    return None


def _root_cause(exc: BaseException) -> str:
    """The innermost error message (Ray wraps worker exceptions)."""
    cause = getattr(exc, "cause", None) or exc.__cause__
    while cause is not None and (getattr(cause, "cause", None) or cause.__cause__):
        cause = getattr(cause, "cause", None) or cause.__cause__
    target = cause or exc
    return f"{type(target).__name__}: {target}"
