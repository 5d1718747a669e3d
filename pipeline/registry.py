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
    conflict: str = ""  # a second distribution registering the same name, if any


@cache
def plugins() -> dict[str, Plugin]:
    """The stages of installed packages' `curate.stages` entry points, by name (read once per
    process; a Ray worker, started in the same environment, finds the same ones)."""
    found: dict[str, Plugin] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "an unnamed distribution"
        seen = found.get(ep.name)
        if seen is not None and seen.distribution != dist:
            found[ep.name] = Plugin(ep.name, seen.target, seen.distribution, conflict=dist)
        elif seen is None:
            found[ep.name] = Plugin(ep.name, ep.value, dist)
    return found


@cache
def broken_plugins() -> dict[str, str]:
    """Plugin stage name -> one line saying why no recipe can use it: its entry point does not
    load or is not a stage, two packages register the name, or it takes a built-in's name.
    A broken plugin costs only its own stage (the CLI warns; a recipe naming it is refused)."""
    broken: dict[str, str] = {}
    for name, p in plugins().items():
        if p.conflict:
            broken[name] = (
                f"the packages {p.distribution} and {p.conflict} both register a stage named "
                f"{name!r} (entry point `{ENTRY_POINT_GROUP}`); uninstall one of them"
            )
            continue
        what = (
            f"the package {p.distribution} registers a stage named {name!r} "
            f"(entry point `{ENTRY_POINT_GROUP}`: {p.target})"
        )
        if name in STAGES:
            broken[name] = (
                f"{what}, the name of a built-in stage; a plugin cannot replace a built-in: "
                "rename its entry point or uninstall it"
            )
            continue
        try:
            _load(name, p.target)
        except ConfigError as exc:
            broken[name] = f"{what} that {exc}"
    return broken


def registered() -> dict[str, str]:
    """Every stage name a config may use -> "module:Class": the built-ins, then the plugins.
    A name a broken plugin claims is left out (`broken_plugins` says why)."""
    broken = broken_plugins()
    extra = {name: p.target for name, p in plugins().items() if name not in STAGES}
    return {name: t for name, t in {**STAGES, **extra}.items() if name not in broken}


def origin(name: str) -> str:
    """Where stage `name` comes from: "built-in", or the distribution that registers it."""
    return BUILT_IN if name in STAGES else plugins()[name].distribution


def _load(name: str, target: str) -> type[Stage]:
    """Import the class `target` ("module:Class") names and check it is stage `name`; any
    failure, including an exception the module raises on import, is one ConfigError line
    (saying what is wrong, to follow "stage X that")."""
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except Exception as exc:  # a plugin's module may raise anything on import
        detail = " ".join(str(exc).split())
        raise ConfigError(f"cannot be loaded: {type(exc).__name__}: {detail}") from None
    if not (isinstance(cls, type) and issubclass(cls, Stage | GlobalStage)):
        raise ConfigError("is not a Stage or GlobalStage subclass")
    if cls.name != name:
        raise ConfigError(f"points at a stage named {cls.name!r}")
    return cls


@cache
def stage_class(name: str) -> type[Stage]:
    """The Stage class registered under `name` (KeyError naming the allowed names otherwise;
    ConfigError saying why when a broken plugin claims the name)."""
    problem = broken_plugins().get(name)
    if problem:
        raise ConfigError(problem)
    stages = registered()
    try:
        target = stages[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; allowed: {', '.join(sorted(stages))}") from None
    try:
        return _load(name, target)
    except ConfigError as exc:
        raise ConfigError(f"stage {name!r} ({origin(name)}: {target}) {exc}") from None


def available_stages() -> dict[str, type[Stage]]:
    """Every usable registered stage class, imported (stage modules import no heavy libraries)."""
    return {name: stage_class(name) for name in registered()}
