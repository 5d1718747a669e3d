"""Benchmark `curate tokenize`: tokens per CPU second (one process, one tokenizer thread) and peak
memory, with a 50k-id byte-level BPE trained on the shared texts, per encoder (tiktoken where
exact, the tokenizers library), alternating the encoders, best of --repeat.

Inputs: a `curate run` output (e.g. `curate run configs/refinedweb.yaml --output /tmp/rw-tok`)
and sentence-shuffled corpora of real text (scripts/bench_stats.py) of two sizes, so the peak
memory can be compared as the input grows. Each measurement runs in a fresh process (its own
peak RSS) with the local executor.

    python scripts/bench_tokenize.py --run /tmp/rw-tok --out /tmp/bench-tok
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def train_tokenizer(path: Path, vocab: int) -> None:
    """A byte-level BPE of `vocab` ids trained on the shared DCLM and extraction gold texts."""
    sys.path.insert(0, str(REPO))
    from tests.tiny_models import train_byte_level_bpe

    texts = [json.loads(x)["text"] for x in (SHARED / "quality/dclm-agreement.jsonl").open()]
    for name in ("scrapinghub", "cleaneval"):
        texts += [json.loads(x)["gold"] for x in (SHARED / f"extraction/{name}.gold.jsonl").open()]
    train_byte_level_bpe(path, texts, vocab, ["<|endoftext|>"])


def measure(inputs: list[str], tokenizer: str, output: str, fmt: str, encoder: str) -> dict:
    """Tokenize in this process; tokens, wall and CPU seconds, peak RSS, load average."""
    from pipeline.tokenize.run import TokenizeOptions, tokenize

    load0 = os.getloadavg()[0]
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    s = tokenize(
        TokenizeOptions(
            inputs=tuple(inputs),
            tokenizer=tokenizer,
            output=output,
            format=fmt,
            eos_token="<|endoftext|>",
            encoder=encoder,
            executor="local",
        )
    )
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    wall = time.perf_counter() - t0
    peak = peak_rss_mb()  # before the encode-only pass below
    encode_s = encode_only_seconds(inputs, tokenizer, encoder)
    return {
        "encoder": s["tokenizer"]["encoder"],
        "documents": s["documents"],
        "tokens": s["tokens"],
        "text_mb": round(s["text_bytes"] / 1e6, 1),
        "tokens_per_byte": round(s["tokens_per_byte"], 4),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "tokens_per_cpu_s": round(s["tokens"] / cpu),
        "encode_only_tokens_per_cpu_s": round(s["tokens"] / encode_s),
        "peak_rss_mb": peak,
        "load_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def encode_only_seconds(inputs: list[str], tokenizer: str, encoder: str) -> float:
    """CPU seconds of the tokenizer's batch encoding alone over the same documents (the bound
    on the command's throughput; the rest is reading, writing and bookkeeping)."""
    from pipeline.io.base import ReaderStats
    from pipeline.io.options import InputConfig
    from pipeline.io.sources import plan_units
    from pipeline.stats.tokenizers import load_tokenizer
    from pipeline.tokenize.job import TokenizeJob, encode
    from pipeline.tokenize.run import input_paths

    tok = load_tokenizer(str(Path(tokenizer).resolve()), encoder)
    cfg = InputConfig(paths=input_paths(tuple(inputs)))
    reader = TokenizeJob(None, cfg.model_dump(), "")  # type: ignore[arg-type]
    spent = 0.0
    for unit in plan_units(cfg):
        for _, _, texts, _ in reader._documents(unit, ReaderStats()):  # the command's slices
            batch = texts.to_pylist()
            t0 = time.process_time()
            encode(tok, batch, None, 0, np.dtype(np.uint16))
            spent += time.process_time() - t0
    return spent


def html_counts(tokenizer: str, encoder: str) -> dict:
    """output.tokenizer's main cost: counting the tokens of the HTML of the shared WARCs'
    responses before `extract` (runner/kernel.py PayloadTokens: HFTokenizer.encode_ids over a
    batch's non-empty payloads), CPU seconds of the counting alone."""
    from pipeline.io.base import ReaderStats
    from pipeline.io.options import InputConfig
    from pipeline.io.sources import plan_units, read_unit
    from pipeline.stats.tokenizers import load_tokenizer

    tok = load_tokenizer(str(Path(tokenizer).resolve()), encoder)
    cfg = InputConfig(paths=[str(SHARED / "warc" / "*.warc.gz")])
    batches = [
        [t for t in b.column("html").to_pylist() if t]
        for u in plan_units(cfg)
        for b in read_unit(u, cfg, ReaderStats(), 1024)
    ]
    t0 = time.process_time()
    tokens = sum(int(tok.encode_ids(b)[1].sum()) for b in batches)  # type: ignore[attr-defined]
    cpu = time.process_time() - t0
    return {
        "encoder": tok.info["encoder"],
        "html_mb": round(sum(len(t.encode()) for b in batches for t in b) / 1e6, 2),
        "tokens": tokens,
        "cpu_s": round(cpu, 2),
        "tokens_per_cpu_s": round(tokens / cpu),
    }


def peak_rss_mb() -> int:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent that
    forked it, which trained the tokenizer and built the corpora)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="a `curate run` output directory (refinedweb)")
    ap.add_argument("--out", default="/tmp/bench-tok")
    ap.add_argument("--vocab", type=int, default=50_000)
    ap.add_argument("--words", type=int, nargs="*", default=[5_000_000, 20_000_000])
    ap.add_argument("--format", default="megatron", choices=["megatron", "nanogpt"])
    ap.add_argument("--encoders", nargs="+", default=["tiktoken", "tokenizers"])
    ap.add_argument("--repeat", type=int, default=1, help="best of N (by tokens per CPU-s)")
    ap.add_argument("--html", action="store_true", help="output.tokenizer's HTML counting only")
    ap.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)  # child: inputs to measure
    args = ap.parse_args()
    out = Path(args.out)
    tokenizer = out / f"bpe-{args.vocab}.json"
    if args.html:  # each encoder in this process, alternating, best of --repeat
        for r in range(args.repeat):
            for encoder in args.encoders if r % 2 == 0 else args.encoders[::-1]:
                load = os.getloadavg()[0]
                result = html_counts(str(tokenizer), encoder)
                print(json.dumps({**result, "load_before_after": [load, os.getloadavg()[0]]}))
        return
    if args.measure:
        result = measure(
            args.measure, str(tokenizer), str(out / "shards"), args.format, args.encoders[0]
        )
        print(json.dumps(result))
        return
    out.mkdir(parents=True, exist_ok=True)
    if not tokenizer.exists():
        t0 = time.perf_counter()
        train_tokenizer(tokenizer, args.vocab)
        print(f"trained a {args.vocab:,}-id BPE in {time.perf_counter() - t0:.0f} s")
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_stats import build_corpus

    cases = [("refinedweb run", args.run)] if args.run else []
    for words in args.words:
        corpus = out / f"corpus-{words}"
        if not corpus.exists():
            build_corpus(corpus, words, files=max(1, words // 2_500_000), seed=0)
        cases.append((f"shared text, ~{words / 1e6:g}M words", str(corpus)))
    env = {**os.environ, "RAYON_NUM_THREADS": "1"}  # one tokenizer thread: per-core numbers
    for name, path in cases:
        best: dict[str, dict] = {}
        for r in range(args.repeat):
            order = args.encoders if r % 2 == 0 else args.encoders[::-1]  # alternate the sides
            for encoder in order:
                subprocess.run(["rm", "-rf", str(out / "shards")], check=True)
                cmd = [sys.executable, __file__, "--out", str(out), "--vocab", str(args.vocab)]
                cmd += ["--format", args.format, "--encoders", encoder, "--measure", path]
                run = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                result = json.loads(run.stdout.strip().splitlines()[-1])
                print(f"{name} [{encoder}] try {r + 1}: {json.dumps(result)}", flush=True)
                key = "tokens_per_cpu_s"
                if encoder not in best or result[key] > best[encoder][key]:
                    best[encoder] = result
        for encoder, result in best.items():
            print(f"BEST {name} [{encoder}]: {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    main()
