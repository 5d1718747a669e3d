"""Recipes and ablation files that used to pass validation and then fail, or succeed wrongly:
duplicate YAML keys (the last silently won), inf/NaN and out-of-range numbers (failing after
the map segment), and outputs that cannot persist (`memory://`: "done", nothing written).
Each goes through the CLI: exit 2, one message naming the key, no work started."""

from __future__ import annotations

import math
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from pipeline.ablate.spec import OutputSpec
from pipeline.config import OutputConfig, RuntimeConfig
from pipeline.io.options import InputConfig
from pipeline.registry import available_stages
from tests.conftest import REPO
from tests.faults.helpers import FAST_EXTRACT, WGET, curate, write_recipe

REFINEDWEB = (REPO / "configs" / "refinedweb.yaml").read_text()


def _line(text: str, needle: str, start: int = 0) -> int:
    """1-based number of the first line (from line `start` on) holding `needle`."""
    lines = text.splitlines()
    return next(i for i in range(start, len(lines)) if needle in lines[i]) + 1


# --- duplicate keys -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("key", "extra"),
    [
        ("stages", "stages:\n  - stage: extract\n"),
        ("output", "output:\n  path: /tmp/elsewhere\n"),
    ],
)
def test_duplicate_top_level_key_is_refused(capsys, tmp_path, key, extra) -> None:
    """A second `stages:` used to replace the whole recipe, a second `output:` its path."""
    text = REFINEDWEB + extra
    config = tmp_path / "r.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    result = curate(capsys, "run", config, "--input", WGET, "--output", out)
    first, second = _line(text, f"{key}:"), _line(text, f"{key}:", _line(text, f"{key}:"))
    assert result.code == 2
    assert f"duplicate key '{key}' (lines {first} and {second})" in result.err
    assert result.err.startswith(f"curate: error: {config}: ")
    assert "Traceback" not in result.err and len(result.err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.timeout(60)
def test_duplicate_key_inside_a_stage_is_refused(capsys, tmp_path) -> None:
    text = REFINEDWEB.replace("threshold: 0.65", "threshold: 0.65\n    threshold: 0.2", 1)
    config = tmp_path / "r.yaml"
    config.write_text(text)
    result = curate(capsys, "run", config, "--input", WGET, "--output", tmp_path / "out")
    first = _line(text, "threshold: 0.65")
    assert result.code == 2
    assert f"duplicate key 'threshold' (lines {first} and {first + 1})" in result.err


@pytest.mark.timeout(60)
def test_yaml_merge_keys_may_still_be_overridden(tmp_path) -> None:
    """`<<: *defaults` then an explicit key is YAML's override, not a duplicate."""
    from pipeline.config import recipe_from_yaml

    recipe = recipe_from_yaml(
        f"output: {{path: {tmp_path}/o}}\nstages:\n"
        "  - &lid {stage: langid, threshold: 0.5}\n"
        "  - {<<: *lid, threshold: 0.9}\n"
    )
    assert [s.threshold for s in recipe.stages] == [0.5, 0.9]  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
def test_duplicate_ablation_variant_is_refused(capsys, tmp_path) -> None:
    """Two variants with one name: the first silently vanished from the comparison."""
    base = write_recipe(tmp_path / "base.yaml", [WGET], tmp_path / "unused")
    text = (
        f"base: {base.name}\n"
        f"output: {{path: {tmp_path / 'abl'}}}\n"
        "variants:\n"
        "  a: {}\n"
        "  b: {set: {extract.timeout_s: 1}}\n"
        "  a: {set: {extract.timeout_s: 2}}\n"
    )
    spec = tmp_path / "ablation.yaml"
    spec.write_text(text)
    result = curate(capsys, "ablate", spec)
    assert result.code == 2
    assert "duplicate key 'a' (lines 4 and 6)" in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "abl").exists()


# --- numbers --------------------------------------------------------------------------------------


def _has_float(annotation: Any) -> bool:
    if annotation is float:
        return True
    return any(_has_float(a) for a in typing.get_args(annotation))


def _float_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Dotted paths of every float-typed key of `model` and of the sections nested in it."""
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _float_keys(ann, (*prefix, name))
        elif _has_float(ann):
            yield (*prefix, name)


def _config_models() -> dict[str, tuple[type[BaseModel], dict[str, Any]]]:
    models: dict[str, tuple[type[BaseModel], dict[str, Any]]] = {
        name: (cls.config_cls, {"stage": name}) for name, cls in available_stages().items()
    }
    models["input"] = (InputConfig, {})
    models["output"] = (OutputConfig, {"path": "out"})
    models["runtime"] = (RuntimeConfig, {})
    models["ablation-output"] = (OutputSpec, {"path": "out"})
    return models


FLOAT_KEYS = [
    (section, path)
    for section, (model, _) in _config_models().items()
    for path in _float_keys(model)
]


def test_every_config_section_has_float_keys_checked() -> None:
    """The walk below finds the float keys (so the parametrised test covers real keys)."""
    keys = {f"{s}.{'.'.join(p)}" for s, p in FLOAT_KEYS}
    assert {"substring_dedup.bytes_per_token", "extract.timeout_s", "langid.threshold"} <= keys
    assert "runtime.max_error_fraction" in keys
    assert len(keys) >= 30


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize(
    ("section", "path"), FLOAT_KEYS, ids=[".".join((s, *p)) for s, p in FLOAT_KEYS]
)
def test_every_float_key_rejects_inf_and_nan(section, path, value) -> None:
    model, base = _config_models()[section]
    data: dict[str, Any] = dict(base)
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    errors = [e for e in info.value.errors() if tuple(e["loc"][: len(path)]) == path]
    assert errors and errors[0]["type"] == "finite_number", info.value


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("yaml_value", "shown"), [(".inf", "(got inf)"), (".nan", "(got nan)")], ids=["inf", "nan"]
)
def test_inf_bytes_per_token_fails_before_any_work(capsys, tmp_path, yaml_value, shown) -> None:
    """`substring_dedup.bytes_per_token: .inf` used to fail only after the whole map segment."""
    text = REFINEDWEB.replace(
        "stage: substring_dedup", f"stage: substring_dedup\n    bytes_per_token: {yaml_value}", 1
    )
    assert text != REFINEDWEB
    config = tmp_path / "r.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    result = curate(capsys, "run", config, "--input", WGET, "--output", out)
    line = _line(text, "bytes_per_token")
    assert result.code == 2
    assert (
        f"(substring_dedup).bytes_per_token (line {line}): Input should be a finite number {shown}"
        in result.err
    )
    assert not out.exists()


@pytest.mark.timeout(60)
def test_huge_bytes_mode_span_fails_before_any_work(capsys, tmp_path) -> None:
    """bytes_per_token: 1e300 is finite but overflowed the suffix-array arithmetic."""
    stage = {"stage": "substring_dedup", "unit": "bytes", "bytes_per_token": 1e300}
    out = tmp_path / "out"
    config = write_recipe(tmp_path / "r.yaml", [WGET], out, [FAST_EXTRACT, stage])
    result = curate(capsys, "run", config)
    assert result.code == 2
    assert "stages[1] (substring_dedup)" in result.err
    assert "min_tokens x bytes_per_token = 5e+301 bytes, longer than max_group_bytes" in result.err
    assert not out.exists()


@pytest.mark.timeout(60)
def test_integer_beyond_64_bits_is_refused(capsys, tmp_path) -> None:
    config = write_recipe(
        tmp_path / "r.yaml", [WGET], tmp_path / "out", input_options={"max_record_bytes": 2**70}
    )
    result = curate(capsys, "run", config)
    assert result.code == 2
    assert "input.max_record_bytes" in result.err and "signed 64-bit integer" in result.err
    assert not (tmp_path / "out").exists()


# --- outputs that do not persist ------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("output", "why"),
    [
        ("memory://x", "memory:// is in-process memory"),
        ("simplecache::memory://x", "memory:// is in-process memory"),
        ("https://example.org/out", "https:// is a read-only filesystem"),
    ],
)
def test_non_persistent_output_is_refused(capsys, tmp_path, output, why) -> None:
    """`--output memory://x` used to print `done` with nothing written anywhere."""
    config = write_recipe(tmp_path / "r.yaml", [WGET], tmp_path / "out")
    result = curate(capsys, "run", config, "--output", output)
    assert result.code == 2
    assert "output.path" in result.err and why in result.err
    assert "nothing written there would persist" in result.err
    assert "done:" not in result.out and "Traceback" not in result.err


@pytest.mark.timeout(60)
def test_stats_to_memory_is_refused(capsys) -> None:
    result = curate(capsys, "stats", WGET, "--output", "memory://stats", "--executor", "local")
    assert result.code == 2
    assert result.err.startswith("curate: error: --output memory://stats: memory:// is in-process")
