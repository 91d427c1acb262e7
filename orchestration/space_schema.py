"""The search-space file's schema: its sections and distributions, and which dotted keys are config fields.

Pydantic models for what a space file may say (strict: an unknown key is an error),
and `field_problem`, which checks a dotted key against the RunConfig of every method.
"""

from __future__ import annotations

import math
import re
from difflib import get_close_matches
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestration.names import METHOD_NAME_KEY, METRIC_MIOU
from orchestration.storage import filesystems
from rrn_core.config import RunConfig
from rrn_core.methods.table import METHODS


#: Optuna samplers by the short names a space file uses.
SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "gp": "GPSampler",
    "qmc": "QMCSampler",
    "nsgaii": "NSGAIISampler",
    "nsgaiii": "NSGAIIISampler",
    "bruteforce": "BruteForceSampler",
}
#: `method.name: all` on a grid: every method of rrn_core/methods/table.py, in its order.
ALL_METHODS = "all"
#: Most grid points a space may cross (counted before `exclude`, by multiplying the
#: axes' lengths: never by enumerating them). Each point is an Optuna study of its own
#: and every point's configs are built and checked before a sweep starts.
MAX_GRID_POINTS = 1_000
#: Most trials a space may ask for: grid points (before `exclude`) x num_samples.
MAX_TRIALS = 10_000
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
class SpaceError(ValueError):
    """A search space that cannot run; the message names the file and the field."""
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
class Distribution(_Strict):
    """One searched parameter. `int` may use `step` and `log`; `uniform` may use `step`."""

    type: Literal["uniform", "loguniform", "int", "choice"]
    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = None
    log: bool = False
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Distribution:
        if self.type == "choice":
            if self.values is None or len(self.values) == 0:
                raise ValueError("choice needs a non-empty `values` list")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("choice takes only `values` (no low/high/step/log)")
            bad = [v for v in self.values if not _is_scalar(v)]
            if bad:
                raise ValueError(f"choice values must be scalars (str, number, bool, null), got {bad[0]!r}")
            if len(set(map(repr, self.values))) != len(self.values):
                raise ValueError("choice values must be distinct")
            return self
        if self.values is not None:
            raise ValueError(f"{self.type} takes low/high, not `values`")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs both `low` and `high`")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.type == "loguniform":
            if self.low <= 0:
                raise ValueError(f"loguniform needs low > 0 (got {self.low})")
            if self.step is not None or self.log:
                raise ValueError("loguniform takes no `step` or `log` (it is already log-scaled)")
        if self.type == "uniform" and self.log:
            raise ValueError("use `type: loguniform` instead of uniform with log: true")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be positive (got {self.step})")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and float(value) != int(value):
                    raise ValueError(f"int needs an integer {name} (got {value})")
            if self.log and self.low <= 0:
                raise ValueError(f"int with log: true needs low > 0 (got {self.low})")
            if self.log and self.step not in (None, 1):
                raise ValueError("int with log: true cannot use a step other than 1")
        return self

    def ends(self) -> list[tuple[str, Any]]:
        """Values a trial can take at the edges: checked against RunConfig up front."""
        if self.type == "choice":
            return [(f"choice {v!r}", v) for v in self.values or []]
        cast = int if self.type == "int" else float
        return [("low end", cast(self.low)), ("high end", cast(self.high))]

    def describe(self) -> str:
        if self.type == "choice":
            return "choice " + ", ".join(repr(v) for v in self.values or [])
        text = f"{self.type} [{self.low}, {self.high}]"
        if self.step is not None:
            text += f" step {self.step}"
        if self.log:
            text += " log"
        return text
class SearchAlgConfig(_Strict):
    """Which Optuna sampler proposes trials; `options` go to its constructor."""

    sampler: Literal["tpe", "random", "cmaes", "gp", "qmc", "nsgaii", "nsgaiii", "bruteforce"] = "tpe"
    seed: int | None = 0
    options: dict[str, Any] = Field(default_factory=dict)
class SchedulerConfig(_Strict):
    """Early stopping, counted in evaluations (one Tune report per evaluation)."""

    type: Literal["none", "asha"] = "none"
    grace_period: int = Field(2, ge=1)
    max_t: int = Field(10, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> SchedulerConfig:
        asha_fields = {"grace_period", "max_t", "reduction_factor"} & self.model_fields_set
        if self.type == "none" and asha_fields:
            raise ValueError(f"{', '.join(sorted(asha_fields))} only apply to type: asha")
        if self.type == "asha" and self.grace_period >= self.max_t:
            raise ValueError(f"grace_period ({self.grace_period}) must be below max_t ({self.max_t})")
        return self
class ScalingSpec(_Strict):
    """Ray Train workers per trial (DDP ranks)."""

    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None

    @model_validator(mode="after")
    def _non_negative(self) -> ScalingSpec:
        for name, amount in (self.resources_per_worker or {}).items():
            if amount < 0:
                raise ValueError(f"resources_per_worker.{name} must be >= 0 (got {amount})")
        return self

    @model_validator(mode="after")
    def _one_gpu_per_rank(self) -> ScalingSpec:
        """A DDP rank trains on exactly one device: with several workers a fraction of a
        GPU puts two ranks on one device (NCCL refuses to start), and more than one GPU
        per worker leaves the extra ones idle."""
        gpus = (self.resources_per_worker or {}).get("GPU")
        if gpus is None or not self.use_gpu:
            return self
        if gpus > 1:
            raise ValueError(f"resources_per_worker.GPU is {gpus:g}: each worker (DDP rank) trains on one "
                             "GPU; use num_workers for more GPUs")
        if self.num_workers > 1 and gpus != 1:
            raise ValueError(f"resources_per_worker.GPU is {gpus:g} with {self.num_workers} workers: DDP "
                             "needs one whole GPU per rank (NCCL refuses two ranks on one device)")
        return self
class TrackingSpec(_Strict):
    uri: str | None = None
    experiment: str = Field("rrn", min_length=1)
class StorageSpec(_Strict):
    path: str | None = None
    endpoint_url: str | None = None

    @model_validator(mode="after")
    def _endpoint_needs_s3(self) -> StorageSpec:
        if self.endpoint_url and self.path and not filesystems.is_s3(self.path):
            raise ValueError("endpoint_url only applies to an s3:// path")
        return self
class FailureSpec(_Strict):
    max_failures: int = Field(2, ge=-1)
class SweepSpace(_Strict):
    """The file format, field by field (see search_spaces/*.yaml for examples)."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$", max_length=64)
    base_config: str | None = None
    base: dict[str, Any] | None = None
    fixed: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    # Grid points to leave out: each entry matches the points whose values equal all of
    # its (axis: value) pairs, e.g. {method.name: cps, data.label_ratio: 0.5}.
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    search: dict[str, Distribution] = Field(default_factory=dict)
    num_samples: int = Field(1, ge=1)
    metric: str = Field(METRIC_MIOU, min_length=1)
    mode: Literal["max", "min"] = "max"
    search_alg: SearchAlgConfig = Field(default_factory=SearchAlgConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    max_concurrent_trials: int = Field(1, ge=1)
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    failure: FailureSpec = Field(default_factory=FailureSpec)

    @field_validator("grid", mode="before")
    @classmethod
    def _every_method(cls, grid: Any) -> Any:
        """`method.name: all` runs every method in the table (a new one included)."""
        if isinstance(grid, dict) and grid.get(METHOD_NAME_KEY) == ALL_METHODS:
            return {**grid, METHOD_NAME_KEY: list(METHODS)}
        return grid

    @model_validator(mode="after")
    def _runnable_size(self) -> SweepSpace:
        """Refuse what could never run before anything expands it (see MAX_GRID_POINTS)."""
        points = math.prod(len(values) for values in self.grid.values())
        lengths = " x ".join(str(len(values)) for values in self.grid.values()) or "1"
        if points > MAX_GRID_POINTS:
            raise ValueError(f"grid: {lengths} = {points:,} grid points; at most {MAX_GRID_POINTS:,} "
                             "(counted before exclude)")
        if points * self.num_samples > MAX_TRIALS:
            raise ValueError(f"num_samples: {points:,} grid point(s) x {self.num_samples:,} samples = "
                             f"{points * self.num_samples:,} trials; at most {MAX_TRIALS:,}")
        return self

    @model_validator(mode="after")
    def _one_base(self) -> SweepSpace:
        if (self.base_config is None) == (self.base is None):
            raise ValueError("give exactly one of base_config (a file) or base (an inline mapping)")
        return self

    @model_validator(mode="after")
    def _exclude_names_grid_values(self) -> SweepSpace:
        for i, entry in enumerate(self.exclude):
            if not entry:
                raise ValueError(f"exclude[{i}] is empty (it would remove every grid point)")
            for key, value in entry.items():
                if key not in self.grid:
                    raise ValueError(f"exclude[{i}]: {key} is not a grid axis")
                if value not in self.grid[key]:
                    raise ValueError(f"exclude[{i}]: {key}={value!r} is not one of the grid's values")
        return self
def _models_of(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation: one for a section, several for the
    `method:` union (one per method), none for a value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, UnionType):
        return [m for arg in get_args(annotation) for m in _models_of(arg)]
    return []
def _is_mapping_type(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return any(_is_mapping_type(a) for a in get_args(annotation))
    return annotation is dict or origin is dict
def field_problem(key: str) -> str | None:
    """Why a dotted key is not a RunConfig field of any method (None when it is one).

    Under `method.` a key is accepted here when some method has it; whether the
    method each trial runs has it is checked when the trial's config is built.
    """
    if not _KEY_RE.match(key):
        return "not a dotted field name like method.w_select"
    models: list[type[BaseModel]] = [RunConfig]
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {name: f for m in models for name, f in m.model_fields.items()}
        where = ".".join(parts[:i]) or "RunConfig"
        if part not in fields:
            hint = get_close_matches(part, list(fields), n=1)
            did = f"; did you mean {'.'.join(parts[:i] + [hint[0]])}?" if hint else ""
            owner = f"no method's {where} section" if len(models) > 1 else where
            return f"{owner} has no field {part!r}{did}"
        rest = parts[i + 1:]
        if not rest:
            return None
        annotations = [m.model_fields[part].annotation for m in models if part in m.model_fields]
        subs = [sub for a in annotations for sub in _models_of(a)]
        if not subs:
            if any(_is_mapping_type(a) for a in annotations):
                return None  # free-form mapping (e.g. runtime.storage_options)
            return f"{'.'.join(parts[:i + 1])} is a value, not a section"
        models = subs
    return None
