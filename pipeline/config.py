"""YAML recipe -> validated, frozen config objects.

A bad recipe fails here, before any work starts, with every problem listed as
`key (line N): what is wrong; allowed: ...`. YAML is read with the safe loader only, and a stage
name resolves only through the registry (its static table, and the `curate.stages` entry points
of installed packages), so a config can never run code or import an arbitrary module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import reprlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from pipeline import __version__
from pipeline.config_model import ConfigModel
from pipeline.errors import ConfigError, did_you_mean
from pipeline.io.options import InputConfig
from pipeline.registry import available_stages, broken_plugins, registered
from pipeline.schema import HTML_SCHEMA, ID, REASON, TEXT, TEXT_SCHEMA
from pipeline.stages.base import StageConfig
from pipeline.stats.tokenizers import file_hash


class OutputConfig(ConfigModel):
    """Where and how results are written."""

    path: str = Field(description="output directory (local path or fsspec URL)")
    keep_rejected: bool = False  # write removed documents to rejected/<stage>/ with a reason
    # With keep_rejected: the pages `extract` removes keep their `html` in rejected/extract/ (it
    # replaces html by text, so an extract_empty page is otherwise gone); large shards.
    keep_rejected_html: bool = False
    rows_per_row_group: int = Field(default=20_000, gt=0)
    max_row_group_bytes: int = Field(default=128 * 2**20, gt=0)
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    compression_level: int | None = Field(default=3, ge=1, le=22)
    # data/ and rejected/ shards: Parquet, or dolma-style JSON Lines (id, text, source, metadata)
    # compressed by `compression` (zstd -> .jsonl.zst, gzip -> .jsonl.gz, none -> .jsonl).
    # Shards between segments (_work/) are Parquet always.
    format: Literal["parquet", "jsonl"] = "parquet"
    # Columns of the kept shards: all, the `minimal` preset, or a list (checked against the
    # stage chain before any work); rejected shards carry the same ones plus `reason`.
    columns: Literal["all", "minimal"] | list[str] = "all"
    # A Hugging Face tokenizer.json on disk: token counts in and out of every stage in stats.json.
    tokenizer: str | None = None

    @field_validator("path")
    @classmethod
    def _persistent(cls, path: str) -> str:
        check_output_location(path)
        return path

    @field_validator("columns")
    @classmethod
    def _column_list(cls, columns: str | list[str]) -> str | list[str]:
        if isinstance(columns, list):
            if not columns:
                raise ValueError("give at least one column, or `all` / `minimal`")
            twice = sorted({c for c in columns if columns.count(c) > 1})
            if twice:
                raise ValueError(f"column {twice[0]!r} is listed twice")
            if REASON in columns:
                raise ValueError("`reason` is added to rejected shards; do not list it")
        return columns

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_file(cls, tokenizer: str | None) -> str | None:
        if tokenizer is not None and not Path(tokenizer).is_file():
            raise ValueError(f"{tokenizer!r} is not a tokenizer.json file on disk")
        return tokenizer

    @model_validator(mode="after")
    def _format_options(self) -> OutputConfig:
        if self.format == "jsonl" and self.compression == "snappy":
            raise ValueError("JSONL output is compressed with zstd, gzip or none, not snappy")
        if self.format == "jsonl" and isinstance(self.columns, list):
            missing = [c for c in (ID, TEXT) if c not in self.columns]
            if missing:
                raise ValueError(f"JSONL output needs the column {missing[0]!r} in output.columns")
        return self


# fsspec protocols an output cannot live on: gone when the process ends (and each Ray worker
# has its own), or read-only.
_NOT_PERSISTENT = {"memory": "in-process memory, gone when the run ends"}
_READ_ONLY = ("data", "http", "https", "github", "gist", "git", "reference", "libarchive", "tar")


def check_output_location(path: str) -> None:
    """ValueError when `path` names a place where output would not persist (memory://, a
    read-only protocol); chained URLs (`a::b://...`) are checked link by link."""
    for part in path.split("::"):
        protocol = part.split("://", 1)[0].lower() if "://" in part else "file"
        why = _NOT_PERSISTENT.get(protocol) or (
            "a read-only filesystem" if protocol in _READ_ONLY else None
        )
        if why:
            raise ValueError(
                f"{protocol}:// is {why}: nothing written there would persist; "
                "write to a local directory or a persistent store (e.g. s3://)"
            )


# Keys added after runs existed: left out of the config hash at their defaults, so a run made
# before them resumes (and keeps its hash) unchanged.
_NEW_OUTPUT_DEFAULTS: dict[str, Any] = {
    "format": "parquet",
    "columns": "all",
    "tokenizer": None,
    "keep_rejected_html": False,
}
_NEW_INPUT_DEFAULTS: dict[str, Any] = {
    "limit": None,
    "split": None,
    "paths_file": None,
    "base_url": None,
    "sample_files": None,
    "seed": 0,
}


class RuntimeConfig(ConfigModel):
    """How the run executes; never changes what it produces (not part of the config hash)."""

    # auto: in-process for inputs up to executors.AUTO_LOCAL_MAX_BYTES, else Ray
    executor: Literal["auto", "ray", "local"] = "auto"
    ray_address: str | None = None  # None: $RAY_ADDRESS, else an embedded local Ray
    num_workers: int | None = Field(default=None, gt=0)  # None: one per CPU of the cluster
    batch_size: int = Field(default=512, gt=0)
    num_partitions: int | None = Field(default=None, gt=0)  # hash partitions of global stages
    progress: Literal["auto", "bar", "log", "off"] = "auto"
    # A stage whose `<stage>_error` rejections exceed this share of its input fails the run
    # (after accounting, naming the first error): a broken extractor is not a filter.
    max_error_fraction: float = Field(default=0.01, ge=0, le=1, allow_inf_nan=False)
    # CPU seconds a map stage may spend on one document (a batch gets as much, then each of its
    # documents alone): an overrun is rejected as `<stage>_timeout`. null: no limit. A safety net
    # that changes the output only for the documents it stops; a stage with its own per-document
    # `timeout_s` (extract) keeps that limit instead.
    stage_cpu_s_per_doc: float | None = Field(default=60.0, gt=0, le=86_400, allow_inf_nan=False)


@cache
def _recipe_model() -> type[BaseModel]:
    """The Recipe model, built once from the registry's stage configs (a discriminated union)."""
    configs = tuple(cls.config_cls for cls in available_stages().values())
    stage_union = Annotated[Union[configs], Field(discriminator="stage")]  # noqa: UP007
    return create_model(
        "Recipe",
        __config__=ConfigDict(extra="forbid", frozen=True),
        name=(str, ""),
        input=(InputConfig, InputConfig()),
        output=(OutputConfig, ...),
        runtime=(RuntimeConfig, RuntimeConfig()),
        stages=(list[stage_union], Field(min_length=1)),
    )


class Recipe:
    """A validated recipe: input, output, runtime and the ordered stage configs."""

    def __init__(self, model: BaseModel, source: str = "<dict>") -> None:
        self._model = model
        self.source = source
        self.settings: tuple[str, ...] = ()  # the `--set KEY=VALUE` applied to its file

    @property
    def name(self) -> str:
        return self._model.name  # type: ignore[attr-defined]

    @property
    def input(self) -> InputConfig:
        return self._model.input  # type: ignore[attr-defined]

    @property
    def output(self) -> OutputConfig:
        return self._model.output  # type: ignore[attr-defined]

    @property
    def runtime(self) -> RuntimeConfig:
        return self._model.runtime  # type: ignore[attr-defined]

    @property
    def stages(self) -> list[StageConfig]:
        return list(self._model.stages)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        return self._model.model_dump(mode="json")

    def with_overrides(self, **sections: dict[str, Any]) -> Recipe:
        """A copy with some keys of top-level sections replaced (e.g. input={'paths': [...]})."""
        data = self.to_dict()
        for section, values in sections.items():
            data[section] = {**data[section], **values}
        recipe = recipe_from_dict(data, source=self.source)
        recipe.settings = self.settings
        return recipe

    def fingerprint_dict(self) -> dict[str, Any]:
        """What determines the output: everything but runtime and the output location. The
        tokenizer (by its file's hash) is part of it although it changes only the counts: the
        markers of finished units hold counts made with it, so a resume must use the same."""
        data = self.to_dict()
        data.pop("runtime")
        out = data["output"]
        out.pop("path")
        for section, defaults in (("output", _NEW_OUTPUT_DEFAULTS), ("input", _NEW_INPUT_DEFAULTS)):
            for key, default in defaults.items():  # at default: earlier runs' hashes hold
                if data[section][key] == default:
                    data[section].pop(key)
        if out.get("tokenizer"):  # by content: the counts in finished units' markers
            out["tokenizer"] = file_hash(Path(out["tokenizer"]))
        data.pop("name")
        data["version"] = __version__
        return data

    def config_hash(self) -> str:
        blob = json.dumps(self.fingerprint_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def recipe_changes(old: dict[str, Any], new: dict[str, Any], limit: int = 5) -> list[str]:
    """`key: old -> new` for each key that differs between two recipes (as to_dict() gives them)
    in what determines the output (runtime, name and output.path left out), at most `limit`
    lines and a count of the rest."""

    def flat(value: Any, key: str, out: dict[str, Any]) -> dict[str, Any]:
        if isinstance(value, dict):
            for k, v in value.items():
                flat(v, f"{key}.{k}" if key else str(k), out)
        elif key == "stages" and isinstance(value, list):
            for i, v in enumerate(value):
                flat(v, f"stages[{i}]", out)
        else:
            out[key] = value
        return out

    def relevant(recipe: dict[str, Any]) -> dict[str, Any]:
        data = {k: v for k, v in recipe.items() if k not in ("runtime", "name")}
        data["output"] = {k: v for k, v in (data.get("output") or {}).items() if k != "path"}
        return flat(data, "", {})

    before, after = relevant(old), relevant(new)
    absent = "(unset)"
    lines = [
        f"{key}: {_SHORT.repr(before.get(key, absent))} -> {_SHORT.repr(after.get(key, absent))}"
        for key in [*before, *(k for k in after if k not in before)]
        if before.get(key, absent) != after.get(key, absent)
    ]
    more = [f"and {len(lines) - limit} more"] if len(lines) > limit else []
    return lines[:limit] + more


def load_recipe(path: str | Path, settings: Sequence[str] = ()) -> Recipe:
    """Read and validate a YAML recipe file (ConfigError on any problem, before any work).

    Relative paths in it resolve against the file's directory (resolve_recipe_paths); then the
    `--set KEY=VALUE` `settings` apply (their paths stay relative to the working directory)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    return recipe_from_yaml(
        text, source=str(path), base_dir=path.resolve().parent, settings=settings
    )


def recipe_from_yaml(
    text: str,
    source: str = "<string>",
    base_dir: Path | None = None,
    settings: Sequence[str] = (),
) -> Recipe:
    """Validate YAML text; errors name the key, its line and what is allowed. With `base_dir`,
    relative paths resolve against it; `settings` (`KEY=VALUE`) are applied before validation."""
    data, root = load_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a recipe is a mapping with keys input, output, stages")
    if base_dir is not None:
        data = resolve_recipe_paths(data, base_dir)
    if settings:
        data = apply_settings(data, settings, source)
        source = f"{source} with --set"
    recipe = recipe_from_dict(data, source=source, yaml_root=root)
    recipe.settings = tuple(settings)
    return recipe


# Keys holding file system paths: resolved against the recipe file's directory when relative.
_PATH_KEY = re.compile(r"^(paths?|.+_(path|paths|file|files|dir))$")
# Path keys whose name does not say so (a relative input.base_url is a local directory).
_PATH_KEYS = {("output", "tokenizer"), ("input", "base_url"), ("stages", "index")}


def is_path_key(section: str, key: str) -> bool:
    """Whether `section.key` of a recipe holds a path (or a list of paths)."""
    return bool(_PATH_KEY.match(key)) or (section, key) in _PATH_KEYS


def resolve_path(value: Any, base_dir: Path) -> Any:
    """A relative local path (or each of a list) joined to `base_dir`; URLs, `~` and absolute
    paths unchanged."""
    if isinstance(value, list | tuple):
        return [resolve_path(v, base_dir) for v in value]
    if not isinstance(value, str) or not value or "://" in value or "::" in value:
        return value
    if value.startswith("~") or os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(base_dir, value))


def resolve_recipe_paths(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A copy of a raw recipe whose path keys (is_path_key) resolve against `base_dir`."""
    out = dict(data)
    for section in ("input", "output"):
        if isinstance(out.get(section), dict):
            out[section] = {
                k: resolve_path(v, base_dir) if is_path_key(section, k) else v
                for k, v in out[section].items()
            }
    if isinstance(out.get("stages"), list):
        out["stages"] = [
            {k: resolve_path(v, base_dir) if is_path_key("stages", k) else v for k, v in s.items()}
            if isinstance(s, dict)
            else s
            for s in out["stages"]
        ]
    return out


_SECTIONS = ("input", "output", "runtime")
_STAGE_INDEX = re.compile(r"^stages\[(\d+)\]$")


def apply_settings(data: dict[str, Any], settings: Sequence[str], source: str) -> dict[str, Any]:
    """A copy of a raw recipe with `--set KEY=VALUE` settings applied; KEY is `input.K`,
    `output.K`, `runtime.K`, `<stage>.K` (a stage that occurs once), `<stage>.N.K` (its N-th
    occurrence, the labels of stats.json) or `stages[I].K`; VALUE is read as YAML."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    stages = [dict(s) if isinstance(s, dict) else s for s in out.get("stages") or []]
    if isinstance(out.get("stages"), list):
        out["stages"] = stages
    names = [s.get("stage") if isinstance(s, dict) else None for s in stages]
    labels = stage_labels_of(names)
    for setting in settings:
        key, sep, text = setting.partition("=")
        target, _, field = key.strip().rpartition(".")
        if not sep or not target or not field:
            raise ConfigError(
                f"--set {setting!r}: write KEY=VALUE with KEY as SECTION.KEY or STAGE.KEY "
                "(e.g. langid.threshold=0.5, input.limit=100)"
            )
        value, _ = load_yaml(text, f"--set {key}")
        if target in _SECTIONS:
            section = out.get(target)
            out[target] = {**(section if isinstance(section, dict) else {}), field: value}
            continue
        pos = _stage_position(target, names, labels, setting)
        stages[pos][field] = value
    return out


def stage_labels_of(names: Sequence[Any]) -> list[str]:
    """stats.json's stage labels for raw stage names: the name, `name.N` for its N-th time."""
    seen: dict[Any, int] = {}
    labels = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        labels.append(str(name) if seen[name] == 1 else f"{name}.{seen[name]}")
    return labels


def _stage_position(target: str, names: list[Any], labels: list[str], setting: str) -> int:
    """The position a `--set` target addresses (`stages[I]`, a label, a name that occurs once)."""
    if match := _STAGE_INDEX.match(target):
        pos = int(match.group(1))
        if pos >= len(names) or not isinstance(names[pos], str):
            raise ConfigError(
                f"--set {setting!r}: the recipe has no stages[{pos}] (it has {len(names)} stages)"
            )
        return pos
    if names.count(target) > 1:
        where = ", ".join(f"stages[{i}]" for i, n in enumerate(names) if n == target)
        raise ConfigError(
            f"--set {setting!r}: stage {target!r} occurs {names.count(target)} times ({where}); "
            f"address one as {target}.1 / {target}.2 ... or stages[I]"
        )
    if target.endswith(".1") and names.count(target[:-2]) > 1:
        target = target[:-2]
    if target in labels:
        return labels.index(target)
    choices = [*_SECTIONS, *labels]
    raise ConfigError(
        f"--set {setting!r}: no section or stage {target!r}{did_you_mean(target, choices)}; "
        f"choose from {', '.join(choices)}"
    )


class UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (YAML keeps the last one
    silently: a second `stages:` would replace the recipe). Merge keys (`<<`) may still be
    overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {_SHORT.repr(key)} (lines {first.start_mark.line + 1} and "
                    f"{key_node.start_mark.line + 1}); give each key once",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str) -> tuple[Any, Any]:
    """(data, node tree) of YAML text, read safely with duplicate keys refused; ConfigError
    naming the line on any problem."""
    loader = UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    finally:
        loader.dispose()
    return data, root


def recipe_from_dict(data: dict[str, Any], source: str = "<dict>", yaml_root: Any = None) -> Recipe:
    """Validate a recipe given as a dict."""
    _check_stage_names(data, source, yaml_root)
    try:
        model = _recipe_model().model_validate(data)
    except ValidationError as exc:
        lines = [_describe_error(err, yaml_root) for err in exc.errors()]
        raise ConfigError(f"{source}: invalid config\n  " + "\n  ".join(lines)) from None
    recipe = Recipe(model, source=source)
    _check_output_columns(recipe, source, yaml_root)
    return recipe


def _check_output_columns(recipe: Recipe, source: str, yaml_root: Any) -> None:
    """A listed output column that no reader emits and no stage of the recipe produces is
    refused here; one the chain produces but drops, or whose availability depends on the input
    format, is left to the plan check (runner/plan.py), which knows the input."""
    columns = recipe.output.columns
    if not isinstance(columns, list):
        return
    known = set(HTML_SCHEMA.names) | set(TEXT_SCHEMA.names)
    for cfg in recipe.stages:
        known |= set(available_stages()[cfg.stage].contract(cfg).produces)  # type: ignore[attr-defined]
    unknown = [c for c in columns if c not in known]
    if unknown:
        line = _line_of(yaml_root, ("output", "columns"))
        raise ConfigError(
            f"{source}: output.columns{line}: unknown column {unknown[0]!r}: no reader emits it "
            f"and no stage of this recipe produces it; known: {', '.join(sorted(known))}"
        )


def _check_stage_names(data: dict[str, Any], source: str, yaml_root: Any) -> None:
    """Unknown or missing stage names get one clear message listing the registered stages; a
    name a broken plugin claims gets what is wrong with that plugin."""
    stages = data.get("stages")
    if not isinstance(stages, list):
        return  # pydantic reports the type problem
    names = registered()
    allowed = ", ".join(names)
    for i, entry in enumerate(stages):
        loc: tuple[Any, ...] = ("stages", i)
        if not isinstance(entry, dict) or "stage" not in entry:
            line = _line_of(yaml_root, loc)
            raise ConfigError(
                f"{source}: stages[{i}]{line}: each stage needs a `stage:` key naming one of: "
                f"{allowed}"
            )
        problem = broken_plugins().get(entry["stage"]) if isinstance(entry["stage"], str) else None
        if problem:
            line = _line_of(yaml_root, (*loc, "stage"))
            raise ConfigError(
                f"{source}: stages[{i}].stage{line}: stage {entry['stage']!r} is unavailable: "
                f"{problem}"
            )
        if entry["stage"] not in names:
            line = _line_of(yaml_root, (*loc, "stage"))
            hint = did_you_mean(str(entry["stage"]), list(names))
            raise ConfigError(
                f"{source}: stages[{i}].stage{line}: unknown stage {entry['stage']!r}{hint}; "
                f"allowed: {allowed}"
            )


# Offending values are quoted, but bounded: a YAML alias bomb must not become a 1 GB message.
_SHORT = reprlib.Repr()
_SHORT.maxlevel = 1
_SHORT.maxlist = _SHORT.maxdict = 4
_SHORT.maxstring = _SHORT.maxother = 60


def _describe_error(err: dict[str, Any], yaml_root: Any) -> str:
    """One line per pydantic error: dotted key, YAML line, message, allowed values."""
    loc = list(err["loc"])
    stage_name = None
    # Discriminated unions put the stage name into loc: stages, 1, 'langid', 'threshold'.
    if len(loc) >= 3 and loc[0] == "stages" and isinstance(loc[1], int) and loc[2] in registered():
        stage_name = loc.pop(2)
        key = f"stages[{loc[1]}] ({stage_name})" + "".join(f".{p}" for p in loc[2:])
    else:
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    line = _line_of(yaml_root, tuple(loc))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        allowed = (
            stage_allowed_keys(stage_name) if stage_name and len(loc) == 3 else _allowed_keys(loc)
        )
        msg = (
            "unknown key"
            + did_you_mean(str(loc[-1]), allowed)
            + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        )
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif "input" in err and err["type"] not in ("model_type",):
        msg = f"{msg} (got {_SHORT.repr(err['input'])})"
    return f"{key}{line}: {msg}"


def _allowed_keys(loc: list[Any]) -> list[str]:
    """The keys allowed in the mapping that holds the offending key."""
    parent = loc[:-1]
    model: Any = _recipe_model()
    if parent and parent[0] == "stages":
        return []
    for part in parent:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return sorted(model.model_fields) if hasattr(model, "model_fields") else []


def stage_allowed_keys(stage_name: str) -> list[str]:
    """Config keys a stage accepts (for error messages and docs)."""
    return sorted(available_stages()[stage_name].config_cls.model_fields)


def _line_of(root: Any, loc: tuple[Any, ...]) -> str:
    """' (line N)' for the YAML node at `loc`, or '' when unknown."""
    node = root
    for part in loc:
        if node is None:
            break
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key_node, value_node in node.value:
                if key_node.value == part:
                    nxt = key_node if part == loc[-1] else value_node
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
    if node is None or node is root:
        return ""
    return f" (line {node.start_mark.line + 1})"
