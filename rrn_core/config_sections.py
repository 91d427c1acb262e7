"""The sections of a run config that components read on their own.

Each model here belongs to the part of rrn_core that reads it (data readers, the
segmenter, the optimiser, evaluation, the runtime); `rrn_core/config.py` assembles
them with the chosen method's own section into a `RunConfig`. They live below every
component, so that a reader or a network can import its settings without pulling in
the methods (whose configs the run config needs: see rrn_core/methods/table.py).
Models forbid unknown keys and check ranges: a typo in a sweep file must fail before
any trial starts, naming the field, instead of silently training with a default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rrn_core.errors import UserError


class StrictModel(BaseModel):
    """Unknown keys are errors, and so are assignments that break a field's range."""

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
    """The segmenter: a timm encoder (`backbone`) and its decoder.

    Convolutional backbones (resnet50d, resnet101c: the paper's deep-stem ResNet-101,
    convnext_tiny, efficientnet_b0, ...) feed DeepLabV3+ (the aspp_* / *_channels
    fields); ViTs (vit_small_patch14_dinov2, vit_base_patch14_dinov2) feed a DPT
    decoder (`dpt_features`) and need crops that are multiples of their patch.
    `base_width` narrows timm's ResNets for CPU demos (unset: the published widths).
    `pretrained`: none, imagenet (timm's default weights, cached from the hub), a timm
    weight tag, or a file (.pth/.safetensors; relative to the config's folder).
    See rrn_core/models/backbones.py and docs/method.md.
    """

    backbone: str = "resnet50c"
    base_width: int | None = Field(None, ge=4, le=256)
    output_stride: Literal[8, 16] = 16
    pretrained: str | None = None
    aspp_rates: tuple[int, int, int] = (6, 12, 18)
    aspp_channels: int = Field(256, ge=4)
    low_level_channels: int = Field(48, ge=4)
    head_channels: int = Field(256, ge=4)
    dpt_features: int | None = Field(None, ge=4)
    sync_bn: bool = False

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and "deep_stem" in data:
            raise ValueError("deep_stem was removed: the backbone's name says its stem (timm names: "
                             "resnet50 / resnet101 have the 7x7 stem, resnet50c / resnet101c the "
                             "paper's deep v1c stem, resnet50d / resnet101d the deep stem with ResNet-D "
                             "shortcuts)")
        return data

    @model_validator(mode="after")
    def _buildable(self) -> ModelConfig:
        # timm (and torch) load only when a config is validated, not when this module is read
        from rrn_core.models.backbones import backbone_problem, pretrained_tag_problem
        from rrn_core.paths import names_weights

        if problem := backbone_problem(self.backbone, self.base_width, self.output_stride):
            raise ValueError(problem)
        value = self.pretrained
        if value is not None and value != "none" and names_weights(value):
            if problem := pretrained_tag_problem(self.backbone, value):
                raise ValueError(f"pretrained: {problem}")
            if self.base_width is not None:
                raise ValueError(f"pretrained: {value!r} names published weights, which have the "
                                 "published widths: unset base_width (or give a file of a narrow net)")
        return self


#: The budget of a config that states none.
DEFAULT_ITERS = 1000


class OptimConfig(StrictModel):
    """SGD + poly, backbone lr x1 / head lr x`head_lr_mult` (UniMatch's habit).

    The budget is `iters`, or `epochs` passes over one set (`epochs_over`): the labeled
    set, as UniMatch counts its supervised baseline (more labels, more iterations), or
    the unlabeled set, as its semi-supervised scripts do. An epoch budget is resolved
    to iterations once the split is known (rrn_core/budget.py); a run logs both.
    """

    iters: int | None = Field(None, ge=1)
    epochs: float | None = Field(None, gt=0.0)
    epochs_over: Literal["labeled", "unlabeled"] = "labeled"
    lr: float = Field(0.0025, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    head_lr_mult: float = Field(10.0, gt=0.0)
    warmup_iters: int = Field(0, ge=0)
    poly_power: float = Field(0.9, ge=0.0)

    @model_validator(mode="after")
    def _one_budget(self) -> OptimConfig:
        if self.iters is not None and self.epochs is not None:
            raise ValueError("give optim.iters or optim.epochs, not both "
                             "(set the other to null to switch a base config's budget)")
        if self.iters is None and self.epochs is None:
            self.__dict__["iters"] = DEFAULT_ITERS  # no assignment validation loop
        return self


class EvalConfig(StrictModel):
    """How and how often a run is evaluated.

    `precise_bn`: recompute BatchNorm statistics over the labeled set's training views
    before each evaluation (rrn_core/precise_bn.py), so that an evaluation measures the
    weights, not the last few batches' statistics.
    """

    mode: Literal["whole", "sliding"] = "whole"
    precise_bn: bool = True
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


class ConfigError(UserError):
    """A configuration that cannot run; the message names the file and field."""
