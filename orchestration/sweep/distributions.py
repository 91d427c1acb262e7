"""A space's searched parameters and sampler as Optuna objects (distributions, sampler)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from orchestration.space_schema import Distribution, SearchAlgConfig, SAMPLERS


def to_optuna_distributions(search: Mapping[str, Distribution]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions for OptunaSearch(space=...), keyed by the dotted field names."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for key, d in search.items():
        if d.type == "choice":
            out[key] = CategoricalDistribution(list(d.values or []))
        elif d.type == "int":
            out[key] = IntDistribution(int(d.low), int(d.high), log=d.log, step=int(d.step or 1))
        elif d.type == "loguniform":
            out[key] = FloatDistribution(float(d.low), float(d.high), log=True)
        else:
            out[key] = FloatDistribution(float(d.low), float(d.high),
                                         step=None if d.step is None else float(d.step))
    return out
def build_sampler(search_alg: SearchAlgConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler the space names; `seed` overrides search_alg.seed."""
    cls = getattr(optuna.samplers, SAMPLERS[search_alg.sampler])
    kwargs = dict(search_alg.options)
    chosen = search_alg.seed if seed is None else seed
    if chosen is not None and "seed" in inspect.signature(cls).parameters:
        kwargs["seed"] = chosen
    return cls(**kwargs)
