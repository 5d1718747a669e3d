"""Break-even of `curate tokenize --encoder auto`'s tiktoken check: what making tiktoken's encoder
costs (with the check, and from a cached verdict) per vocabulary size, what tiktoken saves per
byte of real text, and the command's CPU seconds with each choice on inputs around the break-even.

Byte-level BPEs of --vocab ids are trained on the shared texts (as scripts/bench_tokenize.py).
Every cost is CPU seconds in a fresh process (imports done, one tokenizer thread), the choices
alternating, best of --repeat; the constants of stats/tiktoken_verdict.py come from the fit.

    python scripts/bench_tiktoken_check.py --work /tmp/bench-tkcheck --repeat 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tokenize import SHARED, train_tokenizer  # noqa: E402

ENV = {**os.environ, "RAYON_NUM_THREADS": "1"}  # one tokenizer thread: per-core figures


def real_texts() -> dict[str, list[str]]:
    """English web text (the DCLM sample, the extraction gold texts) and sentences of 75
    languages (8 lines a document)."""
    web = [json.loads(x)["text"] for x in (SHARED / "quality/dclm-agreement.jsonl").open()]
    for name in ("scrapinghub", "cleaneval"):
        web += [json.loads(x)["gold"] for x in (SHARED / f"extraction/{name}.gold.jsonl").open()]
    multi = []
    for path in sorted((SHARED / "langid/lingua-sentences").glob("*.txt")):
        lines = path.read_text(encoding="utf-8").split("\n")
        multi += ["\n".join(lines[i : i + 8]) for i in range(0, len(lines), 8)]
    return {"web": web, "multilingual": multi}


def child_load(tokenizer: str, mode: str) -> dict:
    """In a fresh process: CPU seconds of loading the tokenizer on the library alone, and then
    of making its tiktoken encoder (`check`: no cached verdict; `cached`: one on disk)."""
    from pipeline.stats import tiktoken_verdict
    from pipeline.stats.tiktoken_verdict import cached_verdict
    from pipeline.stats.tokenizers import load_tokenizer

    t0 = time.process_time()
    library = load_tokenizer(tokenizer, "tokenizers")
    t1 = time.process_time()
    assert (cached_verdict(library.info["hash"]) is None) == (mode == "check")
    tiktoken_verdict._memo.clear()  # timed below: reading the verdict too
    t2 = time.process_time()
    load_tokenizer(tokenizer, "tiktoken")
    t3 = time.process_time()
    return {"library_s": t1 - t0, "tiktoken_s": t3 - t2}


def child_tokenize(tokenizer: str, inp: str, out: str, encoder: str) -> dict:
    """In a fresh process: CPU seconds of `curate tokenize` (local executor) after imports."""
    from pipeline.tokenize.run import TokenizeOptions, tokenize

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.process_time()
    s = tokenize(
        TokenizeOptions(
            inputs=(inp,),
            tokenizer=tokenizer,
            output=out,
            eos_token="<|endoftext|>",
            encoder=encoder,
            executor="local",
        )
    )
    cpu = time.process_time() - t0
    return {"cpu_s": cpu, "encoder": s["tokenizer"]["encoder"]}


def run_child(args: list[str], xdg: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    env = {**ENV, "XDG_CACHE_HOME": str(xdg)}
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def encode_cost(tokenizer: str, texts: list[str], repeat: int) -> dict[str, float]:
    """CPU seconds per byte of each encoder over `texts` (alternating, best of `repeat`)."""
    from pipeline.stats.tokenizers import load_tokenizer

    encoders = {e: load_tokenizer(tokenizer, e) for e in ("tiktoken", "tokenizers")}
    nbytes = sum(len(t.encode()) for t in texts)
    best = {e: float("inf") for e in encoders}
    for r in range(repeat):
        for name in list(encoders) if r % 2 == 0 else list(encoders)[::-1]:
            t0 = time.process_time()
            encoders[name].encode_ids(texts)
            best[name] = min(best[name], (time.process_time() - t0) / nbytes)
    return best


def write_input(path: Path, texts: list[str], size: int) -> None:
    """A JSONL file of about `size` bytes: the texts in order, cycled."""
    with path.open("w", encoding="utf-8") as f:
        written = 0
        for i, text in zip(itertools.count(), itertools.cycle(texts)):
            line = json.dumps({"id": str(i), "text": text}) + "\n"
            if written and written + len(line) > size:
                break
            f.write(line)
            written += len(line)


def fit(vocab: list[int], cost: list[float]) -> tuple[float, float]:
    """(fixed seconds, seconds per id) of the least-squares line through the points."""
    slope, intercept = np.polyfit(np.array(vocab, float), np.array(cost, float), 1)
    return float(intercept), float(slope)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/bench-tkcheck")
    ap.add_argument("--vocab", type=int, nargs="+", default=[2000, 10000, 25000, 50000, 100000])
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.06, 0.5, 1, 2, 3, 8], help="MB")
    ap.add_argument("--e2e-vocab", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_load(*rest) if kind == "load" else child_tokenize(*rest)
        print(json.dumps(result))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print("load average before:", os.getloadavg())
    paths = {}
    for v in sorted({*args.vocab, args.e2e_vocab}):
        paths[v] = work / f"bpe-{v}.json"
        if not paths[v].exists():
            train_tokenizer(paths[v], v)
    # 1. Making tiktoken's encoder, per vocabulary size.
    costs: dict[str, list[float]] = {"check": [], "cached": []}
    for v in args.vocab:
        best = {"check": float("inf"), "cached": float("inf")}
        for r in range(args.repeat):
            fresh = work / f"xdg-{v}-{r}"
            shutil.rmtree(fresh, ignore_errors=True)
            for mode in ("check", "cached") if r % 2 == 0 else ("cached", "check"):
                if mode == "cached" and not fresh.exists():  # fill the cache first
                    run_child(["load", str(paths[v]), "check"], fresh)
                xdg = fresh if mode == "cached" else work / f"xdg-empty-{v}-{r}-{mode}"
                shutil.rmtree(xdg, ignore_errors=True) if mode == "check" else None
                got = run_child(["load", str(paths[v]), mode], xdg)
                best[mode] = min(best[mode], got["tiktoken_s"])
        for mode in costs:
            costs[mode].append(best[mode])
        print(
            f"{v:>7,} ids: tiktoken encoder {best['check']:.3f} CPU-s with the check, "
            f"{best['cached']:.3f} from a cached verdict",
            flush=True,
        )
    fits = {mode: fit(args.vocab, c) for mode, c in costs.items()}
    for mode, (fixed, per_id) in fits.items():
        print(f"fit {mode}: {fixed:.4f} s + {per_id * 1e6:.2f} us per id")
    # 2. What tiktoken saves per byte of text.
    texts = real_texts()
    saved = {}
    for name, batch in texts.items():
        per_byte = encode_cost(str(paths[args.e2e_vocab]), batch, args.repeat)
        saved[name] = per_byte["tokenizers"] - per_byte["tiktoken"]
        print(
            f"{name}: tiktoken {per_byte['tiktoken'] * 1e9:.0f} ns/byte, tokenizers "
            f"{per_byte['tokenizers'] * 1e9:.0f} ns/byte, saved {saved[name] * 1e9:.0f}"
        )
    for v in args.vocab:
        even = {m: (f[0] + f[1] * v) / saved["web"] for m, f in fits.items()}
        print(
            f"break-even {v:>7,} ids (web text): {even['check'] / 1e6:.2f} MB with the "
            f"check, {even['cached'] / 1e6:.2f} MB cached"
        )
    # 3. The command around the break-even, each choice in a fresh process.
    tokenizer = str(paths[args.e2e_vocab])
    cached = work / "xdg-e2e"
    shutil.rmtree(cached, ignore_errors=True)
    run_child(["load", tokenizer, "check"], cached)
    for mb in args.sizes:
        inp = work / f"input-{mb:g}MB.jsonl"
        write_input(inp, texts["web"], int(mb * 1e6))
        choices = [("tokenizers", cached), ("tiktoken", None), ("tiktoken", cached)]
        choices.append(("auto", cached))
        best: dict[str, dict] = {}
        for r in range(args.repeat):
            for encoder, xdg in choices if r % 2 == 0 else choices[::-1]:
                label = f"{encoder}{'' if xdg else ' (no cache)'}"
                if xdg is None:
                    xdg = work / "xdg-e2e-empty"
                    shutil.rmtree(xdg, ignore_errors=True)
                got = run_child(["tokenize", tokenizer, str(inp), str(work / "out"), encoder], xdg)
                if label not in best or got["cpu_s"] < best[label]["cpu_s"]:
                    best[label] = got
        line = ", ".join(f"{k} {v['cpu_s']:.3f}" for k, v in best.items())
        print(f"{mb:g} MB: CPU-s {line}; auto ran {best['auto']['encoder']}", flush=True)
    print("load average after:", os.getloadavg())


if __name__ == "__main__":
    main()
