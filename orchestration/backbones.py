"""The backbone in tracking and in reports: what each run starts from, and one arm
per backbone when a sweep compares several.

Every run is tagged with its backbone, where its weights came from (none, a file,
timm's hub repo and tag) and the sha256 of the weights file, so that two runs that
claim the same ImageNet start can be checked to have had the same bytes. A sweep
with `model.backbone` on its grid (or searched) compares methods per backbone: the
report's `method` label becomes "cps on resnet101c", so every table, plot and
best-trial pick groups by (method, backbone) without a second grouping key.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from orchestration.names import TAG_BACKBONE, TAG_WEIGHTS, TAG_WEIGHTS_SHA256
from rrn_core.config import RunConfig
from rrn_core.models.pretrained import weights_identity

BACKBONE_KEY = "model.backbone"


def backbone_tags(config: RunConfig) -> dict[str, Any]:
    """rrn.backbone, rrn.weights and rrn.weights_sha256 ('' when no file is readable here)."""
    identity = weights_identity(config.model.backbone, config.model.pretrained)
    return {TAG_BACKBONE: config.model.backbone, TAG_WEIGHTS: identity["source"],
            TAG_WEIGHTS_SHA256: identity["sha256"]}


def label_by_backbone(df: pd.DataFrame) -> pd.DataFrame:
    """`method` -> "<method> on <backbone>" when the trials differ in backbone."""
    if BACKBONE_KEY not in df.columns or df[BACKBONE_KEY].dropna().nunique() < 2:
        return df
    df = df.copy()
    df["method"] = df["method"].astype(str) + " on " + df[BACKBONE_KEY].astype(str)
    return df


__all__ = ["BACKBONE_KEY", "backbone_tags", "label_by_backbone"]
