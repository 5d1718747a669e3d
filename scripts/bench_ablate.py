"""Cost of a 5-variant threshold sweep against one variant run alone, on the same input.

Runs configs/ablations/langid-sweep.yaml (5 language-ID thresholds over the refinedweb recipe)
with a cold cache, and the refinedweb recipe once, directly; prints both wall times, the ratio
(target < 1.5) and checks that every variant's output equals its direct run.

    python scripts/bench_ablate.py [--input PATH ...] [--executor ray|local] [--check-all]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds

from pipeline.ablate.run import run_ablation
from pipeline.ablate.spec import load_ablation
from pipeline.runner.run import run_recipe

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def _output(path: Path):
    return ds.dataset(str(path / "data"), format="parquet").to_table().sort_by("id")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", nargs="+", help="default: shared WARCs + extraction WARCs")
    parser.add_argument("--executor", choices=["ray", "local"], default="ray")
    parser.add_argument("--check-all", action="store_true", help="compare every variant")
    args = parser.parse_args(argv)
    inputs = args.input or sorted(
        [str(p) for p in (SHARED / "warc").glob("*.warc.gz")]
        + [str(p) for p in (SHARED / "extraction").glob("*.warc.gz")]
    )
    work = Path(tempfile.mkdtemp(prefix="bench-ablate-"))
    try:
        ablation = load_ablation(
            REPO / "configs" / "ablations" / "langid-sweep.yaml",
            input_paths=inputs,
            output=str(work / "sweep"),
            executor=args.executor,
        )
        if args.executor == "ray":  # start Ray once, outside both timings
            from pipeline.runner.executors import ensure_ray

            ensure_ray(None)
        baseline = ablation.variants[ablation.baseline]
        single = baseline.with_overrides(output={"path": str(work / "single")})
        t0 = time.perf_counter()
        run_recipe(single)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = run_ablation(ablation)
        sweep = time.perf_counter() - t0
        docs = result.variants[ablation.baseline]["reader"]["documents"]
        print(f"input: {len(inputs)} files, {docs:,} documents; executor {args.executor}")
        print(f"one variant, direct:      {one:8.1f} s")
        print(f"5-variant sweep (cold):   {sweep:8.1f} s")
        print(f"ratio:                    {sweep / one:8.2f}  (target < 1.5)")
        names = list(ablation.variants) if args.check_all else [ablation.baseline]
        for name in names:
            recipe = ablation.variants[name]
            if name != ablation.baseline:
                direct = recipe.with_overrides(output={"path": str(work / f"direct-{name}")})
                run_recipe(direct)
                ref = _output(work / f"direct-{name}")
            else:
                ref = _output(work / "single")
            same = _output(Path(recipe.output.path)).equals(ref)
            print(f"variant {name}: output identical to a direct run: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
