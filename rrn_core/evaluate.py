"""Validation of segmenters: softmax-averaged prediction and confusion-matrix metrics.

Every number a run reports about quality (mIoU, per-class IoU, pixel accuracy) comes
from one confusion matrix, so the metrics can never disagree with each other and the
matrix itself can be plotted or summed across processes. The matrix is accumulated
with torchmetrics because its state is all-reduced under torch.distributed: each rank
evaluates its own shard of the validation set and the sum is exact.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.progress import track
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, Subset
from torch.utils.data.distributed import DistributedSampler
from torchmetrics.classification import MulticlassConfusionMatrix

from rrn_core.constants import IGNORE_INDEX, VAL_PREFIX
from rrn_core.data.transforms import denormalize
from rrn_core.config_sections import EvalConfig

__all__ = ["COLLAPSE_SHARE", "EvalResult", "PredictionSample", "evaluate", "predict_probs"]

# MLflow accepts letters, digits, "_", "-", ".", " ", "/" in metric names; class names of
# other data sets ("car (parked)", "a&b") would otherwise fail at log time.
_UNSAFE_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")
# Predictions with at least this share of pixels in one class count as collapsed.
COLLAPSE_SHARE = 0.99


@dataclass
class PredictionSample:
    """One validation image kept for overlay artifacts (rank 0's first images)."""

    id: str
    image: np.ndarray  # uint8 [H, W, 3], denormalised
    pred: np.ndarray  # int64 [H, W]
    gt: np.ndarray  # int64 [H, W], 255 = ignore


@dataclass
class EvalResult:
    """A confusion matrix (rows = ground truth, columns = prediction) and what derives from it."""

    confusion: np.ndarray
    class_names: list[str]
    samples: list[PredictionSample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.confusion = np.asarray(self.confusion, dtype=np.int64)
        c = self.confusion.shape[0]
        if self.confusion.shape != (c, c):
            raise ValueError(f"confusion must be square, got shape {self.confusion.shape}")
        if len(self.class_names) != c:
            raise ValueError(f"{len(self.class_names)} class names for a {c}x{c} confusion matrix")

    @property
    def per_class_iou(self) -> np.ndarray:
        """IoU per class; nan where the class is in neither prediction nor ground truth."""
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        iou = np.full(len(tp), np.nan)
        np.divide(tp, union, out=iou, where=union > 0)
        return iou

    @property
    def miou(self) -> float:
        """Mean IoU over classes that occur (nan classes would otherwise count as 0 or break the mean)."""
        iou = self.per_class_iou
        valid = ~np.isnan(iou)
        return float(iou[valid].mean()) if valid.any() else float("nan")

    @property
    def pixel_acc(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total > 0 else float("nan")

    @property
    def dominant_share(self) -> float:
        """Share of the scored pixels predicted as the most predicted class."""
        predicted = self.confusion.sum(0)
        total = predicted.sum()
        return float(predicted.max() / total) if total > 0 else float("nan")

    @property
    def collapsed(self) -> bool:
        """The predictions cover one class (at least COLLAPSE_SHARE of the pixels).

        A collapsed model scores the majority class's IoU / C (e.g. 0.127 on the
        synthetic set: background only) and must never be read as a result.
        """
        return self.dominant_share >= COLLAPSE_SHARE

    def as_metrics(self, prefix: str = VAL_PREFIX) -> dict[str, float]:
        """Flat metric dict as reported to Tune and MLflow; classes with nan IoU are left out."""
        metrics = {f"{prefix}mIoU": self.miou, f"{prefix}pixel_acc": self.pixel_acc,
                   f"{prefix}dominant_share": self.dominant_share}
        for name, iou in zip(self.class_names, self.per_class_iou):
            if not np.isnan(iou):
                metrics[f"{prefix}IoU/{_UNSAFE_METRIC_CHARS.sub('_', name)}"] = float(iou)
        return metrics


def _unwrap(model: nn.Module) -> nn.Module:
    # DDP's forward may run collectives; ranks see different numbers of validation
    # images, so evaluation calls the plain module to avoid a hang.
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _forward_probs(models: Sequence[nn.Module], x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean softmax of the models at the input's resolution (float32 whatever autocast did)."""
    total: torch.Tensor | None = None
    for model in models:
        logits = model(x)
        if logits.shape[1] != num_classes:
            raise ValueError(f"model outputs {logits.shape[1]} channels, expected num_classes={num_classes}")
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        probs = logits.float().softmax(dim=1)
        total = probs if total is None else total + probs
    assert total is not None
    return total / len(models)


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets covering [0, size); the last window is flush with the end."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] + window < size:
        starts.append(size - window)
    return starts


def predict_probs(models: Sequence[nn.Module], image: torch.Tensor, num_classes: int,
                  cfg: EvalConfig) -> torch.Tensor:
    """Class probabilities [B, C, H, W]: the mean of the models' softmax.

    Two-branch methods (CPS, RRN) predict with both branches averaged, as the release
    does. "sliding" runs windows of `cfg.window` every `cfg.stride` pixels (stride is
    capped at the window so no pixel is missed), zero-pads images smaller than the
    window (zero = the mean colour after normalisation) and averages overlapping
    windows with a count map, so any H, W works.
    """
    if not models:
        raise ValueError("predict_probs needs at least one model")
    if cfg.mode == "whole":
        return _forward_probs(models, image, num_classes)
    b, _, h, w = image.shape
    win, stride = cfg.window, min(cfg.stride, cfg.window)
    ph, pw = max(h, win), max(w, win)
    padded = F.pad(image, (0, pw - w, 0, ph - h)) if (ph, pw) != (h, w) else image
    probs = image.new_zeros((b, num_classes, ph, pw), dtype=torch.float32)
    count = image.new_zeros((1, 1, ph, pw), dtype=torch.float32)
    for y in _window_starts(ph, win, stride):
        for x in _window_starts(pw, win, stride):
            crop = padded[:, :, y:y + win, x:x + win]
            probs[:, :, y:y + win, x:x + win] += _forward_probs(models, crop, num_classes)
            count[:, :, y:y + win, x:x + win] += 1
    return (probs / count)[:, :, :h, :w]


@contextmanager
def _eval_mode(models: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode for the duration, then each submodule's own mode back (frozen BN stays frozen)."""
    saved = [(m, m.training) for model in models for m in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for module, training in saved:
            module.training = training


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _local_batches(loader: Iterable[dict[str, Any]], max_images: int | None,
                   rank: int, world: int) -> Iterator[dict[str, Any]]:
    """This rank's batches, limited to the first `max_images` images of the whole set.

    A map-style DataLoader is re-made over a contiguous slice of its data set per rank,
    so rank 0 holds the first images (the overlay samples match a single-process run)
    and no rank loads another's images. A loader already sharded by a
    DistributedSampler is used as is (that sampler repeats a few images to even out the
    shards). Any other iterable is walked on every rank, each keeping every world-th batch.
    """
    if world > 1 and isinstance(loader, DataLoader):
        if isinstance(loader.sampler, DistributedSampler):
            yield from _take_images(loader, None if max_images is None else math.ceil(max_images / world))
            return
        if not isinstance(loader.dataset, IterableDataset) and loader.batch_size is not None:
            n = len(loader.dataset)  # type: ignore[arg-type]
            n = n if max_images is None else min(n, max_images)
            shard = Subset(loader.dataset, range(rank * n // world, (rank + 1) * n // world))
            yield from DataLoader(shard, batch_size=loader.batch_size, num_workers=loader.num_workers,
                                  collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                                  worker_init_fn=loader.worker_init_fn)
            return
    for i, batch in enumerate(_take_images(loader, max_images)):
        if i % world == rank:
            yield batch


def _take_images(loader: Iterable[dict[str, Any]], limit: int | None) -> Iterator[dict[str, Any]]:
    seen = 0
    for batch in loader:
        if limit is not None and seen >= limit:
            return
        n = len(batch["image"])
        if limit is not None and seen + n > limit:
            batch = {k: v[: limit - seen] for k, v in batch.items()}
        seen += n
        yield batch


def _check_labels(mask: torch.Tensor, num_classes: int, ids: Sequence[str]) -> None:
    """Fail naming the image when a mask holds labels the model cannot predict.

    A data set whose `num_classes` is set too low would otherwise be scored silently
    wrong (torchmetrics drops or miscounts such pixels without validation).
    """
    bad = ((mask < 0) | (mask >= num_classes)) & (mask != IGNORE_INDEX)
    if bool(bad.any()):
        values = sorted(int(v) for v in mask[bad].unique()[:10])
        raise ValueError(
            f"mask of image {list(ids)}: labels {values} outside 0..{num_classes - 1} "
            f"(and {IGNORE_INDEX} = ignore); check data.num_classes")


def _to_sample(image: torch.Tensor, pred: torch.Tensor, gt: torch.Tensor, sample_id: str) -> PredictionSample:
    rgb = denormalize(image.detach().float().cpu()).clamp(0, 1)
    rgb_u8 = (rgb * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return PredictionSample(id=str(sample_id), image=rgb_u8,
                            pred=pred.cpu().numpy().astype(np.int64), gt=gt.cpu().numpy().astype(np.int64))


def evaluate(models: Sequence[nn.Module], loader: Iterable[dict[str, Any]], num_classes: int,
             class_names: Sequence[str], cfg: EvalConfig, device: torch.device | str,
             amp_dtype: torch.dtype | None = None, *, progress: bool = False) -> EvalResult:
    """Score the models' averaged prediction on a validation loader.

    Batches are dicts {"image": [B,3,H,W], "mask": [B,H,W], "id": [str]}; images may
    differ in size between batches. Under torch.distributed every rank must call this
    (the confusion matrix is all-reduced at the end); each scores its shard and the
    result, identical on all ranks, carries rank 0's overlay samples.
    """
    device = torch.device(device)
    rank, world = _rank_world()
    plain = [_unwrap(m) for m in models]
    confmat = MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX, validate_args=False).to(device)
    samples: list[PredictionSample] = []
    use_amp = amp_dtype is not None and device.type == "cuda"
    batches: Iterable[dict[str, Any]] = _local_batches(loader, cfg.max_images, rank, world)
    if progress and rank == 0:
        batches = track(batches, description="evaluating", transient=True)
    with _eval_mode(plain), torch.no_grad():
        for batch in batches:
            image = batch["image"].to(device, non_blocking=True)
            mask = batch["mask"].to(device, non_blocking=True).long()
            ids = [str(i) for i in batch["id"]] if "id" in batch else [str(i) for i in range(len(image))]
            _check_labels(mask, num_classes, ids)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                probs = predict_probs(plain, image, num_classes, cfg)
            pred = probs.argmax(dim=1)
            confmat.update(pred, mask)
            if rank == 0:
                for i in range(len(image)):
                    if len(samples) >= cfg.overlays:
                        break
                    samples.append(_to_sample(image[i], pred[i], mask[i], ids[i]))
    # compute() all-reduces the matrix when a process group is initialised.
    confusion = confmat.compute().cpu().numpy().astype(np.int64)
    return EvalResult(confusion=confusion, class_names=list(class_names), samples=samples)
