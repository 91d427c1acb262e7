"""Each kind of backbone trains cps and rrn on the synthetic set on the CPU, evaluates,
checkpoints and resumes exactly: a ResNet-D and a ConvNeXt under DeepLabV3+, DINOv2
ViT-S/14 under DPT (crops of 28 = 2 patches; the 40 px validation images are padded)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rrn_core.config import RunConfig, build_config
from rrn_core.config_sections import ConfigError
from rrn_core.loop import train
from test_loop import Recorder

BACKBONES = ["resnet50d", "convnext_tiny", "vit_small_patch14_dinov2"]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from rrn_core.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic(root, num_classes=3, num_train=16, num_val=2, size=40, seed=0)
    return root


def run_config(root: Path, out: Path, backbone: str, method: str) -> RunConfig:
    return build_config({
        "data": {"root": str(root), "num_classes": 3, "label_ratio": 0.25, "crop_size": 28,
                 "batch_size": 2, "unlabeled_batch_size": 2},
        "model": {"backbone": backbone, "aspp_channels": 8, "low_level_channels": 8, "head_channels": 8,
                  "dpt_features": 8},
        "method": {"name": "rrn", "warmup_epochs": 0.1,
                   "discriminator": {"regions_per_side": 2, "base_channels": 4}},
        "optim": {"iters": 4, "lr": 0.001},
        "eval": {"every": 2, "overlays": 0},
        "runtime": {"output_dir": str(out), "log_every": 1, "progress": False},
    }, {"method.name": method})


@pytest.mark.parametrize("method", ["cps", "rrn"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_backbone_trains_evaluates_and_resumes_exactly(backbone, method, synth_root, tmp_path):
    straight = Recorder()
    result = train(run_config(synth_root, tmp_path / "a", backbone, method), straight)
    assert result.steps == 4 and [s for s, _, _ in straight.evals] == [2, 4]
    assert all(math.isfinite(s["train/loss"]) for s in straight.logs.values())
    assert 0.0 <= result.final.miou <= 1.0

    interrupted = Recorder(stop_after_evals=1)
    assert train(run_config(synth_root, tmp_path / "b", backbone, method), interrupted).steps == 2
    assert (tmp_path / "b" / "checkpoints" / "last.pt").is_file()
    resumed = Recorder()
    assert train(run_config(synth_root, tmp_path / "b", backbone, method), resumed).steps == 4
    assert sorted(resumed.logs) == [3, 4]   # continued, not restarted
    for step in (3, 4):
        for key in ("train/loss", "train/loss_sup"):
            assert resumed.logs[step][key] == pytest.approx(straight.logs[step][key], rel=1e-5, abs=1e-6), \
                (step, key)
    assert resumed.evals[-1][1] == pytest.approx(straight.evals[-1][1], abs=1e-6)


def test_vit_crop_must_be_a_multiple_of_the_patch(synth_root):
    with pytest.raises(ConfigError) as err:
        build_config({"data": {"root": str(synth_root), "crop_size": 32},
                      "model": {"backbone": "vit_small_patch14_dinov2"}})
    assert "data.crop_size: 32 is not a multiple of 14" in str(err.value)
    assert "use 28 or 42" in str(err.value)
