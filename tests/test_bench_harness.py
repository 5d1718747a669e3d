"""The cheap, pure parts of the side-by-side harness (scripts/bench): medians, ratios, the
markdown table, decision agreement and argument parsing. No datatrove venv, no runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.bench import agree, table
from scripts.bench.run import parse_args


def test_median_skips_missing_values() -> None:
    assert table.median([3.0, None, 1.0, 2.0]) == 2.0
    assert table.median([4, 1]) == 2.5
    assert table.median([None]) is None


def test_ratio_handles_missing_and_zero() -> None:
    assert table.ratio(3.0, 1.5) == 2.0
    assert table.ratio(None, 1.0) is None
    assert table.ratio(1.0, 0.0) is None


def test_summarize_uses_the_median_run() -> None:
    runs = [
        {"wall_s": 10.0, "cpu_s": 8.0, "peak_rss_mib": 100.0},
        {"wall_s": 30.0, "cpu_s": 9.0, "peak_rss_mib": 300.0},
        {"wall_s": 20.0, "cpu_s": 7.0, "peak_rss_mib": 200.0},
    ]
    s = table.summarize(runs, docs=1000, input_bytes=40_000_000)
    assert s["wall_s"] == 20.0 and s["cpu_s"] == 8.0 and s["peak_rss_mib"] == 200.0
    assert s["docs_per_s"] == 50.0
    assert s["mb_per_s"] == 2.0


def test_ratios_against_the_peer_row() -> None:
    rows = {
        "ours": {"mb_per_s": 4.0, "cpu_s": 5.0, "peak_rss_mib": 50.0},
        "datatrove": {"mb_per_s": 2.0, "cpu_s": 20.0, "peak_rss_mib": 100.0},
    }
    out = table.with_ratios(rows)
    assert out["ours"]["ratio_speed"] == 2.0  # twice the MB/s
    assert out["ours"]["ratio_cpu"] == 4.0  # a quarter of the CPU
    assert out["ours"]["ratio_rss"] == 0.5  # half the memory
    assert "ratio_speed" not in out["datatrove"]


def test_markdown_table_rows_and_cells() -> None:
    runs = [{"wall_s": 2.0, "cpu_s": 1.0, "peak_rss_mib": 64.0}]
    slow = [{"wall_s": 4.0, "cpu_s": 4.0, "peak_rss_mib": 128.0}]
    results = {
        "1 extract": {
            "ours": table.summarize(runs, 100, 2_000_000),
            "datatrove": table.summarize(slow, 100, 2_000_000),
        },
        "5 overhead": {
            "ours ray": table.summarize(slow, 100, 2_000_000),
            "process pool": table.summarize(runs, 100, 2_000_000),
        },
    }
    text = table.markdown(results, {"5 overhead": "process pool"})
    lines = text.splitlines()
    assert lines[0].startswith("| workload | side | docs |")
    assert len(lines) == 2 + 4
    ours = next(line for line in lines if "| ours |" in line)
    assert "| 50.0 |" in ours  # docs/s
    assert "**2.00x**" in ours  # speed ratio, bold when >= 1
    assert "**4.00x**" in ours  # CPU ratio
    assert "0.50x" in ours  # RSS ratio
    ray = next(line for line in lines if "| ours ray |" in line)
    assert "0.50x" in ray and "0.25x" in ray  # slower than the pool, not bold
    assert table.fmt(12345.6) == "12,346" and table.fmt(None) == ""


def test_decision_agreement_counts_and_examples() -> None:
    ours = {"a": "keep", "b": "keep", "c": "gopher:short", "d": "keep", "e": "keep"}
    theirs = {"a": "keep", "b": "c4:curly", "c": "gopher:short", "d": "c4:curly"}
    res = agree.decisions(ours, theirs, {"b": "text of b"}, examples=1)
    assert res["documents"] == 4 and res["missing_datatrove"] == 1
    assert res["ours_keep_datatrove_keep"] == 1 and res["ours_drop_datatrove_drop"] == 1
    assert res["ours_keep_datatrove_drop"] == 2 and res["disagreements"] == 2
    assert res["agreement"] == 0.5
    assert res["top_disagreements"][0] == {"ours": "keep", "datatrove": "c4:curly", "count": 2}
    assert res["examples"] == [
        {"id": "b", "ours": "keep", "datatrove": "c4:curly", "text": "text of b"}
    ]


def test_set_agreement() -> None:
    res = agree.sets({1, 2, 3}, {2, 3, 4, 5})
    assert (res["both"], res["only_ours"], res["only_datatrove"]) == (2, 1, 2)
    assert res["jaccard"] == 0.4


def test_cli_defaults_and_lists() -> None:
    args = parse_args(["--json", "/tmp/x.json"])
    assert args.workloads == [1, 2, 3, 4, 5]
    assert (args.workers, args.repeat, args.e2e_gb) == (1, 3, [1.0])
    assert args.overhead_gb == [0.1, 1.0]
    assert (args.peer_words, args.ours_local) == (["default"], False)
    assert args.dedup_docs == [100_000, 1_000_000]
    assert args.json == Path("/tmp/x.json")
    args = parse_args(["--workloads", "1,2,4", "--overhead-gb", "0.05,0.2", "--skip-1m"])
    assert args.workloads == [1, 2, 4]
    assert args.overhead_gb == [0.05, 0.2]
    assert args.dedup_docs == [100_000]
    assert args.json.name.startswith("bench-h-") and args.json.suffix == ".json"
    args = parse_args(["--e2e-gb", "0,0.1", "--peer-words", "default,whitespace", "--ours-local"])
    assert args.e2e_gb == [0.0, 0.1]
    assert (args.peer_words, args.ours_local) == (["default", "whitespace"], True)


def test_cli_rejects_unknown_workloads() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--workloads", "1,9"])
    with pytest.raises(SystemExit):
        parse_args(["--workers", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--peer-words", "nltk"])


def test_peer_rows_are_named_for_their_word_tokenizer() -> None:
    """datatrove's default tokenizer gives the peer row (the ratios' base); whitespace words an
    extra row labelled as not its default."""
    from scripts.bench.workloads import peer_side

    assert peer_side("default") == table.PEER
    assert peer_side("whitespace") == "datatrove, whitespace words (not its default)"


def test_peer_step_names() -> None:
    from scripts.bench.workloads import step_name

    assert step_name("\U0001f53b - FILTER: \U0001f46f Gopher Repetition") == "gopher repetition"
    assert step_name("\U0001f4bd - WRITER: \U0001f4d2 Parquet") == "parquet"
    assert step_name("\U0001f53b - FILTER: \u26f0 C4 Quality") == "c4 quality"


def test_summary_table_compares_each_of_ours_with_each_peer_row() -> None:
    """One line per (ours, datatrove variant) pair: docs/s and CPU ratios, the load range of
    the workload's runs, the date; a workload without a base row gives no line."""
    fast = [{"wall_s": 10.0, "cpu_s": 10.0, "peak_rss_mib": 300.0, "load_1min": 2.04}]
    slow = [{"wall_s": 50.0, "cpu_s": 60.0, "peak_rss_mib": 200.0, "load_1min": 3.46}]
    rows = {
        "ours": table.summarize(fast, 1000, 10**6),
        "datatrove": table.summarize(slow, 900, 10**6),
        "datatrove, whitespace words (not its default)": table.summarize(fast, 900, 10**6),
    }
    runs = {"ours": fast, "datatrove": slow, "datatrove, whitespace words (not its default)": fast}
    text = table.summary_markdown(
        {"4 e2e": {"rows": rows, "runs": runs}, "1 extract": {"rows": {}, "runs": {}}},
        "2026-12-07",
    )
    lines = text.splitlines()
    assert lines[0] == "| workload | datatrove | ours | ratio | machine load | date |"
    assert len(lines) == 2 + 2
    assert lines[2] == (
        "| 4 e2e | 18.0 docs/s (wall 50.0 s, CPU 60.0 s, peak RSS 200 MiB) "
        "| 100.0 docs/s (wall 10.0 s, CPU 10.0 s, peak RSS 300 MiB) "
        "| **5.56x** docs/s, **6.67x** docs/CPU-s | 2.0-3.5 | 2026-12-07 |"
    )
    assert lines[3].startswith("| 4 e2e vs datatrove, whitespace words (not its default) |")
    assert "**1.11x** docs/s, **1.11x** docs/CPU-s" in lines[3]
