"""Configuration of one training run, as data.

Every knob of a run lives in these pydantic models so that a YAML file, a sweep
trial and the MLflow params all describe a run the same way. Models forbid unknown
keys and check ranges: a typo in a sweep file must fail before any trial starts,
naming the field, instead of silently training with a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

IGNORE_INDEX = 255


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CutMixConfig(StrictModel):
    """CutMix boxes drawn per unlabeled sample (the release: 3 boxes of 1/4..1/2 area)."""

    boxes: int = Field(3, ge=1, le=16)
    area: tuple[float, float] = (0.25, 0.5)
    prob: float = Field(1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> CutMixConfig:
        lo, hi = self.area
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError("area must satisfy 0 < min <= max <= 1")
        return self


class DataConfig(StrictModel):
    """Where the images are and how the labeled/unlabeled split is drawn.

    Splits: either explicit `labeled_split`/`unlabeled_split` files, or a
    `label_ratio` / `label_count` drawn from `train_split` with `split_seed` and
    written under `split_dir` (relative paths resolve against `root`).
    """

    layout: Literal["voc", "cityscapes"] = "voc"
    root: str
    num_classes: int = Field(21, ge=2, le=1024)
    class_names: list[str] | None = None
    mask_dir: str = "SegmentationClass"
    train_split: str | None = None
    val_split: str | None = None
    labeled_split: str | None = None
    unlabeled_split: str | None = None
    label_ratio: float | None = Field(None, gt=0.0, le=1.0)
    label_count: int | None = Field(None, ge=1)
    split_seed: int = Field(0, ge=0)
    split_dir: str = "splits"
    crop_size: int = Field(321, ge=16, le=4096)
    scale_range: tuple[float, float] = (0.5, 2.0)
    batch_size: int = Field(4, ge=1)
    unlabeled_batch_size: int = Field(4, ge=1)
    num_workers: int = Field(0, ge=0)
    cutmix: CutMixConfig = Field(default_factory=CutMixConfig)

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.label_ratio is not None and self.label_count is not None:
            raise ValueError("give label_ratio or label_count, not both")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} entries but num_classes is {self.num_classes}"
            )
        lo, hi = self.scale_range
        if not 0.0 < lo <= hi:
            raise ValueError("scale_range must satisfy 0 < min <= max")
        return self


class ModelConfig(StrictModel):
    """DeepLabV3+ on a ResNet; `base_width` < 64 gives the narrow CPU-demo nets."""

    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101"] = "resnet50"
    base_width: int = Field(64, ge=4, le=256)
    deep_stem: bool = True
    output_stride: Literal[8, 16] = 16
    pretrained: str | None = None
    aspp_rates: tuple[int, int, int] = (6, 12, 18)
    aspp_channels: int = Field(256, ge=4)
    low_level_channels: int = Field(48, ge=4)
    head_channels: int = Field(256, ge=4)
    sync_bn: bool = False


class DiscriminatorConfig(StrictModel):
    """Region discriminator: 4 stride-2 convs, then one conv per region cell."""

    regions_per_side: int = Field(3, ge=1, le=64)
    with_image: bool = False
    base_channels: int = Field(64, ge=4)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    lr: float = Field(1e-4, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.99)
    # What the critic learns (see docs/method.md, "Critics"):
    # "adversarial" (the release): real = one-hot ground truth, fake = the branch's
    #   softmax map. A critic can win this by spotting one-hot inputs, and then scores
    #   every prediction near 0 whatever its quality.
    # "accuracy" (ours): on labeled images, predict for each region whether the
    #   branch's own argmax is right on at least `good_accuracy` of its pixels (the
    #   target is known there); its score is then a learned region-level estimate of
    #   pseudo-label quality on unlabeled images.
    objective: Literal["adversarial", "accuracy"] = "accuracy"
    good_accuracy: float = Field(0.9, gt=0.0, le=1.0)


class MethodConfig(StrictModel):
    """Which training step runs, and every weight/threshold it uses."""

    name: Literal["supervised", "cps", "fixmatch", "rrn"] = "rrn"
    w_cps: float = Field(1.0, ge=0.0)
    w_select: float = Field(1.0, ge=0.0)
    w_drl: float = Field(1.0, ge=0.0, le=1.0)  # final share of the region-weighted CPS loss
    w_fm: float = Field(0.1, ge=0.0)
    tau_region: float = Field(0.6, ge=0.0, le=1.0)
    # Which regions a critic trusts: "threshold" (the release: score > tau_region) or
    # "top_fraction" (ours: the best-scored keep_fraction of the batch's regions), for
    # critics whose scores for every prediction collapse below any fixed tau.
    region_rule: Literal["threshold", "top_fraction"] = "threshold"
    keep_fraction: float = Field(0.5, gt=0.0, le=1.0)
    # Normaliser of the selection terms: the kept pixel count (the release) or every
    # valid pixel (ours; a few kept regions then weigh little). See local_selection_loss.
    select_per: Literal["kept", "valid"] = "kept"
    drl_rampup: float = Field(0.3, gt=0.0, le=1.0)
    # Region weights of the dynamic region-loss correction (both ours):
    # "agreement": w_r = a_r * s_r(D1) * s_r(D2), one weight for both directions;
    # "teacher": the loss of branch k on branch j's pseudo-labels is weighted by
    #   s_r(D_j), the teacher's critic's estimate that its labels in r are right.
    drl_weight: Literal["agreement", "teacher"] = "agreement"
    warmup_epochs: float = Field(1.0, ge=0.0)
    cross_check: bool = True
    drl: bool = True
    feature_matching: bool = True
    # Collapse guard (ours, from Mean Teacher / CCT): the weight of every unlabeled
    # term ramps from 0 to 1 as exp(-5 (1 - t / T)^2) over the first `unsup_rampup`
    # of training (T as a fraction of optim.iters; 0 = full weight from step 0, as the
    # release does with pretrained backbones). From scratch, full weight at step 0
    # trains each branch on the other's near-uniform argmax, which is the majority
    # class everywhere, and both branches lock into predicting background.
    unsup_rampup: float = Field(0.3, ge=0.0, le=1.0)
    conf_thresh: float = Field(0.95, ge=0.0, le=1.0)
    w_unsup: float = Field(1.0, ge=0.0)
    discriminator: DiscriminatorConfig = Field(default_factory=DiscriminatorConfig)

    @property
    def uses_unlabeled(self) -> bool:
        return self.name != "supervised"

    @property
    def num_branches(self) -> int:
        return 2 if self.name in ("cps", "rrn") else 1


class OptimConfig(StrictModel):
    """SGD + poly, backbone lr x1 / head lr x`head_lr_mult` (UniMatch's habit)."""

    iters: int = Field(1000, ge=1)
    lr: float = Field(0.0025, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    head_lr_mult: float = Field(10.0, gt=0.0)
    warmup_iters: int = Field(0, ge=0)
    poly_power: float = Field(0.9, ge=0.0)


class EvalConfig(StrictModel):
    mode: Literal["whole", "sliding"] = "whole"
    window: int = Field(512, ge=16)
    stride: int = Field(341, ge=1)
    every: int = Field(200, ge=1)
    max_images: int | None = Field(None, ge=1)
    overlays: int = Field(4, ge=0)


class RuntimeConfig(StrictModel):
    """Where and how the run executes; none of this changes the method."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    seed: int = Field(0, ge=0)
    output_dir: str = "runs/default"
    storage_options: dict[str, Any] = Field(default_factory=dict)
    log_every: int = Field(20, ge=1)
    resume: bool = True
    progress: bool = True


class RunConfig(StrictModel):
    name: str = "rrn"
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the file and field."""


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating levels; sweeps address fields this way."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`method.w_select=0.5` -> ("method.w_select", 0.5); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not KEY=VALUE")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def build_config(tree: dict[str, Any], overrides: dict[str, Any] | None = None,
                 source: str = "config", base_dir: str | Path | None = None) -> RunConfig:
    """A validated RunConfig from a tree plus dotted overrides.

    Relative input paths in the tree resolve against `base_dir` (the folder of the
    file the tree came from; the current directory when there is no file) and
    those in `overrides` (the command line) against the current directory; see
    rrn_core/paths.py.
    """
    from rrn_core.paths import resolve_dotted_paths, resolve_tree_paths

    tree = yaml.safe_load(yaml.safe_dump(tree))  # deep copy through plain data
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    resolve_tree_paths(tree, Path(base_dir) if base_dir is not None else Path.cwd())
    for key, value in resolve_dotted_paths(overrides or {}, Path.cwd()).items():
        set_dotted(tree, key, value)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A run config file; its relative paths (data.root, ...) resolve against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config file: {err}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return build_config(tree, overrides, source=str(path), base_dir=path.resolve().parent)


def config_to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flatten(cfg: RunConfig | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of a config, as logged to MLflow params."""
    tree = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
