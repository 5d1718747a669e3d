"""Work files shared by the dedup stages: the document key, per-shard file names, the manifest.

A document's key is `shard.index << ROW_BITS | row`: explicit, global and stable. Rows are
positional, so `score_shard` must see the very shard `prepare` read; the manifest records each
shard's row count and `read_manifest` checks it.
"""

from __future__ import annotations

from typing import Any

import fsspec

from pipeline.io.atomic import read_json, write_json_atomic

ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1
MANIFEST = "manifest.json"


def shard_path(work_dir: str, kind: str, index: int) -> str:
    """The `kind` work file of shard `index`."""
    return f"{work_dir}/{kind}/{index:06d}.bin"


def write_manifest(fs: fsspec.AbstractFileSystem, work_dir: str, manifest: dict[str, Any]) -> None:
    """What prepare() decided ({"rows": {shard: rows}, ...}), for score_shard."""
    write_json_atomic(fs, f"{work_dir}/{MANIFEST}", manifest)


def read_manifest(
    fs: fsspec.AbstractFileSystem, work_dir: str, shard_index: int, rows: int
) -> dict[str, Any]:
    """The manifest, after checking that prepare() saw `rows` rows in the shard."""
    manifest = read_json(fs, f"{work_dir}/{MANIFEST}")
    expected = manifest["rows"].get(str(shard_index), 0)
    if expected != rows:
        raise ValueError(f"shard {shard_index}: prepare() saw {expected} rows, now {rows}")
    return manifest
