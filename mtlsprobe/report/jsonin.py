"""JSON -> model values: the inverse of ``jsonout.to_jsonable`` for the report's own types.

Used to read a saved report back (a ``--baseline``) as the very Observations the rules
judge, so that one function computes a fact whether it was seen now or in the baseline.
Fields missing from an older report take their defaults; unknown fields are ignored.
Raises ValueError or TypeError for a value that does not fit its field.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import types
import typing
from datetime import datetime, timezone
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_jsonable(cls: type[T], value: object) -> T:
    """`value` (decoded JSON) as an instance of the model dataclass `cls`."""
    decoded = _decode(cls, value)
    if not isinstance(decoded, cls):
        raise TypeError(f"expected {cls.__name__}")
    return decoded


def _decode(tp: Any, value: object) -> object:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _decode(arg, value)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) or f"{value!r} fits no type")
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        if len(args) != len(value):
            raise ValueError(f"expected {len(args)} items, got {len(value)}")
        return tuple(_decode(a, v) for a, v in zip(args, value, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        key_type, value_type = typing.get_args(tp)
        return {_decode(key_type, k): _decode(value_type, v) for k, v in value.items()}
    if tp is Any or tp is object:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"expected an object for {tp.__name__}")
        hints = _hints(tp)
        kwargs = {
            f.name: _decode(hints[f.name], value[f.name])
            for f in dataclasses.fields(tp)
            if f.name in value and f.init
        }
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if tp is datetime:
        if not isinstance(value, str):
            raise TypeError("expected an RFC 3339 time")
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    if tp is bytes:
        if not isinstance(value, str):
            raise TypeError("expected base64 text")
        return base64.b64decode(value, validate=True)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (str, int, float, bool):
        if type(value) is not tp:
            raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
        return value
    raise TypeError(f"cannot decode into {tp!r}")
