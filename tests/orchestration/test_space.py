"""Search-space files: expansion, validation errors naming file and field, the CLI."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import optuna
import pytest
import typer
import yaml
from typer.testing import CliRunner

from rrn import space_commands
from orchestration.space import load_space
from orchestration.sweep.searcher import build_sampler, make_searcher
from orchestration.space_schema import SpaceError
from rrn_core.config import RunConfig
from rrn_core.methods.rrn import RRNConfig

from method_lists import all_methods

REPO = Path(__file__).resolve().parents[2]

BASE = {
    "name": "tiny",
    "data": {"root": "rrn-home/data/synth", "num_classes": 5, "label_ratio": 0.25, "crop_size": 32,
             "batch_size": 2},
    "model": {"backbone": "resnet18", "base_width": 8},
    "optim": {"iters": 100},
    "eval": {"every": 10},
}

SPACE: dict[str, Any] = {
    "name": "demo",
    "base_config": "../configs/tiny.yaml",
    "fixed": {"optim.iters": 300},
    "grid": {
        "data.label_ratio": [0.125, 0.5],
        "method.name": ["rrn"],            # it searches RRN's own fields
        "runtime.seed": [0, 1, 2],
    },
    "search": {
        "method.w_select": {"type": "loguniform", "low": 0.1, "high": 3.0},
        "method.tau_region": {"type": "uniform", "low": 0.4, "high": 0.8},
        "optim.lr": {"type": "loguniform", "low": 1.0e-3, "high": 1.0e-2},
        "model.aspp_channels": {"type": "int", "low": 8, "high": 32, "step": 8},
        "model.backbone": {"type": "choice", "values": ["resnet18", "resnet34"]},
    },
    "num_samples": 2,
    "metric": "val/mIoU",
    "mode": "max",
    "search_alg": {"sampler": "tpe", "seed": 0},
    "scheduler": {"type": "asha", "grace_period": 2, "max_t": 10, "reduction_factor": 2},
    "max_concurrent_trials": 2,
    "scaling": {"num_workers": 1, "use_gpu": False, "resources_per_worker": {"CPU": 1}},
    "tracking": {"uri": None, "experiment": "rrn"},
    "storage": {"path": None, "endpoint_url": None},
    "failure": {"max_failures": 2},
}


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A folder with configs/tiny.yaml and an empty search_spaces/."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "search_spaces").mkdir()
    return tmp_path


def write_space(project: Path, tree: dict[str, Any] | str, name: str = "demo.yaml") -> Path:
    path = project / "search_spaces" / name
    path.write_text(tree if isinstance(tree, str) else yaml.safe_dump(tree, sort_keys=False))
    return path


def edited(**changes: Any) -> dict[str, Any]:
    """SPACE with dotted top-level edits: edited(**{"search.method.x": {...}}); None deletes."""
    tree = copy.deepcopy(SPACE)
    for key, value in changes.items():
        section, _, sub = key.partition(":")
        target = tree if not sub else tree.setdefault(section, {})
        name = sub or section
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return tree


def test_valid_space_expands_grid_in_order(project: Path) -> None:
    resolved = load_space(write_space(project, SPACE))
    points = resolved.grid_points()
    assert points == [
        {"data.label_ratio": 0.125, "method.name": "rrn", "runtime.seed": 0},
        {"data.label_ratio": 0.125, "method.name": "rrn", "runtime.seed": 1},
        {"data.label_ratio": 0.125, "method.name": "rrn", "runtime.seed": 2},
        {"data.label_ratio": 0.5, "method.name": "rrn", "runtime.seed": 0},
        {"data.label_ratio": 0.5, "method.name": "rrn", "runtime.seed": 1},
        {"data.label_ratio": 0.5, "method.name": "rrn", "runtime.seed": 2},
    ]
    assert resolved.trial_count == 12
    assert resolved.base["name"] == "tiny"


def test_exclude_leaves_out_matching_grid_points(project: Path) -> None:
    space = edited(exclude=[{"data.label_ratio": 0.5, "runtime.seed": 1},
                            {"data.label_ratio": 0.5, "runtime.seed": 2}])
    resolved = load_space(write_space(project, space))
    assert [(p["data.label_ratio"], p["runtime.seed"]) for p in resolved.grid_points()] == [
        (0.125, 0), (0.125, 1), (0.125, 2), (0.5, 0)]
    assert resolved.trial_count == 8


def test_trial_config_layers_base_fixed_grid_sampled(project: Path) -> None:
    resolved = load_space(write_space(project, SPACE))
    cfg = resolved.trial_config(resolved.grid_points()[5], {"method.w_select": 0.7, "model.aspp_channels": 16})
    assert isinstance(cfg, RunConfig)
    assert cfg.optim.iters == 300                      # fixed beats base (100)
    assert cfg.data.label_ratio == 0.5 and cfg.method.name == "rrn"   # grid point
    assert cfg.method.w_select == 0.7 and cfg.model.aspp_channels == 16   # sampled
    assert cfg.data.num_classes == 5                   # base kept
    assert cfg.method.tau_region == RRNConfig().tau_region   # not searched in this trial: default
    with pytest.raises(SpaceError, match="not a searched parameter"):
        resolved.trial_config(resolved.grid_points()[0], {"optim.momentum": 0.5})
    with pytest.raises(SpaceError, match=r"method\.tau_region"):
        resolved.trial_config(resolved.grid_points()[0], {"method.tau_region": 3.0})


def test_inline_base_and_empty_grid(project: Path) -> None:
    tree = edited(base_config=None, base=BASE, grid=None, search=None, scheduler=None, num_samples=3)
    resolved = load_space(write_space(project, tree))
    assert resolved.grid_points() == [{}]
    assert resolved.trial_count == 3
    assert resolved.trial_config({}, {}).optim.iters == 300


def test_optuna_distributions_match_the_file(project: Path) -> None:
    resolved = load_space(write_space(project, SPACE))
    dists = make_searcher(resolved.space, resolved.grid_points()).distributions
    assert dists["method.w_select"] == optuna.distributions.FloatDistribution(0.1, 3.0, log=True)
    assert dists["method.tau_region"] == optuna.distributions.FloatDistribution(0.4, 0.8)
    assert dists["model.aspp_channels"] == optuna.distributions.IntDistribution(8, 32, step=8)
    assert dists["model.backbone"] == optuna.distributions.CategoricalDistribution(["resnet18", "resnet34"])


def test_build_sampler_by_name_with_options(project: Path) -> None:
    tree = edited(search_alg={"sampler": "tpe", "seed": 3, "options": {"n_startup_trials": 4}})
    sampler = build_sampler(load_space(write_space(project, tree)).space.search_alg)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == 4
    random = build_sampler(load_space(write_space(project, edited(search_alg={"sampler": "random"}))).space.search_alg)
    assert isinstance(random, optuna.samplers.RandomSampler)


def test_describe_shows_everything_resolved(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRN_HOME", str(project / "home"))
    monkeypatch.delenv("RRN_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RRN_STORAGE_PATH", raising=False)
    text = load_space(write_space(project, SPACE)).describe()
    for expected in ("trials     12 = 6 grid point(s) x 2 sample(s)", "method.w_select: loguniform [0.1, 3.0]",
                     "optim.iters = 300", "6. data.label_ratio=0.5  method.name='rrn'",
                     f"sqlite:///{project / 'home' / 'mlflow.db'}", str(project / "home" / "results"),
                     "asha grace_period=2"):
        assert expected in text, expected


def test_env_overrides_beat_the_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = edited(tracking={"uri": "http://file-tracking:5000", "experiment": "x"},
                  storage={"path": "s3://bucket/from-file", "endpoint_url": "http://file-s3:9000"})
    resolved = load_space(write_space(project, tree))
    for name in ("RRN_TRACKING_URI", "RRN_STORAGE_PATH", "RRN_STORAGE_ENDPOINT_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ambient:5000")   # ambient env loses to the file
    assert resolved.tracking_uri == "http://file-tracking:5000"
    assert (resolved.storage_path, resolved.storage_endpoint_url) == ("s3://bucket/from-file", "http://file-s3:9000")
    monkeypatch.setenv("RRN_TRACKING_URI", "http://flag:5000")
    monkeypatch.setenv("RRN_STORAGE_PATH", "s3://other/prefix")
    monkeypatch.setenv("RRN_STORAGE_ENDPOINT_URL", "http://minio.svc:9000")
    assert resolved.tracking_uri == "http://flag:5000"
    assert (resolved.storage_path, resolved.storage_endpoint_url) == ("s3://other/prefix", "http://minio.svc:9000")


# Each broken space, and what its error must name (besides the file).
BROKEN = {
    "unknown top-level key": (edited(sampler="tpe"), ["sampler", "Extra inputs are not permitted"]),
    "unknown distribution key": (edited(**{"search:method.w_select": {"type": "uniform", "low": 0.1, "hi": 1}}),
                                 ["search.method.w_select.hi"]),
    "unknown field in fixed": (edited(**{"fixed:optim.iterz": 5}), ["fixed.optim.iterz", "optim.iters?"]),
    "unknown field in grid": (edited(**{"grid:method.w_selct": [1, 2]}), ["grid.method.w_selct", "method.w_select?"]),
    "unknown section in search": (edited(**{"search:modle.x": {"type": "int", "low": 1, "high": 4}}),
                                  ["search.modle.x", "RunConfig has no field 'modle'"]),
    "value used as a section": (edited(**{"fixed:optim.lr.value": 1}), ["fixed.optim.lr.value", "not a section"]),
    "out of range in fixed": (edited(**{"fixed:method.tau_region": 1.5, "search:method.tau_region": None}),
                              ["fixed.method.tau_region=1.5", "must be a number in [0, 1], got 1.5"]),
    "out of range in grid": (edited(**{"grid:method.name": ["rrn", "mean-teacher"]}),
                             ["grid.method.name='mean-teacher'"]),
    "search end out of range": (edited(**{"search:method.tau_region": {"type": "uniform", "low": 0.5, "high": 1.2}}),
                                ["search.method.tau_region=1.2"]),
    "searched grid-only axis": (edited(**{"search:data.label_ratio": {"type": "uniform", "low": 0.1, "high": 0.5}}),
                                ["search.data.label_ratio", "grid-only"]),
    "searched seed": (edited(**{"search:runtime.seed": {"type": "int", "low": 0, "high": 3}}),
                      ["search.runtime.seed", "grid-only"]),
    "low >= high": (edited(**{"search:optim.lr": {"type": "uniform", "low": 0.1, "high": 0.1}}),
                    ["search.optim.lr", "must be below high"]),
    "loguniform low <= 0": (edited(**{"search:optim.lr": {"type": "loguniform", "low": 0.0, "high": 0.1}}),
                            ["search.optim.lr", "low > 0"]),
    "int with fractional bound": (edited(**{"search:model.aspp_channels": {"type": "int", "low": 8.5, "high": 9}}),
                                  ["search.model.aspp_channels", "integer"]),
    "choice of mappings": (edited(**{"search:model.backbone": {"type": "choice", "values": [{"a": 1}]}}),
                           ["search.model.backbone", "scalars"]),
    "key in fixed and search": (edited(**{"fixed:optim.lr": 0.01}), ["fixed.optim.lr", "search.optim.lr"]),
    "empty grid axis": (edited(**{"grid:runtime.seed": []}), ["grid.runtime.seed", "at least one"]),
    "bad name": (edited(name="Demo Sweep"), ["name", "pattern"]),
    "no base": (edited(base_config=None), ["base_config", "exactly one"]),
    "both label ratio and count": (edited(**{"fixed:data.label_count": 50}),
                                   ["data", "label_ratio or label_count", "fixed.data.label_count=50"]),
    "grace period past all evaluations": (edited(scheduler={"type": "asha", "grace_period": 30, "max_t": 40}),
                                          ["scheduler.grace_period", "only 30"]),
    "asha fields with type none": (edited(scheduler={"type": "none", "grace_period": 3}),
                                   ["scheduler", "only apply to type: asha"]),
    "unknown sampler": (edited(search_alg={"sampler": "hyperband"}), ["search_alg.sampler"]),
    "unknown sampler option": (edited(search_alg={"sampler": "tpe", "options": {"n_start": 3}}),
                               ["search_alg.options.n_start"]),
    "endpoint without s3": (edited(storage={"path": "/tmp/x", "endpoint_url": "http://x"}),
                            ["storage", "s3://"]),
    "two GPUs per DDP rank": (edited(scaling={"num_workers": 1, "use_gpu": True, "resources_per_worker": {"GPU": 2}}),
                              ["scaling", "one GPU"]),
    "half a GPU per DDP rank": (edited(scaling={"num_workers": 2, "use_gpu": True,
                                                "resources_per_worker": {"GPU": 0.5}}),
                                ["scaling", "one whole GPU per rank"]),
    "exclude on a non-grid key": (edited(exclude=[{"optim.lr": 0.1}]), ["exclude", "optim.lr is not a grid axis"]),
    "exclude of a value not in the grid": (edited(exclude=[{"method.name": "fixmatch"}]),
                                           ["exclude", "method.name='fixmatch'"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_kind_of_error_names_file_and_field(project: Path, case: str) -> None:
    tree, expected = BROKEN[case]
    path = write_space(project, tree)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message, f"{case}: {fragment!r} not in:\n{message}"


def test_missing_base_config_names_the_path(project: Path) -> None:
    path = write_space(project, edited(base_config="../configs/nope.yaml"))
    with pytest.raises(SpaceError, match=r"base_config: .*configs/nope\.yaml not found"):
        load_space(path)


def test_bad_yaml_and_missing_file(project: Path) -> None:
    path = write_space(project, "name: demo\ngrid: [unclosed\n")
    with pytest.raises(SpaceError, match=r"(?s)demo\.yaml: not valid YAML.*line"):
        load_space(path)
    with pytest.raises(SpaceError, match="top level must be a mapping"):
        load_space(write_space(project, "- a\n- b\n"))
    with pytest.raises(SpaceError, match="not found"):
        load_space(project / "search_spaces" / "absent.yaml")


def test_invalid_base_config_is_attributed_to_it(project: Path) -> None:
    (project / "configs" / "tiny.yaml").write_text(yaml.safe_dump({**BASE, "optim": {"iters": 0}}))
    with pytest.raises(SpaceError, match=r"optim\.iters: .*must be a number >= 1, got 0 \(from the base config .*tiny\.yaml"):
        load_space(write_space(project, edited(fixed={})))


def shipped_spaces() -> list[Path]:
    return sorted((REPO / "search_spaces").glob("*.yaml"))


def test_the_example_spaces_are_shipped() -> None:
    names = {p.name for p in shipped_spaces()}
    assert {"voc_label_ratio.yaml", "voc_loss_weights.yaml", "cityscapes_label_ratio.yaml"} <= names


@pytest.mark.parametrize("path", shipped_spaces(), ids=lambda p: p.name)
def test_every_shipped_space_validates(path: Path) -> None:
    resolved = load_space(path)
    assert resolved.trial_count == len(resolved.grid_points()) * resolved.space.num_samples >= 1
    for point in resolved.grid_points():
        resolved.trial_config(point, {})


def test_label_ratio_examples_cross_the_classic_splits() -> None:
    voc = load_space(REPO / "search_spaces" / "voc_label_ratio.yaml")
    assert voc.space.grid["data.label_count"] == [92, 183, 366, 732, 1464]
    assert voc.space.grid["method.name"] == all_methods()     # `method.name: all`
    assert voc.space.scaling.use_gpu
    city = load_space(REPO / "search_spaces" / "cityscapes_label_ratio.yaml")
    assert city.space.grid["data.label_ratio"] == [0.0625, 0.125, 0.25, 0.5]
    weights = load_space(REPO / "search_spaces" / "voc_loss_weights.yaml")
    assert {"method.w_select", "method.w_drl", "method.w_fm", "method.tau_region", "optim.lr"} <= set(weights.space.search)
    assert weights.space.scheduler.type == "asha" and weights.space.search_alg.sampler == "tpe"


# ------------------------------------------------------------------ CLI

def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(space_commands.app, name="space")
    return app


def test_cli_validate_prints_resolved_space(project: Path) -> None:
    path = write_space(project, SPACE)
    result = CliRunner().invoke(_app(), ["space", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "12 trial(s)" in result.stdout and "method.tau_region: uniform [0.4, 0.8]" in result.stdout


def test_cli_validate_error_exits_2_with_message(project: Path) -> None:
    path = write_space(project, edited(**{"fixed:method.tau_region": 1.5, "search:method.tau_region": None}))
    result = CliRunner().invoke(_app(), ["space", "validate", str(path)])
    assert result.exit_code == 2
    assert "fixed.method.tau_region=1.5" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.output


def test_cli_list_counts_trials_and_flags_broken(project: Path) -> None:
    write_space(project, SPACE, "a.yaml")
    write_space(project, edited(name="b", **{"grid:runtime.seed": [0, 1, 2, 3, 4, 5]}), "b.yaml")
    ok = CliRunner().invoke(_app(), ["space", "list", str(project / "search_spaces")])
    assert ok.exit_code == 0, ok.output
    assert " 12 " in ok.stdout and " 24 " in ok.stdout
    write_space(project, edited(name="c", sampler="x"), "c.yaml")
    broken = CliRunner().invoke(_app(), ["space", "list", str(project / "search_spaces")])
    assert broken.exit_code == 2 and "sampler" in broken.stdout
