"""trafilatura's default extraction (FineWeb's settings, `backend: trafilatura`) in-process over
the shared pages, pass after pass: CPU seconds per pass and a digest of the texts.

The pages are those of the shared WARCs and both extraction benchmarks (1,145: the distinct
pages of workload 4's replicas in /tmp/bench-w4/warcs-*), every `--step`-th one. For
instruction counts run it under cachegrind twice, with `--passes 1` and `--passes 2`: the
difference is one warm pass without set-up (what docs/benchmarks.md reports):

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
        .venv/bin/python scripts/bench_extract_passes.py --step 4 --passes 2

`--without-loops` runs trafilatura's own loops (pipeline/stages/trafilatura_loops.py
uninstalled after set-up), everything else as the default.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_extract  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=1, help="every n-th page")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--without-loops", action="store_true")
    args = parser.parse_args(argv)

    from pipeline.stages.extract import ExtractConfig
    from pipeline.stages.extractors import build_extractor

    pages = eval_extract.shared_pages()[:: args.step]
    extract = build_extractor("trafilatura", ExtractConfig(backend="trafilatura").backend_options())
    if args.without_loops:
        from pipeline.stages import trafilatura_loops

        trafilatura_loops.uninstall()
    # the sandboxed extractor process's settings (pipeline/stages/sandbox.py), GC off to keep
    # instruction counts steady
    gc.collect()
    gc.freeze()
    gc.disable()
    for i in range(args.passes):
        digest = hashlib.sha256()
        cpu0 = time.process_time()
        for html, url in pages:
            digest.update(extract(html, url).encode("utf-8", "surrogatepass") + b"\0")
        cpu = time.process_time() - cpu0
        print(
            f"pass {i}: {len(pages)} pages, {cpu:.2f} CPU s, {cpu / len(pages) * 1000:.2f} ms "
            f"per page, texts sha256 {digest.hexdigest()[:16]}",
            flush=True,
        )
    extract.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
