"""The README stays true: its stage reference is the one the code generates."""

from __future__ import annotations

from pipeline.stage_docs import readme_with_reference
from tests.conftest import REPO


def test_readme_stage_reference_is_current() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme == readme_with_reference(readme), (
        "README's stage reference is stale: run `python -m pipeline.stage_docs README.md`"
    )


def test_readme_documents_every_cli_verb() -> None:
    from pipeline.cli import _build_parser

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sub = next(a for a in _build_parser()._actions if a.dest == "command")
    for verb in sub.choices:
        assert f"### `curate {verb}" in readme, f"README has no section for `curate {verb}`"


def test_every_stage_key_has_a_meaning() -> None:
    from pipeline.registry import available_stages
    from pipeline.stage_docs import config_keys, meaning

    missing = [
        f"{name}.{dotted}"
        for name, cls in available_stages().items()
        for dotted, owner, key, field in config_keys(cls.config_cls)
        if not meaning(owner, key, field).strip()
    ]
    assert not missing, f"config keys without a comment or description: {', '.join(missing)}"


def test_field_comments_reads_trailing_and_above_comments() -> None:
    from pydantic import BaseModel

    from pipeline.stage_docs import field_comments, meaning

    class Base(BaseModel):
        inherited: int = 0  # from the base class

    class Sample(Base):
        trailing: str = "a # b"  # the trailing one
        # The comment
        # above.
        above: int = 1
        bare: int = 2

        # After a blank line: not above `spaced`.

        spaced: int = 3

    comments = field_comments(Sample)
    assert comments["trailing"] == "the trailing one"
    assert comments["above"] == "The comment above."
    assert comments["bare"] == comments["spaced"] == ""
    assert meaning(Sample, "inherited", Sample.model_fields["inherited"]) == "from the base class"
    assert meaning(Sample, "bare", Sample.model_fields["bare"]) == ""


# Top-level entries of the repository a README path may start with.
_REPO_ROOTS = ("configs/", "pipeline/", "scripts/", "tests/", "docs/", "Makefile", "pyproject.toml")
_RUN_OUTPUTS = {"report.md"}  # file names a run or `curate stats` writes, not repository files


def test_every_repository_path_the_readme_names_exists() -> None:
    """Paths in `code spans` and link targets that start at a top-level entry of the repository
    exist (globs match something); every `NAME.md` the README cites is a file of the
    repository (or one a run writes)."""
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    spans = re.findall(r"`([^`\n]+)`", readme) + re.findall(r"\]\(([^)\s]+)\)", readme)
    named = {
        token.rstrip(".,:;)")
        for span in spans
        for token in re.split(r"[\s,]+", span)
        if token.startswith(_REPO_ROOTS)
    }
    assert len(named) >= 10, sorted(named)  # the rule finds the README's paths
    missing = sorted(p for p in named if not list(REPO.glob(p.rstrip("/"))))
    assert not missing, f"README names paths the repository does not have: {missing}"
    cited = set(re.findall(r"\b[\w-]+\.md\b", readme)) - _RUN_OUTPUTS
    files = {p.name for p in REPO.rglob("*.md") if ".venv" not in p.parts}
    assert cited <= files, f"README cites files not in the repository: {sorted(cited - files)}"


def test_readme_output_layout_names_the_real_marker_paths() -> None:
    from pipeline.runner.unit import GLOBAL_DIR, marker_path

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert marker_path("OUT", 0, 7) == "OUT/_run/units/seg00/part-00007.json"
    assert "\n_run/units/segNN/part-NNNNN.json " in readme
    assert "_run/units/part-NNNNN.json" not in readme
    assert GLOBAL_DIR == "_run/global"


def test_readme_documents_every_run_and_ablate_option() -> None:
    from pipeline.cli import _build_parser

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sub = next(a for a in _build_parser()._actions if a.dest == "command")
    for verb in ("run", "ablate"):
        flags = [s for a in sub.choices[verb]._actions for s in a.option_strings if s != "-h"]
        missing = [f for f in flags if f"`{f}" not in readme and f != "--help"]
        assert not missing, f"README does not document `curate {verb}` {missing}"
