"""Every method by the `method.name` that picks it: the one place that lists them.

`MethodConfig` is the `method:` section of a run config, a union discriminated on
`name`: each method's own model, so a field the chosen method does not read is an
error naming the field and the method, and MLflow params hold only what it uses.
Adding a method: its file (config model + `Method` subclass), then one line here
and its name at the end of rrn_core/method_names.py (the torch-free copy of the
keys that `rrn --help` and the report read; importing this module checks the two).
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from rrn_core.methods.base import Method, MethodSettings
from rrn_core.methods.cps import CPS
from rrn_core.methods.fixmatch import FixMatch
from rrn_core.method_names import METHOD_NAMES
from rrn_core.methods.rrn import RRN
from rrn_core.methods.rrn_release import RRNRelease
from rrn_core.methods.supervised import Supervised

METHODS: dict[str, type[Method]] = {
    "supervised": Supervised,
    "cps": CPS,
    "fixmatch": FixMatch,
    "rrn": RRN,
    "rrn_release": RRNRelease,
}
if list(METHODS) != METHOD_NAMES:
    raise ImportError(f"rrn_core/method_names.py lists {METHOD_NAMES}, the methods table "
                      f"{list(METHODS)}: list the table's keys there, in its order")
#: The method of a config that names none.
DEFAULT_METHOD = "rrn"

MethodConfig = Annotated[Union[tuple(m.config_model for m in METHODS.values())],  # noqa: UP007
                         Field(discriminator="name")]


def method_class(name: str) -> type[Method]:
    """The `Method` that `method.name` picks (KeyError: not a method)."""
    return METHODS[name]


def default_method_config() -> MethodSettings:
    return METHODS[DEFAULT_METHOD].config_model()


