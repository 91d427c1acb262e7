"""Evaluation: metrics against an independent count, prediction modes, distributed sum."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue as queue_mod
import socket
import traceback

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rrn_core.evaluate import EvalResult, evaluate, predict_probs
from rrn_core.config_sections import EvalConfig

IGNORE = 255


class OracleNet(nn.Module):
    """Predicts the class id written into the image's first channel (no parameters).

    Lets a test choose the prediction of every pixel while still going through the
    whole evaluate() path (loader, forward, softmax, argmax, confusion matrix).
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = x[:, 0].round().long().clamp(0, self.num_classes - 1)
        return nn.functional.one_hot(cls, self.num_classes).permute(0, 3, 1, 2).float() * 10.0


def make_case(seed: int, num_classes: int = 5, absent: int = 3, sizes=((7, 9), (12, 5), (4, 4), (9, 11))):
    """Random predictions and labels over images of different sizes; class `absent` never appears."""
    rng = np.random.default_rng(seed)
    present = [c for c in range(num_classes) if c != absent]
    items = []
    for i, (h, w) in enumerate(sizes):
        pred = rng.choice(present, size=(h, w))
        gt = rng.choice(present, size=(h, w))
        gt[rng.random((h, w)) < 0.2] = IGNORE
        image = np.zeros((3, h, w), dtype=np.float32)
        image[0] = pred
        items.append({"image": torch.from_numpy(image), "mask": torch.from_numpy(gt).long(), "id": f"img{i}",
                      "pred": pred, "gt": gt})
    return items


def independent_metrics(items, num_classes):
    """IoU per class and pixel accuracy by explicit pixel sets, no confusion matrix."""
    inter = [set() for _ in range(num_classes)]
    union = [set() for _ in range(num_classes)]
    correct = total = 0
    for k, item in enumerate(items):
        pred, gt = item["pred"], item["gt"]
        for y in range(gt.shape[0]):
            for x in range(gt.shape[1]):
                g, p = int(gt[y, x]), int(pred[y, x])
                if g == IGNORE:
                    continue
                total += 1
                correct += g == p
                union[g].add((k, y, x))
                union[p].add((k, y, x))
                if g == p:
                    inter[g].add((k, y, x))
    iou = [len(inter[c]) / len(union[c]) if union[c] else math.nan for c in range(num_classes)]
    valid = [v for v in iou if not math.isnan(v)]
    return iou, sum(valid) / len(valid), correct / total


def batches(items):
    return [{"image": it["image"][None], "mask": it["mask"][None], "id": [it["id"]]} for it in items]


class ListDataset(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        it = self.items[i]
        return {"image": it["image"], "mask": it["mask"], "id": it["id"]}


NAMES = ["bg", "cat", "dog", "absent", "car (parked)"]


def test_metrics_match_independent_count() -> None:
    items = make_case(0)
    result = evaluate([OracleNet(5)], batches(items), 5, NAMES, EvalConfig(overlays=0), "cpu")
    iou, miou, acc = independent_metrics(items, 5)
    assert result.confusion.dtype == np.int64
    assert result.confusion.sum() == sum(int((it["gt"] != IGNORE).sum()) for it in items)
    assert math.isnan(result.per_class_iou[3]) and math.isnan(iou[3])
    np.testing.assert_allclose(result.per_class_iou, iou, rtol=1e-12, equal_nan=True)
    assert result.miou == pytest.approx(miou, rel=1e-12)
    assert result.pixel_acc == pytest.approx(acc, rel=1e-12)
    metrics = result.as_metrics()
    assert metrics["val/mIoU"] == pytest.approx(miou)
    assert metrics["val/pixel_acc"] == pytest.approx(acc)
    assert "val/IoU/absent" not in metrics
    assert metrics["val/IoU/cat"] == pytest.approx(iou[1])
    assert metrics["val/IoU/car _parked_"] == pytest.approx(iou[4])  # MLflow-safe name
    assert set(result.as_metrics(prefix="test/")) == {k.replace("val/", "test/") for k in metrics}


def test_eval_result_edge_cases() -> None:
    # Predicted but never in the ground truth: IoU 0, not nan (it hurts the mean).
    conf = np.array([[3, 1], [0, 0]])
    result = EvalResult(conf, ["a", "b"])
    np.testing.assert_allclose(result.per_class_iou, [0.75, 0.0])
    assert result.pixel_acc == pytest.approx(0.75)
    empty = EvalResult(np.zeros((2, 2), dtype=np.int64), ["a", "b"])
    assert math.isnan(empty.miou) and math.isnan(empty.pixel_acc)
    with pytest.raises(ValueError, match="class names"):
        EvalResult(conf, ["a"])


def test_dataloader_and_max_images() -> None:
    items = make_case(1)
    loader = DataLoader(ListDataset(items), batch_size=1)
    result = evaluate([OracleNet(5)], loader, 5, NAMES, EvalConfig(max_images=2, overlays=0), "cpu")
    _, miou, acc = independent_metrics(items[:2], 5)
    assert result.confusion.sum() == sum(int((it["gt"] != IGNORE).sum()) for it in items[:2])
    assert result.miou == pytest.approx(miou) and result.pixel_acc == pytest.approx(acc)


def test_labels_beyond_num_classes_fail_naming_the_image() -> None:
    items = make_case(2)
    items[1]["mask"][0, 0] = 7
    with pytest.raises(ValueError, match=r"img1.*\[7\].*num_classes"):
        evaluate([OracleNet(5)], batches(items), 5, NAMES, EvalConfig(overlays=0), "cpu")


def test_overlay_samples_are_denormalised_images() -> None:
    from rrn_core.data import transforms

    rng = np.random.default_rng(3)
    rgb = torch.from_numpy(rng.random((3, 6, 8), dtype=np.float32))
    mean = torch.tensor(transforms.MEAN).view(3, 1, 1)
    std = torch.tensor(transforms.STD).view(3, 1, 1)
    image = (rgb - mean) / std
    mask = torch.from_numpy(rng.integers(0, 3, (6, 8)))
    loader = [{"image": image[None], "mask": mask[None], "id": [f"s{i}"]} for i in range(3)]
    model = nn.Conv2d(3, 3, 1)
    result = evaluate([model], loader, 3, ["a", "b", "c"], EvalConfig(overlays=2), "cpu")
    assert [s.id for s in result.samples] == ["s0", "s1"]
    sample = result.samples[0]
    assert sample.image.dtype == np.uint8 and sample.image.shape == (6, 8, 3)
    np.testing.assert_allclose(sample.image, (rgb * 255).permute(1, 2, 0).numpy(), atol=1.0)
    np.testing.assert_array_equal(sample.gt, mask.numpy())
    with torch.no_grad():
        expected = model(image[None]).argmax(1)[0].numpy()
    np.testing.assert_array_equal(sample.pred, expected)


class ModeProbe(nn.Module):
    """Records the mode and grad state it was called in; has a frozen BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.bn = nn.BatchNorm2d(2)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.bn(self.conv(x))


def test_eval_mode_no_grad_and_modes_restored() -> None:
    model = ModeProbe()
    model.train()
    model.bn.eval()  # a deliberately frozen BN must stay frozen afterwards
    loader = [{"image": torch.randn(1, 3, 5, 5), "mask": torch.zeros(1, 5, 5, dtype=torch.long), "id": ["x"]}]
    stats_before = model.bn.running_mean.clone()
    evaluate([model], loader, 2, ["a", "b"], EvalConfig(overlays=0), "cpu")
    assert model.calls == [(False, False)]
    assert model.training and model.conv.training and not model.bn.training
    assert torch.equal(model.bn.running_mean, stats_before)


def test_sliding_equals_whole_for_pointwise_model() -> None:
    torch.manual_seed(0)
    model = nn.Conv2d(3, 4, 1).eval()
    sliding = EvalConfig(mode="sliding", window=16, stride=10)
    for h, w in [(37, 53), (10, 12), (16, 16), (5, 40), (33, 17)]:
        image = torch.randn(2, 3, h, w)
        with torch.no_grad():
            whole = predict_probs([model], image, 4, EvalConfig(mode="whole"))
            windowed = predict_probs([model], image, 4, sliding)
        assert windowed.shape == whole.shape == (2, 4, h, w)
        torch.testing.assert_close(windowed, whole, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(windowed.sum(1), torch.ones(2, h, w))


def test_sliding_averages_overlapping_windows() -> None:
    """A model that sees its window position (zero padding of a 3x3 conv) gives
    different answers per window; the result must be the mean over covering windows."""
    torch.manual_seed(1)
    model = nn.Conv2d(3, 2, 3, padding=1).eval()
    image = torch.randn(1, 3, 16, 20)
    cfg = EvalConfig(mode="sliding", window=16, stride=4)  # x offsets 0 and 4 only
    with torch.no_grad():
        got = predict_probs([model], image, 2, cfg)
        left = model(image[..., 0:16]).softmax(1)
        right = model(image[..., 4:20]).softmax(1)
    expected = torch.zeros(1, 2, 16, 20)
    count = torch.zeros(1, 1, 16, 20)
    expected[..., 0:16] += left
    count[..., 0:16] += 1
    expected[..., 4:20] += right
    count[..., 4:20] += 1
    torch.testing.assert_close(got, expected / count)


def test_two_models_average_softmax() -> None:
    torch.manual_seed(2)
    a, b = nn.Conv2d(3, 3, 1).eval(), nn.Conv2d(3, 3, 1).eval()
    image = torch.randn(1, 3, 6, 7)
    with torch.no_grad():
        got = predict_probs([a, b], image, 3, EvalConfig())
        expected = (a(image).softmax(1) + b(image).softmax(1)) / 2
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="num_classes=5"):
        predict_probs([a], image, 5, EvalConfig())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_with_autocast_matches_cpu() -> None:
    items = make_case(5)
    cpu = evaluate([OracleNet(5)], batches(items), 5, NAMES, EvalConfig(overlays=1), "cpu")
    gpu = evaluate([OracleNet(5).cuda()], batches(items), 5, NAMES, EvalConfig(overlays=1), "cuda",
                   amp_dtype=torch.bfloat16)
    np.testing.assert_array_equal(gpu.confusion, cpu.confusion)
    np.testing.assert_array_equal(gpu.samples[0].pred, cpu.samples[0].pred)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_autocast_evaluation_of_a_real_network_agrees_with_fp32(amp: str) -> None:
    """A trained-shape DeepLabV3+ (convs, BN, ASPP, bilinear upsampling: every
    autocast-eligible op) scored under bf16/fp16 autocast predicts what fp32 does on
    nearly every pixel; the confusion matrix counts the same pixels."""
    from rrn_core.models.deeplab import build_segmenter
    from rrn_core.config_sections import ModelConfig

    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip(reason="this GPU has no bf16")
    torch.manual_seed(0)
    net = build_segmenter(ModelConfig(backbone="resnet18d", base_width=16,
                                      aspp_channels=32, low_level_channels=8, head_channels=32), 5)
    net = net.cuda().eval()
    items = make_case(7, sizes=((65, 97), (64, 64), (33, 47)))
    for it in items:  # informative inputs: every channel varies
        it["image"] = it["image"] + torch.randn_like(it["image"])
    fp32 = evaluate([net], batches(items), 5, NAMES, EvalConfig(overlays=3), "cuda")
    mixed = evaluate([net], batches(items), 5, NAMES, EvalConfig(overlays=3), "cuda",
                     amp_dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
    assert mixed.confusion.sum() == fp32.confusion.sum()
    agree = np.mean([np.mean(a.pred == b.pred) for a, b in zip(mixed.samples, fp32.samples)])
    # An untrained net's logits are close together, so reduced precision may flip a
    # few near-ties; an overflow (fp16) or a dtype error shows as far less agreement.
    assert agree >= 0.9, f"{amp} predictions agree with fp32 on only {agree:.3f} of the pixels"
    assert math.isfinite(mixed.miou)


# --- torch.distributed: two gloo ranks must give the single-process confusion matrix ---

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SIZES5 = ((7, 9), (12, 5), (4, 4), (9, 11), (6, 6))


def _dist_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        items = make_case(4, sizes=SIZES5)
        net = [OracleNet(5)]
        loader = DataLoader(ListDataset(items), batch_size=1)
        full = evaluate(net, loader, 5, NAMES, EvalConfig(overlays=2), "cpu")
        limited = evaluate(net, loader, 5, NAMES, EvalConfig(overlays=0, max_images=3), "cpu")
        plain = evaluate(net, batches(items), 5, NAMES, EvalConfig(overlays=0, max_images=4), "cpu")
        queue.put((rank, {"full": full.confusion, "limited": limited.confusion, "plain": plain.confusion,
                          "ids": [s.id for s in full.samples]}))
    except BaseException:
        queue.put((rank, traceback.format_exc()))
        raise
    finally:
        dist.destroy_process_group()


def test_distributed_confusion_is_summed_over_ranks() -> None:
    """Each rank scores a shard (a DataLoader, or any iterable of batches) and every
    rank ends with the single-process matrix; max_images counts the whole set."""
    items = make_case(4, sizes=SIZES5)
    expected = {
        "full": evaluate([OracleNet(5)], batches(items), 5, NAMES, EvalConfig(overlays=0), "cpu").confusion,
        "limited": evaluate([OracleNet(5)], batches(items[:3]), 5, NAMES, EvalConfig(overlays=0), "cpu").confusion,
        "plain": evaluate([OracleNet(5)], batches(items[:4]), 5, NAMES, EvalConfig(overlays=0), "cpu").confusion,
    }
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_dist_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results: dict = {}
    try:
        while len(results) < len(procs):
            try:
                rank, payload = queue.get(timeout=1)
            except queue_mod.Empty:  # a rank that died before reporting must not stall the suite
                crashed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                assert not crashed, f"a rank died without reporting (exit codes {crashed})"
                continue
            assert not isinstance(payload, str), f"rank {rank} failed:\n{payload}"
            results[rank] = payload
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    assert all(p.exitcode == 0 for p in procs)
    for rank in (0, 1):
        for key, confusion in expected.items():
            np.testing.assert_array_equal(results[rank][key], confusion, err_msg=f"rank {rank}, {key}")
    assert results[0]["ids"] == ["img0", "img1"] and results[1]["ids"] == []
