"""Method-scoped configs: each method accepts only its own fields, declares what it
needs, and a switch of `method.name` keeps only what the new method shares."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rrn_core.config import RunConfig, build_config
from rrn_core.methods.build import build_method
from rrn_core.methods.cps import CPSConfig
from rrn_core.methods.rrn import RRNConfig
from rrn_core.methods.table import METHODS, method_class
from rrn_core.config_sections import ConfigError

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = {"backbone": "resnet18d", "base_width": 4, "aspp_channels": 8,
              "low_level_channels": 4, "head_channels": 8}


def test_table_names_match_each_config_model() -> None:
    for name, cls in METHODS.items():
        assert cls.config_model.model_fields["name"].default == name
        assert cls.config_model().name == name


@pytest.mark.parametrize("name", sorted(METHODS))
def test_built_method_has_the_branches_and_critics_its_class_declares(name: str) -> None:
    cfg = build_config({"data": {"root": "unused", "num_classes": 3, "crop_size": 32},
                        "model": TINY_MODEL, "method": {"name": name}})
    method = build_method(cfg, 3)
    cls = method_class(name)
    assert isinstance(method, cls) and type(cfg.method) is cls.config_model
    assert len(method.branches) == cls.num_branches
    assert len(method.discriminators) == cls.num_critics
    assert (method.critic_optimizer() is None) == (cls.num_critics == 0)


def test_a_field_the_method_lacks_is_an_error_naming_field_and_method() -> None:
    with pytest.raises(ConfigError) as err:
        build_config({"data": {"root": "x"}, "method": {"name": "fixmatch", "w_select": 2.0}},
                     source="my.yaml")
    text = str(err.value)
    assert "my.yaml" in text and "method.w_select" in text and "'fixmatch' has no field" in text
    assert "conf_thresh" in text   # what it has instead
    with pytest.raises(ConfigError, match=r"method\.name: must be one of supervised, cps"):
        build_config({"data": {"root": "x"}, "method": {"name": "mean-teacher"}})


def test_switching_method_keeps_shared_fields_and_refuses_foreign_overrides() -> None:
    base = {"data": {"root": "x"},
            "method": {"name": "rrn", "w_cps": 0.5, "unsup_rampup": 0.2, "w_select": 3.0,
                       "discriminator": {"lr": 1e-3}}}
    cps = build_config(base, {"method.name": "cps"}).method
    assert cps == CPSConfig(w_cps=0.5, unsup_rampup=0.2)          # rrn's own fields left out
    assert build_config(base, {"method.name": "supervised"}).method.model_dump() == {"name": "supervised"}
    rrn = build_config(base, {"method.name": "rrn"}).method      # same method: all kept
    assert isinstance(rrn, RRNConfig) and rrn.w_select == 3.0 and rrn.discriminator.lr == 1e-3
    with pytest.raises(ConfigError, match=r"method\.w_select: method 'cps' has no field"):
        build_config(base, {"method.name": "cps", "method.w_select": 1.0})


def test_warmup_is_declared_by_the_method() -> None:
    assert method_class("rrn").warmup_iters(RRNConfig(warmup_epochs=1.5), 40) == 60
    for name in ("supervised", "cps", "fixmatch"):
        assert method_class(name).warmup_iters(method_class(name).config_model(), 40) == 0


def test_params_of_a_run_hold_only_its_method_fields() -> None:
    from orchestration.tracking.params import run_params

    sup = run_params(RunConfig.model_validate({"data": {"root": "/d"}, "method": {"name": "supervised"}}))
    assert [k for k in sup if k.startswith("method.")] == ["method.name"]
    assert not any(k.startswith(("data.cutmix", "data.unlabeled")) for k in sup)
    rrn = run_params(RunConfig.model_validate({"data": {"root": "/d"}}))
    assert {"method.w_select", "method.discriminator.lr", "data.unlabeled_batch_size"} <= set(rrn)


def test_space_searching_a_field_the_method_lacks_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(
        {"data": {"root": str(tmp_path / "data"), "num_classes": 3}, "method": {"name": "fixmatch"}}))
    space = tmp_path / "fix.yaml"
    space.write_text(yaml.safe_dump({
        "name": "fix", "base_config": "base.yaml",
        "grid": {"method.name": ["fixmatch"]},
        "search": {"method.w_select": {"type": "loguniform", "low": 0.1, "high": 3.0}}}))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = subprocess.run([sys.executable, "-m", "rrn", "space", "validate", str(space)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert str(space) in result.stderr and "search.method.w_select" in result.stderr
    assert "method 'fixmatch' has no field 'w_select'" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_shipped_configs_and_spaces_are_method_scoped() -> None:
    """Every shipped space validates: no method is given a field it does not read."""
    from orchestration.space import load_space

    for path in sorted((REPO / "search_spaces").glob("*.yaml")):
        resolved = load_space(path)
        for point in resolved.grid_points():
            cfg = resolved.trial_config(point, {})
            assert type(cfg.method) is method_class(cfg.method.name).config_model


def test_rrn_release_preset_keeps_the_release_choices_and_rrn_ours() -> None:
    """`rrn_release` is RRN with the release's settings by default, also when a config
    gives other critic fields (a `discriminator:` section must not reset the objective)."""
    tree = {"data": {"root": "unused", "num_classes": 3},
            "method": {"name": "rrn_release", "discriminator": {"regions_per_side": 2}}}
    release = build_config(tree).method
    assert isinstance(release, RRNConfig)
    assert (release.select_per, release.pseudo_label_weight, release.discriminator.objective) == \
        ("kept", "added", "adversarial")
    assert release.discriminator.regions_per_side == 2
    ours = build_config({**tree, "method": {"name": "rrn", "discriminator": {"regions_per_side": 2}}}).method
    assert (ours.pseudo_label_weight, ours.discriminator.objective) == ("shared", "accuracy")
    # the shared fields are RRN's: every other default is the same
    same = set(RRNConfig.model_fields) - {"name", "select_per", "pseudo_label_weight", "discriminator"}
    assert {k: getattr(release, k) for k in same} == {k: getattr(ours, k) for k in same}
