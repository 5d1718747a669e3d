"""`curate run`: plan units, guard the output directory, resume, execute, account, report.

Output layout:
  data/part-NNNNN.parquet          kept documents, one shard per input unit
  rejected/<stage>/part-NNNNN.parquet   removed documents with a `reason` (output.keep_rejected)
  _run/config.json, config.yaml    the resolved recipe and its hash
  _run/units/part-NNNNN.json       completion marker + stats of each finished unit
  stats.json, report.md            run totals, written when every unit is done
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import yaml

from pipeline import __version__
from pipeline.config import Recipe
from pipeline.errors import CurateError, OutputError
from pipeline.io.base import InputUnit
from pipeline.io.sources import plan_units
from pipeline.io.writer import TMP_MARK, output_fs
from pipeline.runner.accounting import check_run, sum_units
from pipeline.runner.executors import executor_for
from pipeline.runner.progress import Progress
from pipeline.runner.report import write_report
from pipeline.runner.unit import (
    DATA_DIR,
    REJECTED_DIR,
    RUN_DIR,
    UNITS_DIR,
    shard_name,
    stage_labels,
)

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run produced."""

    output: str
    stats: dict[str, Any]
    units_run: int
    units_skipped: int


def run_recipe(recipe: Recipe, *, overwrite: bool = False) -> RunResult:
    """Run a recipe to completion (resuming finished units) and return its totals."""
    started = time.perf_counter()
    units = plan_units(recipe.input)
    fs, root = output_fs(recipe.output.path)
    config_hash = recipe.config_hash()
    _claim_output(fs, root, recipe, config_hash, overwrite)
    _remove_partial_files(fs, root)

    done = _finished_units(fs, root)
    todo = [u for u in units if shard_name(u) not in done]
    log.info(
        "%d units planned, %d already finished, %d to run",
        len(units),
        len(units) - len(todo),
        len(todo),
    )

    progress = Progress(total=len(units), done=len(units) - len(todo), mode=recipe.runtime.progress)
    executor = executor_for(recipe)
    try:
        for result in executor(recipe, todo) if todo else ():
            done[shard_name_of(result)] = result
            progress.advance(result)
    except CurateError:
        raise
    except Exception as exc:
        raise CurateError(
            f"run failed: {_root_cause(exc)}. Finished units are kept; rerun the same command "
            f"to resume."
        ) from exc
    finally:
        progress.close()

    unit_results = [done[shard_name(u)] for u in units]
    stats = _run_stats(recipe, config_hash, units, unit_results, time.perf_counter() - started)
    _write_json(fs, f"{root}/stats.json", stats)
    write_report(fs, f"{root}/report.md", stats)
    return RunResult(
        recipe.output.path, stats, units_run=len(todo), units_skipped=len(units) - len(todo)
    )


def shard_name_of(result: dict[str, Any]) -> str:
    return f"part-{result['unit']['index']:05d}"


def _claim_output(fs: Any, root: str, recipe: Recipe, config_hash: str, overwrite: bool) -> None:
    """Refuse an output directory that holds another config's run, unless overwriting."""
    marker = f"{root}/{RUN_DIR}/config.json"
    if fs.exists(marker):
        with fs.open(marker, "r") as f:
            previous = json.load(f).get("config_hash")
        if previous != config_hash and not overwrite:
            raise OutputError(
                f"{recipe.output.path} holds a run of a different config (hash {previous}, "
                f"this one {config_hash}); choose another --output or pass --overwrite"
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
    with fs.open(f"{root}/{RUN_DIR}/config.yaml", "w") as f:
        yaml.safe_dump(recipe.to_dict(), f, sort_keys=False, allow_unicode=True)


def _clear_run(fs: Any, root: str) -> None:
    """Delete what a run writes (and only that) from the output directory."""
    for name in (DATA_DIR, REJECTED_DIR, RUN_DIR, "stats.json", "report.md"):
        path = f"{root}/{name}"
        if fs.exists(path):
            fs.rm(path, recursive=True)


def _remove_partial_files(fs: Any, root: str) -> None:
    """Delete temporary files left by an interrupted run (they were never visible as shards)."""
    for base in (DATA_DIR, REJECTED_DIR, UNITS_DIR):
        path = f"{root}/{base}"
        if not fs.exists(path):
            continue
        for f in fs.find(path):
            if TMP_MARK in f.rsplit("/", 1)[-1] or f.endswith(".tmp"):
                fs.rm(f)


def _finished_units(fs: Any, root: str) -> dict[str, dict[str, Any]]:
    """Stats of the units whose completion marker exists."""
    path = f"{root}/{UNITS_DIR}"
    if not fs.exists(path):
        return {}
    done = {}
    for f in fs.find(path):
        if f.endswith(".json"):
            with fs.open(f, "r") as fh:
                done[f.rsplit("/", 1)[-1][: -len(".json")]] = json.load(fh)
    return done


def _run_stats(
    recipe: Recipe,
    config_hash: str,
    units: list[InputUnit],
    results: list[dict[str, Any]],
    wall_s: float,
) -> dict[str, Any]:
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
    tmp = f"{path}.tmp"
    with fs.open(tmp, "w") as f:
        json.dump(payload, f, indent=2, ensure_ascii=False)
    fs.mv(tmp, path)


def _root_cause(exc: BaseException) -> str:
    """The innermost error message (Ray wraps worker exceptions)."""
    cause = getattr(exc, "cause", None) or exc.__cause__
    while cause is not None and (getattr(cause, "cause", None) or cause.__cause__):
        cause = getattr(cause, "cause", None) or cause.__cause__
    target = cause or exc
    return f"{type(target).__name__}: {target}"
