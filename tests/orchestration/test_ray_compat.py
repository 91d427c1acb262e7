"""Every Ray/Optuna internal the sweep relies on still exists and means the same.

orchestration/ray_compat.py is the only module that reaches into them; each test
here names the internal it checks, so an upgrade that moves one fails by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pyarrow.fs
import pytest
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from orchestration import ray_compat
from orchestration.ray_auth import embedded_token_auth
from orchestration.names import FULLY_TRAINED, GRID_KEY, PARAMS_KEY, POINT_KEY
from orchestration.sweep.searcher import GridSearcher


def test_worker_group_timeout_env_is_one_train_propagates() -> None:
    from ray.tune.execution import class_cache

    name = ray_compat.worker_group_start_timeout_env()
    assert isinstance(name, str) and name
    assert name in class_cache.ENV_VARS_TO_PROPAGATE   # Tune hands it on to the Train run


def test_legacy_output_switch_is_read_by_tune(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.tune.experimental.output import get_air_verbosity

    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    assert get_air_verbosity(0) is not None
    ray_compat.use_legacy_console_output()
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0" and get_air_verbosity(0) is None


def test_optuna_search_keeps_its_study() -> None:
    search = OptunaSearch(space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
                          metric="m", mode="max", sampler=optuna.samplers.RandomSampler(seed=0))
    assert isinstance(ray_compat.optuna_study(search), optuna.Study)


def test_asha_keeps_its_trials_and_stop_count() -> None:
    asha = ASHAScheduler(metric="m", mode="max", time_attr="training_iteration", max_t=4)
    assert ray_compat.asha_tracks(asha, "nope") is False
    assert ray_compat.asha_stopped(asha) == 0


def test_secret_aws_variables_leave_and_return_to_tunes_propagation_set() -> None:
    from ray.tune.execution import class_cache

    from orchestration.storage.filesystems import is_secret_key

    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= class_cache.ENV_VARS_TO_PROPAGATE
    before = set(class_cache.ENV_VARS_TO_PROPAGATE)
    with ray_compat.secrets_kept_out_of_trial_envs(is_secret_key):
        assert not {n for n in class_cache.ENV_VARS_TO_PROPAGATE if n.startswith("AWS_")}
    assert class_cache.ENV_VARS_TO_PROPAGATE == before


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tune.ResultGrid]:
    """Two real Tune trials from our GridSearcher, on an embedded Ray."""
    started = not ray.is_initialized()
    if started:
        embedded_token_auth()
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                 _temp_dir=os.environ.get("RAY_TMPDIR") or None)
    storage = tmp_path_factory.mktemp("ray-compat")

    def trainable(config: dict) -> None:   # nested: shipped by value to the workers
        tune.report({"m": 0.5 + config[POINT_KEY], FULLY_TRAINED: 1.0})

    searcher = GridSearcher([{"a": 1}, {"a": 2}], {}, 1, "m", "max")
    tuner = tune.Tuner(
        trainable, param_space={},
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=2, metric="m", mode="max"),
        run_config=tune.RunConfig(name="compat", storage_path=str(storage), verbose=0))
    results = tuner.fit()
    yield storage / "compat", results
    if started:
        ray.shutdown()


def test_result_grid_trials_carry_status_config_and_frames(tiny_experiment) -> None:
    _, results = tiny_experiment
    trials, frames = ray_compat.result_trials(results)
    assert sorted(t.config[GRID_KEY]["a"] for t in trials) == [1, 2]
    assert {str(t.status) for t in trials} == {"TERMINATED"}
    assert all(t.config[PARAMS_KEY] == {} and hasattr(t, "num_failures") for t in trials)
    assert all("m" in frames[t.trial_id] for t in trials)


def test_saved_experiment_and_searcher_state_are_readable(tiny_experiment) -> None:
    folder, _ = tiny_experiment
    fs = pyarrow.fs.LocalFileSystem()
    states = ray_compat.trial_states(fs, str(folder))
    assert states is not None and len(states) == 2
    assert all(trial["status"] == "TERMINATED" and meta["last_result"] for trial, meta in states)
    pickled = ray_compat.newest_searcher_state(fs, str(folder))
    assert pickled, "no searcher-state-* file in the experiment folder"
    restored = GridSearcher([{}], {}, 1, "m", "max")
    path = folder.parent / "searcher.pkl"
    path.write_bytes(pickled)
    restored.restore(str(path))
    assert restored.total_trials == 2
