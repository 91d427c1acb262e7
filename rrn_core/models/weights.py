"""Pretrained backbone weights from a local file; nothing is ever downloaded.

Runs happen on machines without network (CI, cluster pods), so `model.pretrained`
names a file the user placed there: a torchvision-format ResNet state dict, or a
checkpoint dict holding one under "state_dict"/"model". A silent partial load would
make a sweep compare pretrained against random nets without anyone noticing, so the
result says exactly what loaded and what did not, and a file that matches nothing
is an error naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from rrn_core.models.resnet import ResNet
from rrn_core.config_sections import ConfigError

log = logging.getLogger(__name__)

_STEM_KEYS = ("conv1.", "bn1.")
_STRIPPED_PREFIXES = ("module.", "backbone.")
_WRAPPER_KEYS = ("state_dict", "model")


class WeightsError(ConfigError):
    """The pretrained weights file cannot be used; the message names the file."""


@dataclass
class WeightsReport:
    """What `load_backbone_weights` did, so callers can log it (e.g. as an MLflow tag)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)       # in the model, not filled from the file
    unexpected: list[str] = field(default_factory=list)    # in the file, no such key in the model
    mismatched: list[str] = field(default_factory=list)    # same key, different shape
    ignored: list[str] = field(default_factory=list)       # classifier (fc.*) and the like
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 8) -> str:
        def few(keys: list[str]) -> str:
            more = f", ... (+{len(keys) - limit})" if len(keys) > limit else ""
            return ", ".join(keys[:limit]) + more

        lines = [f"{self.path}: loaded {len(self.loaded)} tensors into the backbone"]
        for label, keys in (("missing (kept random init)", self.missing),
                            ("unexpected (not used)", self.unexpected),
                            ("shape mismatch (not used)", self.mismatched)):
            if keys:
                lines.append(f"  {label}: {len(keys)}: {few(keys)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from a local file, unwrapping checkpoint dicts and DDP prefixes."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(
            f"{path}: pretrained weights file not found (model.pretrained); weights are never "
            "downloaded, place a torchvision-format ResNet state dict there or unset model.pretrained"
        )
    try:
        # weights_only: a weights file must not be able to run code when read
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means "not a readable weights file"
        raise WeightsError(f"{path}: cannot read pretrained weights: {err}") from None
    for key in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    state: dict[str, Tensor] = {}
    for name, value in obj.items():
        if not isinstance(value, Tensor):
            continue
        for prefix in _STRIPPED_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
        state[name] = value
    if not state:
        raise WeightsError(f"{path}: the file holds no tensors")
    return state


def _stem_kind(state: Mapping[str, Tensor]) -> str | None:
    if "conv1.weight" in state:
        return "single"
    if any(k.startswith("conv1.0.") for k in state):
        return "deep"
    return None


def load_backbone_weights(backbone: ResNet, path: str | Path) -> WeightsReport:
    """Copy matching tensors from `path` into `backbone` and report what happened.

    Keys are matched by name and shape. `fc.*` (the ImageNet classifier) is ignored.
    When the file's stem differs from the backbone's (a torchvision 7x7 conv against
    the deep "v1c" stem, or the reverse) the stem (`conv1.*`, `bn1.*`) keeps its random
    init and everything else loads: bn1's statistics belong to the other stem's conv.
    Raises WeightsError when the file is missing/unreadable or no tensor matches.
    """
    state = read_state_dict(path)
    report = WeightsReport(path=str(path))
    file_stem = _stem_kind(state)
    model_stem = "deep" if backbone.deep_stem else "single"
    if file_stem is not None and file_stem != model_stem:
        if model_stem == "deep":
            report.notes.append(
                "the file has a single-conv (torchvision 7x7) stem but the backbone uses the deep "
                "(v1c) stem (model.deep_stem=true): the stem (conv1.*, bn1.*) keeps its random "
                "init, all other layers load; set model.deep_stem=false to load the whole file")
        else:
            report.notes.append(
                "the file has a deep (v1c) stem but model.deep_stem=false: the stem (conv1.*, bn1.*) "
                "keeps its random init; set model.deep_stem=true to load the whole file")
        for key in [k for k in state if k.startswith(_STEM_KEYS)]:
            report.ignored.append(key)
            del state[key]

    own = backbone.state_dict()
    chosen: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("fc."):
            report.ignored.append(key)
        elif key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append(
                f"{key} (file {tuple(value.shape)} vs model {tuple(own[key].shape)})")
        else:
            chosen[key] = value
    # BN step counters are scalars that "match" any net; they do not make a load
    if not any(not k.endswith("num_batches_tracked") for k in chosen):
        raise WeightsError(
            f"{path}: no tensor matches the {backbone.name} backbone (base_width={backbone.base_width}, "
            f"deep_stem={backbone.deep_stem}); first keys in the file: {', '.join(list(state)[:5])}")
    backbone.load_state_dict(chosen, strict=False)
    report.loaded = sorted(chosen)
    report.missing = [k for k in own if k not in chosen]
    (log.info if report.complete and not report.notes else log.warning)(report.summary())
    return report
