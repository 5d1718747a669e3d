"""Reruns over a changed input set, end to end through `curate run` and `curate ablate`: a file
added before the others, removed or rewritten, and an output directory inside the input
directory. Every input document must end up exactly once in data/ + rejected/, or the rerun must
be refused before any work, naming the files."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from tests.conftest import SHARED_DATA
from tests.faults.helpers import assert_reconciles, curate, stats_of, write_recipe

DCLM = SHARED_DATA / "quality" / "dclm-agreement.jsonl"
STAGES: list[dict[str, Any]] = [{"stage": "gopher_quality"}]  # keeps some, rejects some


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    """60 real web texts from the DCLM quality sample."""
    lines = DCLM.read_text(encoding="utf-8").splitlines()[:60]
    return [json.loads(line)["text"] for line in lines]


def write_jsonl(path: Path, name: str, texts: list[str]) -> list[str]:
    """A JSONL file of `texts` with ids `<name>-<i>`; returns the ids."""
    ids = [f"{name}-{i}" for i in range(len(texts))]
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = zip(ids, texts, strict=True)
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in rows))
    return ids


def output_ids(out: Path) -> Counter[str]:
    """How often each id appears in data/ and rejected/ together."""
    found: Counter[str] = Counter()
    for sub in ("data", "rejected"):
        if (out / sub).is_dir():
            table = ds.dataset(str(out / sub), format="parquet").to_table(columns=["id"])
            found.update(table.column("id").to_pylist())
    return found


def run(capsys, recipe: Path, *extra: str):
    return curate(capsys, "run", recipe, *extra)


def test_file_added_before_the_others_is_refused_then_overwrite_reads_each_once(
    capsys, tmp_path, texts
) -> None:
    """b, c; run; add a (sorts first); rerun: refused before any work, naming a.jsonl (today
    a.jsonl was never read and c.jsonl read twice). --overwrite then reads every file once."""
    inp, out = tmp_path / "in", tmp_path / "out"
    ids = write_jsonl(inp / "b.jsonl", "b", texts[:20]) + write_jsonl(
        inp / "c.jsonl", "c", texts[20:40]
    )
    recipe = write_recipe(tmp_path / "r.yaml", [inp], out, STAGES)
    assert run(capsys, recipe).code == 0
    assert output_ids(out) == Counter(ids)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    ids += write_jsonl(inp / "a.jsonl", "a", texts[40:60])
    refused = run(capsys, recipe)
    assert refused.code != 0
    assert "added " + str(inp / "a.jsonl") in refused.err and "--overwrite" in refused.err
    assert len(refused.err.strip().splitlines()) == 1 and "Traceback" not in refused.err
    data_files = {p: m for p, m in before.items() if "_run" not in p.parts}
    assert {p: p.stat().st_mtime_ns for p in data_files} == data_files  # nothing touched

    assert run(capsys, recipe, "--overwrite").code == 0
    assert output_ids(out) == Counter(ids)  # all 60, each exactly once
    stats = stats_of(out)
    assert_reconciles(stats)
    assert stats["reader"]["documents"] == 60
    assert sorted(u["path"] for u in stats["units"]) == [str(inp / f"{n}.jsonl") for n in "abc"]
    assert run(capsys, recipe).code == 0  # and a plain rerun resumes over the same files
    assert output_ids(out) == Counter(ids)


def test_interrupted_run_resumes_over_the_same_files(capsys, tmp_path, texts) -> None:
    """Same files, one unit's marker gone (as after a kill): the rerun redoes just that unit."""
    inp, out = tmp_path / "in", tmp_path / "out"
    ids = []
    for n, name in enumerate("abc"):
        ids += write_jsonl(inp / f"{name}.jsonl", name, texts[20 * n : 20 * n + 20])
    recipe = write_recipe(tmp_path / "r.yaml", [inp], out, STAGES)
    assert run(capsys, recipe).code == 0
    (out / "_run" / "units" / "seg00" / "part-00001.json").unlink()
    (out / "stats.json").unlink()
    assert run(capsys, recipe).code == 0
    assert output_ids(out) == Counter(ids)
    assert stats_of(out)["reader"]["documents"] == 60


@pytest.mark.parametrize("change", ["removed", "changed", "touched"])
def test_file_removed_or_changed_is_refused(capsys, tmp_path, texts, change: str) -> None:
    """A removed file, a rewritten one (different size) or one only touched (same size, new
    mtime): refused with the file named; --overwrite starts over with exactly what is there."""
    inp, out = tmp_path / "in", tmp_path / "out"
    ids = write_jsonl(inp / "a.jsonl", "a", texts[:20])
    c_ids = write_jsonl(inp / "c.jsonl", "c", texts[20:40])
    recipe = write_recipe(tmp_path / "r.yaml", [inp], out, STAGES)
    assert run(capsys, recipe).code == 0
    target = inp / "c.jsonl"
    if change == "removed":
        target.unlink()
    elif change == "changed":
        c_ids = write_jsonl(target, "c", texts[20:45])
    else:
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    refused = run(capsys, recipe)
    assert refused.code != 0
    word = "removed" if change == "removed" else "changed"
    assert f"{word} {target}" in refused.err and "--overwrite" in refused.err
    assert str(inp / "a.jsonl") not in refused.err
    assert run(capsys, recipe, "--overwrite").code == 0
    expected = ids + ([] if change == "removed" else c_ids)
    assert output_ids(out) == Counter(expected)


def test_output_inside_input_is_never_read_back(capsys, tmp_path, texts) -> None:
    """The output directory under the input directory: 40 documents on every run (today 40 ->
    80 -> 100, and stats.json read as JSONL); an earlier run's output under it is skipped too."""
    inp = tmp_path / "in"
    out = inp / "out"
    ids = write_jsonl(inp / "a.jsonl", "a", texts[:20]) + write_jsonl(
        inp / "b.jsonl", "b", texts[20:40]
    )
    recipe = write_recipe(tmp_path / "r.yaml", [inp], out, STAGES)
    for extra in ((), (), ("--overwrite",)):
        assert run(capsys, recipe, *extra).code == 0
        stats = stats_of(out)
        assert_reconciles(stats)
        assert stats["reader"]["documents"] == 40 and stats["reader"]["skipped"] == {}
        assert stats["inputs"]["units"] == 2
        assert output_ids(out) == Counter(ids)

    other = write_recipe(tmp_path / "r2.yaml", [inp], tmp_path / "out2", STAGES)
    assert run(capsys, other).code == 0  # in/out/ holds a run: not an input of another run
    assert output_ids(tmp_path / "out2") == Counter(ids)


def test_ablate_refuses_a_changed_input_set(capsys, tmp_path, texts) -> None:
    """`curate ablate` checks the same: its output inside the input is not read back, and an
    added file is refused before any work until --overwrite."""
    inp = tmp_path / "in"
    ids = write_jsonl(inp / "b.jsonl", "b", texts[:20])
    base = write_recipe(tmp_path / "base.yaml", [inp], tmp_path / "unused", STAGES)
    spec = tmp_path / "ablation.yaml"
    spec.write_text(
        json.dumps(
            {
                "base": base.name,
                "output": {"path": str(inp / "abl")},
                "variants": {
                    "loose": {"set": {"gopher_quality.min_doc_words": 10}},
                    "strict": {"set": {"gopher_quality.min_doc_words": 200}},
                },
            }
        )
    )
    for extra in ((), ()):
        result = curate(capsys, "ablate", spec, *extra)
        assert result.code == 0, result.err
        for variant in ("loose", "strict"):
            out = inp / "abl" / "variants" / variant
            assert stats_of(out)["reader"]["documents"] == 20
            assert output_ids(out) == Counter(ids)
    ids += write_jsonl(inp / "a.jsonl", "a", texts[20:30])
    refused = curate(capsys, "ablate", spec)
    assert refused.code != 0 and f"added {inp / 'a.jsonl'}" in refused.err
    assert curate(capsys, "ablate", spec, "--overwrite").code == 0
    for variant in ("loose", "strict"):
        assert output_ids(inp / "abl" / "variants" / variant) == Counter(ids)
