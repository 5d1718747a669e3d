"""Security of configs, inputs and outputs: YAML builds no objects, no config value runs code or
imports a module outside the stage registry, outputs stay inside the output directory, and remote
inputs use only the fsspec protocols the user enabled."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import fsspec
import pytest

from pipeline.ablate.spec import load_ablation
from pipeline.config import _recipe_model, recipe_from_yaml
from pipeline.errors import ConfigError
from pipeline.registry import STAGES, available_stages
from pipeline.runner.unit import stage_labels
from tests.conftest import REPO
from tests.faults.helpers import WGET, assert_reconciles, curate, stats_of, write_recipe

PACKAGE = REPO / "pipeline"

# --- YAML ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "!!python/object/apply:os.system ['touch {canary}']\n",
        "input: {{paths: [a]}}\noutput: {{path: o}}\n"
        "stages: [{{stage: !!python/object/apply:os.system ['touch {canary}']}}]\n",
        "input: !!python/object/new:pathlib.Path ['{canary}']\noutput: {{path: o}}\n",
        "name: !!python/name:os.system\noutput: {{path: o}}\nstages: [{{stage: extract}}]\n",
        "input: !include {canary}\noutput: {{path: o}}\nstages: [{{stage: extract}}]\n",
    ],
    ids=["apply-top", "apply-nested", "new", "name", "custom-tag"],
)
def test_yaml_tags_construct_nothing(capsys, tmp_path, payload) -> None:
    """Python and custom tags anywhere in a recipe: `invalid YAML`, and no side effect."""
    canary = tmp_path / "canary"
    config = tmp_path / "evil.yaml"
    config.write_text(payload.format(canary=canary))
    result = curate(capsys, "run", config, "--output", tmp_path / "out")
    assert result.code == 2
    assert result.err.startswith(f"curate: error: {config}: invalid YAML (line ")
    assert "constructor" in result.err
    assert not canary.exists() and not (tmp_path / "out").exists()


def test_yaml_alias_bomb_gives_a_short_error() -> None:
    """A billion-laughs recipe (9 levels of aliases): a bounded message (quoting the offending
    value in full would take minutes and gigabytes)."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    text = (
        "\n".join(lines) + "\ninput:\n  paths: *l8\noutput: {path: o}\nstages: [{stage: extract}]\n"
    )
    with pytest.raises(ConfigError) as exc:
        recipe_from_yaml(text, source="bomb.yaml")
    message = str(exc.value)
    assert "input.paths[0] (line 8): Input should be a valid string (got [[...]" in message
    assert len(message) < 5000


# --- nothing in a config runs code or imports a module ------------------------------------------

# Calls that run code or import by name; allowed only where listed (path relative to pipeline/).
_FORBIDDEN_CALLS = {
    "eval": set(),
    "exec": set(),
    "compile": set(),
    "__import__": set(),
    # The stage registry (names from its own static table and installed packages' entry
    # points, never from a config) and the ablation fingerprint (modules found in the stage
    # code's own import statements, never in a config).
    "import_module": {"registry.py", "ablate/fingerprint.py"},
    "unsafe_load": set(),
    "full_load": set(),
}
_FORBIDDEN_NAMES = {"Loader", "FullLoader", "UnsafeLoader", "UnsafeConstructor"}
# pickle runs code on load: only for the sandbox's pipe to its own child process.
_PICKLE_ALLOWED = {"stages/sandbox.py"}


def _violations(path: Path) -> list[str]:
    rel = path.relative_to(PACKAGE).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            bare = isinstance(fn, ast.Name)
            name = fn.id if bare else fn.attr if isinstance(fn, ast.Attribute) else ""
            owner = (
                fn.value.id
                if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name)
                else ""
            )
            # Builtins called by name (not methods such as model.eval(), re.compile()).
            by_name = bare or owner in ("builtins", "importlib", "yaml")
            if name in _FORBIDDEN_CALLS and by_name and rel not in _FORBIDDEN_CALLS[name]:
                found.append(f"{rel}:{node.lineno}: {name}()")
            if name == "load" and owner == "yaml":
                loader = {k.arg: k.value for k in node.keywords}.get("Loader")
                if not (
                    isinstance(loader, ast.Attribute)
                    and loader.attr in ("SafeLoader", "CSafeLoader")
                ):
                    found.append(f"{rel}:{node.lineno}: yaml.load without SafeLoader")
            unpickle = owner in ("pickle", "cloudpickle", "dill") and name.startswith("load")
            if unpickle and rel not in _PICKLE_ALLOWED:
                found.append(f"{rel}:{node.lineno}: {owner}.{name}()")
            for kw in node.keywords:
                if kw.arg == "trust_remote_code" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    found.append(f"{rel}:{node.lineno}: trust_remote_code")
                if kw.arg == "shell" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    found.append(f"{rel}:{node.lineno}: shell=")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in _FORBIDDEN_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id == "yaml"
        ):
            found.append(f"{rel}:{node.lineno}: yaml.{node.attr}")
    return found


def test_no_code_runs_or_module_loads_by_name_anywhere_in_the_package() -> None:
    """A source scan of pipeline/: no eval/exec/__import__, import_module only in the registry,
    YAML only through the safe loader, no unpickling outside the sandbox's own pipe, no
    trust_remote_code, no shell=True."""
    found = [v for path in sorted(PACKAGE.rglob("*.py")) for v in _violations(path)]
    assert not found, "\n".join(found)


def test_registry_maps_names_to_its_own_modules_only() -> None:
    for name, target in STAGES.items():
        module, _, cls = target.partition(":")
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert module.startswith("pipeline.") and cls.isidentifier(), target


@pytest.mark.parametrize(
    "name", ["os:system", "pipeline.stages.extract:ExtractStage", "builtins.eval", "__import__"]
)
def test_module_paths_are_not_stage_names(name: str) -> None:
    """A stage name is looked up in the registry's table, never imported."""
    before = set(sys.modules)
    with pytest.raises(
        ConfigError, match=f"unknown stage {re.escape(repr(name))}; allowed: url_filter"
    ):
        recipe_from_yaml(f"output: {{path: o}}\nstages: [{{stage: '{name}'}}]\n")
    assert set(sys.modules) == before


def _field_types(model: type, seen: set[type]) -> list[tuple[str, object]]:
    """(dotted field, annotation) of a pydantic model, recursively."""
    import typing

    out = []
    if model in seen:
        return out
    seen.add(model)
    for field, info in model.model_fields.items():  # type: ignore[attr-defined]
        out.append((f"{model.__name__}.{field}", info.annotation))
        stack = [info.annotation]
        while stack:
            ann = stack.pop()
            stack.extend(typing.get_args(ann))
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                out += _field_types(ann, seen)
    return out


def test_no_config_key_takes_code_a_type_or_an_import_path() -> None:
    """Every key of the recipe and of every registered stage is plain data: no ImportString,
    callable, type, or free-form Any that a later step could resolve to code."""
    seen: set[type] = set()
    fields = _field_types(_recipe_model(), seen)
    for cls in available_stages().values():
        fields += _field_types(cls.config_cls, seen)
    assert len(fields) > 100
    for name, ann in fields:
        text = str(ann)
        for bad in ("ImportString", "Callable", "typing.Any", "type[", "object"):
            assert bad not in text, f"{name}: {text}"


# --- outputs stay inside the output directory --------------------------------------------------


def test_a_run_writes_only_inside_its_output_directory(capsys, tmp_path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "a.warc.gz").write_bytes(WGET.read_bytes())
    recipe = write_recipe(tmp_path / "r.yaml", [inputs], tmp_path / "out")
    before = {p for p in tmp_path.rglob("*")}
    assert curate(capsys, "run", recipe).code == 0
    new = {p for p in tmp_path.rglob("*")} - before - {tmp_path / "out"}
    assert new and all(p.is_relative_to(tmp_path / "out") for p in new)
    top = {p.relative_to(tmp_path / "out").parts[0] for p in new}
    assert top <= {"data", "rejected", "_run", "stats.json", "report.md", "report.html", "figures"}


def test_path_components_from_names_cannot_escape(tmp_path) -> None:
    """Directory names built from config values (stage labels under rejected/, ablation variant
    names under variants/) are single safe components; `..` and slashes are refused."""
    stages = [{"stage": name} for name in STAGES for _ in range(2)]
    labels = stage_labels(type("R", (), {"stages": [type("S", (), s) for s in stages]})())
    for label in labels:
        assert re.fullmatch(r"[a-z][a-z0-9_]*(\.\d+)?", label), label
    for bad in ("../../escape", "..", "a/b", "/abs", ".hidden"):
        spec = tmp_path / "ablation.yaml"
        spec.write_text(
            f"base: {REPO / 'configs' / 'quickstart.yaml'}\noutput: {{path: {tmp_path / 'o'}}}\n"
            f"variants:\n  '{bad}': {{}}\n"
        )
        with pytest.raises(ConfigError, match="variant name"):
            load_ablation(spec)


# --- remote inputs only through protocols the user enabled ----------------------------------------


@pytest.mark.parametrize(
    ("url", "protocol", "allowed"),
    [
        ("s3://bucket/crawl/x.warc.gz", "s3", ["file"]),
        ("https://example.com/x.warc.gz", "https", ["file"]),
        ("memory://bucket/x.warc.gz", "memory", ["file"]),
        ("simplecache::s3://bucket/x.warc.gz", "simplecache", ["file"]),
        ("file://{local}::memory://x", "memory", ["file"]),
        # `reference` fetches whatever URLs its JSON names: enabling s3 does not enable it.
        ("reference::s3://bucket/refs.json", "reference", ["file", "s3"]),
    ],
)
def test_remote_input_needs_its_protocol_enabled(capsys, tmp_path, url, protocol, allowed) -> None:
    """A URL whose protocol is not in input.allowed_protocols fails before any work, naming the
    protocol and the key to change; nothing is fetched."""
    url = url.format(local=WGET)
    out = tmp_path / "out"
    options = {"allowed_protocols": allowed}
    result = curate(
        capsys, "run", write_recipe(tmp_path / "r.yaml", [url], out, input_options=options)
    )
    assert result.code == 2
    assert result.err == (
        f"curate: error: input path {url!r} uses protocol '{protocol}', which is not allowed; "
        f"add '{protocol}' to input.allowed_protocols (now {sorted(allowed)})\n"
    )
    assert not out.exists()


def test_enabled_protocol_is_read(capsys, tmp_path) -> None:
    """The same URL works once its protocol is enabled."""
    url = "memory://faults-security/crawl.warc.gz"
    with fsspec.open(url, "wb") as f:
        f.write(WGET.read_bytes())
    try:
        out = tmp_path / "out"
        recipe = write_recipe(
            tmp_path / "r.yaml", [url], out, input_options={"allowed_protocols": ["file", "memory"]}
        )
        result = curate(capsys, "run", recipe)
        assert result.code == 0, result.err
        stats = stats_of(out)
        assert_reconciles(stats)
        assert stats["reader"]["documents"] == 22
    finally:
        fsspec.filesystem("memory").rm("/faults-security", recursive=True)
