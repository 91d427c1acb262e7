"""A bound error states the field's whole range: NaN is not "less than or equal to 1"."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rrn_core.config import RunConfig
from rrn_core.field_messages import field_info, field_message, interval


def messages(tree: dict) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        RunConfig.model_validate({"data": {"root": "/d", **tree.pop("data", {})}, **tree})
    return {".".join(map(str, e["loc"])): field_message(e, RunConfig) for e in caught.value.errors()}


@pytest.mark.parametrize(("tree", "field", "expected"), [
    ({"data": {"label_ratio": float("nan")}}, "data.label_ratio", "must be a number in (0, 1], got nan"),
    ({"data": {"label_ratio": 1.5}}, "data.label_ratio", "must be a number in (0, 1], got 1.5"),
    ({"data": {"label_ratio": 0}}, "data.label_ratio", "must be a number in (0, 1], got 0"),
    ({"data": {"num_classes": 1}}, "data.num_classes", "must be a number in [2, 1024], got 1"),
    ({"optim": {"lr": -1}}, "optim.lr", "must be a number > 0, got -1"),
])
def test_bound_errors_state_the_whole_range(tree: dict, field: str, expected: str) -> None:
    assert messages(tree)[field] == expected


def test_other_errors_keep_pydantics_message() -> None:
    got = messages({"data": {"num_classes": "many"}})
    assert got["data.num_classes"].startswith("Input should be a valid integer")


def test_field_lookup_follows_nested_and_optional_models() -> None:
    info = field_info(RunConfig, ("data", "label_ratio"))
    assert info is not None and interval(info) == "in (0, 1]"
    assert field_info(RunConfig, ("data", "no_such_field")) is None
    assert field_info(RunConfig, ("data", "label_ratio", "deeper")) is None
