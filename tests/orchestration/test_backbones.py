"""Backbone tags (what a run starts from, with the weights' sha256) and the report's arms."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import torch

from orchestration.backbones import backbone_tags, label_by_backbone
from rrn_core.config import build_config


def test_tags_name_the_backbone_and_hash_the_weights_file(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    torch.save({"x": torch.arange(3.0)}, weights)
    tree = {"data": {"root": str(tmp_path)}, "model": {"backbone": "resnet18d", "base_width": 8,
                                                       "pretrained": str(weights)}}
    tags = backbone_tags(build_config(tree))
    assert tags == {"rrn.backbone": "resnet18d", "rrn.weights": str(weights),
                    "rrn.weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    tree["model"]["pretrained"] = "none"
    assert backbone_tags(build_config(tree))["rrn.weights"] == "none"


def test_methods_become_one_arm_per_backbone_only_when_backbones_differ() -> None:
    df = pd.DataFrame({"method": ["cps", "cps", "rrn"],
                       "model.backbone": ["resnet101c", "vit_small_patch14_dinov2", "resnet101c"]})
    assert list(label_by_backbone(df)["method"]) == [
        "cps on resnet101c", "cps on vit_small_patch14_dinov2", "rrn on resnet101c"]
    same = df.assign(**{"model.backbone": "resnet101c"})
    assert list(label_by_backbone(same)["method"]) == ["cps", "cps", "rrn"]
    assert list(label_by_backbone(df.drop(columns="model.backbone"))["method"]) == ["cps", "cps", "rrn"]
