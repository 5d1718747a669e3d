"""What a stage declares about itself: its kind, the columns it needs and makes, its resources.

Every stage class (map or global) carries one declaration; `Declared` derives the stage's name
from its config's `stage` field, so a name is written once. The runner checks a recipe's chain of
declarations against the reader's columns before any work (pipeline.runner.plan), and
`curate stages` prints them.

Besides columns, a stage may declare the intermediates it uses (`INTERMEDIATES`): values the
runner's kernel computes at most once per batch from its columns and hands to every stage that
declares them (pipeline.runner.kernel.Intermediates), e.g. each document's words. They are keyed
to the text they were computed from, so a stage that rewrites `text` invalidates them, and they
are never written to an output shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from pipeline.schema import TEXT

StageKind = Literal["map", "global"]

WORDS = "words"
# Intermediate name -> what it holds (the stage reference prints it).
INTERMEDIATES: dict[str, str] = {
    WORDS: "each document's `split_words` tokens, split once per batch (pipeline.text.shared_words)"
}


@dataclass(frozen=True)
class Resources:
    """What one copy of a stage occupies while it runs."""

    cpus: float = 1.0
    # GPUs per task; None: one when the cluster has GPUs, else none (neural embedders).
    gpus: float | None = 0.0
    helper_processes: int = 0  # child processes it starts (e.g. the extraction sandbox)

    def describe(self) -> str:
        gpus = "auto" if self.gpus is None else f"{self.gpus:g}"
        return f"cpus {self.cpus:g}, gpus {gpus}, helper processes {self.helper_processes}"


@dataclass(frozen=True)
class Contract:
    """A stage's declaration, for one config of it."""

    name: str
    kind: StageKind
    requires: tuple[str, ...]  # columns that must be present in the stage's input
    produces: tuple[str, ...]  # columns it adds or rewrites
    drops: tuple[str, ...] = ()  # columns its output no longer has
    resources: Resources = field(default_factory=Resources)
    # Intermediates (INTERMEDIATES) the kernel hands to `score` as keyword arguments.
    intermediates: tuple[str, ...] = ()


def stage_name_of(config_cls: type) -> str:
    """The name a config class's `stage` field admits (its Literal, else its default)."""
    stage_field = config_cls.model_fields["stage"]  # type: ignore[attr-defined]
    args = get_args(stage_field.annotation)
    return str(args[0] if args else stage_field.default)


class Declared:
    """Mixin of the stage bases: the declaration as class attributes, the name derived.

    A stage sets `config_cls`, `requires`, `score_columns` (what it produces), `drops`,
    `resources` and `intermediates` (its `score` then takes each as a keyword argument); a stage whose columns or resources depend on its config overrides
    `contract(config)`. `column_thresholds` names, per numeric score column, the config keys
    `keep` compares it with: the run histograms those columns with the thresholds marked.
    """

    name: ClassVar[str]
    kind: ClassVar[StageKind]
    config_cls: ClassVar[type[Any]]
    requires: ClassVar[tuple[str, ...]] = (TEXT,)
    score_columns: ClassVar[tuple[str, ...]] = ()
    drops: ClassVar[tuple[str, ...]] = ()
    resources: ClassVar[Resources] = Resources()
    intermediates: ClassVar[tuple[str, ...]] = ()
    column_thresholds: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = [n for n in cls.intermediates if n not in INTERMEDIATES]
        if unknown:
            raise TypeError(f"{cls.__name__} declares unknown intermediates {unknown}")
        config_cls = cls.__dict__.get("config_cls")
        if config_cls is None:
            return
        derived = stage_name_of(config_cls)
        own = cls.__dict__.get("name")
        if own is not None and own != derived:
            raise TypeError(f"{cls.__name__}.name {own!r} differs from its config's {derived!r}")
        cls.name = derived

    @classmethod
    def verify(cls, config: Any, key: str, runtime: Any) -> None:
        """Checks the config validator cannot make (e.g. that a model file loads, or a setting
        that needs a runtime option), run once before any work; raise ConfigError naming `key`
        (the stage's place in the recipe)."""

    @classmethod
    def score_thresholds(cls, config: Any) -> dict[str, dict[str, float]]:
        """Score column -> {config key: value} of the thresholds `keep` compares it with (rules
        disabled by null left out): `column_thresholds`, else, for a stage that produces one
        column and has a numeric `threshold` key (a classifier), that column and that key."""
        keys = dict(cls.column_thresholds)
        produces = cls.contract(config).produces
        if not keys and len(produces) == 1 and "threshold" in type(config).model_fields:
            keys = {produces[0]: ("threshold",)}
        return {
            column: {k: v for k in names if _is_number(v := getattr(config, k, None))}
            for column, names in keys.items()
        }

    @classmethod
    def contract(cls, config: Any) -> Contract:
        """The declaration for `config` (the class attributes, unless overridden)."""
        return Contract(
            name=cls.name,
            kind=cls.kind,
            requires=cls.requires,
            produces=cls.score_columns,
            drops=cls.drops,
            resources=cls.resources,
            intermediates=cls.intermediates,
        )


def _is_number(value: Any) -> bool:
    """An int or float threshold (not a bool switch, not null)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
