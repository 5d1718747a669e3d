"""`curate tokenize`: validate, plan, run the tokenize job over input units, write the summary.

Nothing is written before the tokenizer, the EOS/BOS tokens and the input plan are checked; an
input without a single document with text is refused after reading and everything written is
removed. Output: shards (see formats.py), `summary.json`, and `_tokenize/` (settings, completion
markers) so a rerun resumes; a rerun with other settings is refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import fsspec

from pipeline.config import RuntimeConfig, check_output_location
from pipeline.errors import InputError, OutputError
from pipeline.io.atomic import read_json, remove_temp_files, write_json_atomic
from pipeline.io.options import InputConfig
from pipeline.io.sources import input_fingerprint, plan_units, unit_identity
from pipeline.runner.executors import execute
from pipeline.runner.lock import output_lock
from pipeline.stats.inputs import DATA_DIR, is_run_dir
from pipeline.stats.tiktoken_verdict import small_input
from pipeline.tokenize.formats import token_dtype
from pipeline.tokenize.job import STATE_DIR, TokenizeJob, TokenizeSettings, read_marker

SUMMARY = "summary.json"


@dataclass(frozen=True)
class TokenizeOptions:
    """The command line of `curate tokenize`."""

    inputs: tuple[str, ...]
    tokenizer: str
    output: str
    format: str = "megatron"
    eos_token: str | None = None
    bos_token: str | None = None
    shuffle: bool = False
    seed: int = 0
    max_tokens_per_shard: int | None = None
    text_field: str = "text"
    encoder: str = "auto"  # auto | tokenizers | tiktoken (stats/tokenizers.py load_tokenizer)
    executor: str = "ray"
    ray_address: str | None = None


def load_hf_tokenizer(path: str, encoder: str = "auto") -> Any:
    """The tokenizer of a tokenizer.json (or a directory holding one), with its encoder."""
    from pipeline.stats.tokenizers import HFTokenizer, load_tokenizer, resolve_spec

    p = Path(path)
    if not (p.is_file() or (p / "tokenizer.json").is_file()):
        raise InputError(f"--tokenizer {path}: no tokenizer.json there")
    tok = load_tokenizer(resolve_spec(str(p)), encoder)  # the resolved path: the workers' key
    if not isinstance(tok, HFTokenizer):
        raise InputError(f"--tokenizer {path}: not a Hugging Face tokenizer.json")
    return tok


def token_id(tok: Any, token: str | None, option: str) -> int | None:
    if token is None:
        return None
    i = tok.tokenizer.token_to_id(token)
    if i is None:
        raise InputError(f"{option} {token!r} is not in the vocabulary of {tok.info['path']}")
    return int(i)


def auto_encoder(tok: Any, path: str, units: list[Any]) -> Any:
    """`--encoder auto`'s tokenizer: the tokenizers library `tok` itself for an input smaller
    than the break-even of the tiktoken check (stats/tiktoken_verdict.py), the reason in
    `encoder_fallback`; else tiktoken where the check (or its cached verdict) proves it exact.
    The choice depends on the input and the tokenizer only, not on what the cache holds."""
    why = small_input(tok.info["vocab_size"], (unit_identity(u)["size"] for u in units))
    if why is None:
        return load_hf_tokenizer(path, "auto")
    return replace(tok, info={**tok.info, "encoder_fallback": why})


def input_paths(inputs: tuple[str, ...]) -> list[str]:
    """The inputs with every run directory replaced by its data/ shards."""
    paths = []
    for raw in inputs:
        fs, root = fsspec.core.url_to_fs(raw)
        root = root.rstrip("/") or "/"
        paths.append(f"{raw.rstrip('/')}/{DATA_DIR}" if is_run_dir(fs, root) else raw)
    return paths


def tokenize(opts: TokenizeOptions) -> dict[str, Any]:
    """Tokenize the inputs into `opts.output`; returns the summary (also in summary.json)."""
    # `auto` picks its encoder once the input's size is known (auto_encoder)
    tok = load_hf_tokenizer(
        opts.tokenizer, "tokenizers" if opts.encoder == "auto" else opts.encoder
    )
    eos = token_id(tok, opts.eos_token, "--eos-token")
    bos = token_id(tok, opts.bos_token, "--bos-token")
    try:
        check_output_location(opts.output)
    except ValueError as exc:
        raise OutputError(f"--output {opts.output}: {exc}") from None
    cfg = InputConfig(paths=input_paths(opts.inputs), text_field=opts.text_field)
    units = plan_units(cfg, exclude=(opts.output,), where="the INPUT arguments")
    warc = next((u.path for u in units if u.format == "warc"), None)
    if warc is not None:
        raise InputError(f"{warc} is a WARC file (HTML, not text): `curate run` it first")
    if opts.encoder == "auto":
        tok = auto_encoder(tok, opts.tokenizer, units)
    settings = TokenizeSettings(
        tokenizer=tok.info["path"],
        format=opts.format,
        dtype=token_dtype(opts.format, tok.info["vocab_size"]).name,
        eos_id=eos,
        bos_id=bos,
        shuffle=opts.shuffle,
        seed=opts.seed,
        max_tokens_per_shard=opts.max_tokens_per_shard,
        text_field=opts.text_field,
        num_out=len(units),
    )
    record = {
        "settings": asdict(settings),
        "tokenizer_hash": tok.info["hash"],
        "input": input_fingerprint(units),
    }
    with output_lock(opts.output, "curate tokenize"):
        fs, root = fsspec.core.url_to_fs(opts.output)
        root = root.rstrip("/")
        _claim(fs, root, record)
        job = TokenizeJob(
            settings,
            cfg.model_dump(),
            root,
            one_thread=opts.executor == "ray",
            encoder="tokenizers" if tok.fast is None else "tiktoken",  # the workers run this one
        )
        runtime = RuntimeConfig(executor=opts.executor, ray_address=opts.ray_address)
        try:
            results = _run(job, units, fs, root, runtime)
        except BaseException:
            remove_temp_files(fs, root)
            raise
        summary = _summary(results, opts, tok.info, settings)
        if not summary["documents"]:
            _remove_output(fs, root)
            problem = next((r["problem"] for r in results["units"] if r["problem"]), None)
            why = f": {problem.replace('input.text_field', '--text-field')}" if problem else ""
            raise InputError(
                f"no document with text in {', '.join(opts.inputs)} "
                f"(text field {opts.text_field!r}); nothing written{why}"
            )
        if fs.exists(f"{root}/{STATE_DIR}/spill"):
            fs.rm(f"{root}/{STATE_DIR}/spill", recursive=True)
        write_json_atomic(fs, f"{root}/{SUMMARY}", summary, indent=1)
    return summary


def _run(
    job: TokenizeJob, units: list[Any], fs: Any, root: str, runtime: RuntimeConfig
) -> dict[str, list[dict[str, Any]]]:
    """Run the tasks not finished yet; every task's result by kind, in index order."""

    def finish(kind: str, items: list[Any], index: Any) -> list[dict[str, Any]]:
        done = {index(i): read_marker(fs, root, kind, index(i)) for i in items}
        todo = [(kind, i) for i in items if done[index(i)] is None]
        if todo:
            for result in execute(job, todo, runtime):
                done[result["index"]] = result
        return [done[index(i)] for i in items]

    if not job.settings.shuffle:
        return {"units": finish("direct", units, lambda u: u.index)}
    shards = list(range(job.settings.num_out))
    gathered = [read_marker(fs, root, "gather", k) for k in shards]
    spilled = finish("spill", units, lambda u: u.index)
    if not sum(r["documents"] for r in spilled):
        return {"units": spilled, "shards": []}
    if any(g is None for g in gathered):
        gathered = finish("gather", shards, lambda k: k)
    return {"units": spilled, "shards": gathered}


def _summary(
    results: dict[str, list[dict[str, Any]]],
    opts: TokenizeOptions,
    tokenizer: dict[str, Any],
    settings: TokenizeSettings,
) -> dict[str, Any]:
    units = results["units"]
    sources: dict[str, dict[str, int]] = {}
    for r in units:
        for src, c in r["sources"].items():
            entry = sources.setdefault(src, {"documents": 0, "tokens": 0})
            entry["documents"] += c["documents"]
            entry["tokens"] += c["tokens"]
    shard_results = results.get("shards", units)
    skipped: dict[str, int] = {}
    for r in units:
        for reason, n in r["reader"]["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + n
    documents = sum(r["documents"] for r in units)
    tokens = sum(r["tokens"] for r in units)
    nbytes = sum(r["bytes"] for r in units)
    return {
        "format": settings.format,
        "dtype": settings.dtype,
        "tokenizer": tokenizer,
        "eos_token": opts.eos_token,
        "bos_token": opts.bos_token,
        "shuffle": {"seed": settings.seed} if settings.shuffle else None,
        "documents": documents,
        "tokens": tokens,
        "text_bytes": nbytes,
        "tokens_per_byte": tokens / nbytes if nbytes else 0.0,
        "sources": dict(sorted(sources.items())),
        "skipped_records": dict(sorted(skipped.items())),  # by reason, as the readers count
        "input_errors": [e for r in units for e in r["reader"]["errors"]],
        "inputs": [
            {**r["unit"], "documents": r["documents"], "tokens": r["tokens"]} for r in units
        ],
        "shards": [s for r in shard_results for s in r["shards"]],
    }


def _claim(fs: Any, root: str, record: dict[str, Any]) -> None:
    """Record the settings in a fresh output; refuse one made with other settings or input."""
    path = f"{root}/{STATE_DIR}/settings.json"
    if fs.exists(path):
        if read_json(fs, path) != record:
            raise OutputError(
                f"{root} holds tokens made with other settings or input; choose another --output "
                "or delete it"
            )
    elif fs.exists(root) and [p for p in fs.ls(root, detail=False) if not _ours(p)]:
        raise OutputError(f"{root} is not empty and not a `curate tokenize` output")
    remove_temp_files(fs, root)
    write_json_atomic(fs, path, record, indent=1)


def _ours(path: str) -> bool:
    return path.rstrip("/").rsplit("/", 1)[-1] in (".curate.lock", STATE_DIR)


def _remove_output(fs: Any, root: str) -> None:
    """Remove everything this command wrote (the lock file stays with its holder)."""
    for p in fs.ls(root, detail=False):
        if not p.endswith("/.curate.lock"):
            fs.rm(p, recursive=True)
