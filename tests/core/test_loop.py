"""The training loop on CPU: every method runs, and resume is exact."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rrn_core.config import RunConfig, build_config
from rrn_core.loop import TrainHooks, train

from method_lists import all_methods


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from rrn_core.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic(root, num_classes=4, num_train=24, num_val=4, size=40, seed=0)
    return root


def run_config(root: Path, out: Path, method: str, iters: int = 6, **extra) -> RunConfig:
    tree = {
        "data": {"root": str(root), "num_classes": 4, "label_ratio": 0.25, "crop_size": 32,
                 "batch_size": 2, "unlabeled_batch_size": 2},
        "model": {"backbone": "resnet18d", "base_width": 8,
                  "aspp_channels": 16, "low_level_channels": 8, "head_channels": 16},
        "method": {"name": "rrn", "warmup_epochs": 0.1,   # RRN's section; other methods keep their share
                   "discriminator": {"regions_per_side": 2, "base_channels": 8}},
        "optim": {"iters": iters, "lr": 0.01},
        "eval": {"every": 3, "overlays": 1},
        "runtime": {"output_dir": str(out), "log_every": 1, "progress": False},
    }
    for key, value in extra.items():
        section, field = key.split("__")
        tree[section][field] = value
    return build_config(tree, {"method.name": method})


class Recorder(TrainHooks):
    def __init__(self, stop_after_evals: int | None = None) -> None:
        self.logs: dict[int, dict[str, float]] = {}
        self.evals: list[tuple[int, float, str | None]] = []
        self.stop_after = stop_after_evals

    def on_log(self, step, scalars):
        self.logs[step] = scalars

    def on_evaluation(self, step, result, checkpoint_dir):
        self.evals.append((step, result.miou, checkpoint_dir))

    def should_stop(self):
        return self.stop_after is not None and len(self.evals) >= self.stop_after


@pytest.mark.parametrize("method", all_methods())
def test_every_method_trains_and_evaluates(method, synth_root, tmp_path):
    hooks = Recorder()
    result = train(run_config(synth_root, tmp_path / "run", method), hooks)
    assert result.steps == 6
    assert sorted(hooks.logs) == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(s["train/loss"]) for s in hooks.logs.values())
    assert [step for step, _, _ in hooks.evals] == [3, 6]
    assert 0.0 <= result.final.miou <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert len(result.final.samples) == 1


@pytest.mark.parametrize("method", ["rrn", "fixmatch"])
def test_resume_gives_the_same_next_losses(method, synth_root, tmp_path):
    straight = Recorder()
    train(run_config(synth_root, tmp_path / "a", method), straight)

    interrupted = Recorder(stop_after_evals=1)
    first = train(run_config(synth_root, tmp_path / "b", method), interrupted)
    assert first.steps == 3
    resumed = Recorder()
    second = train(run_config(synth_root, tmp_path / "b", method), resumed)
    assert second.steps == 6
    assert sorted(resumed.logs) == [4, 5, 6]  # continued, not restarted
    for step in (4, 5, 6):
        for key in ("train/loss", "train/loss_sup"):
            assert resumed.logs[step][key] == pytest.approx(straight.logs[step][key], rel=1e-5, abs=1e-6), (step, key)
    assert resumed.evals[-1][1] == pytest.approx(straight.evals[-1][1], abs=1e-6)


def test_no_resume_starts_over(synth_root, tmp_path):
    train(run_config(synth_root, tmp_path / "c", "supervised", iters=3), Recorder())
    again = Recorder()
    cfg = run_config(synth_root, tmp_path / "c", "supervised", iters=3)
    cfg.runtime.resume = False
    train(cfg, again)
    assert sorted(again.logs) == [1, 2, 3]


def test_semi_supervised_method_without_unlabeled_data_is_a_clear_error(synth_root, tmp_path):
    cfg = run_config(synth_root, tmp_path / "d", "cps")
    cfg.data.label_ratio = None
    with pytest.raises(ValueError, match="needs unlabeled images"):
        train(cfg, Recorder())


def test_channels_last_gives_the_same_losses(synth_root, tmp_path):
    # The memory-format switch the CUDA path uses must not change the maths.
    plain, nhwc = Recorder(), Recorder()
    train(run_config(synth_root, tmp_path / "nchw", "rrn", iters=3), plain)
    train(run_config(synth_root, tmp_path / "nhwc", "rrn", iters=3, runtime__channels_last=True), nhwc)
    # Steps 1-2 agree to ~1e-6. By step 3 the two formats' rounding has been through two
    # updates and RRN's thresholded pseudo-labels, and one flipped pixel moves the loss by
    # ~1.5e-4 relative on some seeds and data (seed 1 at 9fdc1b7, seed 0 since): a
    # looser bound there, still far below what a wrong layout in any op would give.
    for step, rel in ((1, 1e-5), (2, 1e-5), (3, 2e-3)):
        for key in ("train/loss", "train/loss_sup", "train/loss_disc"):
            assert nhwc.logs[step][key] == pytest.approx(plain.logs[step][key], rel=rel, abs=1e-5), (step, key)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("method", ["rrn", "fixmatch"])
def test_cuda_mixed_precision_channels_last_trains_and_resumes(method, amp, synth_root, tmp_path):
    extra = {"runtime__device": "cuda", "runtime__amp": amp, "runtime__channels_last": True}
    straight = Recorder()
    result = train(run_config(synth_root, tmp_path / "a", method, **extra), straight)
    assert result.steps == 6
    assert all(math.isfinite(s["train/loss"]) for s in straight.logs.values())
    assert 0.0 <= result.final.miou <= 1.0
    interrupted = Recorder(stop_after_evals=1)
    train(run_config(synth_root, tmp_path / "b", method, **extra), interrupted)
    resumed = Recorder()
    train(run_config(synth_root, tmp_path / "b", method, **extra), resumed)
    assert sorted(resumed.logs) == [4, 5, 6]
    for step in (4, 5, 6):   # cuDNN picks kernels per run: close, not bit-equal
        assert resumed.logs[step]["train/loss"] == pytest.approx(straight.logs[step]["train/loss"], rel=2e-2)


class StartRecorder(Recorder):
    def on_start(self, facts):
        self.facts = facts


def test_an_epoch_budget_is_resolved_logged_and_resumed_with_its_compute(synth_root, tmp_path):
    """24 training images at 1/4: 6 labeled, 18 unlabeled; 1.5 epochs over the unlabeled
    set at 2 per batch = ceil(1.5 x 9) = 14 iterations, whatever the method."""
    cfg = build_config(run_config(synth_root, tmp_path / "a", "cps").model_dump(mode="json"),
                       {"optim.iters": None, "optim.epochs": 1.5, "optim.epochs_over": "unlabeled",
                        "eval.every": 7})
    hooks = StartRecorder()
    result = train(cfg, hooks)
    assert result.steps == 14 and hooks.facts["budget/iters"] == 14
    assert hooks.facts["data/labeled_images"] == 6 and hooks.facts["data/unlabeled_images"] == 18
    assert hooks.facts["budget/epochs_unlabeled"] == pytest.approx(14 * 2 / 18, abs=1e-3)
    assert [s for s, _, _ in hooks.evals] == [7, 14]
    # cps: per step 2 labeled + 2x2 unlabeled through both branches' pseudo-label pass, ...
    assert result.compute["compute/images_fwd"] > result.compute["compute/images_bwd"] > 0
    assert result.compute["compute/tflop"] > 0 and result.compute["compute/device_seconds"] > 0
    # cut after the first evaluation and resumed: the totals continue, not restart
    cut = StartRecorder(stop_after_evals=1)
    train(build_config(cfg.model_dump(mode="json"), {"runtime.output_dir": str(tmp_path / "b")}), cut)
    resumed = train(build_config(cfg.model_dump(mode="json"), {"runtime.output_dir": str(tmp_path / "b")}),
                    StartRecorder())
    assert resumed.compute["compute/images_fwd"] == result.compute["compute/images_fwd"]
