"""Soak: the refinedweb recipe over >= 1 GB of real WARCs on Ray while worker processes are killed.

The shared crawl and extraction WARCs, cut into pieces of --records-per-file records, are copied
under distinct names until the total reaches --size-gb (one unit per piece, so a kill loses at
most one piece's work). `curate run` then runs
the recipe on an embedded Ray while a background thread SIGKILLs a random Ray worker process of
this run (`ray::Worker...` in its command line, a pool actor idle or mid-task) every
--kill-every seconds on average. Ray restarts the actor and retries its task; should a task run
out of retries, the run is started again and resumes (counted as a driver restart).

Checked at the end:
  - stats.json says accounting "ok" (the runner's own invariant, per unit and in total);
  - every unit's marker reconciles again here (records == documents + skips; per stage
    in == kept + rejected; output == last stage's kept) and its shard holds that many rows;
  - every copy of the same source file produced identical counts, kills or not (units where a
    page hit the extractor's time limit are left out: that depends on the machine's load);
  - every visible file under data/ is a complete shard, and no temporary file is left.

    .venv/bin/python scripts/soak.py --size-gb 1.0 --kill-every 45
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
log = logging.getLogger("soak")


def gzip_members(raw: bytes) -> list[bytes]:
    """The gzip members of a per-record-gzip WARC, as stored."""
    members, pos = [], 0
    while pos < len(raw):
        d = zlib.decompressobj(31)
        d.decompress(raw[pos:])
        end = len(raw) - len(d.unused_data)
        members.append(raw[pos:end])
        pos = end
    return members


def replicate(dest: Path, size_bytes: int, records_per_file: int) -> list[Path]:
    """Copies of every shared WARC (not WET/WAT) under distinct names, >= size_bytes in all.

    Files are cut at record boundaries into pieces of at most `records_per_file` records (the
    739-page CleanEval file would otherwise be one long unit that frequent kills never let
    finish: a unit is the grain of retry). Pieces are concatenations of the original gzip
    members, byte for byte.
    """
    sources = sorted(
        p
        for d in (SHARED / "warc", SHARED / "extraction")
        for p in d.glob("*.warc.gz")
        if not p.name.endswith((".wet.gz", ".wat.gz"))
    )
    pieces: list[tuple[str, bytes]] = []
    for src in sources:
        members = gzip_members(src.read_bytes())
        for start in range(0, len(members), records_per_file):
            name = src.name.removesuffix(".warc.gz") + f"-part{start // records_per_file:02d}"
            pieces.append((name, b"".join(members[start : start + records_per_file])))
    dest.mkdir(parents=True, exist_ok=True)
    out, total, copy = [], 0, 0
    while total < size_bytes:
        for name, data in pieces:
            target = dest / f"copy{copy:04d}-{name}.warc.gz"
            target.write_bytes(data)
            out.append(target)
            total += len(data)
        copy += 1
    return out


class WorkerKiller(threading.Thread):
    """Every ~`every` seconds (uniform 0.5x..1.5x), SIGKILL one random Ray pool worker of this
    process tree: a process whose command line contains `ray::` and `Worker`."""

    def __init__(self, every: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.rng = random.Random(seed)
        self.kills: list[dict[str, Any]] = []
        self._halt = threading.Event()
        self.started = time.time()

    def run(self) -> None:
        me = psutil.Process()
        while not self._halt.wait(self.every * self.rng.uniform(0.5, 1.5)):
            victims = []
            for proc in me.children(recursive=True):
                try:
                    title = " ".join(proc.cmdline()).strip()
                except psutil.Error:
                    continue
                if "ray::" in title and "Worker" in title:
                    victims.append((proc, title))
            if not victims:
                continue
            proc, title = self.rng.choice(victims)
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
            busy = title.startswith("ray::Worker.run")
            self.kills.append(
                {"t": round(time.time() - self.started, 1), "pid": proc.pid, "busy": busy}
            )
            log.warning("soak: killed %s (pid %d)", title.split()[0], proc.pid)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def verify(out: Path) -> dict[str, Any]:
    """Re-check the run's accounting from its files; raise AssertionError on any violation."""
    stats = json.loads((out / "stats.json").read_text())
    assert stats["accounting"] == "ok", stats["accounting"]
    units = defaultdict(list)
    for seg in sorted((out / "_run" / "units").iterdir()):
        for marker in seg.glob("*.json"):
            m = json.loads(marker.read_text())
            units[m["unit"]["index"]].append(m)
    assert len(units) == stats["inputs"]["units"]
    by_source: dict[str, set[str]] = defaultdict(set)
    map_kept: dict[str, int] = {}
    global_kept: dict[tuple[str, str], int] = defaultdict(int)
    timed_out = 0
    for index, markers in units.items():
        markers.sort(key=lambda m: m["segment"])
        r = markers[0]["reader"]
        skipped = sum(r["skipped"].values())
        assert r["records"] == r["documents"] + skipped, (index, r)
        upstream = r["documents"]
        for m in markers:
            for s in m["stages"]:
                assert s["docs_in"] == upstream == s["docs_kept"] + s["docs_rejected"], (index, s)
                assert sum(s["removed_by_reason"].values()) == s["docs_rejected"], (index, s)
                upstream = s["docs_kept"]
            assert m["output_docs"] == upstream, (index, m["output_docs"], upstream)
        last = markers[-1]
        if last["output_file"]:
            rows = pq.read_metadata(out / last["output_file"]).num_rows
            assert rows == last["output_docs"], (index, rows, last["output_docs"])
        source = Path(markers[0]["unit"]["path"]).name.split("-", 1)[1]
        map_stages = markers[0]["stages"]  # segment 0: per-document stages only
        map_kept[source] = map_stages[-1]["docs_kept"] if map_stages else r["documents"]
        for m in markers[1:]:  # global segments: copies of one file are duplicates of each other
            for s in m["stages"]:
                global_kept[(source, s["name"])] += s["docs_kept"]
        if any("extract_timeout" in s["removed_by_reason"] for s in map_stages):
            timed_out += 1  # a time limit depends on the machine's load: not comparable
            continue
        fingerprint = json.dumps(
            [r["documents"], r["skipped"]]
            + [(s["name"], s["docs_kept"], s["removed_by_reason"]) for s in map_stages],
            sort_keys=True,
        )
        by_source[source].add(fingerprint)
    differing = [s for s, prints in by_source.items() if len(prints) != 1]
    assert not differing, f"copies of the same file gave different counts: {differing}"
    # Dedup keeps at most one copy's worth of each file, whichever copy it keeps.
    over = {k: v for k, v in global_kept.items() if v > map_kept[k[0]]}
    assert not over, f"a global stage kept more than one copy's worth: {over}"
    visible = [p for p in (out / "data").iterdir() if not p.name.startswith((".", "_"))]
    assert sum(pq.read_metadata(p).num_rows for p in visible) == stats["output"]["documents"]
    leftovers = [str(p) for p in out.rglob("*.tmp*")]
    assert not leftovers, leftovers
    return {**stats, "units_with_timeouts": timed_out}


def _counts(stats: dict[str, Any]) -> dict[str, Any]:
    """The figures of a verified run worth reporting."""
    return {
        "records": stats["reader"]["records"],
        "documents_in": stats["reader"]["documents"],
        "documents_kept": stats["output"]["documents"],
        "stages": {s["name"]: s["docs_kept"] for s in stats["stages"]},
        "units_not_compared_for_timeouts": stats["units_with_timeouts"],
        "accounting": stats["accounting"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="input size to replicate")
    parser.add_argument("--kill-every", type=float, default=45.0, help="mean seconds per kill")
    parser.add_argument("--workers", type=int, default=None, help="Ray pool size (default: CPUs)")
    parser.add_argument("--config", default=str(REPO / "configs" / "refinedweb.yaml"))
    parser.add_argument("--workdir", default=None, help="default: a new /tmp/soak-* directory")
    parser.add_argument("--records-per-file", type=int, default=100, help="input piece size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-restarts", type=int, default=5, help="driver restarts allowed")
    parser.add_argument("--keep", action="store_true", help="keep the inputs and output")
    parser.add_argument("--verify", metavar="OUT", help="only re-check an existing soak output")
    args = parser.parse_args(argv)
    if args.verify:
        stats = verify(Path(args.verify))
        print(json.dumps(_counts(stats), indent=1))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    from pipeline.config import load_recipe
    from pipeline.errors import AccountingError, CurateError
    from pipeline.runner.executors import ensure_ray
    from pipeline.runner.run import run_recipe

    work = Path(args.workdir or tempfile.mkdtemp(prefix="soak-"))
    inputs = work / "inputs"
    out = work / "out"
    t0 = time.perf_counter()
    files = replicate(inputs, int(args.size_gb * 2**30), args.records_per_file)
    size = sum(p.stat().st_size for p in files)
    print(f"soak: {len(files)} files, {size / 2**30:.2f} GiB in {time.perf_counter() - t0:.0f} s")
    runtime: dict[str, Any] = {"executor": "ray", "progress": "log"}
    if args.workers:
        runtime["num_workers"] = args.workers
    recipe = load_recipe(args.config).with_overrides(
        input={"paths": [str(inputs)]}, output={"path": str(out)}, runtime=runtime
    )
    ensure_ray(None)
    killer = WorkerKiller(args.kill_every, args.seed)
    restarts = 0
    started = time.perf_counter()
    killer.start()
    try:
        while True:
            try:
                run_recipe(recipe)
                break
            except AccountingError:
                raise
            except CurateError as exc:
                restarts += 1
                print(f"soak: run failed ({exc}); restart {restarts}", file=sys.stderr)
                if restarts > args.max_restarts:
                    raise
    finally:
        killer.stop()
    wall = time.perf_counter() - started
    stats = verify(out)
    summary = {
        "input_files": len(files),
        "input_gib": round(size / 2**30, 3),
        **_counts(stats),
        "kills": len(killer.kills),
        "kills_mid_task": sum(k["busy"] for k in killer.kills),
        "driver_restarts": restarts,
        "wall_s": round(wall, 1),
        "documents_per_s": round(stats["reader"]["documents"] / wall, 1),
    }
    print(json.dumps(summary, indent=1))
    (work / "soak-summary.json").write_text(json.dumps({**summary, "kill_log": killer.kills}))
    if not args.keep:
        shutil.rmtree(inputs)
        shutil.rmtree(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
