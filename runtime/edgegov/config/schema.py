"""Pydantic models of one envelope TOML file: the shape of each table, field by field.

Cross-table rules (references, ranges against modes, resolution fit) live in ``admission``;
these models only say what a well-formed table looks like. Numbers arrive as ``Decimal``
(the loader parses TOML floats exactly) so that "fits the resolution" is decided without
binary floating point.
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model


def _number(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError("must be a number")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError("must be a finite number")
    return number


Number = Annotated[Decimal, BeforeValidator(_number)]
Breach = Literal["clamp", "reject", "escalate", "trip"]


NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Device(_Table):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    description: str = ""


class Channel(_Table):
    unit: str = ""
    resolution: Number
    min: Number
    max: Number
    rate_per_s: Number
    accel_per_s2: Number | None = None
    safe: Number
    stop: Literal["STO", "SS1"] = "STO"
    on_breach: Breach = "clamp"
    on_rate: Literal["clamp", "reject", "trip"] = "clamp"
    hold: Literal["stay", "ramp"] = "ramp"
    approved_min: Number | None = None
    approved_max: Number | None = None


class Input(_Table):
    type: Literal["bool", "number"]
    role: Literal["plain", "estop"] = "plain"
    stale_after_ms: Annotated[int, Field(gt=0, le=3_600_000)]
    unit: str = ""
    resolution: Number | None = None
    min: Number | None = None
    max: Number | None = None


class Condition(_Table):
    input: str
    eq: bool | Number | None = None
    ne: bool | Number | None = None
    lt: Number | None = None
    le: Number | None = None
    gt: Number | None = None
    ge: Number | None = None


class Limit(_Table):
    min: Number | None = None
    max: Number | None = None


class Interlock(_Table):
    when: Annotated[list[dict], Field(min_length=1, max_length=8)]  # each a Condition
    limits: Annotated[dict[str, dict], Field(min_length=1)]  # channel -> Limit
    on_breach: Literal["clamp", "reject", "trip"] = "trip"
    description: str = ""


class ModeLimit(_Table):
    min: Number | None = None
    max: Number | None = None
    rate_per_s: Number | None = None


class Mode(_Table):
    description: str = ""
    channels: dict[str, dict] = {}  # channel -> ModeLimit


class Link(_Table):
    hold_after_ms: Annotated[int, Field(gt=0, le=600_000)]
    trip_after_ms: Annotated[int, Field(gt=0, le=600_000)]
    engage_after_ms: Annotated[int, Field(gt=0, le=600_000)]


class Approval(_Table):
    timeout_ms: Annotated[int, Field(gt=0, le=3_600_000)]
    grant_ms: Annotated[int, Field(gt=0, le=86_400_000)]


class Modbus(_Table):
    """Host-side Modbus settings of this device (not part of the governor's blob)."""

    operator_actions: bool = False  # Modbus has no authentication: off unless said here
    addresses: dict[str, int] = {}  # channel -> pinned register (holding and input)
    drive: dict | None = None  # the downstream drive's map (config/drive.py)


class Top(_Table):
    """The top level; each named sub-table is validated on its own so every problem shows."""

    device: dict
    initial_mode: str | None = None
    channels: Annotated[dict[str, dict], Field(min_length=1, max_length=32)]
    inputs: dict[str, dict] = {}
    interlocks: dict[str, dict] = {}
    modes: dict[str, dict] = {}
    link: dict | None = None
    approval: dict | None = None
    modbus: dict | None = None


_PARTIAL: dict[type, type] = {}


def partial(model: type[_Table]) -> type[_Table]:
    """``model`` with every required key optional (None when absent): what is left of a
    table once its bad keys are taken out, so the checks that need only the good keys still
    run and every independent problem shows in one pass."""
    if model not in _PARTIAL:
        fields = {
            name: (_with_metadata(info) | None, None if info.is_required() else info.default)
            for name, info in model.model_fields.items()
        }
        with warnings.catch_warnings():  # a field named like a class attribute ("register")
            warnings.filterwarnings("ignore", message="Field name ")
            _PARTIAL[model] = create_model(f"Partial{model.__name__}", __base__=_Table,
                                           **fields)
    return _PARTIAL[model]


def _with_metadata(info) -> object:
    if not info.metadata:
        return info.annotation
    return Annotated[(info.annotation, *info.metadata)]
