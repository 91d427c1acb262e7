"""The search-space file: what a sweep runs, checked completely before it starts.

A sweep can hold hundreds of GPU-hours, so a typo found by trial 37 is expensive.
`load_space` therefore builds a real `RunConfig` for every grid point with every
searched parameter at its low and high end (and every choice), and reports any
error naming the file and the field. Grid axes (label ratio, seed, method) are
crossed, never searched: one Optuna study per grid point, so that all trials at
one (ratio, seed) share a split and an optimiser never "tunes" the label budget.
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from pydantic import ValidationError

from orchestration.names import ENV_STORAGE_ENDPOINT, ENV_STORAGE_PATH, ENV_TRACKING_URI, GRID_ONLY
from orchestration.space_schema import SpaceError, Distribution, SweepSpace, SAMPLERS, field_problem
from orchestration.storage import filesystems
from rrn_core.config import InvalidFields, RunConfig, build_config
from rrn_core.field_messages import field_message
from rrn_core.paths import resolve_dotted_paths, resolve_tree_paths
from rrn_core.yaml_files import read_mapping

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna


_MAX_REPORTED = 12


# --------------------------------------------------------------------------- resolved


@dataclass
class ResolvedSpace:
    """A validated space plus its base config tree; expands into trial configs."""

    path: Path
    space: SweepSpace
    base: dict[str, Any]
    base_path: Path | None = None

    def grid_points(self) -> list[dict[str, Any]]:
        """The crossed grid in file order, the last axis varying fastest."""
        keys = list(self.space.grid)
        points = [dict(zip(keys, combo)) for combo in itertools.product(*self.space.grid.values())]
        return [p for p in points
                if not any(all(p[k] == v for k, v in entry.items()) for entry in self.space.exclude)]

    @property
    def trial_count(self) -> int:
        return len(self.grid_points()) * self.space.num_samples

    def overrides(self, grid_point: Mapping[str, Any], sampled: Mapping[str, Any]) -> dict[str, Any]:
        """Dotted overrides for one trial: fixed, then the grid point, then sampled values."""
        unknown = [k for k in grid_point if k not in self.space.grid]
        if unknown:
            raise SpaceError(f"{self.path}: {unknown[0]} is not a grid axis of this space")
        unknown = [k for k in sampled if k not in self.space.search]
        if unknown:
            raise SpaceError(f"{self.path}: {unknown[0]} is not a searched parameter of this space")
        return {**self.space.fixed, **grid_point, **sampled}

    def trial_config(self, grid_point: Mapping[str, Any], sampled: Mapping[str, Any]) -> RunConfig:
        """The RunConfig of one trial: base + fixed + grid point + sampled values.

        Searched keys missing from `sampled` keep their base/fixed value.
        """
        cfg, errors = _build(self, self.overrides(grid_point, sampled),
                             {"search": dict(sampled), "grid": dict(grid_point)})
        if cfg is None:
            raise SpaceError(f"{self.path}: trial config is invalid\n" + "\n".join(f"  {e}" for e in errors))
        return cfg

    def point_label(self, grid_point: Mapping[str, Any]) -> str:
        """A short stable label of a grid point, for study names, tags and tables."""
        return ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in grid_point.items()) or "all"

    @property
    def tracking_uri(self) -> str:
        """RRN_TRACKING_URI (set by `rrn submit --tracking-uri`), else the file's
        tracking.uri, else MLFLOW_TRACKING_URI, else the sqlite store in RRN_HOME."""
        return (os.environ.get(ENV_TRACKING_URI) or self.space.tracking.uri
                or os.environ.get("MLFLOW_TRACKING_URI") or filesystems.default_tracking_uri())

    @property
    def storage_path(self) -> str:
        """RRN_STORAGE_PATH, else the file's storage.path, else RRN_HOME/results (absolute)."""
        path = os.environ.get(ENV_STORAGE_PATH) or self.space.storage.path
        if not path:
            return filesystems.default_storage_path()
        return path if filesystems.is_remote(path) else str(Path(path).expanduser().resolve())

    @property
    def storage_endpoint_url(self) -> str | None:
        """RRN_STORAGE_ENDPOINT_URL, else the file's storage.endpoint_url, else AWS_ENDPOINT_URL."""
        return (os.environ.get(ENV_STORAGE_ENDPOINT) or self.space.storage.endpoint_url
                or os.environ.get("AWS_ENDPOINT_URL") or None)

    def describe(self) -> str:
        """The resolved space as text: what `rrn space validate` prints."""
        s = self.space
        points = self.grid_points()
        lines = [
            f"space      {s.name}   ({self.path})",
            f"base       {self.base_path if self.base_path else '(inline mapping)'}",
            f"trials     {self.trial_count} = {len(points)} grid point(s) x {s.num_samples} sample(s)",
            f"metric     {s.metric} ({s.mode})",
            f"sampler    {s.search_alg.sampler} (seed {s.search_alg.seed})"
            + (f" {s.search_alg.options}" if s.search_alg.options else ""),
            "scheduler  " + ("none" if s.scheduler.type == "none" else
                             f"asha grace_period={s.scheduler.grace_period} max_t={s.scheduler.max_t} "
                             f"reduction_factor={s.scheduler.reduction_factor} (in evaluations)"),
            f"scaling    {s.scaling.num_workers} worker(s) per trial, "
            f"{'GPU' if s.scaling.use_gpu else 'CPU'}, resources/worker "
            f"{s.scaling.resources_per_worker or 'default'}; "
            f"{s.max_concurrent_trials} concurrent trial(s); max_failures {s.failure.max_failures}",
            f"tracking   {filesystems.redact_text(self.tracking_uri)}  experiment {s.tracking.experiment}",
            f"storage    {self.storage_path}"
            + (f"  endpoint {self.storage_endpoint_url}" if self.storage_endpoint_url else ""),
        ]
        lines.append("fixed:" if s.fixed else "fixed:     (none)")
        lines += [f"  {k} = {v!r}" for k, v in s.fixed.items()]
        lines.append("grid:" if s.grid else "grid:      (none: one point)")
        lines += [f"  {k}: {v!r}" for k, v in s.grid.items()]
        lines.append("search:" if s.search else "search:    (none)")
        lines += [f"  {k}: {d.describe()}" for k, d in s.search.items()]
        if s.grid:
            lines.append("grid points (last axis fastest):")
            width = len(str(len(points)))
            lines += [f"  {i:>{width}}. " + "  ".join(f"{k}={v!r}" for k, v in p.items())
                      for i, p in enumerate(points, 1)]
        lines += [f"note: {n}" for n in _notes(self)]
        return "\n".join(lines)


# --------------------------------------------------------------------------- loading


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _attribute(loc: str, sections: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, Any]]:
    """The space entries that set the failing field (most specific section first)."""
    hits = []
    for section in ("search", "grid", "fixed"):
        for key, value in sections.get(section, {}).items():
            if key == loc or loc.startswith(key + ".") or key.startswith(loc + "."):
                hits.append((section, key, value))
    return hits


def _build(resolved: ResolvedSpace, overrides: Mapping[str, Any],
           sections: Mapping[str, Mapping[str, Any]]) -> tuple[RunConfig | None, list[str]]:
    """One trial's RunConfig, built (and validated, once) by rrn_core's `build_config`;
    or None and its errors, each naming the space entry that set the failing field."""
    sections = {"fixed": resolved.space.fixed, **sections}
    try:
        return build_config(resolved.base, overrides, source=str(resolved.path)), []
    except InvalidFields as err:
        out = []
        for loc, msg in err.fields:
            hits = _attribute(loc, sections)
            if len(hits) == 1 and hits[0][1] == loc:
                section, key, value = hits[0]
                out.append(f"{section}.{key}={value!r}: {msg}")
            elif hits:
                named = ", ".join(f"{s}.{k}={v!r}" for s, k, v in hits)
                out.append(f"{loc}: {msg} (set by {named})")
            else:
                out.append(f"{loc}: {msg} (from the base config {resolved.base_path or 'mapping'})")
        return None, out
    except ValueError as err:  # a value where build_config expects a section
        return None, [str(err)]


def _evaluations(cfg: RunConfig) -> int:
    return math.ceil(cfg.optim.iters / cfg.eval.every)


def _scheduler_errors(space: SweepSpace, cfg: RunConfig) -> list[str]:
    """ASHA must be able to stop trials. (Whether it would judge a method before its
    warm-up ends needs the data set's size: orchestration/sweep/prepare.py checks it.)"""
    sch = space.scheduler
    if sch.type != "asha":
        return []
    if cfg.optim.iters is None:
        return ["scheduler: ASHA counts a trial's evaluations, which an epoch budget (optim.epochs) "
                "fixes only once the split is drawn: give optim.iters, or scheduler.type none"]
    evals = _evaluations(cfg)
    if sch.grace_period >= evals:
        return [f"scheduler.grace_period: {sch.grace_period} evaluations but a trial has only {evals} "
                f"(optim.iters {cfg.optim.iters} / eval.every {cfg.eval.every}): ASHA would never stop one"]
    return []


def _notes(resolved: ResolvedSpace) -> list[str]:
    s = resolved.space
    notes = []
    if s.scheduler.type == "asha":
        notes.append("ASHA's grace period is checked against each method's warm-up when the sweep "
                     "starts (it needs the data set's size)")
    if not s.search and s.num_samples > 1:
        notes.append(f"nothing is searched: each grid point runs {s.num_samples} identical trials")
    if not filesystems.is_remote(resolved.storage_path):
        notes.append("results stay on this machine's disk (storage.path is local)")
    return notes


def _static_errors(space: SweepSpace) -> list[str]:
    errors = []
    sections: dict[str, Mapping[str, Any]] = {"fixed": space.fixed, "grid": space.grid, "search": space.search}
    for section, entries in sections.items():
        for key in entries:
            problem = field_problem(key)
            if problem:
                errors.append(f"{section}.{key}: {problem}")
    for key in space.search:
        if key in GRID_ONLY:
            errors.append(f"search.{key}: {key} is a grid-only axis (one of {', '.join(GRID_ONLY)}); "
                          "put it under grid: or fixed:")
    for key, values in space.grid.items():
        if len(values) == 0:
            errors.append(f"grid.{key}: needs at least one value")
        elif len(set(map(repr, values))) != len(values):
            errors.append(f"grid.{key}: values must be distinct, got {values!r}")
    names = [(section, key) for section, entries in sections.items() for key in entries]
    for (sa, ka), (sb, kb) in itertools.combinations(names, 2):
        if ka == kb or ka.startswith(kb + ".") or kb.startswith(ka + "."):
            errors.append(f"{sa}.{ka} and {sb}.{kb} set the same field: keep one")
    unknown = sorted(set(space.search_alg.options) - _sampler_params(space.search_alg.sampler)
                     if space.search_alg.options else [])
    if unknown:
        errors.append(f"search_alg.options.{unknown[0]}: not an option of optuna's "
                      f"{SAMPLERS[space.search_alg.sampler]}")
    return errors


def _sampler_params(sampler: str) -> set[str]:
    params = inspect.signature(getattr(optuna.samplers, SAMPLERS[sampler])).parameters
    return {name for name in params if name != "seed"}


def load_space(path: str | Path) -> ResolvedSpace:
    """Read and validate a search-space file; nothing runs until all of it is sound."""
    path = Path(path)
    tree = read_mapping(path, "search-space file", SpaceError)
    try:
        space = SweepSpace.model_validate(tree)
    except ValidationError as err:
        lines = [f"  {_format_loc(e['loc'])}: {field_message(e, SweepSpace)}" for e in err.errors()]
        raise SpaceError(f"{path}: invalid search space\n" + "\n".join(lines)) from None

    base_path = None
    if space.base_config is not None:
        base_path = (path.parent / space.base_config).resolve()
        if not base_path.is_file():
            raise SpaceError(f"{path}: base_config: {base_path} not found "
                             f"(paths are relative to the space file)")
        base = read_mapping(base_path, "base config", SpaceError)
    else:
        base = dict(space.base or {})
    # Relative input paths: against the base config's folder (inline base and the
    # space's own entries: against the space file's folder); see rrn_core/paths.py.
    resolve_tree_paths(base, base_path.parent if base_path is not None else path.resolve().parent)
    space.fixed = resolve_dotted_paths(space.fixed, path.resolve().parent)
    resolved = ResolvedSpace(path=path, space=space, base=base, base_path=base_path)

    errors = _static_errors(space)
    if errors:
        raise SpaceError(f"{path}: invalid search space\n" + "\n".join(f"  {e}" for e in errors))

    seen: set[str] = set()
    reported: list[str] = []
    for point in resolved.grid_points():
        for variant in _variants(space.search):
            sections = {"grid": point, "search": dict(variant)}
            cfg, problems = _build(resolved, resolved.overrides(point, variant), sections)
            if cfg is not None:
                problems = _scheduler_errors(space, cfg)
            for problem in problems:
                if problem not in seen:
                    seen.add(problem)
                    where = resolved.point_label(point)
                    reported.append(f"{problem}" + (f"   [grid point {where}]" if space.grid else ""))
    if reported:
        more = len(reported) - _MAX_REPORTED
        lines = [f"  {r}" for r in reported[:_MAX_REPORTED]] + ([f"  ... and {more} more"] if more > 0 else [])
        raise SpaceError(f"{path}: a trial config would be invalid\n" + "\n".join(lines))
    return resolved


def _variants(search: Mapping[str, Distribution]) -> list[dict[str, Any]]:
    """Searched values to check: all at their low ends, all at their high ends, and
    each choice value on its own (cross-field rules see realistic combinations)."""
    if not search:
        return [{}]
    low = {k: d.ends()[0][1] for k, d in search.items()}
    high = {k: d.ends()[-1][1] for k, d in search.items()}
    variants = [low, high]
    for key, d in search.items():
        if d.type == "choice":
            variants += [{**low, key: value} for _, value in d.ends()[1:-1]]
    return variants
