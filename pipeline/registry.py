"""The stage registry: the only names a config may use, each mapped to one module.

Adding a stage = one module under pipeline/stages (or dedup/, prune/) + one line here. Nothing
outside this table is ever imported because a config named it.
"""

from __future__ import annotations

import importlib
from functools import cache

from pipeline.stages.base import Stage

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
    "exact_dedup": "pipeline.dedup.exact:ExactDedupStage",
    "minhash_dedup": "pipeline.dedup.minhash:MinHashDedupStage",
    "line_dedup": "pipeline.dedup.lines:LineDedupStage",
    "substring_dedup": "pipeline.dedup.substring:SubstringDedupStage",
    "semdedup": "pipeline.prune.semdedup:SemDeDupStage",
    "d4": "pipeline.prune.d4:D4Stage",
    "top_fraction": "pipeline.stages.top_fraction:TopFractionStage",
}


@cache
def stage_class(name: str) -> type[Stage]:
    """The Stage class registered under `name` (KeyError naming the allowed names otherwise)."""
    try:
        target = STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; allowed: {', '.join(sorted(STAGES))}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if cls.name != name:
        raise RuntimeError(f"registry entry {name!r} points at a stage named {cls.name!r}")
    return cls


def available_stages() -> dict[str, type[Stage]]:
    """Every registered stage class, imported (stage modules import no heavy libraries)."""
    return {name: stage_class(name) for name in STAGES}
