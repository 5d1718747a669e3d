"""The stage registry: the only names a config may use, each mapped to one module.

Built-in stages: one module under pipeline/stages (or dedup/, prune/) + one line in `STAGES`.
Third-party stages come from installed packages: an entry point in the group `curate.stages`
whose name is the stage's name and whose value is "module:Class". Either way a config only
names a stage; nothing is ever imported because a config named a module.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from functools import cache

from pipeline.errors import ConfigError
from pipeline.stages.base import Stage
from pipeline.stages.global_base import GlobalStage

# name -> "module:Class". Kept sorted by pipeline order where it has one.
STAGES: dict[str, str] = {
    "url_filter": "pipeline.stages.url_filter:UrlFilterStage",
    "extract": "pipeline.stages.extract:ExtractStage",
    "langid": "pipeline.stages.langid:LangIdStage",
    "gopher_repetition": "pipeline.stages.gopher_repetition:GopherRepetitionStage",
    "gopher_quality": "pipeline.stages.gopher_quality:GopherQualityStage",
    "line_corrections": "pipeline.stages.line_corrections:LineCorrectionsStage",
    "c4_quality": "pipeline.stages.c4_quality:C4QualityStage",
    "c4_paragraph": "pipeline.stages.c4_quality:C4ParagraphStage",
    "fineweb_quality": "pipeline.stages.fineweb_quality:FineWebQualityStage",
    "classifier": "pipeline.stages.classifier:ClassifierStage",
    "pii": "pipeline.stages.pii:PiiStage",
    "exact_dedup": "pipeline.dedup.exact:ExactDedupStage",
    "minhash_dedup": "pipeline.dedup.minhash:MinHashDedupStage",
    "line_dedup": "pipeline.dedup.lines:LineDedupStage",
    "substring_dedup": "pipeline.dedup.substring:SubstringDedupStage",
    "decontaminate": "pipeline.stages.decontaminate:DecontaminateStage",
    "semdedup": "pipeline.prune.semdedup:SemDeDupStage",
    "d4": "pipeline.prune.d4:D4Stage",
    "top_fraction": "pipeline.stages.top_fraction:TopFractionStage",
}

# The entry-point group installed packages register their stages in.
ENTRY_POINT_GROUP = "curate.stages"
BUILT_IN = "built-in"


@dataclass(frozen=True)
class Plugin:
    """A stage an installed distribution registers: `name = "module:Class"`."""

    name: str
    target: str
    distribution: str


@cache
def plugins() -> dict[str, Plugin]:
    """The stages of installed packages' `curate.stages` entry points, by name (read once per
    process; a Ray worker, started in the same environment, finds the same ones)."""
    found: dict[str, Plugin] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "an unnamed distribution"
        if ep.name in found and found[ep.name].distribution != dist:
            raise ConfigError(
                f"stage {ep.name!r} is registered by two installed packages, "
                f"{found[ep.name].distribution} and {dist} (entry points `{ENTRY_POINT_GROUP}`); "
                "uninstall one of them"
            )
        found[ep.name] = Plugin(ep.name, ep.value, dist)
    return found


def registered() -> dict[str, str]:
    """Every stage name a config may use -> "module:Class": the built-ins, then the plugins.
    ConfigError when a plugin takes a built-in's name (refused, never shadowing it)."""
    extra = plugins()
    clash = sorted(set(extra) & set(STAGES))
    if clash:
        p = extra[clash[0]]
        raise ConfigError(
            f"the package {p.distribution} registers a stage named {p.name!r} "
            f"(entry point `{ENTRY_POINT_GROUP}`: {p.target}), the name of a built-in stage; "
            f"a plugin cannot replace a built-in: rename its entry point or uninstall it"
        )
    return {**STAGES, **{name: p.target for name, p in extra.items()}}


def origin(name: str) -> str:
    """Where stage `name` comes from: "built-in", or the distribution that registers it."""
    return BUILT_IN if name in STAGES else plugins()[name].distribution


@cache
def stage_class(name: str) -> type[Stage]:
    """The Stage class registered under `name` (KeyError naming the allowed names otherwise)."""
    stages = registered()
    try:
        target = stages[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; allowed: {', '.join(sorted(stages))}") from None
    module_name, _, class_name = target.partition(":")
    where = f"stage {name!r} ({origin(name)}: {target})"
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Stage | GlobalStage)):
        raise ConfigError(f"{where} is not a Stage or GlobalStage subclass")
    if cls.name != name:
        raise ConfigError(f"registry entry {name!r} points at a stage named {cls.name!r}")
    return cls


def available_stages() -> dict[str, type[Stage]]:
    """Every registered stage class, imported (stage modules import no heavy libraries)."""
    return {name: stage_class(name) for name in registered()}
