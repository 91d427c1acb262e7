"""Every loss of the RRN method and its baselines, one small pure function each.

Notation: x logits [B,C,H,W], y integer labels [B,H,W] (255 = ignore), p = softmax(x),
R regions per side. Cross-entropy is computed in float32 whatever the autocast dtype,
so bf16/fp16 runs get the same losses as fp32 runs up to the logits' rounding.

Region partition (shared by every region function): pixel row y of an image of height
H belongs to region row floor(y * R / H), columns likewise. Region r therefore spans
rows ceil(r H / R) .. ceil((r + 1) H / R) - 1: blocks differ by at most one pixel and
the larger ones are spread evenly (H = 10, R = 3 gives rows 0-3, 4-6, 7-9). This is
nearest-neighbour upsampling of the R x R grid, computed in integers so no float
rounding can move a boundary.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from rrn_core.constants import IGNORE_INDEX


def per_pixel_ce(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """l_i = -log softmax(x_i)[y_i], and 0 where y_i = ignore_index.  [B,H,W] float32."""
    return F.cross_entropy(logits.float(), target.long(), ignore_index=ignore_index, reduction="none")


def ce_loss(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """L = sum_{i: y_i != ignore} l_i / max(1, #{i: y_i != ignore}).

    Unlike F.cross_entropy's mean this is 0 (not NaN) when every pixel is ignored,
    and stays differentiable, so an all-ignored batch costs nothing.
    """
    valid = target != ignore_index
    return per_pixel_ce(logits, target, ignore_index).sum() / valid.sum().clamp(min=1)


def cps_loss(logits_1: Tensor, logits_2: Tensor, pseudo_1: Tensor, pseudo_2: Tensor,
             ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Cross pseudo supervision: L = CE(x_1, y^_2) + CE(x_2, y^_1), y^_k = argmax of branch k."""
    return ce_loss(logits_1, pseudo_2, ignore_index) + ce_loss(logits_2, pseudo_1, ignore_index)


def _grid(values: Tensor) -> Tensor:
    """Accept region values as [B,R,R] or [B,1,R,R]; return [B,R,R]."""
    if values.dim() == 4:
        if values.shape[1] != 1:
            raise ValueError(f"region values must be [B,R,R] or [B,1,R,R], got {tuple(values.shape)}")
        values = values[:, 0]
    if values.dim() != 3:
        raise ValueError(f"region values must be [B,R,R] or [B,1,R,R], got {tuple(values.shape)}")
    return values


def _region_index(length: int, regions: int, device: torch.device) -> Tensor:
    """Region of each pixel along one axis: floor(i * R / length)."""
    return torch.arange(length, device=device) * regions // length


def region_scores_to_pixels(region_values: Tensor, size: tuple[int, int]) -> Tensor:
    """v_pixel(y, x) = v_region(floor(y R_h / H), floor(x R_w / W)): [B,R,R] -> [B,H,W]."""
    grid = _grid(region_values)
    h, w = size
    rows = _region_index(h, grid.shape[-2], grid.device)
    cols = _region_index(w, grid.shape[-1], grid.device)
    return grid[:, rows][:, :, cols]


def threshold_regions(region_probs: Tensor, tau: float) -> Tensor:
    """trusted_r = [s_r > tau]: the release's rule for regions a discriminator trusts.  bool [B,R,R].

    `region_scores_to_pixels` turns it into the pixel keep mask of the selection loss.
    """
    return _grid(region_probs) > tau


def top_fraction_regions(region_probs: Tensor, fraction: float) -> Tensor:
    """trusted_r = [s_r >= s_(k)], s_(k) the k-th largest score in the batch, k = ceil(fraction * B R R).

    A rank rule instead of an absolute threshold: a critic that already separates one-hot
    ground truth from every softmax map scores all predictions near 0, so `s_r > tau`
    keeps nothing, yet its ranking of the predictions can still say which regions look
    most like ground truth. Ties at s_(k) are kept.  bool [B,R,R].
    """
    grid = _grid(region_probs)
    count = math.ceil(fraction * grid.numel())
    if count <= 0:
        return torch.zeros_like(grid, dtype=torch.bool)
    kth = grid.flatten().topk(count).values[-1]
    return grid >= kth


def local_selection_loss(logits: Tensor, pseudo: Tensor, keep: Tensor, per: Literal["kept", "valid"] = "kept",
                         ignore_index: int = IGNORE_INDEX) -> Tensor:
    """L = sum_i m_i l_i / max(1, N), m_i = keep_i * [y^_i != ignore], l_i = CE(x_i, y^_i).

    N = sum_i m_i (per="kept", the release): the loss scale does not shrink when the
    discriminator keeps few regions, so a single kept region gets the weight of a whole
    batch. N = #{i: y^_i != ignore} (per="valid", ours): the term shrinks with the kept
    share, like a per-pixel mask on an ordinary CE.
    """
    valid = pseudo != ignore_index
    mask = keep.bool() & valid
    ce = per_pixel_ce(logits, pseudo, ignore_index)
    count = {"kept": mask, "valid": valid}[per].sum()
    return (ce * mask).sum() / count.clamp(min=1)


def region_mean(values: Tensor, valid: Tensor, regions_per_side: int) -> Tensor:
    """m_r = sum_{i in r} valid_i v_i / #{i in r: valid_i}, 0 when the count is 0.  [B,R,R].

    Differentiable in `values`, so per-region losses can be built from it.
    """
    b, h, w = values.shape
    r = regions_per_side
    rows = _region_index(h, r, values.device)
    cols = _region_index(w, r, values.device)
    region_id = (rows[:, None] * r + cols[None, :]).reshape(1, -1).expand(b, -1)
    weight = valid.reshape(b, -1).to(values.dtype)
    sums = values.new_zeros(b, r * r).scatter_add(1, region_id, values.reshape(b, -1) * weight)
    counts = values.new_zeros(b, r * r).scatter_add(1, region_id, weight)
    return (sums / counts.clamp(min=1)).reshape(b, r, r)


def region_agreement(pred_1: Tensor, pred_2: Tensor, valid: Tensor, regions_per_side: int) -> Tensor:
    """a_r = #{i in r: valid_i, y1_i = y2_i} / #{i in r: valid_i} (0 if none).  [B,R,R]."""
    return region_mean((pred_1 == pred_2).float(), valid, regions_per_side)


def region_reliability(agreement: Tensor, score_1: Tensor, score_2: Tensor) -> Tensor:
    """w_r = a_r * s_r(D_1) * s_r(D_2), scores being region probabilities.  [B,R,R]."""
    return _grid(agreement) * _grid(score_1).to(agreement.dtype) * _grid(score_2).to(agreement.dtype)


def per_region_ce(logits: Tensor, target: Tensor, regions_per_side: int,
                  ignore_index: int = IGNORE_INDEX) -> Tensor:
    """L_r = sum_{i in r, y_i != ignore} l_i / #{i in r: y_i != ignore} (0 if none).  [B,R,R]."""
    ce = per_pixel_ce(logits, target, ignore_index)
    return region_mean(ce, target != ignore_index, regions_per_side)


def dynamic_region_loss(region_losses: Tensor, weights: Tensor, ramp: float) -> Tensor:
    """L = (1 - lambda) mean_r L_r + lambda sum_r w~_r L_r, w~ = w / sum_{batch, r} w.

    The weights are detached (they rank regions, they are not trained through this
    term); if they sum to 0 every region gets 1/N, which makes both terms equal.
    """
    losses = _grid(region_losses).float()
    w = _grid(weights).detach().float()
    total = w.sum()
    uniform = torch.full_like(w, 1.0 / w.numel())
    w_norm = torch.where(total > 0, w / total.clamp(min=torch.finfo(w.dtype).tiny), uniform)
    return (1.0 - ramp) * losses.mean() + ramp * (w_norm * losses).sum()


def effective_region_fraction(weights: Tensor) -> Tensor:
    """ESS / N = (sum_r w_r)^2 / (N sum_r w_r^2): 1 when every region weighs the same, 1/N when one does.

    A health signal for the region-loss correction: when it is small, the re-weighted
    CPS term trains on a handful of regions only.
    """
    w = _grid(weights).detach().float()
    denominator = w.numel() * (w * w).sum()
    return torch.where(denominator > 0, w.sum() ** 2 / denominator.clamp(min=torch.finfo(w.dtype).tiny),
                       torch.ones_like(denominator))


def linear_rampup(progress: float, rampup: float) -> float:
    """lambda(t) = clip(t / rampup, 0, 1), t = fraction of training done (1 at once if rampup <= 0)."""
    if rampup <= 0:
        return 1.0
    return float(min(1.0, max(0.0, progress / rampup)))


def sigmoid_rampup(progress: float, rampup: float) -> float:
    """lambda(t) = exp(-5 (1 - t / T)^2) for t < T, 1 after (Laine & Aila; Mean Teacher, CCT).

    t = fraction of training done, T = `rampup`; 1 at once if T <= 0. The weight of
    the unlabeled terms: near 0 while the branches' argmax is still near-uniform
    noise, e^-5 = 0.0067 at t = 0, 0.29 at t = T/2.
    """
    if rampup <= 0 or progress >= rampup:
        return 1.0
    return float(math.exp(-5.0 * (1.0 - max(0.0, progress) / rampup) ** 2))


def feature_matching_loss(feat_real: Tensor, feat_fake: Tensor) -> Tensor:
    """L = mean_{f,y,x} | mean_b phi(real)_b - mean_b phi(fake)_b |  (real side detached).

    Batch means, so the labeled (real) and unlabeled (fake) batches may differ in size.
    """
    real = feat_real.detach().float().mean(dim=0)
    fake = feat_fake.float().mean(dim=0)
    return (real - fake).abs().mean()


def discriminator_bce(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """L_D = mean_r BCE(sigma(z_real_r), 1) + mean_r BCE(sigma(z_fake_r), 0).

    BCE(sigma(z), 1) = log(1 + e^{-z}), BCE(sigma(z), 0) = log(1 + e^{z}); each term is
    averaged over its batch and grid cells, and the two are summed.
    """
    real = logits_real.float()
    fake = logits_fake.float()
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def region_accuracy_bce(logits: Tensor, region_acc: Tensor, known: Tensor, good_accuracy: float) -> Tensor:
    """L_D = sum_r k_r BCE(sigma(z_r), [acc_r >= a*]) / max(1, sum_r k_r)   (ours: the accuracy critic).

    z_r: the critic's region logits on the branch's own (detached) prediction of a
    labeled image, acc_r: that prediction's pixel accuracy in region r, k_r: the region
    has at least one labeled pixel, a* = `good_accuracy`. sigma(z_r) then estimates
    P(region r's argmax is right on at least a* of its pixels), which is what the
    selection loss needs to know about an unlabeled region.
    """
    z = _grid(logits).float()
    target = (_grid(region_acc) >= good_accuracy).float()
    weight = _grid(known).float()
    bce = F.binary_cross_entropy_with_logits(z, target, reduction="none")
    return (bce * weight).sum() / weight.sum().clamp(min=1)


def confidence_masked_ce(logits: Tensor, pseudo: Tensor, confidence: Tensor, threshold: float,
                         ignore: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """L = sum_i l_i [c_i >= thr] [ign_i != 255] / max(1, #{i: ign_i != 255})  (FixMatch/UniMatch).

    Normalised by all non-padding pixels, not by the confident ones, so the loss
    grows as the model becomes confident (UniMatch's convention).
    """
    valid = ignore != ignore_index
    ce = per_pixel_ce(logits, pseudo, ignore_index)
    mask = (confidence >= threshold) & valid
    return (ce * mask).sum() / valid.sum().clamp(min=1)


def one_hot(mask: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """onehot(y)_{c,i} = [y_i = c], all zeros where y_i = ignore.  float [B,C,H,W].

    The discriminator's "real" input: ground truth shaped like a softmax map.
    """
    valid = mask != ignore_index
    safe = torch.where(valid, mask, torch.zeros_like(mask)).long()
    out = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).float()
    return out * valid.unsqueeze(1)
