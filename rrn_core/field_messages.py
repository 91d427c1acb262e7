"""Validation messages that state a field's whole allowed range.

pydantic reports only the bound a value broke, and NaN breaks whichever bound is
checked last: `label_ratio: .nan` reads "Input should be less than or equal to 1",
which a user rightly takes to mean NaN is fine as long as it is small. Every bound
error is therefore rewritten from the field's own constraints ("must be a number in
(0, 1], got nan", "must be a number > 0, got -1"); other errors keep pydantic's
message.

Used by rrn_core/config.py (`error_lines`, behind `build_config`'s errors) and orchestration/space.py
where they turn a ValidationError into one line per field.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

#: pydantic error types raised by gt/ge/lt/le constraints.
BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel classes an annotation holds (X, X | None, Optional[X])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def field_info(model: type[BaseModel], loc: Sequence[str | int]) -> FieldInfo | None:
    """The FieldInfo at a pydantic error location (None when the path leaves the models)."""
    info: FieldInfo | None = None
    models = [model]
    for part in loc:
        info = next((m.model_fields[str(part)] for m in models if str(part) in m.model_fields), None)
        if info is None:
            return None
        models = _models_in(info.annotation)
    return info


def interval(info: FieldInfo) -> str | None:
    """The field's allowed range: "in (0, 1]" with two bounds, "> 0" with one
    (None: it has no bound)."""
    bounds: dict[str, Any] = {}
    for item in info.metadata:
        for name in ("gt", "ge", "lt", "le"):
            if getattr(item, name, None) is not None:
                bounds[name] = getattr(item, name)
    low = f"({bounds['gt']:g}" if "gt" in bounds else f"[{bounds['ge']:g}" if "ge" in bounds else None
    high = f"{bounds['le']:g}]" if "le" in bounds else f"{bounds['lt']:g})" if "lt" in bounds else None
    if low and high:
        return f"in {low}, {high}"
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return next((f"{signs[k]} {bounds[k]:g}" for k in signs if k in bounds), None)


def _shown(value: Any) -> str:
    return "nan" if isinstance(value, float) and math.isnan(value) else repr(value)


def field_message(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    """pydantic's message for `error`, or, for a bound error, the whole range:
    "must be a number in (0, 1], got nan"."""
    if error.get("type") not in BOUND_ERRORS:
        return str(error["msg"])
    info = field_info(model, error.get("loc", ()))
    allowed = interval(info) if info is not None else None
    if allowed is None:
        return str(error["msg"])
    return f"must be a number {allowed}, got {_shown(error.get('input'))}"
