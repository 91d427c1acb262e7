"""`rrn train | eval | predict`: one run on this machine, no Ray involved."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console(stderr=True)

Overrides = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", help="Override a config field, e.g. --set method.w_select=0.5 (repeatable).")]


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def _load(config: Path, overrides: list[str] | None):
    from rrn_core.config import ConfigError, load_config, parse_override

    try:
        pairs = dict(parse_override(o) for o in overrides or [])
        return load_config(config, pairs)
    except ConfigError as err:
        _fail(str(err))


def _config_from_checkpoint(checkpoint: str, config: Path | None, overrides: list[str] | None,
                            storage_options: dict | None = None):
    """A checkpoint carries its run config, so eval/predict need nothing else."""
    from rrn_core.checkpoint import load_checkpoint
    from rrn_core.config import ConfigError, build_config, parse_override

    url = checkpoint if checkpoint.endswith(".pt") else f"{checkpoint.rstrip('/')}/last.pt"
    try:
        state = load_checkpoint(url, storage_options or {})
    except (FileNotFoundError, ValueError, OSError) as err:
        _fail(str(err))
    try:
        pairs = dict(parse_override(o) for o in overrides or [])
        cfg = _load(config, overrides) if config else build_config(state["config"], pairs, source=url)
    except ConfigError as err:
        _fail(str(err))
    return cfg, state


def train_command(
    config: Annotated[Path, typer.Argument(help="Run config YAML (see configs/).")],
    overrides: Overrides = None,
    output_dir: Annotated[Optional[str], typer.Option(help="Where checkpoints go (local path or s3://...).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from output_dir's last checkpoint if there is one.")] = True,
) -> None:
    """Train one run (supervised, cps, fixmatch or rrn) as the config says."""
    from rrn_core.data.errors import DataError
    from rrn_core.loop import TrainHooks, train

    cfg = _load(config, overrides)
    if output_dir:
        cfg.runtime.output_dir = output_dir
    cfg.runtime.resume = resume

    class PrintEvaluations(TrainHooks):
        def on_evaluation(self, step, result, checkpoint_dir):
            console.print(f"step {step}: mIoU {result.miou:.4f}  pixel acc {result.pixel_acc:.4f}"
                          f"  checkpoint {checkpoint_dir}")

    try:
        result = train(cfg, PrintEvaluations())
    except (DataError, FileNotFoundError) as err:
        _fail(str(err))
    if result.final is not None:
        _print_eval(result.final)


def eval_command(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint file or directory (local or s3://).")],
    config: Annotated[Optional[Path], typer.Option(help="Use this config instead of the checkpoint's.")] = None,
    overrides: Overrides = None,
    mode: Annotated[Optional[str], typer.Option(help="whole | sliding (default: the config's).")] = None,
) -> None:
    """Evaluate a checkpoint on the validation split: mIoU, per-class IoU, pixel accuracy."""
    import torch

    from rrn_core.data.bundle import build_datasets
    from rrn_core.evaluate import evaluate
    from rrn_core.loop import amp_dtype, dist_info, resolve_device

    cfg, state = _config_from_checkpoint(checkpoint, config, overrides)
    if mode:
        cfg.eval.mode = mode
    device = resolve_device(cfg.runtime.device, dist_info())
    branches = _branches_from_state(cfg, state, device)
    bundle = build_datasets(cfg.data, cfg.runtime.seed)
    loader = torch.utils.data.DataLoader(bundle.val, batch_size=1)
    result = evaluate(branches, loader, cfg.data.num_classes, bundle.class_names, cfg.eval, device,
                      amp_dtype(cfg, device))
    _print_eval(result)


def predict_command(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint file or directory (local or s3://).")],
    images: Annotated[list[Path], typer.Argument(help="Image files (any mode; converted to RGB).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the overlay PNGs.")] = Path("predictions"),
    config: Annotated[Optional[Path], typer.Option(help="Use this config instead of the checkpoint's.")] = None,
) -> None:
    """Segment images and write colour overlays (<name>_overlay.png) and masks (<name>_mask.png)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from rrn_core.data.transforms import normalize
    from rrn_core.evaluate import predict_probs
    from rrn_core.loop import dist_info, resolve_device
    from rrn_core.visualize import colorize, overlay

    cfg, state = _config_from_checkpoint(checkpoint, config, None)
    device = resolve_device(cfg.runtime.device, dist_info())
    branches = _branches_from_state(cfg, state, device)
    out.mkdir(parents=True, exist_ok=True)
    for path in images:
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (FileNotFoundError, UnidentifiedImageError, OSError) as err:
            _fail(f"{path}: cannot read image ({err})")
        x = normalize(rgb).unsqueeze(0).to(device)
        with torch.no_grad():
            pred = predict_probs(branches, x, cfg.data.num_classes, cfg.eval).argmax(1)[0].cpu().numpy()
        overlay(rgb, pred, cfg.data.num_classes).save(out / f"{path.stem}_overlay.png")
        colorize(pred).save(out / f"{path.stem}_mask.png")
        console.print(f"{path} -> {out / (path.stem + '_overlay.png')}")


def _branches_from_state(cfg, state, device):
    from rrn_core.methods import build_method
    from rrn_core.loop import load_model_state

    method = build_method(cfg, cfg.data.num_classes)
    load_model_state(method, state["model"])
    return [b.to(device).eval() for b in method.branches]


def _print_eval(result) -> None:
    import math

    from rich.table import Table

    table = Table(title=f"mIoU {result.miou:.4f}   pixel acc {result.pixel_acc:.4f}")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, iou in zip(result.class_names, result.per_class_iou):
        table.add_row(name, "-" if math.isnan(iou) else f"{iou:.4f}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("predict")(predict_command)
