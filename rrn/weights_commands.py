"""`rrn weights fetch | where`: put timm's published weights into the Hugging Face cache
ahead of time, for clusters whose nodes have no network (see rrn_core/models/pretrained.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from rrn.console import cli_app, escape, out, user_errors

app = cli_app(None, "Pretrained backbone weights: pre-fetch into the Hugging Face cache, show where.")

Backbones = Annotated[list[str], typer.Argument(help="timm backbone names, e.g. resnet101c vit_small_patch14_dinov2")]
Pretrained = Annotated[str, typer.Option("--pretrained", "-p",
                                         help="'imagenet' (timm's default weights) or a timm weight tag")]


def _sources(backbones: list[str], pretrained: str):
    from rrn_core.models.backbones import backbone_problem
    from rrn_core.models.pretrained import weight_source
    from rrn_core.models.weights import WeightsError

    sources = []
    for name in backbones:
        if problem := backbone_problem(name, None, 16):
            raise WeightsError(problem)
        sources.append(weight_source(name, pretrained))
    return sources


@app.command("fetch")
def fetch_command(backbones: Backbones, pretrained: Pretrained = "imagenet") -> None:
    """Download the weights (once) into the cache HF_HOME points at; prints each file.

    On an offline cluster: run this where there is network with the same HF_HOME the
    nodes mount (or copy that folder), and set model.pretrained to the same name."""
    from rrn_core.models.pretrained import cache_dir, fetch
    from rrn_core.models.weights import file_sha256

    with user_errors():
        for src in _sources(backbones, pretrained):
            path = fetch(src)
            out.print(escape(f"{src.backbone}\t{src.tag}\t{path}\tsha256 {file_sha256(path)}"), highlight=False)
    out.print(f"cache: {escape(str(cache_dir()))}", highlight=False)


@app.command("where")
def where_command(backbones: Backbones, pretrained: Pretrained = "imagenet") -> None:
    """Say whether the weights are in the cache (never downloads); exit 1 when one is not."""
    from rrn_core.models.pretrained import cache_dir, cached_file

    with user_errors():
        sources = _sources(backbones, pretrained)
    missing = 0
    for src in sources:
        path = cached_file(src)
        missing += path is None
        out.print(escape(f"{src.backbone}\t{src.tag}\t{path or 'not cached'}"), highlight=False)
    out.print(f"cache: {escape(str(cache_dir()))}", highlight=False)
    if missing:
        raise typer.Exit(1)
