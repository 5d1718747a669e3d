"""The text a classifier sees, the same at training and at inference (DCLM's rule by default).

fastText reads one line per example, so newlines always become spaces (DCLM joins a document's
lines with a space); lowercasing and whitespace collapsing are options a model is trained with,
recorded in its MODEL.json and checked by the `classifier` stage.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Preprocess:
    """How a document becomes one classifier line."""

    lowercase: bool = False  # case-fold the text (for models trained on lowercased text)
    collapse_whitespace: bool = False  # runs of whitespace become one space

    def line(self, text: str | None) -> str:
        """`text` as one line: stripped, each line break a space, then the options."""
        out = " ".join((text or "").strip().splitlines())  # DCLM's exact rule
        if self.collapse_whitespace:
            out = _SPACES.sub(" ", out)
        return out.lower() if self.lowercase else out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        """The options recorded in a MODEL.json (unknown keys are a ValueError naming them)."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown preprocessing option(s): {', '.join(unknown)}")
        return cls(**data)
