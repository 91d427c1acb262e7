"""Put a weights file into an encoder: safetensors or a torch state dict, by name.

Files come from timm/Hugging Face (rrn_core/models/pretrained.py puts them in the
user's cache), from a user's disk (`model.pretrained: ./weights.pth`), or from the
old hand-written ResNet (torchvision names, which timm's ResNet shares). A file
holds a whole classifier's names (`stem.0.weight`, `fc.weight`); timm's
`features_only` nets rename modules they flatten (`stem_0.weight`) and ViT readers
wrap the net (`model.blocks.0...`). Names are therefore matched with '.' and '_'
made equal and wrapper prefixes taken off, and every tensor is accounted for: a
silent partial load would make a sweep compare pretrained against random nets
without anyone noticing, so a file that leaves encoder tensors unfilled, or holds
tensors the encoder has no place for (other than the classifier head), is an
error naming the file and the first such names.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from rrn_core.config_sections import ConfigError

log = logging.getLogger(__name__)

_STRIPPED_PREFIXES = ("module.", "backbone.", "encoder.", "model.")
_WRAPPER_KEYS = ("state_dict", "model")


class WeightsError(ConfigError):
    """The pretrained weights cannot be used; the message names the file."""


@dataclass
class WeightsReport:
    """What `load_encoder_weights` did, so callers can log it (e.g. as an MLflow tag)."""

    path: str
    sha256: str = ""
    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)       # classifier head and the like

    def summary(self) -> str:
        return (f"{self.path}: loaded {len(self.loaded)} tensors into the encoder "
                f"({len(self.ignored)} head tensors not used); sha256 {self.sha256[:12]}")


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """The file's sha256 (memoised per path, size and mtime: a 350 MB file takes ~1 s)."""
    st = Path(path).stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def _read_any(p: Path) -> object:
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(p), device="cpu")
    # weights_only: a weights file must not be able to run code when read
    return torch.load(p, map_location="cpu", weights_only=True)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from a local file, unwrapping checkpoint dicts and DDP prefixes."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"{path}: pretrained weights file not found (model.pretrained)")
    try:
        obj = _read_any(p)
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
        if isinstance(value, Tensor):
            state[_strip(name)] = value
    if not state:
        raise WeightsError(f"{path}: the file holds no tensors")
    return state


def _strip(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _STRIPPED_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    return name


def _normal(name: str) -> str:
    return _strip(name).replace(".", "_")


def map_to_encoder(state: Mapping[str, Tensor], encoder: nn.Module,
                   source: str) -> tuple[dict[str, Tensor], list[str]]:
    """(the file's tensors under the encoder's names, the head tensors left out).

    Raises WeightsError naming `source` when a tensor has no place, a place has no
    tensor, or shapes differ.
    """
    own = encoder.state_dict()
    by_normal: dict[str, str] = {}
    for key in own:
        by_normal.setdefault(_normal(key), key)
    # The encoder's own top-level modules: a file tensor outside all of them belongs to
    # what features_only cut off (classifier, final conv/norm of a convnet), not an error.
    kept = tuple({f"{_strip(key).split('.')[0]}_".replace(".", "_") for key in own})
    chosen: dict[str, Tensor] = {}
    ignored: list[str] = []
    unexpected: list[str] = []
    mismatched: list[str] = []
    for key, value in state.items():
        target = by_normal.get(_normal(key))
        if target is None:
            (unexpected if _normal(key).startswith(kept) else ignored).append(key)
        elif tuple(value.shape) != tuple(own[target].shape):
            mismatched.append(f"{key} (file {tuple(value.shape)} vs model {tuple(own[target].shape)})")
        else:
            chosen[target] = value
    missing = [k for k in own if k not in chosen and not k.endswith("num_batches_tracked")]
    problems = [(label, keys) for label, keys in (("shape mismatch", mismatched),
                                                  ("missing from the file", missing),
                                                  ("in the file, not in the encoder", unexpected))
                if keys]
    if problems:
        detail = "; ".join(f"{label}: {len(keys)} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})"
                           for label, keys in problems)
        raise WeightsError(f"{source}: does not fit this encoder ({detail}). The file must hold the "
                           "weights of the model.backbone named (its state_dict, e.g. a torchvision "
                           "ResNet for resnet50, the release's v1c ResNet for resnet101c)")
    return chosen, ignored


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> WeightsReport:
    """Copy every tensor of the file at `path` into `encoder`; see `map_to_encoder`."""
    chosen, ignored = map_to_encoder(read_state_dict(path), encoder, str(path))
    encoder.load_state_dict(chosen, strict=False)
    report = WeightsReport(path=str(path), sha256=file_sha256(Path(path).expanduser()),
                           loaded=sorted(chosen), ignored=sorted(ignored))
    log.info(report.summary())
    return report


__all__ = ["WeightsError", "WeightsReport", "file_sha256", "load_encoder_weights", "map_to_encoder",
           "read_state_dict"]
