"""The five workloads of the side-by-side benchmark, each returning rows, raw runs and agreement.

Every measured run is a fresh process tree (measure.py); the sides of a workload alternate in
order from one repeat to the next, and rows are medians (table.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scripts import bench_dedup, eval_extract
from scripts.bench import agree, peer
from scripts.bench.measure import run_measured
from scripts.bench.table import PEER, summarize
from scripts.soak import replicate

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
FINEWEB = REPO / "configs" / "fineweb.yaml"
FILTER_STAGES = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")
E2E_STAGES = ("extract", "langid", *FILTER_STAGES)
# Our extractor at FineWeb's / datatrove's settings (favor_precision, no comments, no
# trafilatura deduplication) without our prune_tags pass; `default` adds it; `fast` is the
# documented fast setting.
EXTRACT_VARIANTS: dict[str, dict[str, Any]] = {
    "ours (same settings)": {"trafilatura": {"prune_tags": []}},
    "ours default (prune_tags)": {},
    "ours fast": {
        "trafilatura": {"fast": True, "favor_precision": False, "recall_escalation": False}
    },
}
SAME = "ours (same settings)"
# A WARC whose last gzip member is cut short: datatrove's WarcReader raises EOFError and its
# whole task fails (ours counts one `truncated` record and goes on), so no workload feeds it.
PEER_UNREADABLE = ("clipped-response",)
# The light chain of the overhead workload: cheap per document, so orchestration shows.
LIGHT_STAGES: list[dict[str, Any]] = [
    {"stage": "extract", "backend": "resiliparse"},
    {"stage": "langid", "languages": ["en"], "threshold": 0.65},
]


# datatrove's word tokenizers the harness can give its filters (peer_driver.py): `default` is
# what its users run (spaCy's blank English pipeline), `whitespace` an extra, labelled row.
PEER_WORDS = ("default", "whitespace")


@dataclass
class Context:
    """What every workload needs: the work folder and the run settings. `peer_words`: the
    datatrove rows of workloads 2 and 4 (PEER_WORDS); `ours_local`: workload 4 adds a row of
    ours with `executor: local` beside the default `executor: auto`; `ours_cascade`: workload 4
    adds a row of ours whose extract stage runs `backend: cascade` (not FineWeb's trafilatura)."""

    work: Path
    workers: int
    repeat: int
    lid_model: str
    peer_words: tuple[str, ...] = ("default",)
    ours_local: bool = False
    ours_cascade: bool = False

    @property
    def executor(self) -> str:
        """Workloads 1 and 2 (components): ours in-process with one worker (like datatrove's),
        on Ray with more. Workload 4 runs the default, `executor: auto`, instead."""
        return "local" if self.workers == 1 else "ray"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- inputs ----------------------------------------------------------------------------------


def crawl_warcs() -> list[Path]:
    """The extraction benchmarks' WARCs and the shared crawl WARCs (not WET / WAT), less
    PEER_UNREADABLE."""
    files = [SHARED / "extraction" / f"{n}.warc.gz" for n in ("scrapinghub", "cleaneval")]
    files += sorted(
        p
        for p in (SHARED / "warc").glob("*.warc.gz")
        if not p.name.endswith((".wet.gz", ".wat.gz"))
    )
    return [p for p in files if not p.name.startswith(PEER_UNREADABLE)]


def link_inputs(files: list[Path], folder: Path) -> Path:
    """A folder of symlinks to `files` (both sides read the same paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        link = folder / f.name
        if not link.exists():
            link.symlink_to(f)
    return folder


def replicated(folder: Path, gb: float) -> Path:
    """scripts/soak.py's replicas of the shared WARCs, >= `gb` GiB (made once per folder), less
    the pieces of PEER_UNREADABLE."""
    done = folder / ".done"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        replicate(folder, int(gb * 2**30), 100)
        for piece in folder.glob("*.warc.gz"):
            if piece.name.split("-", 1)[1].startswith(PEER_UNREADABLE):
                piece.unlink()
        done.write_text("ok")
    return folder


def size_of(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


# --- running each side ------------------------------------------------------------------------


def fineweb_stages(names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The named stages with configs/fineweb.yaml's settings."""
    stages = yaml.safe_load(FINEWEB.read_text())["stages"]
    by_name = {s["stage"]: s for s in stages}
    return [dict(by_name[n]) for n in names]


def recipe(
    stages: list[dict[str, Any]],
    inputs: Path,
    output: Path,
    executor: str,
    workers: int,
    keep_rejected: bool = False,
) -> dict[str, Any]:
    """A recipe dict for ours_driver.py."""
    return {
        "name": "bench",
        "input": {"paths": [str(inputs)]},
        "output": {"path": str(output), "keep_rejected": keep_rejected},
        "runtime": {"executor": executor, "num_workers": workers, "progress": "off"},
        "stages": stages,
    }


def run_ours(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """ours_driver.py on `spec` in a fresh process of our venv, measured."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "scripts.bench.ours_driver", str(work / "spec.json")]
    return run_measured(cmd, work / "log.txt", env=env, cwd=REPO)


def our_spec(ctx: Context, rec: dict[str, Any], mode: str = "run") -> dict[str, Any]:
    executor = rec["runtime"]["executor"]
    return {
        "mode": mode,
        "recipe": rec,
        "executor": executor,
        "workers": ctx.workers,
        "ray_tmp": str(ctx.work / "ray"),
    }


def peer_side(words: str) -> str:
    """The row name of a datatrove run with `words` (PEER_WORDS): the default is the peer row."""
    return PEER if words == "default" else f"datatrove, {words} words (not its default)"


def peer_sides(
    ctx: Context, w: Path, make_spec: Callable[[Path], dict[str, Any]]
) -> dict[str, Callable[[int], dict[str, Any]]]:
    """One side per ctx.peer_words: a fresh folder (`dt` for the default, `dt-WORDS` for the
    others) and the spec `make_spec(folder)` with that word tokenizer."""
    sides: dict[str, Callable[[int], dict[str, Any]]] = {}
    for words in ctx.peer_words:
        folder = w / ("dt" if words == "default" else f"dt-{words}")

        def go(r: int, words: str = words, folder: Path = folder) -> dict[str, Any]:
            out = fresh(folder)
            return peer.run({**make_spec(out), "words": words}, out / "run")

        sides[peer_side(words)] = go
    return sides


def peer_spec(ctx: Context, mode: str, inputs: Path, out: Path, **extra: Any) -> dict[str, Any]:
    files = list(inputs.glob("*.warc.gz")) or list(inputs.glob("*.jsonl"))
    return {
        "mode": mode,
        "input": str(inputs),
        "output": str(out / "out"),
        "logs": str(out / "logs"),
        "workers": ctx.workers,
        "tasks": max(1, min(ctx.workers, len(files))),
        "lid_model": ctx.lid_model,
        **extra,
    }


def alternate(
    sides: dict[str, Callable[[int], dict[str, Any]]], repeat: int, label: str
) -> dict[str, list[dict[str, Any]]]:
    """Run every side `repeat` times, reversing the order on odd repeats."""
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    for r in range(repeat):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for side in order:
            load = os.getloadavg()[0]
            res = sides[side](r)
            res["load_1min"] = load
            runs[side].append(res)
            log(
                f"{label} | {side} | run {r + 1}/{repeat}: wall {res['wall_s']:.1f}s "
                f"cpu {res['cpu_s']:.1f}s peak RSS {res['peak_rss_mib']:.0f} MiB load {load:.1f}"
            )
    return runs


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def step_name(name: str) -> str:
    """'🔻 - FILTER: 👯 Gopher Repetition' -> 'gopher repetition'."""
    words = name.split(": ", 1)[-1].split()
    return " ".join(w for w in words if w.isascii()).lower()


def peer_steps(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """datatrove's step stats by short name (see step_name)."""
    return {step_name(s["name"]): s["stats"] for s in res["result"]["steps"]}


def peer_docs_in(res: dict[str, Any]) -> int:
    """Documents datatrove's reader handed on (the first step after the reader)."""
    steps = res["result"]["steps"]
    return int(steps[1]["stats"].get("total", 0))


def file_keys(folder: Path, path_column: str) -> set[tuple[str, str]]:
    """(input file name, record id) of every row: WARC record ids repeat across replicas."""
    rows = agree.read_columns(folder, ["id", path_column])
    return {(Path(r[path_column] or "").name, r["id"]) for r in rows}


# --- 1. WARC -> text -------------------------------------------------------------------------


def w1_extract(ctx: Context) -> dict[str, Any]:
    """WARC -> text: trafilatura on both sides at the same settings, plus our default and fast."""
    inputs = link_inputs(crawl_warcs(), ctx.work / "w1" / "input")
    nbytes = size_of(inputs, "*.warc.gz")
    w = ctx.work / "w1"
    sides: dict[str, Callable[[int], dict[str, Any]]] = {}
    for i, (name, opts) in enumerate(EXTRACT_VARIANTS.items()):
        stage = {"stage": "extract", "backend": "trafilatura", **opts}

        def ours(r: int, stage: dict[str, Any] = stage, i: int = i) -> dict[str, Any]:
            out = fresh(w / f"ours{i}")
            rec = recipe([stage], inputs, out / "out", ctx.executor, ctx.workers)
            return run_ours(our_spec(ctx, rec), out / "run")

        sides[name] = ours

    def dt(r: int) -> dict[str, Any]:
        out = fresh(w / "dt")
        return peer.run(peer_spec(ctx, "extract", inputs, out, timeout=5.0), out / "run")

    sides["datatrove"] = dt
    runs = alternate(sides, ctx.repeat, "1 extract")
    rows = {}
    for side, rs in runs.items():
        docs = rs[-1]["result"]["documents"] if side != "datatrove" else peer_docs_in(rs[-1])
        rows[side] = summarize(rs, docs, nbytes)
    # agreement: which pages yield text, and how close the texts are (last runs' outputs)
    ours_rows = agree.read_columns(w / "ours0" / "out" / "data", ["id", "source", "text"])
    dt_rows = agree.read_columns(w / "dt" / "out", ["id", "file_path", "text"])
    ours_text = {(Path(r["source"]).name, r["id"]): r["text"] for r in ours_rows}
    dt_text = {(Path(r["file_path"]).name, r["id"]): r["text"] for r in dt_rows}
    both = sorted(set(ours_text) & set(dt_text))
    scores = eval_extract.prf([eval_extract.tp_fp_fn(dt_text[k], ours_text[k]) for k in both])
    agreement = {
        "pages_with_text": agree.sets(set(ours_text), set(dt_text)),
        "docs_in": {s: r["docs"] for s, r in rows.items()},
        "docs_out": {
            **{s: rs[-1]["result"]["output_docs"] for s, rs in runs.items() if s != "datatrove"},
            "datatrove": peer_steps(runs["datatrove"][-1])["parquet"].get("total", 0),
        },
        "text_f1_ours_vs_datatrove": {k: round(v, 4) for k, v in scores.items()},
    }
    return {"rows": rows, "runs": runs, "agreement": agreement, "input_bytes": nbytes}


# --- 2. the FineWeb filter chain ----------------------------------------------------------


def w2_input(ctx: Context, copies: int) -> Path:
    """Extracted English text (our extractor at FineWeb settings + langid en >= 0.65 on the
    WARCs of workload 1), as JSONL: `copies` files, one copy of every document each."""
    folder = ctx.work / "w2" / f"input-{copies}"
    if (folder / ".done").exists():
        return folder
    prep = fresh(ctx.work / "w2" / "prep")
    inputs = link_inputs(crawl_warcs(), ctx.work / "w1" / "input")
    stages = [
        {"stage": "extract", "trafilatura": {"prune_tags": []}},
        {"stage": "langid", "languages": ["en"], "threshold": 0.65},
    ]
    log("2 filters | preparing the input: extract + langid (not timed)")
    run_ours(our_spec(ctx, recipe(stages, inputs, prep / "out", "local", 1)), prep / "run")
    rows = agree.read_columns(prep / "out" / "data", ["id", "url", "text"])
    fresh(folder).mkdir(parents=True)
    for c in range(copies):
        with open(folder / f"part-{c:04d}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                doc = {"id": f"{r['id']}#c{c}", "url": r["url"], "text": r["text"]}
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    (folder / ".done").write_text(str(len(rows)))
    return folder


def w2_filters(ctx: Context, copies: int) -> dict[str, Any]:
    """GopherRepetition -> GopherQuality -> C4Quality -> FineWebQuality on extracted text."""
    inputs = w2_input(ctx, copies)
    docs = int((inputs / ".done").read_text()) * copies
    nbytes = size_of(inputs, "*.jsonl")
    w = ctx.work / "w2"

    def ours(r: int) -> dict[str, Any]:
        out = fresh(w / "ours")
        rec = recipe(
            fineweb_stages(FILTER_STAGES), inputs, out / "out", ctx.executor, ctx.workers, True
        )
        return run_ours(our_spec(ctx, rec), out / "run")

    def dt(out: Path) -> dict[str, Any]:
        return peer_spec(ctx, "filters", inputs, out, rejected=str(out / "rejected"))

    runs = alternate({"ours": ours, **peer_sides(ctx, w, dt)}, ctx.repeat, "2 filters")
    rows = {side: summarize(rs, docs, nbytes) for side, rs in runs.items()}
    agreement = w2_agreement(w, inputs)
    return {"rows": rows, "runs": runs, "agreement": agreement, "input_bytes": nbytes}


def w2_agreement(w: Path, inputs: Path) -> dict[str, Any]:
    """Per-document decisions of the last runs, on the first copy (the copies are identical)."""
    first = "#c0"
    mine: dict[str, str] = {}
    for r in agree.read_columns(w / "ours" / "out" / "data", ["id"]):
        mine[r["id"]] = agree.KEEP
    for stage in FILTER_STAGES:
        for r in agree.read_columns(w / "ours" / "out" / "rejected" / stage, ["id", "reason"]):
            mine[r["id"]] = f"{stage}:{r['reason']}"
    theirs: dict[str, str] = {}
    for r in agree.read_columns(w / "dt" / "out", ["id"]):
        theirs[r["id"]] = agree.KEEP
    for stage in FILTER_STAGES:
        for r in agree.read_columns(w / "dt" / "rejected" / stage, ["id", "filter_reason"]):
            theirs[r["id"]] = f"{stage}:{r['filter_reason']}"
    texts = {}
    with open(inputs / "part-0000.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            texts[d["id"]] = d["text"]
    mine = {k: v for k, v in mine.items() if k.endswith(first)}
    theirs = {k: v for k, v in theirs.items() if k.endswith(first)}
    return agree.decisions(mine, theirs, texts)


# --- 3. MinHash dedup (scripts/bench_dedup.py) -------------------------------------------------


def w3_dedup(ctx: Context, n_docs: int) -> dict[str, Any]:
    """bench_dedup.py's corpus and its two sides (one worker each, as bench_dedup runs them)."""
    corpus = ctx.work / "w3" / f"corpus-{n_docs}"
    if not (corpus / "labels.json").exists():
        log(f"3 dedup | building a {n_docs:,}-document corpus (bench_dedup.make_corpus)")
        bench_dedup.make_corpus(n_docs, 0.1, corpus)
    labels = json.loads((corpus / "labels.json").read_text())
    nbytes = size_of(corpus / "jsonl", "*.jsonl")
    driver = ctx.work / "w3" / "dt_driver.py"
    driver.write_text(bench_dedup.DT_DRIVER)
    w = ctx.work / "w3"

    def ours(r: int) -> dict[str, Any]:
        out = fresh(w / "ours")
        cmd = [sys.executable, bench_dedup.__file__, "--child-ours", str(corpus), str(out / "x")]
        return run_measured(cmd, out / "log.txt", cwd=REPO)

    def dt(r: int) -> dict[str, Any]:
        out = fresh(w / "dt")
        cmd = [str(peer.python()), str(driver), str(corpus), str(out / "dt")]
        return run_measured(cmd, out / "log.txt", env=peer.env(), cwd=w)

    runs = alternate({"ours": ours, "datatrove": dt}, ctx.repeat, f"3 dedup {n_docs:,}")
    rows = {side: summarize(rs, n_docs, nbytes) for side, rs in runs.items()}
    sig_rows = {}
    for side, rs in runs.items():
        phase = [{"wall_s": x["result"]["phases"]["signatures_s"]} for x in rs]
        sig_rows[side] = summarize(phase, n_docs, nbytes)
    removed = {s: set(rs[-1]["result"]["removed"]) for s, rs in runs.items()}
    for rs in runs.values():
        for x in rs:
            x["result"]["removed"] = len(x["result"]["removed"])  # keep the JSON small
    agreement = {
        "removed": agree.sets(removed["ours"], removed["datatrove"]),
        "planted_pairs_found": {
            s: bench_dedup.planted_found(labels, r) for s, r in removed.items()
        },
        "phases_s": {s: rs[-1]["result"]["phases"] for s, rs in runs.items()},
    }
    return {
        "rows": rows,
        "signature_rows": sig_rows,
        "runs": runs,
        "agreement": agreement,
        "input_bytes": nbytes,
    }


# --- 4. end to end ---------------------------------------------------------------------------


def w4_e2e(ctx: Context, gb: float) -> dict[str, Any]:
    """The FineWeb map chain end to end, WARC in, Parquet out, each side with its defaults: ours
    `executor: auto` and fineweb.yaml's stage settings, datatrove its own executor, extractor
    defaults and word tokenizer (ctx.peer_words). `gb` > 0: the shared WARCs replicated to that
    size; 0: the shared crawl and extraction WARCs as they are (crawl_warcs, 1,145 pages)."""
    if gb > 0:
        inputs = replicated(ctx.work / f"warcs-{gb:g}", gb)
    else:
        inputs = link_inputs(crawl_warcs(), ctx.work / "w1" / "input")
    nbytes = size_of(inputs, "*.warc.gz")
    w = ctx.work / "w4"

    def ours(executor: str, folder: str, backend: str = "") -> Callable[[int], dict[str, Any]]:
        def go(r: int) -> dict[str, Any]:
            out = fresh(w / folder)
            stages = fineweb_stages(E2E_STAGES)
            if backend:
                stages[0] = {"stage": "extract", "backend": backend}
            rec = recipe(stages, inputs, out / "out", executor, ctx.workers)
            return run_ours(our_spec(ctx, rec), out / "run")

        return go

    sides = {"ours": ours("auto", "ours")}
    if ctx.ours_local:
        sides["ours, executor: local"] = ours("local", "ours-local")
    if ctx.ours_cascade:
        sides["ours, extract backend: cascade"] = ours("auto", "ours-cascade", "cascade")
    sides |= peer_sides(ctx, w, lambda out: peer_spec(ctx, "e2e", inputs, out))
    label = f"4 e2e {gb:g} GiB" if gb > 0 else "4 e2e shared WARCs"
    runs = alternate(sides, ctx.repeat, label)
    docs = {
        side: rs[-1]["result"]["documents"] if side.startswith("ours") else peer_docs_in(rs[-1])
        for side, rs in runs.items()
    }
    rows = {side: summarize(rs, docs[side], nbytes) for side, rs in runs.items()}
    agreement: dict[str, Any] = {
        "docs_in": docs,
        "executor": {
            s: rs[-1]["result"]["executor"]
            for s, rs in runs.items()
            if "executor" in rs[-1]["result"]
        },
        "our_stage_cpu_s": runs["ours"][-1]["result"]["stage_cpu_s"],
    }
    if PEER in runs:
        agreement["kept"] = agree.sets(
            file_keys(w / "ours" / "out" / "data", "source"),
            file_keys(w / "dt" / "out", "file_path"),
        )
        peer_stats = peer_steps(runs[PEER][-1])
        agreement["funnel"] = {
            "ours": runs["ours"][-1]["result"]["stages"],
            "datatrove": {n: st.get("forwarded", st.get("total")) for n, st in peer_stats.items()},
        }
        agreement["datatrove_step_time_s"] = {
            step_name(s["name"]): s.get("time_s") for s in runs[PEER][-1]["result"]["steps"]
        }
        agreement["datatrove_extract_timeouts"] = peer_stats.get("trafilatura", {}).get(
            "timeout", 0
        )
    return {"rows": rows, "runs": runs, "agreement": agreement, "input_bytes": nbytes}


# --- 5. orchestration overhead ---------------------------------------------------------------


def w5_overhead(ctx: Context, gb: float, chain: str) -> dict[str, Any]:
    """Our Ray runner vs a ProcessPoolExecutor over the same RecipeJob, units and workers."""
    inputs = replicated(ctx.work / f"warcs-{gb:g}", gb)
    nbytes = size_of(inputs, "*.warc.gz")
    stages = LIGHT_STAGES if chain == "light" else fineweb_stages(E2E_STAGES)
    w = ctx.work / "w5"

    def side(mode: str, executor: str) -> Callable[[int], dict[str, Any]]:
        def go(r: int) -> dict[str, Any]:
            out = fresh(w / mode)
            rec = recipe(stages, inputs, out / "out", executor, ctx.workers)
            return run_ours(our_spec(ctx, rec, mode), out / "run")

        return go

    runs = alternate(
        {"ours ray": side("run", "ray"), "process pool": side("pool", "local")},
        ctx.repeat,
        f"5 overhead {gb:g} GiB",
    )
    rows = {s: summarize(rs, rs[-1]["result"]["documents"], nbytes) for s, rs in runs.items()}
    agreement = {
        "output_docs": {s: rs[-1]["result"]["output_docs"] for s, rs in runs.items()},
        "units": runs["ours ray"][-1]["result"]["units"],
        "ray_init_s": [x["result"]["ray_init_s"] for x in runs["ours ray"]],
    }
    return {"rows": rows, "runs": runs, "agreement": agreement, "input_bytes": nbytes}
