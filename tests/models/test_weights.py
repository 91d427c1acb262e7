"""Pretrained weights: files by path (torch or safetensors, every tensor arrives), the old
torchvision-format ResNet files, hub weights from the cache, and the offline error. Nothing
here downloads: hub tests run with HF_HUB_OFFLINE and a cache built in a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants as hf_constants
from safetensors.torch import save_file

from rrn_core.models import WeightsError, build_segmenter
from rrn_core.models.encoders import resnet_width_kwargs
from rrn_core.models.pretrained import pretrained_problem, weight_source, weights_identity
from rrn_core.models.weights import file_sha256
from rrn_core.config_sections import ConfigError, ModelConfig

HEAD = dict(aspp_channels=8, low_level_channels=8, head_channels=8)


def classifier_state(name: str, base_width: int | None = None, seed: int = 7) -> dict[str, torch.Tensor]:
    """A whole timm classifier's state dict (head included) with distinct random values."""
    torch.manual_seed(seed)
    net = timm.create_model(name, pretrained=False, **resnet_width_kwargs(name, base_width))
    gen = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=gen) if v.is_floating_point() else torch.full_like(v, 42))
            for k, v in net.state_dict().items()}


def assert_every_tensor_arrived(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> int:
    """Each encoder tensor equals the file's tensor of the same name ('.'/'_' alike)."""
    by_normal = {k.replace(".", "_"): v for k, v in saved.items()}
    own = model.backbone.state_dict()
    for key, value in own.items():
        normal = key.removeprefix("model.").replace(".", "_")
        assert normal in by_normal, key
        assert torch.equal(value, by_normal[normal]), key
    return len(own)


@pytest.mark.parametrize("name, width, fmt", [
    ("resnet18d", 8, "pth"), ("resnet18d", 8, "safetensors"), ("convnext_atto", None, "safetensors"),
    ("vit_small_patch14_dinov2", None, "pth"),
])
def test_a_saved_model_loads_by_path_every_tensor(tmp_path: Path, name: str, width: int | None, fmt: str) -> None:
    saved = classifier_state(name, width)
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "safetensors":
        save_file(saved, str(path))
    else:
        torch.save(saved, path)
    model = build_segmenter(ModelConfig(backbone=name, base_width=width, pretrained=str(path), **HEAD), 3)
    count = assert_every_tensor_arrived(model, saved)
    report = model.weights_report
    assert report is not None and len(report.loaded) == count
    assert report.sha256 == file_sha256(path) and len(report.sha256) == 64
    # the classifier (and, for convnets, what features_only cut off) is left out, nothing else
    assert set(report.loaded).isdisjoint(report.ignored)
    assert len(report.loaded) + len(report.ignored) == len(saved)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_old_torchvision_format_resnet_files_still_load(tmp_path: Path, name: str) -> None:
    """The files the hand-written ResNet read: torchvision's names, wrapped by a trainer."""
    torchvision = pytest.importorskip("torchvision", reason="torchvision is pinned beside torch")
    torch.manual_seed(3)
    state = getattr(torchvision.models, name)(weights=None).state_dict()
    path = tmp_path / f"{name}-tv.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 90}, path)
    model = build_segmenter(ModelConfig(backbone=name, pretrained=str(path), **HEAD), 3)
    assert_every_tensor_arrived(model, state)
    assert model.weights_report is not None and model.weights_report.ignored == ["fc.bias", "fc.weight"]


def test_relative_file_resolves_against_the_config_folder_and_names_stay(tmp_path: Path) -> None:
    from rrn_core.paths import resolve_tree_paths
    for value, expected in [("r18.pth", str(tmp_path / "r18.pth")), ("./w/x", str(tmp_path / "w/x")),
                            ("imagenet", "imagenet"), ("ra2_in1k", "ra2_in1k"), ("none", "none")]:
        tree = {"model": {"pretrained": value}}
        resolve_tree_paths(tree, tmp_path)
        assert tree["model"]["pretrained"] == expected


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "resnet50.pth"
    cfg = ModelConfig(backbone="resnet18d", base_width=8, pretrained=str(missing))
    with pytest.raises(WeightsError, match="resnet50.pth: pretrained weights file not found") as err:
        build_segmenter(cfg, 3)
    assert isinstance(err.value, ConfigError)  # the CLI's exit-2 path handles it
    assert "resnet50.pth not found" in (pretrained_problem("resnet18d", str(missing)) or "")


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pth"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(WeightsError, match="broken.pth: cannot read pretrained weights"):
        build_segmenter(ModelConfig(backbone="resnet18d", base_width=8, pretrained=str(path), **HEAD), 3)


def test_file_of_another_net_is_refused_with_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "wide.pth"
    torch.save(classifier_state("resnet18d", 16), path)
    with pytest.raises(WeightsError, match=r"wide.pth: does not fit this encoder \(shape mismatch"):
        build_segmenter(ModelConfig(backbone="resnet18d", base_width=8, pretrained=str(path), **HEAD), 3)
    partial = classifier_state("resnet18d", 8)
    partial.pop("layer4.1.conv2.weight")
    partial["layer1.0.conv9.weight"] = torch.zeros(2)
    torch.save(partial, path)
    with pytest.raises(WeightsError) as err:
        build_segmenter(ModelConfig(backbone="resnet18d", base_width=8, pretrained=str(path), **HEAD), 3)
    text = str(err.value)
    assert "missing from the file: 1 (layer4.1.conv2.weight)" in text
    assert "in the file, not in the encoder: 1 (layer1.0.conv9.weight)" in text


# --------------------------------------------------------------------------- hub names


@pytest.fixture()
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache in a temp folder, with the hub offline."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def put_in_cache(cache: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    """Lay a file out as huggingface_hub's cache does (refs/main -> snapshots/<rev>/)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    snapshot = folder / "snapshots" / rev
    snapshot.mkdir(parents=True)
    save_file(state, str(snapshot / "model.safetensors"))
    return snapshot / "model.safetensors"


def test_named_weights_come_from_the_cache_without_network(offline_cache: Path) -> None:
    name = "mobilenetv3_small_050"
    src = weight_source(name, "imagenet")
    assert src.kind == "hub" and src.repo.startswith(f"timm/{name}.")
    saved = classifier_state(name)
    path = put_in_cache(offline_cache, src.repo, saved)
    assert pretrained_problem(name, "imagenet") is None
    model = build_segmenter(ModelConfig(backbone=name, pretrained="imagenet", **HEAD), 3)
    assert_every_tensor_arrived(model, saved)
    assert weights_identity(name, "imagenet") == {"source": src.describe(), "sha256": file_sha256(path)}


def test_offline_with_an_empty_cache_is_one_error_saying_how_to_prefetch(offline_cache: Path) -> None:
    problem = pretrained_problem("resnet50d", "imagenet")
    assert problem is not None
    for words in ("resnet50d.ra2_in1k", "not in the cache", str(offline_cache), "HF_HUB_OFFLINE",
                  "rrn weights fetch resnet50d --pretrained ra2_in1k", "HF_HOME"):
        assert words in problem, (words, problem)
    with pytest.raises(WeightsError, match="rrn weights fetch"):
        build_segmenter(ModelConfig(backbone="resnet50d", pretrained="imagenet"), 3)
    assert weights_identity("resnet50d", "imagenet")["sha256"] == ""


def test_named_weights_are_validated_in_the_config() -> None:
    with pytest.raises(ValueError, match="'in22k' is neither a file nor a weight tag of resnet50d"):
        ModelConfig(backbone="resnet50d", pretrained="in22k")
    with pytest.raises(ValueError, match="unset base_width"):
        ModelConfig(backbone="resnet50d", base_width=8, pretrained="imagenet")
    assert ModelConfig(backbone="resnet50d", pretrained="ra2_in1k").pretrained == "ra2_in1k"
    assert weight_source("resnet50d", "none").kind == "none"
