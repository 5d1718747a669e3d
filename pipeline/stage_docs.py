"""The stage reference (`curate stages`, and the README's stage tables), made from the code.

Each stage's keys, defaults and threshold flags come from its config class, so the reference
cannot drift from what the config validator accepts; a key's meaning is its `Field(description=)`,
else the comment on or above its line in the class source.
"""

from __future__ import annotations

import inspect
import io
import json
import textwrap
import tokenize
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pipeline.errors import ConfigError, did_you_mean
from pipeline.registry import STAGES, available_stages, broken_plugins, origin, stage_class
from pipeline.stages.contract import Contract


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    value: Any = field.get_default(call_default_factory=True)
    if isinstance(value, (set, frozenset, tuple)):
        value = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


@cache
def field_comments(cls: type) -> dict[str, str]:
    """Comments documenting the fields declared in `cls`'s own body: name -> text.

    A field's comment is the trailing `# ...` of its statement, else the contiguous comment
    lines directly above it (at the field's indentation). Read with `tokenize`, so a `#` inside
    a string is never taken for a comment.
    """
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    above: list[tokenize.TokenInfo] = []  # comment lines since the last statement or blank line
    stmt: list[tokenize.TokenInfo] = []  # tokens of the logical line being read
    depth = 0
    prev = tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.INDENT, tokenize.DEDENT):
            depth += 1 if tok.type == tokenize.INDENT else -1
        elif tok.type == tokenize.NEWLINE:
            code = [t for t in stmt if t.type != tokenize.COMMENT]
            # `name: annotation ...` directly in the class body declares a field.
            if (
                depth == 1
                and len(code) > 1
                and code[0].type == tokenize.NAME
                and code[1].string == ":"
            ):
                trailing = [t.string for t in stmt if t.type == tokenize.COMMENT]
                col = code[0].start[1]
                lines = trailing or [t.string for t in above if t.start[1] == col]
                out[code[0].string] = " ".join(c.lstrip("#").strip() for c in lines)
            stmt, above = [], []
        elif not stmt and tok.type == tokenize.COMMENT:
            above.append(tok)
        elif not stmt and tok.type == tokenize.NL:
            if prev != tokenize.COMMENT:  # a blank line ends the comment block above
                above = []
        elif tok.type != tokenize.NL:
            stmt.append(tok)
        prev = tok.type
    return out


def meaning(cls: type, key: str, field: FieldInfo) -> str:
    """What config key `key` of `cls` means: its description, else its comment (MRO order)."""
    if field.description:
        return field.description
    for base in cls.__mro__:
        if key in inspect.get_annotations(base) and (text := field_comments(base).get(key)):
            return text
    return ""


def _summary(cls: type) -> str:
    doc = (cls.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def _nested_model(field: FieldInfo) -> type[BaseModel] | None:
    """The options model a key holds (e.g. extract's `trafilatura`), else None."""
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def config_keys(cls: type[BaseModel], prefix: str = "") -> list[tuple[str, type, str, FieldInfo]]:
    """Every key of config class `cls` as (dotted key, declaring class, name, field); the keys
    of a nested options model follow their parent as `parent.key`."""
    out = []
    for key, field in cls.model_fields.items():
        if key == "stage" and not prefix:
            continue
        out.append((prefix + key, cls, key, field))
        if (nested := _nested_model(field)) is not None:
            out += config_keys(nested, f"{prefix}{key}.")
    return out


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{c}`" for c in names) or "none"


def declaration(cls: Any) -> list[str]:
    """The stage's declaration (for its default config) as Markdown lines."""
    try:
        c = cls.contract(cls.config_cls())
    except ValueError:  # a config with required keys: the class-level declaration
        c = Contract(cls.name, cls.kind, cls.requires, cls.score_columns, cls.drops, cls.resources)
    lines = [f"Requires: {_columns(c.requires)}. Produces: {_columns(c.produces)}."]
    if c.drops:
        lines[0] += f" Drops: {_columns(c.drops)}."
    if c.intermediates:
        lines[0] += f" Shares (per batch, never written): {_columns(c.intermediates)}."
    lines.append(f"Resources (default config): {c.resources.describe()}.")
    return [" ".join(lines), ""]


def stage_reference(names: list[str] | None = None, origins: bool = True) -> str:
    """Markdown: one section per stage with its declaration and a table of its keys. With
    `origins`, each heading names where the stage comes from (built-in, or the package that
    registers it) and a full reference opens with an index; without, only the built-ins are
    described (the README's reference, the same whatever is installed)."""
    stages = available_stages() if origins else {n: stage_class(n) for n in STAGES}
    unknown = [n for n in names or [] if n not in stages]
    if unknown and unknown[0] in broken_plugins():
        raise ConfigError(broken_plugins()[unknown[0]])
    if unknown:
        hint = did_you_mean(unknown[0], list(stages))
        raise ConfigError(
            f"unknown stage {unknown[0]!r}{hint}; allowed: {', '.join(sorted(stages))}"
        )
    out = []
    if origins and not names:
        out += ["| stage | kind | origin |", "|---|---|---|"]
        out += [f"| `{n}` | {cls.kind} | {origin(n)} |" for n, cls in stages.items()] + [""]
    for name in names or list(stages):
        cls = stages[name]
        where = f", {origin(name)}" if origins else ""
        out += [f"#### `{name}` ({cls.kind} stage{where})", "", _summary(cls), ""]
        out += declaration(cls)
        keys = config_keys(cls.config_cls)
        if not keys:
            out += ["No keys.", ""]
            continue
        out += ["| key | default | threshold | meaning |", "|---|---|---|---|"]
        for dotted, owner, key, field in keys:
            threshold = "yes" if dotted in cls.threshold_keys else ""
            text = meaning(owner, key, field).replace("|", "\\|")
            default = "(below)" if _nested_model(field) is not None else _default(field)
            out.append(f"| `{dotted}` | `{default}` | {threshold} | {text} |")
        out.append("")
    return "\n".join(out)


BEGIN = "<!-- stages:begin (generated by `python -m pipeline.stage_docs README.md`) -->"
END = "<!-- stages:end -->"


def readme_with_reference(readme: str) -> str:
    """`readme` with the text between the stage markers replaced by the current reference."""
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n\n{stage_reference(origins=False)}\n{END}{tail}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    target.write_text(readme_with_reference(target.read_text(encoding="utf-8")), encoding="utf-8")
