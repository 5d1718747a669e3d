"""Peak RSS and time of `curate run` on single hostile documents (bounded work per document).

The recipe is configs/refinedweb.yaml's map stages without `extract` (url_filter, langid,
gopher_repetition, gopher_quality, line_corrections) on JSONL text, executor local, so the whole
run is one process whose peak RSS the OS reports. Each input holds 20 real DCLM texts with the
hostile document in the middle; every input is built in a temporary directory:

  baseline          the 20 real texts alone
  doc-10m           one 10,000,000-character document (the default max_chars): processed
  docs-5x10m        five of them in one batch
  doc-100m          a 100 MB one-line document (input.max_record_bytes default: reader skip)
  doc-100m-raised   the same with input.max_record_bytes 1 GB: the stages' max_chars rejects it
  line-500m         a 500 MB JSONL line
  gz-bomb           one 7 GiB line in a ~7 MB .jsonl.gz (--bomb-gib)
  dev-zero          a .jsonl symlink to /dev/zero, input.max_file_bytes 1 GiB (refused as not a
                    regular file; the byte cap stops it where that check does not apply)

    python scripts/bench_bounds.py [--cases doc-100m,line-500m] [--bomb-gib 7] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DCLM = REPO.parent / "shared" / "data" / "quality" / "dclm-agreement.jsonl"
URL = "https://example.com/hostile"
STAGES: list[dict[str, Any]] = [
    {"stage": "url_filter"},
    {"stage": "langid", "languages": ["en"], "threshold": 0.65},
    {"stage": "gopher_repetition"},
    {"stage": "gopher_quality"},
    {"stage": "line_corrections", "max_word_removal_ratio": 0.05},
]
CHUNK = 1 << 20


def real_texts() -> list[str]:
    return [json.loads(line)["text"] for line in DCLM.read_text(encoding="utf-8").splitlines()]


def record(i: int, text: str) -> bytes:
    return json.dumps({"id": f"doc{i}", "url": URL, "text": text}).encode() + b"\n"


def write_with_big_line(path: Path, texts: list[str], nbytes: int, copies: int = 1) -> None:
    """20 real records, then `copies` records whose text is `nbytes` of real text (JSON-escaped,
    written in pieces, never built whole), then 20 more."""
    piece = json.dumps("\n".join(texts) + "\n")[1:-1].encode()
    with open(path, "wb") as f:
        for i, t in enumerate(texts[:20]):
            f.write(record(i, t))
        for c in range(copies):
            f.write(b'{"id": "hostile%d", "url": "%s", "text": "' % (c, URL.encode()))
            written = 0
            while written < nbytes:
                part = piece[: nbytes - written]
                f.write(part)
                written += len(part)
            f.write(b'"}\n')
        for i, t in enumerate(texts[20:40], start=20):
            f.write(record(i, t))


def write_gz_bomb(path: Path, texts: list[str], nbytes: int) -> None:
    """The same layout as a .jsonl.gz whose middle line is `nbytes` of one repeated letter."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    block = b"a" * CHUNK
    with open(path, "wb") as f:
        f.write(comp.compress(b"".join(record(i, t) for i, t in enumerate(texts[:20]))))
        f.write(comp.compress(b'{"id": "hostile", "text": "'))
        for _ in range(nbytes // CHUNK):
            f.write(comp.compress(block))
        f.write(comp.compress(b'"}\n'))
        f.write(comp.compress(b"".join(record(i, t) for i, t in enumerate(texts[20:40], 20))))
        f.write(comp.flush())


def build(case: str, d: Path, texts: list[str], bomb_gib: float) -> tuple[Path, dict[str, Any]]:
    """(input directory, input options) of one case."""
    src = d / "in"
    src.mkdir()
    path = src / "docs.jsonl"
    options: dict[str, Any] = {}
    builders: dict[str, Callable[[], None]] = {
        "baseline": lambda: path.write_bytes(b"".join(record(i, t) for i, t in enumerate(texts))),
        "doc-10m": lambda: write_with_big_line(path, texts, 9_900_000),
        "docs-5x10m": lambda: write_with_big_line(path, texts, 9_900_000, copies=5),
        "doc-100m": lambda: write_with_big_line(path, texts, 100_000_000),
        "doc-100m-raised": lambda: write_with_big_line(path, texts, 100_000_000),
        "line-500m": lambda: write_with_big_line(path, texts, 500_000_000),
        "gz-bomb": lambda: write_gz_bomb(src / "docs.jsonl.gz", texts, int(bomb_gib * 2**30)),
        "dev-zero": lambda: (src / "zero.jsonl").symlink_to("/dev/zero"),
    }
    builders[case]()
    if case == "doc-100m-raised":
        options["max_record_bytes"] = 1_000_000_000
    if case == "dev-zero":
        options["max_file_bytes"] = 2**30
    return src, options


def run_case(case: str, texts: list[str], bomb_gib: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bounds-{case}-") as tmp:
        d = Path(tmp)
        src, options = build(case, d, texts[:40], bomb_gib)
        size = sum(f.stat().st_size for f in src.iterdir() if f.is_file())
        out = d / "out"
        recipe = {
            "input": {"paths": [str(src)], **options},
            "output": {"path": str(out), "keep_rejected": True},
            "runtime": {"executor": "local", "progress": "off"},
            "stages": STAGES,
        }
        (d / "r.yaml").write_text(json.dumps(recipe))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "pipeline.cli", "run", str(d / "r.yaml")]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        proc.returncode = os.waitstatus_to_exitcode(status)
        stats = (
            json.loads((out / "stats.json").read_text()) if (out / "stats.json").exists() else {}
        )
        outcome = {k: v for k, v in stats.get("reader", {}).get("skipped", {}).items() if v}
        for s in stats.get("stages", []):
            outcome.update(
                {
                    k: v
                    for k, v in s["removed_by_reason"].items()
                    if k.endswith(("_too_large", "_timeout", "_error"))
                }
            )
        return {
            "case": case,
            "input_bytes": size,
            "exit": proc.returncode,
            "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "documents_out": stats.get("output", {}).get("documents"),
            "outcome": outcome,
            "error": err.strip().splitlines()[-1] if proc.returncode and err.strip() else None,
        }


CASES = [
    "baseline",
    "doc-10m",
    "docs-5x10m",
    "doc-100m",
    "doc-100m-raised",
    "line-500m",
    "gz-bomb",
    "dev-zero",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--bomb-gib", type=float, default=7.0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    texts = real_texts()
    rows = []
    for case in args.cases.split(","):
        row = run_case(case, texts, args.bomb_gib)
        rows.append(row)
        if not args.markdown:
            print(json.dumps(row), flush=True)
    if args.markdown:
        print("| case | input bytes | outcome | docs out | peak RSS MB | wall s | CPU s |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for r in rows:
            outcome = ", ".join(f"{n} `{k}`" for k, n in sorted(r["outcome"].items())) or "-"
            print(
                f"| {r['case']} | {r['input_bytes']:,} | {outcome} | {r['documents_out']} "
                f"| {r['peak_rss_mb']} | {r['wall_s']} | {r['cpu_s']} |"
            )
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
