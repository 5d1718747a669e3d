"""Recipe validation: bad configs fail before any work, naming the key, the line and what is allowed."""

from __future__ import annotations

import pytest

from pipeline.config import load_recipe, recipe_from_dict, recipe_from_yaml
from pipeline.errors import ConfigError

GOOD = """\
input:
  paths: [a.warc.gz]
output:
  path: out
stages:
  - stage: extract
  - stage: langid
    languages: [en]
    threshold: 0.7
"""


def test_good_recipe_parses_with_defaults() -> None:
    r = recipe_from_yaml(GOOD)
    assert [s.stage for s in r.stages] == ["extract", "langid"]
    assert r.stages[1].threshold == 0.7
    assert r.runtime.executor == "auto"
    assert r.output.compression == "zstd"


def test_config_hash_ignores_runtime_and_output_path_but_not_thresholds() -> None:
    base = recipe_from_yaml(GOOD)
    moved = base.with_overrides(output={"path": "elsewhere"}, runtime={"num_workers": 7})
    assert moved.config_hash() == base.config_hash()
    stricter = recipe_from_yaml(GOOD.replace("0.7", "0.8"))
    assert stricter.config_hash() != base.config_hash()


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        recipe_from_yaml(text, source="r.yaml")
    return str(exc.value)


def test_unknown_stage_names_allowed_and_line() -> None:
    msg = _error(GOOD.replace("stage: langid", "stage: langidd"))
    assert "stages[1].stage (line 7)" in msg
    assert "unknown stage 'langidd' (did you mean 'langid'?); allowed:" in msg
    assert "allowed: url_filter, extract, langid, gopher_repetition" in msg


def test_unknown_key_in_stage_lists_allowed_keys() -> None:
    msg = _error(GOOD.replace("threshold: 0.7", "treshold: 0.7"))
    assert "stages[1] (langid).treshold (line 9)" in msg
    assert msg.endswith(
        "stages[1] (langid).treshold (line 9): unknown key (did you mean 'threshold'?); "
        "allowed: languages, max_chars, model_path, stage, threshold"
    )


def test_unknown_top_level_key() -> None:
    msg = _error(GOOD + "outptu: x\n")
    assert (
        "outptu (line 10): unknown key (did you mean 'output'?); allowed: input, name, output, "
        "runtime, stages"
    ) in msg
    assert "did you mean" not in _error(GOOD + "zzz: x\n")  # nothing close: no guess


def test_wrong_type_and_out_of_range() -> None:
    msg = _error(GOOD.replace("threshold: 0.7", "threshold: high"))
    assert "stages[1] (langid).threshold (line 9)" in msg and "'high'" in msg
    msg = _error(GOOD.replace("threshold: 0.7", "threshold: 1.5"))
    assert "stages[1] (langid).threshold (line 9)" in msg and "less than or equal to 1" in msg


def test_bad_enum_value_names_allowed_values() -> None:
    msg = _error(GOOD + "runtime:\n  executor: spark\n")
    assert "runtime.executor (line 11)" in msg and "'auto', 'ray' or 'local'" in msg


def test_missing_output_and_empty_stages() -> None:
    msg = _error("input:\n  paths: [x]\nstages: []\n")
    assert "output: required key is missing" in msg
    assert "stages (line 3)" in msg and "at least 1 item" in msg


def test_invalid_yaml_reports_line() -> None:
    msg = _error("input:\n  paths: [a\noutput: {path: o}\n")
    assert "invalid YAML (line" in msg


def test_yaml_tags_that_construct_objects_are_refused() -> None:
    msg = _error("!!python/object/apply:os.system ['echo pwned']\n")
    assert "invalid YAML" in msg


def test_stage_without_name() -> None:
    msg = _error(GOOD.replace("- stage: extract", "- backend: trafilatura"))
    assert "stages[0] (line 6): each stage needs a `stage:` key" in msg


def test_not_a_mapping() -> None:
    assert "a recipe is a mapping" in _error("- just\n- a list\n")


def test_unreadable_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_recipe(tmp_path / "missing.yaml")


def test_dict_recipe_roundtrip() -> None:
    r = recipe_from_yaml(GOOD)
    again = recipe_from_dict(r.to_dict())
    assert again.config_hash() == r.config_hash()
