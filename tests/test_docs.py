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
