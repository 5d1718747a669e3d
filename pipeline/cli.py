"""`curate`: the command line. Verbs: run, ablate, stages, inspect, stats, fit, tokenize,
train-classifier."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
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
    run.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="a cluster from `ray start --head` (or RAY_ADDRESS)",
    )
    run.add_argument("--workers", type=int, metavar="N", help="override runtime.num_workers")
    run.add_argument(
        "--executor",
        choices=["auto", "ray", "local"],
        help="override runtime.executor (auto: in-process for small inputs; local: no Ray)",
    )
    run.add_argument("--keep-rejected", action="store_true", help="write rejected/<stage>/")
    _add_recipe_options(run)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (units, bytes, stages and their columns, phases, output); write nothing",
    )
    run.add_argument(
        "--overwrite", action="store_true", help="replace an existing run in the output directory"
    )

    ablate = sub.add_parser("ablate", help="run variants of a recipe side by side")
    ablate.add_argument("config", help="ablation YAML, e.g. configs/ablations/langid-sweep.yaml")
    ablate.add_argument("--input", nargs="+", metavar="PATH", help="override input.paths")
    ablate.add_argument("--output", metavar="DIR", help="override output.path")
    ablate.add_argument(
        "--executor", choices=["auto", "ray", "local"], help="override runtime.executor"
    )
    ablate.add_argument("--overwrite", action="store_true", help="replace earlier variant runs")
    _add_recipe_options(ablate)

    stages = sub.add_parser("stages", help="the stage reference: keys, defaults, thresholds")
    stages.add_argument("names", nargs="*", help="stages to show (default: all)")

    inspect = sub.add_parser("inspect", help="schema, counts and a sample of a run or data file")
    inspect.add_argument("path", help="a run directory, Parquet file/directory, WARC or JSONL")
    inspect.add_argument(
        "-n", "--sample", type=int, help="rows to show (default 3; 5 with --stage)"
    )
    inspect.add_argument("--stage", metavar="S", help="a run's documents removed by stage S")
    inspect.add_argument("--reason", metavar="R", help="with --stage: only those removed as R")
    _add_stats_parsers(sub)
    _add_tokenize_parser(sub)
    _add_train_classifier_parser(sub)
    return parser


def _add_train_classifier_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train-classifier", help="train a fastText quality classifier (MODEL.bin + MODEL.json)"
    )
    src = "files, directories, globs (a run's data/ or rejected/<stage>/ count)"
    train.add_argument("--positive", nargs="+", required=True, metavar="SRC", help=src)
    train.add_argument("--negative", nargs="+", required=True, metavar="SRC", help=src)
    train.add_argument("--output", required=True, metavar="MODEL.bin", help="the model to write")
    train.add_argument("--text-field", default="text", metavar="F", help="JSONL/Parquet text field")
    train.add_argument("--label-positive", default="hq", metavar="L", help="positive label")
    train.add_argument("--label-negative", default="cc", metavar="L", help="negative label")
    train.add_argument("--epoch", type=_positive_int, default=5, help="training epochs")
    train.add_argument("--lr", type=float, default=0.1, help="learning rate")
    train.add_argument("--word-ngrams", type=_positive_int, default=2, help="word n-gram length")
    train.add_argument("--dim", type=_positive_int, default=100, help="vector size")
    train.add_argument("--min-count", type=_positive_int, default=1, help="minimal word count")
    train.add_argument(
        "--bucket", type=_positive_int, default=2_000_000, help="n-gram hash buckets (size!)"
    )
    train.add_argument(
        "--validation", type=float, default=0.1, metavar="FRAC", help="held-out fraction per class"
    )
    train.add_argument("--seed", type=int, default=0, help="split and training seed")
    train.add_argument(
        "--threads", type=_positive_int, default=1, help="training threads (1: repeatable)"
    )
    train.add_argument(
        "--balance", action="store_true", help="downsample the larger class to the smaller's size"
    )
    train.add_argument("--lowercase", action="store_true", help="lowercase texts (also at scoring)")
    train.add_argument(
        "--collapse-whitespace", action="store_true", help="runs of spaces as one (also at scoring)"
    )


def _add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """--set and --limit: changes to the recipe that are validated exactly like its YAML."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="settings",
        metavar="KEY=VALUE",
        help="set one recipe key (repeatable): input.K, output.K, runtime.K, STAGE.K, "
        "STAGE.N.K (its N-th occurrence) or stages[I].K; VALUE is YAML (0.5, [en, de], null)",
    )
    parser.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help="stop after N documents, files read in order (input.limit)",
    )
    parser.add_argument(
        "--paths-file",
        metavar="FILE",
        help="read the files FILE lists, one per line, instead of input.paths (input.paths_file;"
        " gzip allowed, e.g. Common Crawl's warc.paths.gz)",
    )


def _settings(args: argparse.Namespace) -> list[str]:
    """The --set settings, then --paths-file as the input.paths_file it stands for (with
    input.paths emptied) and --limit as input.limit: given last, they win."""
    paths_file = (
        [f"input.paths_file={json.dumps(args.paths_file)}", "input.paths=[]"]
        if args.paths_file
        else []
    )
    return [*args.settings, *paths_file, *([f"input.limit={args.limit}"] if args.limit else [])]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _add_tokenize_parser(sub: argparse._SubParsersAction) -> None:
    tok = sub.add_parser("tokenize", help="token shards for training (Megatron, nanoGPT)")
    tok.add_argument("inputs", nargs="+", metavar="INPUT", help="run directories or data files")
    tok.add_argument("--tokenizer", required=True, metavar="JSON", help="a tokenizer.json")
    tok.add_argument("--output", required=True, metavar="DIR", help="where the shards go")
    tok.add_argument("--format", choices=["megatron", "nanogpt"], required=True)
    tok.add_argument("--eos-token", metavar="TOKEN", help="appended to every document")
    tok.add_argument("--bos-token", metavar="TOKEN", help="prepended to every document")
    tok.add_argument("--shuffle", action="store_true", help="shuffle documents across shards")
    tok.add_argument("--seed", type=int, default=0, help="shuffle seed")
    tok.add_argument(
        "--max-tokens-per-shard", type=_positive_int, metavar="N", help="split larger shards"
    )
    tok.add_argument("--text-field", default="text", metavar="F", help="JSONL/Parquet text field")
    tok.add_argument(
        "--encoder",
        choices=["auto", "tokenizers", "tiktoken"],
        default="auto",
        help="auto: tiktoken where a static check proves it gives the same ids, else tokenizers",
    )
    tok.add_argument(
        "--executor", choices=["ray", "local"], default="ray", help="local: no Ray, one process"
    )
    tok.add_argument("--ray-address", metavar="ADDR", help="existing Ray cluster (or RAY_ADDRESS)")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return values


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _add_stats_parsers(sub: argparse._SubParsersAction) -> None:
    stats = sub.add_parser(
        "stats", help="token counts, distinct documents, unique n-grams, curves on subsamples"
    )
    stats.add_argument("path", metavar="RUN_OR_DATA", help="a run directory or Parquet/JSONL data")
    stats.add_argument("--output", metavar="DIR", help="default: RUN/stats, or ./curate-stats")
    stats.add_argument(
        "--tokenizer",
        action="append",
        metavar="TOK",
        help="word (default), minilm, or PATH/tokenizer.json; repeat to also count tokens with "
        "more tokenizers (the first drives n-grams)",
    )
    stats.add_argument(
        "--ngrams", type=_int_list, default="1,2,5,13,50", metavar="LIST", help="n-gram orders"
    )
    stats.add_argument(
        "--windows",
        type=_int_list,
        default="256,1024,2048",
        metavar="LIST",
        help="lengths L of unique length-L token windows",
    )
    stats.add_argument(
        "--subsamples", type=int, default=10, metavar="K", help="nested subsamples D*2^-k, k<=K"
    )
    stats.add_argument("--seed", type=int, default=0, help="subsample seed")
    stats.add_argument("--approx", action="store_true", help="HyperLogLog++ instead of exact")
    stats.add_argument(
        "--hll-precision", type=int, default=14, metavar="P", help="HLL++ p in [4, 16]"
    )
    stats.add_argument(
        "--per-stage", action="store_true", help="every stage's input set (needs keep_rejected)"
    )
    stats.add_argument(
        "--ray-address", metavar="ADDR", help="existing Ray cluster (or RAY_ADDRESS)"
    )
    stats.add_argument(
        "--executor", choices=["ray", "local"], default="ray", help="local: no Ray, one process"
    )
    stats.add_argument("--partitions", type=int, metavar="W", help="hash partitions (default auto)")
    stats.add_argument(
        "--memory-mb", type=int, default=1024, metavar="MB", help="memory budget per task"
    )
    stats.add_argument(
        "--hash-bits",
        choices=["auto", "64", "128"],
        default="auto",
        help="n-gram hash width (auto: 128 above ~1e9 estimated tokens)",
    )
    stats.add_argument("--no-plots", action="store_true", help="skip the PNG plots")

    fit = sub.add_parser("fit", help="power-law and loss scaling fits on `curate stats` output")
    fit.add_argument(
        "stats", nargs="*", metavar="STATS", help="stats directories or stats.jsonl files"
    )
    fit.add_argument("--output", metavar="DIR", help="default: STATS/fit, or ./curate-fit")
    fit.add_argument("--loss-csv", metavar="FILE", help="loss points: columns N, D, loss")
    fit.add_argument(
        "--epochs", type=_float_list, default=(), metavar="LIST", help="planned epochs (D')"
    )
    fit.add_argument(
        "--unique-tokens", type=float, metavar="U", help="U_D for D' (default: from the stats)"
    )
    fit.add_argument("--params", type=float, metavar="N", help="model parameters for N', loss")
    fit.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="power-law refits")
    fit.add_argument(
        "--chinchilla-bootstrap", type=int, default=200, metavar="B", help="Chinchilla refits"
    )
    fit.add_argument(
        "--starts", type=int, default=20, metavar="S", help="L-BFGS starts (0 = all 4,500)"
    )
    fit.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    fit.add_argument(
        "--min-docs", type=int, default=10, metavar="N", help="skip subsamples with fewer docs"
    )
    fit.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_recipe
    from pipeline.runner.run import run_recipe

    recipe = load_recipe(args.config, _settings(args))
    overrides: dict[str, dict] = {}
    if args.input:  # the recipe's paths file too is replaced, unless --paths-file names one
        cleared = {} if args.paths_file else {"paths_file": None, "base_url": None}
        overrides["input"] = {"paths": args.input, **cleared}
    if args.output:
        overrides["output"] = {"path": args.output}
    if args.keep_rejected:
        overrides.setdefault("output", {})["keep_rejected"] = True
    runtime = {}
    if args.ray_address:
        runtime["ray_address"] = args.ray_address
    if args.workers is not None:
        runtime["num_workers"] = args.workers
    if args.executor:
        runtime["executor"] = args.executor
    if runtime:
        overrides["runtime"] = runtime
    if overrides:
        recipe = recipe.with_overrides(**overrides)
    if args.dry_run:
        from pipeline.runner.dry_run import describe_plan

        print(describe_plan(recipe))
        return 0
    result = run_recipe(recipe, overwrite=args.overwrite)
    s = result.stats
    resumed = result.files - result.files_run
    print(
        f"done: {s['reader']['documents']:,} documents in, {s['output']['documents']:,} kept "
        f"from {result.files} input file(s) ({result.files_run} processed, {resumed} resumed; "
        f"{result.executor}, {s['wall_s']:.1f} s) -> {result.output}\n"
        f"stats: {result.output}/stats.json  report: {result.output}/report.md  "
        f"html: {result.output}/report.html"
    )
    _warn_input_problems(s["reader"]["errors"], f"{result.output}/report.md")
    return 0


def _warn_input_problems(errors: list[str], listed_in: str | None = None) -> None:
    """Counted skips, but a whole unreadable input file must not pass unnoticed: one line on
    stderr with the first problem (and where all of them are listed)."""
    if not errors:
        return
    more = f"; all {len(errors)} in {listed_in}" if listed_in and len(errors) > 1 else ""
    print(
        f"curate: warning: {len(errors)} input problem(s), records counted as skipped: "
        f"{errors[0]}{more}",
        file=sys.stderr,
    )


def _cmd_ablate(args: argparse.Namespace) -> int:
    from pipeline.ablate.run import run_ablation
    from pipeline.ablate.spec import load_ablation

    ablation = load_ablation(
        args.config,
        input_paths=args.input,
        output=args.output,
        executor=args.executor,
        settings=_settings(args),
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
    from pipeline.errors import ConfigError
    from pipeline.inspect import inspect_path, inspect_rejected

    if args.stage is not None:
        print(inspect_rejected(args.path, args.stage, args.reason, n=args.sample or 5))
    elif args.reason is not None:
        raise ConfigError("--reason needs --stage: removal reasons belong to a stage")
    else:
        print(inspect_path(args.path, sample=3 if args.sample is None else args.sample))
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipeline.config import check_output_location
    from pipeline.errors import ConfigError
    from pipeline.runner.lock import output_lock
    from pipeline.stats.compute import StatsOptions, compute_stats, default_output
    from pipeline.stats.inputs import resolve_input
    from pipeline.stats.report import write_outputs

    opts = StatsOptions(
        path=args.path,
        output=args.output,
        tokenizers=tuple(args.tokenizer or ["word"]),
        ngrams=args.ngrams,
        windows=args.windows,
        subsamples=args.subsamples,
        seed=args.seed,
        approx=args.approx,
        precision=args.hll_precision,
        per_stage=args.per_stage,
        executor=args.executor,
        ray_address=args.ray_address,
        partitions=args.partitions,
        memory_mb=args.memory_mb,
        hash_bits=args.hash_bits,
        plots=not args.no_plots,
    )
    output = args.output or default_output(resolve_input(args.path, args.per_stage))
    try:
        check_output_location(output)
    except ValueError as exc:
        raise ConfigError(f"--output {output}: {exc}") from None
    with output_lock(output, "curate stats"):
        result = compute_stats(replace(opts, output=output))
        paths = write_outputs(result, output)
    tokens = int(result.totals["tokens"][0, -1, 0])
    docs = int(result.totals["documents"][-1, 0])
    print(
        f"stats: {docs:,} documents, {tokens:,} tokens ({result.tokenizers[0]['name']}) in "
        f"{result.source.sets[-1]!r}, {len(result.source.sets)} set(s) -> {output}\n"
        + "\n".join(f"  {k}: {v}" for k, v in paths.items())
    )
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from pipeline.stats.fit import FitOptions, run_fit

    opts = FitOptions(
        stats=tuple(args.stats),
        output=args.output,
        loss_csv=args.loss_csv,
        epochs=args.epochs,
        unique_tokens=args.unique_tokens,
        params=args.params,
        bootstrap=args.bootstrap,
        chinchilla_bootstrap=args.chinchilla_bootstrap,
        starts=args.starts or None,
        seed=args.seed,
        min_docs=args.min_docs,
        plots=not args.no_plots,
    )
    result = run_fit(opts)
    laws = result["power_laws"]
    final = [f for f in laws if f["stage"] == laws[-1]["stage"]] if laws else []
    lines = [f"fit: {len(laws)} power law(s); last set shown, all in fit.json"]
    for f in final:
        lo, hi = f["gamma_ci95"]
        lines.append(
            f"  {f['stage']} {f['metric']} n={f['n']}: gamma={f['gamma']:.3f} [{lo:.3f}, {hi:.3f}]"
        )
    if "chinchilla" in result:
        p, ci = result["chinchilla"]["params"], result["chinchilla"]["ci95"]
        lines.append(
            "  chinchilla (95% intervals): "
            + ", ".join(
                f"{k}={v:.4g}" + (f" [{ci[k][0]:.4g}, {ci[k][1]:.4g}]" if k in ci else "")
                for k, v in p.items()
            )
        )
    if "kaplan" in result:
        k = result["kaplan"]
        lines.append(f"  kaplan: alpha_D={k['alpha_D']:.4g}, D_c={k['D_c']:.4g}")
    lines += [f"  {k}: {v}" for k, v in result["paths"].items()]
    print("\n".join(lines))
    for warning in result["warnings"]:
        print(f"curate: warning: fit {warning}", file=sys.stderr)
    return 0


def _cmd_tokenize(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from pipeline.tokenize.run import TokenizeOptions, tokenize

    values = {f.name: getattr(args, f.name) for f in fields(TokenizeOptions)}
    s = tokenize(TokenizeOptions(**{**values, "inputs": tuple(args.inputs)}))
    print(
        f"tokenize: {s['documents']:,} documents, {s['tokens']:,} tokens "
        f"({s['tokens_per_byte']:.3f} tokens/byte) in {len(s['shards'])} {s['format']} shard(s) "
        f"({s['dtype']}, {s['tokenizer']['encoder']}) -> {args.output}/summary.json"
    )
    _warn_input_problems(s["input_errors"])
    return 0


def _cmd_train_classifier(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from pipeline.classify.preprocess import Preprocess
    from pipeline.classify.train import TrainOptions, metadata_path, train_classifier

    values = {f.name: getattr(args, f.name) for f in fields(TrainOptions) if f.name != "preprocess"}
    opts = TrainOptions(
        **{**values, "positive": tuple(args.positive), "negative": tuple(args.negative)},
        preprocess=Preprocess(args.lowercase, args.collapse_whitespace),
    )
    meta = train_classifier(opts)
    sizes = ", ".join(f"{label} {c['documents']:,}" for label, c in meta["counts"].items())
    held = meta["validation"]
    scores = (
        "no held-out set"
        if held is None
        else ", ".join(
            f"{k} {held[k]:.3f}" if held[k] is not None else f"{k} n/a"
            for k in ("precision", "recall", "f1", "roc_auc")
        )
    )
    print(
        f"train-classifier: {sizes} documents; held out: {scores}\n"
        f"model: {args.output}  metadata: {metadata_path(args.output)}"
    )
    return 0


def _warn_broken_plugins() -> None:
    """One stderr line per installed plugin stage that cannot be used: the other stages still
    work, and a recipe naming that one is refused with the same reason."""
    from pipeline.registry import broken_plugins

    for name, problem in broken_plugins().items():
        print(f"curate: warning: {problem}; stage {name!r} is unavailable", file=sys.stderr)


def _escape_unprintable_output() -> None:
    """Print file names that are not valid UTF-8 escaped (`caf\\xe9`) instead of failing."""
    from pipeline.io.pathnames import ESCAPE_ERRORS

    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors=ESCAPE_ERRORS)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C (work kept, clean exit)."""


# Set once SIGTERM arrived: the exit code says SIGTERM even when a KeyboardInterrupt raised while
# unwinding (Ray's shutdown, a second signal) replaces the Terminated exception.
_sigterm_seen = threading.Event()


def _on_sigterm(signum: int, frame: object) -> None:
    _sigterm_seen.set()
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    _escape_unprintable_output()
    args = _build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    _sigterm_seen.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        if args.command in ("run", "ablate", "stages"):
            _warn_broken_plugins()
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
        if args.command == "stats":
            return _cmd_stats(args)
        if args.command == "fit":
            return _cmd_fit(args)
        if args.command == "tokenize":
            return _cmd_tokenize(args)
        if args.command == "train-classifier":
            return _cmd_train_classifier(args)
    except CurateError as exc:
        from pipeline.runner.run import worker_user_error

        print(f"curate: error: {worker_user_error(exc) or exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # outside a unit of work: the run record, stats.json, ...
        print(
            f"curate: error: {exc}; fix that and rerun the same command (finished work is kept)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: finished units are kept
        print("curate: interrupted; rerun the same command to resume", file=sys.stderr)
        terminated = isinstance(exc, Terminated) or _sigterm_seen.is_set()
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 1


if __name__ == "__main__":
    sys.exit(main())
