"""Where `model.pretrained`'s weights come from: nothing, a local file, or timm's hub.

`imagenet` (timm's default weights of the backbone) or a timm weight tag
(`resnet50d` + `ra2_in1k`) name files timm publishes on Hugging Face. They are
fetched once into the user's Hugging Face cache (`HF_HOME`, default
~/.cache/huggingface) and read from there afterwards, without network. A cluster
without network gets them by pre-fetching on a machine with it (`rrn weights fetch
BACKBONE`) and sharing the cache (set `HF_HOME` to the shared folder on both), or by
giving `model.pretrained` the cached file's path. Offline with an empty cache is one
clear error before anything is written (rrn_core/run_checks.py calls
`pretrained_problem`), not a stack trace from inside a training worker.

Loading always goes through rrn_core/models/weights.py, so a hub file and a user's
file are checked, reported and hashed the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rrn_core.models.backbones import DEFAULT_WEIGHTS, NO_WEIGHTS, pretrained_tag_problem
from rrn_core.models.weights import WeightsError, file_sha256
from rrn_core.paths import names_weights

#: timm's file names on the hub, in the order timm itself tries them.
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class WeightSource:
    """`model.pretrained` resolved: kind 'none', 'file' (path) or 'hub' (repo on HF)."""

    kind: str
    backbone: str
    path: str = ""          # file
    tag: str = ""           # hub: timm's weight tag (ra2_in1k, lvd142m, ...)
    repo: str = ""          # hub: Hugging Face repo id (timm/resnet50d.ra2_in1k)

    def describe(self) -> str:
        if self.kind == "file":
            return self.path
        if self.kind == "hub":
            return f"{self.backbone}.{self.tag} (hf://{self.repo})"
        return "none"


def weight_source(backbone: str, pretrained: str | None) -> WeightSource:
    """Resolve the config's value (already validated by ModelConfig)."""
    if pretrained is None or pretrained in NO_WEIGHTS:
        return WeightSource("none", backbone)
    if not names_weights(pretrained):
        return WeightSource("file", backbone, path=pretrained)
    if problem := pretrained_tag_problem(backbone, pretrained):
        raise WeightsError(f"model.pretrained: {problem}")
    import timm

    full = backbone if pretrained == DEFAULT_WEIGHTS else f"{backbone}.{pretrained}"
    cfg = timm.models.get_pretrained_cfg(full)
    if cfg is None or not cfg.hf_hub_id:
        raise WeightsError(f"model.pretrained: timm publishes {full} outside Hugging Face; "
                           "download the file yourself and give its path")
    return WeightSource("hub", backbone, tag=str(cfg.tag), repo=str(cfg.hf_hub_id))


def cache_dir() -> str:
    """The Hugging Face hub cache: HF_HUB_CACHE, else $HF_HOME/hub, read when called
    (huggingface_hub reads them once, at import)."""
    from huggingface_hub import constants
    if folder := os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(folder)
    if home := os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(home), "hub")
    return str(constants.HF_HUB_CACHE)


def cached_file(src: WeightSource) -> Path | None:
    """The hub file already in the cache, or None (reads the disk only)."""
    from huggingface_hub import try_to_load_from_cache
    for filename in HUB_FILENAMES:
        found = try_to_load_from_cache(src.repo, filename, cache_dir=cache_dir())
        if isinstance(found, str):
            return Path(found)
    return None


def offline() -> bool:
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "ON")


def _unreachable(timeout_s: float = 5.0) -> str:
    """Why the hub cannot be reached ('' when a TCP connection opens). huggingface_hub
    retries a failed request five times with back-off (~45 s for timm's two file
    names); one quick connection attempt answers the common offline case at once."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return ""   # through a proxy: let huggingface_hub try
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout_s).close()
    except OSError as err:
        return f"{url.hostname} is not reachable: {err}"
    return ""


def fetch(src: WeightSource) -> Path:
    """Download the hub file into the cache (a no-op when it is there); WeightsError
    with the way to pre-fetch when that is impossible (offline, no network)."""
    if found := cached_file(src):
        return found
    why = "HF_HUB_OFFLINE is set" if offline() else _unreachable()
    if not why:
        from huggingface_hub import hf_hub_download
        for filename in HUB_FILENAMES:
            try:
                return Path(hf_hub_download(src.repo, filename, cache_dir=cache_dir(), etag_timeout=10))
            except Exception as err:  # noqa: BLE001 - no network, no such file, ...: say which
                why = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
                if type(err).__name__ not in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
                    break   # the hub answered "no such file": try timm's other file name
    raise WeightsError(
        f"model.pretrained: the weights {src.describe()} are not in the cache ({cache_dir()}) and "
        f"cannot be downloaded ({why}). Pre-fetch them where there is network: "
        f"`rrn weights fetch {src.backbone} --pretrained {src.tag}`, then share that cache "
        "(same HF_HOME on every machine), or copy the file and set model.pretrained to its path")


def local_file(src: WeightSource, download: bool = True) -> Path | None:
    """The file the weights load from (None for 'none'); hub files are fetched when
    `download` (else None when not cached)."""
    if src.kind == "none":
        return None
    if src.kind == "file":
        return Path(src.path).expanduser()
    return fetch(src) if download else cached_file(src)


def pretrained_problem(backbone: str, pretrained: str | None) -> str | None:
    """Why the run's weights cannot be had on this machine (None: they can, and hub
    weights are in the cache afterwards)."""
    try:
        src = weight_source(backbone, pretrained)
        path = local_file(src)
    except WeightsError as err:
        return str(err)
    if path is not None and not path.is_file():
        return (f"model.pretrained: {src.path} not found (relative paths resolve against the "
                "config file's folder; or name weights: imagenet, a timm tag, none)")
    return None


def weights_identity(backbone: str, pretrained: str | None) -> dict[str, str]:
    """What the run starts from, for tracking: the source and the file's sha256
    ('' when nothing or not readable here)."""
    try:
        src = weight_source(backbone, pretrained)
        path = local_file(src, download=False)
    except WeightsError:
        return {"source": str(pretrained), "sha256": ""}
    digest = file_sha256(path) if path is not None and path.is_file() else ""
    return {"source": src.describe(), "sha256": digest}


__all__ = ["HUB_FILENAMES", "WeightSource", "cache_dir", "cached_file", "fetch", "local_file",
           "pretrained_problem", "weight_source", "weights_identity"]
