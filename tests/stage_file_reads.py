"""Print (JSON) every file one stage opens during setup() + score() of a Parquet batch.

Run as `python -m tests.stage_file_reads STAGE BATCH.parquet CONFIG_JSON` (keys besides `stage`), one fresh process per stage, so
no cache another stage filled hides a read. Opens are seen through the interpreter's audit hook
("open" events: builtins.open, io.open, os.open and everything built on them). Used by
tests/test_ablate_keys.py to check that a stage's resource files are in its cache key.
"""

from __future__ import annotations

import json
import os
import sys

import pyarrow.parquet as pq

from pipeline.registry import stage_class


def main(stage: str, batch_path: str, config_json: str) -> None:
    batch = pq.read_table(batch_path)
    opened: list[str] = []

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            opened.append(os.path.realpath(os.fsdecode(args[0])))

    cls = stage_class(stage)
    config = cls.config_cls.model_validate({"stage": stage, **json.loads(config_json)})
    sys.addaudithook(hook)
    instance = cls(config)
    instance.setup()
    instance.score(batch)
    instance.close()
    print(json.dumps(sorted(set(opened))))


if __name__ == "__main__":
    main(*sys.argv[1:4])
