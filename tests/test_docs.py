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
