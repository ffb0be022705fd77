"""The base of every generated changes type: a value the gateway reads, checked when built.

A changes type (`models.BeforeUpdateUserInfoExCommandChanges`, ...) is a frozen dataclass whose
fields are OpenIM's JSON names. Its `SHAPE` maps each field to a compact type written by
scripts/gen-models: `str`, `int32`, `int64`, `bool`, `[T]` (a list), `{T}` (an object with
string keys), or the name of another changes type; a trailing `?` allows None. Building one
checks every value against it, so `answer.modify(...)` can only carry what the gateway accepts
for its shape (the gateway checks more than shape: docs/worker-protocol.md, "How the gateway
reads a reply").
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, ClassVar

INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class ShapeError(TypeError):
    """A value that is not the shape the gateway reads for this field."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Changes:
    """The fields a worker writes back; None (the default) keeps the request's value."""

    SHAPE: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        for name, shape in self.SHAPE.items():
            check(getattr(self, name), shape, f"{type(self).__name__}.{name}", type(self).__module__)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the reply's own fields; a None field is left out."""
        return {name: _plain(getattr(self, name)) for name in self.SHAPE
                if getattr(self, name) is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Changes):
        return {name: _plain(getattr(value, name)) for name in value.SHAPE
                if getattr(value, name) is not None}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def check(value: Any, shape: str, where: str, module: str) -> None:
    """Raises ShapeError naming `where` when `value` does not have `shape`."""
    if shape.endswith("?"):
        if value is None:
            return
        shape = shape[:-1]
    if value is None:
        raise ShapeError(f"{where} must not be None")
    if shape == "str":
        if not isinstance(value, str):
            raise ShapeError(f"{where} must be a str, not {type(value).__name__}")
    elif shape == "bool":
        if not isinstance(value, bool):
            raise ShapeError(f"{where} must be a bool, not {type(value).__name__}")
    elif shape in INT_BOUNDS:
        low, high = INT_BOUNDS[shape]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ShapeError(f"{where} must be an int, not {type(value).__name__}")
        if not low <= value <= high:
            raise ShapeError(f"{where} must be in {low}..={high} ({shape}), not {value}")
    elif shape.startswith("["):
        if not isinstance(value, list):
            raise ShapeError(f"{where} must be a list, not {type(value).__name__}")
        for index, item in enumerate(value):
            check(item, shape[1:-1], f"{where}[{index}]", module)
    elif shape.startswith("{"):
        if not isinstance(value, dict):
            raise ShapeError(f"{where} must be a dict, not {type(value).__name__}")
        for key, item in value.items():
            if not isinstance(key, str):
                raise ShapeError(f"{where} keys must be str, not {type(key).__name__}")
            check(item, shape[1:-1], f"{where}[{key!r}]", module)
    else:
        expected = getattr(sys.modules[module], shape)
        if not isinstance(value, expected):
            raise ShapeError(f"{where} must be a {shape}, not {type(value).__name__}")
