"""`rrn data`: generate the synthetic set, draw label splits, check or summarise a data set.

Heavy imports (numpy, PIL, torch) happen inside the commands so `rrn --help` is
instant. Every user error prints one message naming the file or option and
exits with code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from rrn import console
from rrn.console import cli_app, err, escape, fail, out

if TYPE_CHECKING:
    from rrn_core.config_sections import DataConfig

app = cli_app("data", "Data sets: generate the synthetic set, draw labeled/unlabeled splits, "
              "check a data set before a sweep.")

LAYOUTS = ("voc", "cityscapes")
LayoutOpt = Annotated[Optional[str], typer.Option(
    "--layout", help="Data layout: voc or cityscapes (default: the config's, else voc).")]
NumClassesOpt = Annotated[Optional[int], typer.Option(
    "--num-classes", min=2, help="Number of classes (default: lines of ROOT/classes.txt, "
    "else 21 for voc, 19 for cityscapes).")]
MaskDirOpt = Annotated[Optional[str], typer.Option(
    "--mask-dir", help="VOC mask folder, e.g. SegmentationClassAug (default SegmentationClass).")]
TrainSplitOpt = Annotated[Optional[str], typer.Option(
    "--train-split", help="Train split file (relative to ROOT unless absolute).")]
ValSplitOpt = Annotated[Optional[str], typer.Option(
    "--val-split", help="Val split file (relative to ROOT unless absolute).")]


def user_errors() -> AbstractContextManager[None]:
    """The shared contract (exit 2), plus the data commands' own option errors
    (ValueError) and unreadable paths (OSError)."""
    return console.user_errors(ValueError, OSError)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields the (done, total) callback the data code takes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def data_config(target: Path, layout: str | None, num_classes: int | None, mask_dir: str | None,
                train_split: str | None, val_split: str | None) -> DataConfig:
    """A DataConfig from a run config file (its `data` section) or from a data root + options."""
    from rrn_core.config import load_config
    from rrn_core.config_sections import DataConfig

    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if target.is_file():
        cfg = load_config(target).data
        updates = {"layout": layout, "num_classes": num_classes, "mask_dir": mask_dir,
                   "train_split": train_split, "val_split": val_split}
        updates = {k: v for k, v in updates.items() if v is not None}
        return DataConfig.model_validate({**cfg.model_dump(), **updates}) if updates else cfg
    if not target.is_dir():
        raise ValueError(f"{target}: neither a config file nor a data folder")
    layout = layout or "voc"
    if num_classes is None:
        names = target / "classes.txt"
        if names.is_file():
            from rrn_core.data.image_files import read_text_lines

            num_classes = len([n for _, n in read_text_lines(names, "class names file") if n])
        else:
            num_classes = 19 if layout == "cityscapes" else 21
    return DataConfig(root=str(target.expanduser().resolve()), layout=layout, num_classes=num_classes,
                      mask_dir=mask_dir or "SegmentationClass", train_split=train_split,
                      val_split=val_split)


@app.command("synth")
def synth(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="Folder to write the data set to.")],
    classes: Annotated[int, typer.Option("--classes", min=2, max=255,
                                         help="Number of classes, background included.")] = 6,
    train: Annotated[int, typer.Option("--train", min=1, help="Number of train images.")] = 400,
    val: Annotated[int, typer.Option("--val", min=1, help="Number of val images.")] = 100,
    size: Annotated[int, typer.Option("--size", min=16, help="Image side in pixels.")] = 96,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Generator seed.")] = 0,
    grayscale: Annotated[bool, typer.Option("--grayscale", help="Write grey JPEGs.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace a synthetic set with other parameters in OUT.")] = False,
) -> None:
    """Generate the synthetic VOC-layout data set (reused as is if OUT already holds the same one)."""
    from rrn_core.data.synth import generate_synthetic

    with user_errors(), progress_bar("generating") as progress:
        path = generate_synthetic(out_dir, num_classes=classes, num_train=train, num_val=val,
                                  size=size, seed=seed, grayscale=grayscale, overwrite=overwrite,
                                  progress=progress)
    typer.echo(f"synthetic data set: {path}  ({classes} classes, {train} train / {val} val, "
               f"{size}x{size}{', grey' if grayscale else ''}, seed {seed})")


@app.command("split")
def split(
    root: Annotated[Path, typer.Argument(help="Data root.")],
    ratio: Annotated[Optional[float], typer.Option(
        "--ratio", min=0.0, max=1.0, help="Fraction of the train split to label, e.g. 0.125.")] = None,
    count: Annotated[Optional[int], typer.Option(
        "--count", min=1, help="Number of labeled images, e.g. 92.")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Split seed.")] = 0,
    train_split: TrainSplitOpt = None,
    layout: LayoutOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="Folder for labeled.txt/unlabeled.txt (default ROOT/splits/<ratio|count>_seed_<seed>).")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace split files there that differ from this draw (hand-edited, "
        "or drawn from another train list).")] = False,
) -> None:
    """Draw a seeded labeled/unlabeled split of the train split and print its files and hash.

    Split files already there with the same content are kept as they are; different
    ones (which earlier runs may have trained on) are refused unless --overwrite."""
    if (ratio is None) == (count is None):
        raise fail("give exactly one of --ratio or --count")
    if ratio is not None and ratio <= 0.0:
        raise fail("--ratio must be greater than 0")
    from rrn_core.data.bundle import changed_split_files, derived_split_folder, draw_split, layout_for

    with user_errors():
        cfg = data_config(root, layout, None, None, train_split, None)
        reader = layout_for(cfg)
        train = reader.samples(cfg.train_split, "train", need_mask=False)
        folder = out_dir or derived_split_folder(cfg, reader, ratio, count, seed)
        source = reader.split_source(train_split, "train")
        changed = [] if overwrite else changed_split_files(train, ratio, count, seed, folder)
        if changed:
            raise ValueError(f"{changed[0]}: exists with other content than this split (hand-edited, "
                             "or drawn from another train list; runs may have used it): pass "
                             "--overwrite to replace it, or --out for another folder")
        files = draw_split(train, ratio, count, seed, folder, source)
    labeled = files.labeled.read_text().count("\n")
    unlabeled = files.unlabeled.read_text().count("\n") if files.unlabeled else 0
    typer.echo(f"labeled:   {files.labeled}  ({labeled} images)")
    typer.echo(f"unlabeled: {files.unlabeled}  ({unlabeled} images)")
    typer.echo(f"sha256:    {files.hash}")


@app.command("check")
def check(
    target: Annotated[Path, typer.Argument(metavar="CONFIG_OR_ROOT",
                                           help="A run config YAML (its data section) or a data root.")],
    layout: LayoutOpt = None,
    num_classes: NumClassesOpt = None,
    mask_dir: MaskDirOpt = None,
    train_split: TrainSplitOpt = None,
    val_split: ValSplitOpt = None,
    show: Annotated[int, typer.Option("--show", min=1, help="Problems to print at most.")] = 50,
) -> None:
    """Open every image and mask a run can use; list all problems (exit 2 if any)."""
    from rrn_core.data.check import check_dataset

    with user_errors():
        cfg = data_config(target, layout, num_classes, mask_dir, train_split, val_split)
        with progress_bar("checking") as progress:
            problems = check_dataset(cfg, progress=progress)
    if not problems:
        typer.echo(f"{cfg.root}: OK ({cfg.layout}, {cfg.num_classes} classes)")
        return
    for problem in problems[:show]:
        err.print(f"  {problem}", highlight=False, soft_wrap=True, markup=False)
    more = f" (first {show} shown)" if len(problems) > show else ""
    raise fail(f"{cfg.root}: {len(problems)} problem(s) found{more}")


@app.command("stats")
def stats(
    target: Annotated[Path, typer.Argument(metavar="CONFIG_OR_ROOT",
                                           help="A run config YAML (its data section) or a data root.")],
    layout: LayoutOpt = None,
    num_classes: NumClassesOpt = None,
    mask_dir: MaskDirOpt = None,
    train_split: TrainSplitOpt = None,
    val_split: ValSplitOpt = None,
) -> None:
    """Image counts, sizes and per-class pixel shares of the train and val splits."""
    import numpy as np
    from rich.table import Table

    from rrn_core.constants import IGNORE_INDEX
    from rrn_core.data.bundle import dataset_fingerprint, layout_for, resolve_class_names

    with user_errors():
        cfg = data_config(target, layout, num_classes, mask_dir, train_split, val_split)
        reader = layout_for(cfg)
        names = resolve_class_names(cfg, reader)
        subsets = {"train": reader.samples(cfg.train_split, "train", need_mask=False),
                   "val": reader.samples(cfg.val_split, "val", need_mask=True)}
        counts = {k: np.zeros(cfg.num_classes + 1, dtype=np.int64) for k in subsets}
        sizes: dict[str, set[tuple[int, int]]] = {k: set() for k in subsets}
        total = sum(len(v) for v in subsets.values())
        with progress_bar("reading masks") as progress:
            done = 0
            for subset, samples in subsets.items():
                for sample in samples:
                    if sample.mask is not None:
                        mask = reader.read_mask(sample.mask)
                        sizes[subset].add(mask.shape)
                        ids = np.where(mask == IGNORE_INDEX, cfg.num_classes, mask)
                        counts[subset] += np.bincount(ids.ravel(), minlength=cfg.num_classes + 1)
                    done += 1
                    progress(done, total)
        fingerprint = dataset_fingerprint(cfg)
    table = Table(title=escape(f"{cfg.root} ({cfg.layout}, fingerprint {fingerprint})"))
    table.add_column("class")
    for subset, samples in subsets.items():
        table.add_column(f"{subset} ({len(samples)} images) %", justify="right")
    for i, name in enumerate([*names, "ignore (255)"]):
        table.add_row(escape(name), *(f"{100 * c[i] / max(1, c.sum()):.2f}" for c in counts.values()))
    out.print(table)
    for subset, shapes in sizes.items():
        if shapes:
            hs, ws = [s[0] for s in shapes], [s[1] for s in shapes]
            typer.echo(f"{subset} mask sizes: {min(hs)}..{max(hs)} x {min(ws)}..{max(ws)} (HxW)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
