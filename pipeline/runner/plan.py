"""The plan check: a recipe's stage chain against the reader's columns, before any work.

Each stage declares the columns it requires, produces and drops (pipeline.stages.contract).
Walking the chain from the columns the input format's reader emits finds a stage whose input
lacks a column it needs; the error names the stage, the column and the stage that would produce
it, so a misordered recipe exits before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.config import Recipe
from pipeline.errors import ConfigError, InputError
from pipeline.io.base import InputUnit, ReaderStats, reader_schema
from pipeline.io.sources import read_unit
from pipeline.registry import available_stages, stage_class
from pipeline.stages.contract import Contract
from pipeline.stats.tokenizers import load_tokenizer


def recipe_contracts(recipe: Recipe) -> list[Contract]:
    """The declaration of every stage of the recipe, in order."""
    return [
        stage_class(cfg.stage).contract(cfg)  # type: ignore[attr-defined]
        for cfg in recipe.stages
    ]


def check_plan(recipe: Recipe, formats: Iterable[str]) -> None:
    """Raise ConfigError if some stage would lack a column it requires, for any input format,
    or a stage's own check of its config fails (e.g. a model file that does not load)."""
    contracts = recipe_contracts(recipe)
    for fmt in sorted(set(formats)):
        problem, output = walk_chain(contracts, fmt)
        problem = problem or columns_problem(recipe.output.columns, output, fmt)
        if problem:
            raise ConfigError(f"{recipe.source}: {problem}; nothing was run")
    if recipe.output.keep_rejected_html and not recipe.output.keep_rejected:
        raise ConfigError(
            f"{recipe.source}: output.keep_rejected_html keeps HTML in rejected/ shards, which "
            "are written only with output.keep_rejected: true (or --keep-rejected); nothing was run"
        )
    if recipe.output.tokenizer:
        try:
            load_tokenizer(recipe.output.tokenizer)
        except InputError as exc:
            raise ConfigError(
                f"{recipe.source}: output.tokenizer: {exc}; nothing was run"
            ) from None
    for pos, cfg in enumerate(recipe.stages):  # then what each stage checks itself (models)
        key = f"stages[{pos}] ({cfg.stage})"
        stage_class(cfg.stage).verify(cfg, key, recipe.runtime)  # type: ignore[attr-defined]


def walk_chain(contracts: list[Contract], fmt: str) -> tuple[str | None, set[str]]:
    """(why the chain cannot run on `fmt` input, one line, or None; the columns of its output
    when it can), from the reader's columns through every stage's requires/drops/produces."""
    available = set(reader_schema(fmt).names)
    for pos, c in enumerate(contracts):
        missing = [col for col in c.requires if col not in available]
        if missing:
            col = missing[0]
            return (
                f"stages[{pos}] ({c.name}) needs column `{col}`, which {fmt} input does not "
                f"have at that point; {_remedy(contracts, pos, col, fmt)}"
            ), available
        available = (available - set(c.drops)) | set(c.produces)
    return None, available


def columns_problem(spec: str | list[str], available: set[str], fmt: str) -> str | None:
    """Why output.columns names a column missing from the chain's output columns `available`
    on `fmt` input, or None."""
    if not isinstance(spec, list):
        return None  # all, or the minimal preset (its columns the chain has)
    unknown = [col for col in spec if col not in available]
    if not unknown:
        return None
    return (
        f"output.columns names {unknown[0]!r}, which the output of this chain on {fmt} input "
        f"does not have; available: {', '.join(sorted(available))}"
    )


def _remedy(contracts: list[Contract], pos: int, col: str, fmt: str) -> str:
    """What would make `col` available at stage `pos`: a later stage moved, or another stage."""
    later = [(i, c) for i, c in enumerate(contracts) if i > pos and col in c.produces]
    if later:
        i, c = later[0]
        return f"{c.name} (stages[{i}]) produces it: put it before {contracts[pos].name}"
    earlier = [c for c in contracts[:pos] if col in c.drops]
    if earlier:
        return f"{earlier[0].name} removes it earlier in the chain: move {contracts[pos].name} before it"
    producers = sorted(
        name
        for name, cls in available_stages().items()
        if col in cls.score_columns and col not in cls.requires
    )
    formats = [f for f in ("warc", "jsonl") if col in reader_schema(f).names]
    hints = []
    if producers:
        hints.append(f"a stage producing it ({', '.join(producers)}) must come first")
    if formats and fmt not in formats:
        kind = "WARC" if formats == ["warc"] else "text (WET/JSONL/Parquet/HF)"
        hints.append(f"only {kind} input has it: remove {contracts[pos].name} for {fmt} input")
    return "; or ".join(hints) if hints else "no stage produces it"


# Formats whose records are mapped through input.* field names (WARC and WET are not).
FIELD_MAPPED_FORMATS = ("jsonl", "parquet", "hf")


def preflight_input(recipe: Recipe, units: list[InputUnit]) -> None:
    """Read the first unit of each field-mapped format until its first batch; if no record of
    it is usable for a configuration reason (e.g. no `text` field), fail before any work."""
    firsts: dict[str, InputUnit] = {}
    for u in units:
        if u.format in FIELD_MAPPED_FORMATS:
            firsts.setdefault(u.format, u)
    for unit in firsts.values():
        batches = read_unit(unit, recipe.input, ReaderStats(), recipe.runtime.batch_size)
        try:
            next(batches, None)  # its first batch, or all of it when no record is usable
        except ConfigError as exc:
            raise ConfigError(f"{exc}; nothing was run") from None
        finally:
            batches.close()
