"""A grid crossed with Optuna: the space's search as one study per grid point, honest results, per-point ASHA.

Why not one OptunaSearch over everything: the label ratio, the seed and the method
define *which* experiment runs, they are not knobs to optimise. A single study
would let TPE "learn" that 1/2 of the labels beats 1/8 and starve the low-ratio
trials. So every grid point gets its own study (the grid values go into the trial
as constants) and trials are handed out round-robin over the points.

Why not OptunaSearch's own completion handling: when ASHA stops a trial early, Tune
calls `on_trial_complete` with the last (partial) result and OptunaSearch tells
Optuna that value as COMPLETE, which ranks an under-trained trial against fully
trained ones and biases TPE. Trials report `FULLY_TRAINED`; only a trial that
reached its last iteration is told COMPLETE, an early-stopped one is PRUNED (its
intermediate values stay in the study), a crashed one FAIL.

ASHA has the same cross-point problem (it would stop every supervised or 1/8-ratio
trial against RRN at 1/2), hence `PerPointScheduler`: one ASHA per grid point.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import pickle
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from orchestration import ray_compat
from orchestration.names import FULLY_TRAINED, GRID_KEY, PARAMS_KEY, POINT_KEY
from orchestration.space_schema import SAMPLERS, SearchAlgConfig, SweepSpace
from orchestration.sweep.state_signing import sign, verified

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ray.tune.experiment import Trial


class GridSearcher(Searcher):
    """Hands out `num_samples` trials per grid point, round-robin, each sampled by that
    point's own Optuna study; results are routed back to the study that asked.

    `samplers[i]` is the Optuna sampler of grid point i (fresh instances: samplers
    keep state). With no searched distributions the points are just repeated
    `num_samples` times (a pure grid), no study is created.
    """

    def __init__(self, grid_points: Sequence[Mapping[str, Any]],
                 distributions: Mapping[str, optuna.distributions.BaseDistribution],
                 num_samples: int, metric: str, mode: str,
                 samplers: Sequence[optuna.samplers.BaseSampler] | None = None,
                 fingerprint: str | None = None) -> None:
        super().__init__(metric=metric, mode=mode)
        #: Identity of the space this searcher serves; a resume checks it (see sweep.py).
        self.fingerprint = fingerprint
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        points = [dict(p) for p in grid_points] or [{}]
        if distributions and (samplers is None or len(samplers) != len(points)):
            raise ValueError("give one Optuna sampler per grid point")
        self._points = points
        self.distributions = dict(distributions)
        self._num_samples = num_samples
        self._issued = [0] * len(points)
        self._trial_point: dict[str, int] = {}
        self._done: set[str] = set()
        self._reported: dict[str, set[int]] = {}
        self._studies: list[OptunaSearch | None] = [
            OptunaSearch(space=dict(distributions), metric=metric, mode=mode, sampler=samplers[i],
                         study_name=f"point-{i}")
            if distributions else None
            for i in range(len(points))
        ]

    @property
    def total_trials(self) -> int:
        return len(self._points) * self._num_samples

    def _next_point(self) -> int | None:
        """The least-served point (lowest index on ties): round-robin over the grid."""
        open_points = [i for i, n in enumerate(self._issued) if n < self._num_samples]
        if not open_points:
            return None
        return min(open_points, key=lambda i: (self._issued[i], i))

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if trial_id in self._trial_point:  # Tune may ask again for a known trial
            index = self._trial_point[trial_id]
        else:
            index = self._next_point()
            if index is None:
                return Searcher.FINISHED
            self._trial_point[trial_id] = index
            self._issued[index] += 1
        study = self._studies[index]
        # OptunaSearch nests keys only on "/", which no dotted field name has (field_problem).
        params = study.suggest(trial_id) if study is not None else {}
        return {POINT_KEY: index, GRID_KEY: dict(self._points[index]), PARAMS_KEY: params}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Record an intermediate value (what a pruned trial is ranked by)."""
        if trial_id not in self._done:
            self._record(trial_id, result)

    def _record(self, trial_id: str, result: Mapping[str, Any]) -> None:
        study = self._study_of(trial_id)
        if study is None or not _finite(result.get(self.metric)):
            return
        step = result.get("training_iteration")
        if step is None or step in self._reported.setdefault(trial_id, set()):
            return
        self._reported[trial_id].add(step)
        study.on_trial_result(trial_id, dict(result))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        if trial_id in self._done or trial_id not in self._trial_point:
            return
        self._done.add(trial_id)
        study = self._study_of(trial_id)
        if study is None:
            return
        if error:
            study.on_trial_complete(trial_id, None, error=True)        # FAIL
        elif result and is_fully_trained(result) and _finite(result.get(self.metric)):
            study.on_trial_complete(trial_id, result)                  # COMPLETE, final value
        else:
            # Tune skips on_trial_result for the result that made ASHA stop the
            # trial: record it so the pruned trial is ranked by where it stopped.
            if result:
                self._record(trial_id, result)
            study.on_trial_complete(trial_id, None, error=False)       # PRUNED

    def _study_of(self, trial_id: str) -> OptunaSearch | None:
        index = self._trial_point.get(trial_id)
        return None if index is None else self._studies[index]

    def studies(self) -> list[optuna.Study | None]:
        """Each grid point's Optuna study (None for a pure grid): for reports and tests."""
        return [ray_compat.optuna_study(s) if s is not None else None for s in self._studies]

    def point_of(self, trial_id: str) -> int | None:
        return self._trial_point.get(trial_id)

    def save(self, checkpoint_path: str) -> None:
        """Pickled (the studies' samplers keep random state) and signed: state_signing.py."""
        with open(checkpoint_path, "wb") as f:
            f.write(sign(pickle.dumps(self.__dict__.copy())))

    def restore(self, checkpoint_path: str) -> None:
        """Unpickled only after its signature checks out (UntrustedState otherwise)."""
        with open(checkpoint_path, "rb") as f:
            payload = verified(f.read(), checkpoint_path)
        self.__dict__.update(pickle.loads(payload))  # noqa: S301 - signed by this installation


def make_searcher(space: SweepSpace, points: Sequence[Mapping[str, Any]],
                  fingerprint: str | None = None) -> GridSearcher:
    """The space's searched parameters as Optuna distributions, and one seeded Optuna
    study per grid point, each with its own seed.

    With one seed for all points every study proposed the same values (the demo's six
    points all tried lr 0.01062 and 0.01557): the "search" was a fixed list repeated.
    Each point's seed is derived from the sweep's `search_alg.seed` and the point's
    own values (`point_seed`), so points explore different values and a rerun of the
    same space proposes exactly the same ones.
    """
    distributions: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, d in space.search.items():
        if d.type == "choice":
            distributions[key] = CategoricalDistribution(list(d.values or []))
        elif d.type == "int":
            distributions[key] = IntDistribution(int(d.low), int(d.high), log=d.log, step=int(d.step or 1))
        elif d.type == "loguniform":
            distributions[key] = FloatDistribution(float(d.low), float(d.high), log=True)
        else:
            distributions[key] = FloatDistribution(float(d.low), float(d.high),
                                                   step=None if d.step is None else float(d.step))
    samplers = ([build_sampler(space.search_alg, seed=point_seed(space.search_alg.seed, point))
                 for point in points] if distributions else None)
    return GridSearcher(points, distributions, space.num_samples, space.metric, space.mode,
                        samplers=samplers, fingerprint=fingerprint)


def build_sampler(search_alg: SearchAlgConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler the space names; `seed` overrides search_alg.seed."""
    cls = getattr(optuna.samplers, SAMPLERS[search_alg.sampler])
    kwargs = dict(search_alg.options)
    chosen = search_alg.seed if seed is None else seed
    if chosen is not None and "seed" in inspect.signature(cls).parameters:
        kwargs["seed"] = chosen
    return cls(**kwargs)


def point_seed(base_seed: int | None, point: Mapping[str, Any]) -> int | None:
    """The sampler seed of one grid point: a hash of the sweep seed and the point's values.

    Derived from the values, not the point's index, so adding a grid value leaves the
    other points' proposals unchanged. None (unseeded) stays None.
    """
    if base_seed is None:
        return None
    text = json.dumps({"seed": base_seed, "point": dict(point)}, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def is_fully_trained(result: Mapping[str, Any]) -> bool:
    return bool(result.get(FULLY_TRAINED, 0.0))


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class PerPointScheduler(FIFOScheduler):
    """One ASHA per grid point: trials compete only with trials of their own point.

    Inner schedulers are created lazily from plain keyword arguments (picklable, so
    a resumed sweep restores them with the experiment state).
    """

    def __init__(self, asha_kwargs: Mapping[str, Any], point_key: str = POINT_KEY) -> None:
        super().__init__()
        self._asha_kwargs = dict(asha_kwargs)
        self._point_key = point_key
        self._inner: dict[int, ASHAScheduler] = {}
        self._mode: str | None = None

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def _for(self, trial: Trial) -> ASHAScheduler:
        index = int(trial.config.get(self._point_key, 0))
        inner = self._inner.get(index)
        if inner is None:
            inner = ASHAScheduler(metric=self._metric, mode=self._mode, **self._asha_kwargs)
            self._inner[index] = inner
        return inner

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._for(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._for(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        return self._for(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        inner = self._for(trial)
        if ray_compat.asha_tracks(inner, trial.trial_id):
            inner.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        inner = self._for(trial)
        if ray_compat.asha_tracks(inner, trial.trial_id):
            inner.on_trial_remove(tune_controller, trial)

    def stopped_count(self) -> int:
        return sum(ray_compat.asha_stopped(s) for s in self._inner.values())

    def debug_string(self) -> str:
        return (f"ASHA per grid point ({len(self._inner)} active): "
                f"{self.stopped_count()} trial(s) stopped early")


def build_scheduler(kind: str, *, grace_period: int, max_t: int,
                    reduction_factor: float) -> TrialScheduler | None:
    """None (run every trial to the end) or ASHA per grid point, counted in evaluations."""
    if kind == "none":
        return None
    if kind != "asha":
        raise ValueError(f"unknown scheduler type {kind!r}")
    return PerPointScheduler({"time_attr": "training_iteration", "grace_period": grace_period,
                              "max_t": max_t, "reduction_factor": reduction_factor})
