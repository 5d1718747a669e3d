"""The base of every config section: unknown keys refused, frozen, numbers the platform accepts.

Every float key rejects inf and NaN (`.inf` in YAML would otherwise pass a `gt=0` bound and fail
deep inside a stage), and every integer key must fit a signed 64-bit integer (what Arrow, numpy
and the C calls behind them take), so such values fail at config time naming the key.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

INT64_MAX = 2**63 - 1


class ConfigModel(BaseModel):
    """A config section (recipe sections, stage configs, ablation specs)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _int64(cls, value: Any, info: ValidationInfo) -> Any:
        if _too_large(value):
            raise ValueError(f"integers must lie within +-{INT64_MAX:,} (a signed 64-bit integer)")
        return value


def _too_large(value: Any) -> bool:
    """Whether `value` (or an item of it) is an int outside the signed 64-bit range."""
    if isinstance(value, int) and not isinstance(value, bool):
        return not -INT64_MAX - 1 <= value <= INT64_MAX
    if isinstance(value, list | tuple | set | frozenset):
        return any(_too_large(v) for v in value)
    if isinstance(value, dict):
        return any(_too_large(v) for v in value.values())
    return False
