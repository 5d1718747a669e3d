"""Runs inside the datatrove venv (never imports our package): one workload from a JSON spec.

    .bench-venv-datatrove/bin/python scripts/bench/peer_driver.py SPEC.json

Modes: `extract` (WarcReader -> Trafilatura -> ParquetWriter), `filters` (JsonlReader ->
GopherRepetition -> GopherQuality -> C4Quality -> FineWebQuality -> ParquetWriter, every filter
with a Parquet exclusion writer), `e2e` (WarcReader -> Trafilatura -> LanguageFilter -> the
four filters -> ParquetWriter) and `cluster` (MinhashDedupCluster alone over the `.dups` files in
`input`, `.remove` files to `output`; scripts/bench_components.py). Prints one JSON line of step
stats at the end.

Words (spec `words`): `default` leaves the filters' `language` at datatrove's default (English),
whose tokenizer (datatrove/assets/tokenizer_assignment.csv) is `SpaCyTokenizer("en")`: spaCy's
blank English pipeline plus its sentencizer, what datatrove's users run (no model download).
`whitespace` gives them `WhitespaceWords` instead (a labelled extra row of the harness).

Language ID (documented in docs/benchmarks.md): FT176LID would download lid.176.bin; `LocalLID`
loads the spec's `lid_model` file (lid.176.ftz, the model our `langid` stage uses) instead.
"""

from __future__ import annotations

import json
import sys
import time

import pyarrow as pa
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupCluster
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
)
from datatrove.pipeline.readers import JsonlReader, WarcReader
from datatrove.pipeline.writers import ParquetWriter
from datatrove.utils.lid import FT176LID
from datatrove.utils.word_tokenizers import WhitespaceTokenizer

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("file_path", pa.string()),
        ("filter_reason", pa.string()),
        ("text", pa.string()),
    ]
)


class WhitespaceWords(WhitespaceTokenizer):
    """Whitespace words; datatrove's fallback regex for sentences (not datatrove's default)."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()


class LocalLID(FT176LID):
    """lid.176 from a local file instead of a download."""

    path = ""

    @property
    def model(self):  # fasttext's _FastText
        if self._model is None:
            from fasttext.FastText import _FastText

            self._model = _FastText(self.path)
        return self._model


def adapter(self, doc) -> dict:  # datatrove's writer-adapter signature
    """A fixed output schema (datatrove infers one from the first document otherwise)."""
    meta = doc.metadata
    return {
        "id": doc.id,
        "url": meta.get("url"),
        "file_path": meta.get("file_path"),
        "filter_reason": meta.get("filter_reason"),
        "text": doc.text,
    }


def writer(folder: str) -> ParquetWriter:
    return ParquetWriter(folder, compression="zstd", adapter=adapter, schema=SCHEMA)


def filters(spec: dict) -> list:
    """The FineWeb chain after language ID (datatrove's examples/fineweb.py settings), with
    datatrove's default word tokenizer unless the spec asks for whitespace words."""
    words = spec.get("words", "default")
    if words not in ("default", "whitespace"):
        raise SystemExit(f"unknown words {words!r}: choose default or whitespace")
    lang = {"language": WhitespaceWords()} if words == "whitespace" else {}

    def excl(name: str) -> ParquetWriter | None:
        return writer(f"{spec['rejected']}/{name}") if spec.get("rejected") else None

    return [
        GopherRepetitionFilter(exclusion_writer=excl("gopher_repetition"), **lang),
        GopherQualityFilter(exclusion_writer=excl("gopher_quality"), **lang),
        C4QualityFilter(
            filter_no_terminal_punct=False, exclusion_writer=excl("c4_quality"), **lang
        ),
        FineWebQualityFilter(exclusion_writer=excl("fineweb_quality"), **lang),
    ]


def extractor(spec: dict) -> Trafilatura:
    """datatrove's Trafilatura step: its defaults (favour_precision, 1 s wall-clock timeout)
    except trafilatura's process-wide deduplication, off as on our side: on replicated WARCs it
    would blank every replica after the first and skip their filtering."""
    timeout = spec.get("timeout")
    extra = {"timeout": timeout} if timeout is not None else {}
    return Trafilatura(deduplicate=False, **extra)


def pipeline(spec: dict) -> list:
    mode = spec["mode"]
    if mode == "cluster":  # FineWeb's banding: the step only checks the .dups count against it
        config = MinhashConfig(num_buckets=spec["buckets"], hashes_per_bucket=8)
        return [MinhashDedupCluster(spec["input"], spec["output"], config=config)]
    if mode == "filters":
        return [
            JsonlReader(spec["input"], glob_pattern="*.jsonl"),
            *filters(spec),
            writer(spec["output"]),
        ]
    steps = [
        WarcReader(spec["input"], glob_pattern="*.warc.gz"),
        extractor(spec),
    ]
    if mode == "e2e":
        lid = LanguageFilter(languages=["en"], language_threshold=0.65)
        lid.model = LocalLID(["en"])
        lid.model.path = spec["lid_model"]
        steps += [lid, *filters(spec)]
    return [*steps, writer(spec["output"])]


def step_time(time_stats: object) -> float | None:
    """A step's total seconds from its stats.json `time_stats` (a bare number for a step that
    saw no document)."""
    if isinstance(time_stats, dict):
        return time_stats.get("total")
    return float(time_stats) if isinstance(time_stats, int | float) else None


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    t0 = time.perf_counter()
    executor = LocalPipelineExecutor(
        pipeline(spec),
        tasks=spec["tasks"],
        workers=spec["workers"],
        logging_dir=spec["logs"],
    )
    executor.run()
    with open(f"{spec['logs']}/stats.json") as f:
        stats = json.load(f)
    steps = [
        {
            "name": s.get("name"),
            "stats": s.get("stats", {}),
            "time": s.get("time_stats", {}),
            "time_s": step_time(s.get("time_stats")),
        }
        for s in stats
    ]
    print(json.dumps({"wall_s": time.perf_counter() - t0, "steps": steps}))


if __name__ == "__main__":
    main()
