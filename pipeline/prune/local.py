"""Run a global stage over in-memory tables in this process (tests, benchmarks, notebooks).

Writes each table as one Parquet shard under `work_dir/input`, runs prepare() in a LocalContext
and score_shard + keep per shard, and returns the scored rows of every shard, in order, with a
`reason` column (null = kept).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import REASON
from pipeline.stages.global_base import GlobalStage, LocalContext, ShardRef


def write_shards(tables: list[pa.Table], directory: str) -> list[ShardRef]:
    """One Parquet file per table; ShardRefs indexed 0..n-1 (None path for empty tables)."""
    import os

    os.makedirs(directory, exist_ok=True)
    shards = []
    for i, table in enumerate(tables):
        path = None
        if table.num_rows:
            path = f"{directory}/part-{i:05d}.parquet"
            pq.write_table(table, path)
        shards.append(ShardRef(i, path, table.num_rows))
    return shards


def run_local(
    stage: GlobalStage, tables: list[pa.Table], work_dir: str, num_partitions: int = 4
) -> tuple[pa.Table, dict[str, Any]]:
    """(all shards scored, with `reason`; prepare's summary)."""
    shards = write_shards(tables, f"{work_dir}/input")
    ctx = LocalContext(f"{work_dir}/stage", num_partitions=num_partitions)
    summary = stage.prepare(ctx, shards)
    scored = []
    for shard in shards:
        if shard.path is None:
            continue
        table = stage.score_shard(ctx, shard, shard.read(ctx.fs))
        scored.append(table.append_column(REASON, stage.keep(table)))
    return pa.concat_tables(scored), summary


def rethreshold(stage: GlobalStage, scored: pa.Table) -> pa.Array:
    """keep() of `stage` (e.g. one with other thresholds) on already scored rows."""
    return stage.keep(scored.drop_columns([REASON]) if REASON in scored.column_names else scored)
