"""The input set of a run, recorded in `_run/inputs.json`: a rerun resumes only over the same files.

Finished units are found by their index in the sorted plan, so a rerun over an input set with a
file added, removed or changed would pair markers with the wrong files (a file never read,
another read twice). The first run records every unit's identity (path, shard, size, mtime or
etag); a rerun compares and refuses any difference before work, naming the files.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import OutputError
from pipeline.io.atomic import read_json, write_json_atomic
from pipeline.io.base import InputUnit
from pipeline.io.sources import unit_identity
from pipeline.runner.unit import RUN_DIR, UNITS_DIR

INPUTS_FILE = f"{RUN_DIR}/inputs.json"
_NAMED = 3  # files named per kind of difference in the message


def check_inputs(
    fs: Any, root: str, output: str, units: list[InputUnit], overwrite: bool = False
) -> list[dict[str, Any]]:
    """Record the input set of a fresh run; refuse a rerun whose input set differs from the
    recorded one (OutputError naming the files) unless `overwrite`. Returns the units'
    identities (unit_identity: path, size, ...)."""
    current = [unit_identity(u) for u in units]
    path = f"{root}/{INPUTS_FILE}"
    if not overwrite:
        if fs.exists(path):
            recorded = read_json(fs, path)["units"]
            difference = describe_difference(recorded, current)
            if difference:
                raise OutputError(
                    f"{output} holds a run over other input files ({difference}); rerun with "
                    "the same files, or pass --overwrite to start over"
                )
            return current
        if fs.exists(f"{root}/{UNITS_DIR}"):
            raise OutputError(
                f"{output} holds a run that did not record its input files; pass --overwrite "
                "to start over"
            )
    write_json_atomic(fs, path, {"units": current}, indent=1)
    return current


def describe_difference(recorded: list[dict[str, Any]], current: list[dict[str, Any]]) -> str:
    """'added a, b; removed c; changed d' between two input sets ('' when they are equal)."""

    def keyed(identities: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
        return {(u["path"], u["shard"]): u for u in identities}

    old, new = keyed(recorded), keyed(current)
    kinds = {
        "added": [k for k in new if k not in old],
        "removed": [k for k in old if k not in new],
        "changed": [k for k in new if k in old and new[k] != old[k]],
    }
    parts = []
    for kind, keys in kinds.items():
        if keys:
            names = [_name(k, new.get(k) or old[k]) for k in sorted(keys)]
            more = f" and {len(names) - _NAMED} more" if len(names) > _NAMED else ""
            parts.append(f"{kind} {', '.join(names[:_NAMED])}{more}")
    return "; ".join(parts)


def _name(key: tuple[str, int], identity: dict[str, Any]) -> str:
    path, shard = key
    return path if identity["num_shards"] == 1 else f"{path}#shard={shard}"
