"""`curate`: the command line. Verbs: run, inspect."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeline import __version__
from pipeline.errors import CurateError


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="curate", description="Curate pretraining data: WARC in, clean Parquet out."
    )
    parser.add_argument("--version", action="version", version=f"curate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a recipe (YAML) over its input")
    run.add_argument("config", help="recipe YAML, e.g. configs/quickstart.yaml")
    run.add_argument("--input", nargs="+", metavar="PATH", help="override input.paths")
    run.add_argument("--output", metavar="DIR", help="override output.path")
    run.add_argument("--ray-address", metavar="ADDR", help="existing Ray cluster (or RAY_ADDRESS)")
    run.add_argument("--workers", type=int, metavar="N", help="override runtime.num_workers")
    run.add_argument(
        "--executor", choices=["ray", "local"], help="override runtime.executor (local: no Ray)"
    )
    run.add_argument("--keep-rejected", action="store_true", help="write rejected/<stage>/")
    run.add_argument(
        "--overwrite", action="store_true", help="replace an existing run in the output directory"
    )

    ablate = sub.add_parser("ablate", help="run variants of a recipe side by side")
    ablate.add_argument("config", help="ablation YAML, e.g. configs/ablations/langid-sweep.yaml")
    ablate.add_argument("--input", nargs="+", metavar="PATH", help="override input.paths")
    ablate.add_argument("--output", metavar="DIR", help="override output.path")
    ablate.add_argument("--executor", choices=["ray", "local"], help="override runtime.executor")
    ablate.add_argument("--overwrite", action="store_true", help="replace earlier variant runs")

    stages = sub.add_parser("stages", help="the stage reference: keys, defaults, thresholds")
    stages.add_argument("names", nargs="*", help="stages to show (default: all)")

    inspect = sub.add_parser("inspect", help="schema, counts and a sample of a run or data file")
    inspect.add_argument("path", help="a run directory, Parquet file/directory, WARC or JSONL")
    inspect.add_argument("-n", "--sample", type=int, default=3, help="rows to show")
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_recipe
    from pipeline.runner.run import run_recipe

    recipe = load_recipe(args.config)
    overrides: dict[str, dict] = {}
    if args.input:
        overrides["input"] = {"paths": args.input}
    if args.output:
        overrides["output"] = {"path": args.output}
    if args.keep_rejected:
        overrides.setdefault("output", {})["keep_rejected"] = True
    runtime = {}
    if args.ray_address:
        runtime["ray_address"] = args.ray_address
    if args.workers:
        runtime["num_workers"] = args.workers
    if args.executor:
        runtime["executor"] = args.executor
    if runtime:
        overrides["runtime"] = runtime
    if overrides:
        recipe = recipe.with_overrides(**overrides)
    result = run_recipe(recipe, overwrite=args.overwrite)
    s = result.stats
    print(
        f"done: {s['reader']['documents']:,} documents in, {s['output']['documents']:,} kept "
        f"({result.units_run} units run, {result.units_skipped} resumed) -> {result.output}\n"
        f"stats: {result.output}/stats.json  report: {result.output}/report.md"
    )
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from pipeline.ablate.run import run_ablation
    from pipeline.ablate.spec import load_ablation

    ablation = load_ablation(
        args.config,
        input_paths=args.input,
        output=args.output,
        executor=args.executor,
    )
    result = run_ablation(ablation, overwrite=args.overwrite)
    for name, stats in result.variants.items():
        print(
            f"{name}: {stats['reader']['documents']:,} in, {stats['output']['documents']:,} kept; "
            f"computed now: {', '.join(result.computed[name]) or 'nothing (cached)'}"
        )
    print(f"report: {result.output}/report.md ({result.wall_s:.1f} s)")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline.inspect import inspect_path

    print(inspect_path(args.path, sample=args.sample))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "ablate":
            return _cmd_ablate(args)
        if args.command == "stages":
            from pipeline.stage_docs import stage_reference

            print(stage_reference(args.names or None))
            return 0
        if args.command == "inspect":
            return _cmd_inspect(args)
    except CurateError as exc:
        print(f"curate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("curate: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
