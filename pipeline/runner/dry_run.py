"""`curate run --dry-run`: the plan of a run, checked as a run checks it, with nothing written."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pipeline.config import Recipe, recipe_changes
from pipeline.io.sources import unit_identity
from pipeline.io.writer import output_fs
from pipeline.runner.plan import recipe_contracts
from pipeline.runner.run import plan_run_input
from pipeline.runner.unit import RUN_DIR, plan_segments, stage_labels


def describe_plan(recipe: Recipe) -> str:
    """The run's units and bytes, its stages with the columns each needs and produces, its
    global phases and its output path; the same checks as a run (ConfigError / InputError), no
    file or directory created."""
    units, planned = plan_run_input(recipe)
    sizes = [unit_identity(u)["size"] for u in units]
    formats = Counter(u.format for u in units)
    lines = [
        f"plan of {recipe.source} (dry run: nothing is written)",
        f"input: {len(units)} unit(s) ({', '.join(f'{n} {f}' for f, n in sorted(formats.items()))}"
        f"), {_size(sizes)}",
    ]
    if recipe.input.sample_files is not None:
        lines.append(
            f"  sample_files {recipe.input.sample_files:,}: {planned} file(s) chosen by seed "
            f"{recipe.input.seed}"
        )
    if recipe.input.limit is not None:
        cut = units[-1].limit
        lines.append(
            f"  limit {recipe.input.limit:,} documents: the first {len(units)} of {planned} "
            f"unit(s) in order" + (f", the last one cut at {cut:,} documents" if cut else "")
        )
    labels = stage_labels(recipe)
    width = max(len(label) for label in labels)
    lines.append("stages:")
    for pos, (label, c) in enumerate(zip(labels, recipe_contracts(recipe), strict=True)):
        drops = f"; drops {_cols(c.drops)}" if c.drops else ""
        lines.append(
            f"  [{pos}] {label:<{width}}  {c.kind:<6}  needs {_cols(c.requires)}; "
            f"produces {_cols(c.produces)}{drops}"
        )
    segments = plan_segments(recipe)
    if len(segments) > 1:
        lines.append("global phases (each waits for every unit of the phase before it):")
        for seg in segments:
            head = (
                "read each unit"
                if seg.global_stage is None
                else f"{labels[seg.global_stage]} prepare over all units' shards, then per shard"
            )
            maps = ", ".join(labels[p] for p in seg.map_stages)
            lines.append(f"  seg{seg.index:02d}: {head}" + (f" -> {maps}" if maps else ""))
    lines.append(f"output: {recipe.output.path} ({_output_state(recipe)})")
    return "\n".join(lines)


def _output_state(recipe: Recipe) -> str:
    """What a run would find in the output directory (read only)."""
    fs, root = output_fs(recipe.output.path)
    marker = f"{root}/{RUN_DIR}/config.json"
    if not fs.exists(root):
        return "new"
    if not fs.exists(marker):
        return "exists, no run in it"
    with fs.open(marker, "r") as f:
        record: dict[str, Any] = json.load(f)
    if record.get("config_hash") == recipe.config_hash():
        return "holds a run of this config: a run resumes it"
    changes = recipe_changes(record.get("recipe") or {}, recipe.to_dict())
    return (
        f"holds a run of another config ({'; '.join(changes) or 'other version'}): a run is "
        "refused without --overwrite"
    )


def _cols(columns: tuple[str, ...]) -> str:
    return ", ".join(columns) if columns else "-"


def _size(sizes: list[int | None]) -> str:
    known = [s for s in sizes if s is not None]
    total = f"{sum(known) / 2**20:,.1f} MiB" if known else "size unknown"
    return total + (
        f" ({len(sizes) - len(known)} of unknown size)" if len(known) < len(sizes) else ""
    )
