"""Ablation specs: a base recipe plus named variants given as overrides.

```yaml
name: langid-sweep
base: ../refinedweb.yaml            # relative to this file
input: {paths: [...]}               # optional overrides of the base's sections
output: {path: out/ablations/langid-sweep}
variants:
  lid-0.50: {set: {langid.threshold: 0.50}}
  lid-0.65: {}                      # the base as it is
  no-repetition: {remove: [gopher_repetition]}
  with-c4: {add: [{after: gopher_quality, stage: c4_quality, filter_badwords: false}]}
```

`set` keys are `<stage label>.<key>` (labels as in stats.json: the stage name, `name.2` for a
second occurrence); `add` entries name the stage they follow (`after`, omitted = first).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from pipeline.config import (
    Recipe,
    is_path_key,
    load_recipe,
    load_yaml,
    recipe_from_dict,
    resolve_path,
    resolve_recipe_paths,
)
from pipeline.config_model import ConfigModel
from pipeline.errors import ConfigError, did_you_mean
from pipeline.runner.unit import stage_labels

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class VariantSpec(ConfigModel):
    """How one variant differs from the base recipe."""

    set: dict[str, Any] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)
    add: list[dict[str, Any]] = Field(default_factory=list)


class OutputSpec(ConfigModel):
    path: str
    keep_rejected: bool | None = None  # None: as the base recipe says
    examples: int = Field(default=3, ge=0)  # differing documents shown per pair in the report


class AblationSpec(ConfigModel):
    """The `curate ablate` file."""

    name: str = ""
    base: str
    input: dict[str, Any] | None = None
    output: OutputSpec
    runtime: dict[str, Any] | None = None
    baseline: str | None = None  # the variant others are compared with (default: the first)
    variants: dict[str, VariantSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Ablation:
    """A validated ablation: variant name -> full recipe, each writing under output/variants/."""

    name: str
    output: str
    variants: dict[str, Recipe]
    baseline: str
    examples: int


def load_ablation(
    path: str | Path,
    input_paths: list[str] | None = None,
    output: str | None = None,
    executor: str | None = None,
    settings: Sequence[str] = (),
) -> Ablation:
    """Read an ablation file and build every variant's recipe (ConfigError on any problem).

    `input_paths`, `output` and `executor` override the file (the CLI's options); `settings`
    (`--set KEY=VALUE`) change the base recipe, before the variants' own changes. Relative paths
    resolve against the file's directory (the base's own against the base's).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read ablation {path}: {exc.strerror or exc}") from None
    data, _ = load_yaml(text, str(path))
    if isinstance(data, dict):
        data = _resolve_paths(data, path.resolve().parent)
        if input_paths:
            data["input"] = {**(data.get("input") or {}), "paths": input_paths}
        if output:
            data["output"] = {**(data.get("output") or {}), "path": output}
        if executor:
            data["runtime"] = {**(data.get("runtime") or {}), "executor": executor}
    try:
        spec = AblationSpec.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{path}: invalid ablation\n  " + "\n  ".join(lines)) from None
    base = load_recipe((path.parent / spec.base).resolve(), settings)
    variants = {}
    for name, variant in spec.variants.items():
        if not _NAME.match(name):
            raise ConfigError(f"{path}: variant name {name!r}: use letters, digits, '.', '_', '-'")
        variants[name] = _variant_recipe(base, spec, name, variant, str(path))
    baseline = spec.baseline or next(iter(spec.variants))
    if baseline not in variants:
        raise ConfigError(f"{path}: baseline {baseline!r} is not a variant ({', '.join(variants)})")
    return Ablation(
        spec.name or path.stem, spec.output.path, variants, baseline, spec.output.examples
    )


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A raw ablation file with its relative paths resolved against `base_dir`: output.path,
    input paths, and the path keys the variants set or add (config.is_path_key)."""
    data = resolve_recipe_paths(data, base_dir)
    variants = data.get("variants")
    if not isinstance(variants, dict):
        return data
    resolved = {}
    for name, variant in variants.items():
        if isinstance(variant, dict):
            variant = dict(variant)
            if isinstance(variant.get("set"), dict):
                variant["set"] = {
                    k: resolve_path(v, base_dir)
                    if is_path_key("stages", str(k).rpartition(".")[2])
                    else v
                    for k, v in variant["set"].items()
                }
            if isinstance(variant.get("add"), list):
                variant["add"] = resolve_recipe_paths({"stages": variant["add"]}, base_dir)[
                    "stages"
                ]
        resolved[name] = variant
    return {**data, "variants": resolved}


def _variant_recipe(
    base: Recipe, spec: AblationSpec, name: str, variant: VariantSpec, source: str
) -> Recipe:
    data = base.to_dict()
    for section in ("input", "runtime"):
        override = getattr(spec, section)
        if override:
            data[section] = {**data[section], **override}
    data["output"] = {**data["output"], "path": f"{spec.output.path}/variants/{name}"}
    if spec.output.keep_rejected is not None:
        data["output"]["keep_rejected"] = spec.output.keep_rejected
    where = f"{source}: variant {name!r}"
    stages: list[dict[str, Any]] = [dict(s) for s in data["stages"]]
    labels = stage_labels(base)
    for label in variant.remove:
        if label not in labels:
            raise ConfigError(
                f"{where}: remove {label!r}: no such stage{did_you_mean(label, labels)}; "
                f"stages: {', '.join(labels)}"
            )
    for key, value in variant.set.items():
        label, _, field = key.rpartition(".")
        if label not in labels:
            raise ConfigError(
                f"{where}: set {key!r}: write <stage>.<key>{did_you_mean(label, labels)}; "
                f"stages: {', '.join(labels)}"
            )
        stages[labels.index(label)][field] = value
    kept = [(lbl, s) for lbl, s in zip(labels, stages, strict=True) if lbl not in variant.remove]
    for entry in variant.add:
        entry = dict(entry)
        after = entry.pop("after", None)
        names = [lbl for lbl, _ in kept]
        if after is not None and after not in names:
            raise ConfigError(
                f"{where}: add after {after!r}: no such stage{did_you_mean(str(after), names)}; "
                f"stages: {', '.join(names)}"
            )
        at = 0 if after is None else names.index(after) + 1
        kept.insert(at, (f"+{entry.get('stage')}", entry))
    data["stages"] = [s for _, s in kept]
    try:
        return recipe_from_dict(data, source=where)
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None
