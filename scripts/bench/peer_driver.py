"""Runs inside the datatrove venv (never imports our package): one workload from a JSON spec.

    .bench-venv-datatrove/bin/python scripts/bench/peer_driver.py SPEC.json

Modes: `extract` (WarcReader -> Trafilatura -> ParquetWriter), `filters` (JsonlReader ->
GopherRepetition -> GopherQuality -> C4Quality -> FineWebQuality -> ParquetWriter, every filter
with a Parquet exclusion writer), `e2e` (WarcReader -> Trafilatura -> LanguageFilter -> the
four filters -> ParquetWriter) and `cluster` (MinhashDedupCluster alone over the `.dups` files in
`input`, `.remove` files to `output`; scripts/bench_components.py). Prints one JSON line of step
stats at the end.

Offline adaptations, both documented in docs/benchmarks.md:
- Words: datatrove's English tokenizer is NLTK punkt, whose data cannot be downloaded here. The
  filters get `OfflineTokenizer`: words = whitespace split (as scripts/bench_dedup.py does);
  sentences (C4's count) = datatrove's own fallback sentence regex (its WhitespaceTokenizer, whose
  word splitting would need spaCy).
- Language ID: FT176LID would download lid.176.bin; `LocalLID` loads the spec's `lid_model` file
  (lid.176.ftz, the model our `langid` stage uses) instead.
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


class OfflineTokenizer(WhitespaceTokenizer):
    """Whitespace words; datatrove's fallback regex for sentences (no NLTK data, no spaCy)."""

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


def filters(spec: dict, tok: OfflineTokenizer) -> list:
    """The FineWeb chain after language ID (datatrove's examples/fineweb.py settings)."""

    def excl(name: str) -> ParquetWriter | None:
        return writer(f"{spec['rejected']}/{name}") if spec.get("rejected") else None

    return [
        GopherRepetitionFilter(language=tok, exclusion_writer=excl("gopher_repetition")),
        GopherQualityFilter(language=tok, exclusion_writer=excl("gopher_quality")),
        C4QualityFilter(
            filter_no_terminal_punct=False, language=tok, exclusion_writer=excl("c4_quality")
        ),
        FineWebQualityFilter(language=tok, exclusion_writer=excl("fineweb_quality")),
    ]


def pipeline(spec: dict) -> list:
    tok = OfflineTokenizer()
    mode = spec["mode"]
    if mode == "cluster":  # FineWeb's banding: the step only checks the .dups count against it
        config = MinhashConfig(num_buckets=spec["buckets"], hashes_per_bucket=8)
        return [MinhashDedupCluster(spec["input"], spec["output"], config=config)]
    if mode == "filters":
        return [
            JsonlReader(spec["input"], glob_pattern="*.jsonl"),
            *filters(spec, tok),
            writer(spec["output"]),
        ]
    steps = [
        WarcReader(spec["input"], glob_pattern="*.warc.gz"),
        Trafilatura(favour_precision=True, deduplicate=False, timeout=spec.get("timeout", 5.0)),
    ]
    if mode == "e2e":
        lid = LanguageFilter(languages=["en"], language_threshold=0.65)
        lid.model = LocalLID(["en"])
        lid.model.path = spec["lid_model"]
        steps += [lid, *filters(spec, tok)]
    return [*steps, writer(spec["output"])]


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
        {"name": s.get("name"), "stats": s.get("stats", {}), "time": s.get("time_stats", {})}
        for s in stats
    ]
    print(json.dumps({"wall_s": time.perf_counter() - t0, "steps": steps}))


if __name__ == "__main__":
    main()
