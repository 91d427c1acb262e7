"""`rrn eval | predict` and the run config `rrn train` loads: one run on this machine, no Ray involved.

`rrn train` itself is rrn/train_commands.py (the same run, tracked in MLflow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rrn.console import console, escape, fail, out, user_errors

Overrides = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", help="Override a config field, e.g. --set method.w_select=0.5 (repeatable).")]
EVAL_MODES = ("whole", "sliding")


def load_run_config(config: Path, overrides: list[str] | None):
    """The config file plus --set overrides; ConfigError (exit 2) on any problem."""
    from rrn_core.config import load_config, parse_override

    with user_errors():
        pairs = dict(parse_override(o) for o in overrides or [])
        return load_config(config, pairs)




ForkOpt = Annotated[Optional[str], typer.Option(
    "--fork", metavar="RUN", help="Start a NEW run (in --output-dir / runtime.output_dir) from RUN's "
    "checkpoint (a .pt file, checkpoints/ folder or run folder) with this config's settings; RUN is "
    "left as it is. Needed when the settings differ from RUN's: a plain resume refuses that.")]


def prepared_run(config: Path, overrides: list[str] | None, output_dir: str | None, resume: bool):
    """`rrn train`'s config after the up-front check (rrn_core/run_checks.py): nothing
    has been written when this returns or refuses."""
    return prepared_training(config, overrides, output_dir, resume)[0]


def prepared_training(config: Path, overrides: list[str] | None, output_dir: str | None,
                      resume: bool, fork: str | None = None):
    """(config, the checkpoint the run starts from or None) after every up-front check:
    config, data, device, output folder (rrn_core/run_checks.py) and what a resume may
    continue (rrn_core/resume_check.py: a changed config is refused, naming the fields).
    Nothing has been written when this returns or refuses. With no output folder set
    anywhere, the run's folder is `runs/<name>-<config hash>` (`default_output_dir`)."""
    from rrn_core.resume_check import default_output_dir, start_checkpoint
    from rrn_core.run_checks import check_run

    cfg = load_run_config(config, overrides)
    with user_errors():
        if output_dir:
            cfg.runtime.output_dir = output_dir
        elif "output_dir" not in cfg.runtime.model_fields_set:
            cfg.runtime.output_dir = default_output_dir(cfg)
        cfg.runtime.resume = resume
        check_run(cfg, str(config))
        start, note = start_checkpoint(cfg, fork)
    console.print(f"{cfg.runtime.output_dir}: {note}", highlight=False, markup=False)
    return cfg, start


def _config_from_checkpoint(checkpoint: str, config: Path | None, overrides: list[str] | None,
                            storage_options: dict | None = None, data: str = "val"):
    """A checkpoint carries its run config, so eval/predict need nothing else; the
    checkpoint, the config and the data it reads are checked before anything runs."""
    from rrn_core.config import build_config, parse_override
    from rrn_core.run_checks import checkpoint_method_problem, raise_problems, read_checkpoint, run_problems

    with user_errors():
        state = read_checkpoint(checkpoint, storage_options)
        pairs = dict(parse_override(o) for o in overrides or [])
        source = f"{checkpoint} (its run config)" if config is None else str(config)
        cfg = (load_run_config(config, overrides) if config
               else build_config(state["config"], pairs, source=source))
        fit = checkpoint_method_problem(state, cfg)
        raise_problems(source, ([fit] if fit else []) + run_problems(cfg, data=data, output=False))
    return cfg, state



def eval_command(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint file, checkpoints/ folder or a run's "
                                              "output folder (local or s3://).")],
    config: Annotated[Optional[Path], typer.Option(help="Use this config instead of the checkpoint's.")] = None,
    overrides: Overrides = None,
    mode: Annotated[Optional[str], typer.Option(help="whole | sliding (default: the config's).")] = None,
) -> None:
    """Evaluate a checkpoint on the validation split: mIoU, per-class IoU, pixel accuracy."""
    if mode is not None and mode not in EVAL_MODES:
        raise fail(f"--mode: must be one of {', '.join(EVAL_MODES)}, got {mode!r}")
    import torch

    from rrn_core.data.bundle import build_datasets
    from rrn_core.evaluate import evaluate
    from rrn_core.loop import amp_dtype
    from rrn_core.distributed import dist_info, resolve_device

    cfg, state = _config_from_checkpoint(checkpoint, config, overrides)
    if mode:
        cfg.eval.mode = mode
    with user_errors():
        device = resolve_device(cfg.runtime.device, dist_info())
        branches = _branches_from_state(cfg, state, device)
        bundle = build_datasets(cfg.data, cfg.runtime.seed)
    loader = torch.utils.data.DataLoader(bundle.val, batch_size=1)
    result = evaluate(branches, loader, cfg.data.num_classes, bundle.class_names, cfg.eval, device,
                      amp_dtype(cfg, device))
    print_eval(result)


def predict_command(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint file, checkpoints/ folder or a run's "
                                              "output folder (local or s3://).")],
    images: Annotated[list[Path], typer.Argument(help="Image files (any mode; converted to RGB).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the overlay PNGs.")] = Path("predictions"),
    config: Annotated[Optional[Path], typer.Option(help="Use this config instead of the checkpoint's.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace <name>_overlay.png / <name>_mask.png files already in --out.")] = False,
) -> None:
    """Segment images and write colour overlays (<name>_overlay.png) and masks (<name>_mask.png).

    Every image is opened, and the output folder judged writable, before the first
    file is written: a bad image leaves no half-written output behind. An output
    file that already exists (a ground-truth `a_mask.png` beside `a.jpg` when --out is
    the images' folder) is never replaced without --overwrite."""
    import numpy as np
    import torch

    from rrn_core.data.image_files import DataError, read_rgb
    from rrn_core.data.transforms import normalize
    from rrn_core.evaluate import predict_probs
    from rrn_core.distributed import dist_info, resolve_device
    from rrn_core.run_checks import raise_problems, writable_dir_problem
    from rrn_core.visualize import colorize, overlay

    problems = []
    if problem := writable_dir_problem(out, "--out"):
        problems.append(problem)
    rgbs = []
    for path in images:
        try:
            rgbs.append(np.asarray(read_rgb(Path(path))))
        except DataError as err:
            problems.append(f"IMAGES: {err}")
    stems = [p.stem for p in images]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        problems.append(f"IMAGES: several images are named {twice[0]!r}; their outputs would overwrite "
                        "each other")
    if not overwrite:
        problems += [f"--out: {target} exists; pass --overwrite to replace it"
                     for target in _prediction_files(out, images) if target.exists()]
    with user_errors():
        raise_problems("rrn predict", problems, "cannot predict")
    cfg, state = _config_from_checkpoint(checkpoint, config, None, data="none")
    with user_errors():
        device = resolve_device(cfg.runtime.device, dist_info())
        branches = _branches_from_state(cfg, state, device)
    out.mkdir(parents=True, exist_ok=True)
    for path, rgb in zip(images, rgbs):
        x = normalize(rgb).unsqueeze(0).to(device)
        with torch.no_grad():
            pred = predict_probs(branches, x, cfg.data.num_classes, cfg.eval).argmax(1)[0].cpu().numpy()
        overlay_file, mask_file = _prediction_files(out, [path])
        overlay(rgb, pred, cfg.data.num_classes).save(overlay_file)
        colorize(pred).save(mask_file)
        console.print(escape(f"{path} -> {overlay_file}"), highlight=False)


def _prediction_files(out: Path, images: list[Path]) -> list[Path]:
    """The files `rrn predict` writes for `images`, in order: overlay, mask per image."""
    return [out / f"{p.stem}_{kind}.png" for p in images for kind in ("overlay", "mask")]


def _branches_from_state(cfg, state, device):
    from rrn.console import UserError
    from rrn_core.loop import load_model_state
    from rrn_core.methods.build import build_method

    method = build_method(cfg, cfg.data.num_classes)
    try:
        load_model_state(method, state["model"])
    except (RuntimeError, KeyError, TypeError, AttributeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"the checkpoint's model does not fit its config (method.name "
                        f"{cfg.method.name!r}, model.backbone {cfg.model.backbone!r}): {reason}") from None
    return [b.to(device).eval() for b in method.branches]


def print_eval(result) -> None:
    import math

    from rich.table import Table

    table = Table(title=f"mIoU {result.miou:.4f}   pixel acc {result.pixel_acc:.4f}")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, iou in zip(result.class_names, result.per_class_iou):
        table.add_row(escape(name), "-" if math.isnan(iou) else f"{iou:.4f}")
    out.print(table)


def untracked_train_command(
    config: Annotated[Path, typer.Argument(help="Run config YAML (see configs/).")],
    overrides: Overrides = None,
    output_dir: Annotated[Optional[str], typer.Option(help="Where checkpoints go (local path or s3://...).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from output_dir's last checkpoint if there is one.")] = True,
    fork: ForkOpt = None,
) -> None:
    """Train one run as the config says, without MLflow (`python -m rrn_core train`:
    machines without Ray, MLflow or Optuna; `rrn train` is the tracked command)."""
    from rrn_core.loop import TrainHooks, train

    cfg, start = prepared_training(config, overrides, output_dir, resume, fork)

    class PrintEvaluations(TrainHooks):
        def on_evaluation(self, step, result, checkpoint_dir):
            console.print(f"step {step}: mIoU {result.miou:.4f}  pixel acc {result.pixel_acc:.4f}"
                          f"  checkpoint {escape(str(checkpoint_dir))}")

    with user_errors():
        result = train(cfg, PrintEvaluations(), resume_from=start)
    if result.final is not None:
        print_eval(result.final)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("predict")(predict_command)
