"""Label efficiency on the synthetic set: does unlabeled data help, and which method most?

At 1/8 of the labels, trains supervised, cps, fixmatch and rrn over several seeds
(split seed = model seed), and supervised with all labels as the ceiling, all with the
same budget (configs/synth.yaml unless --config). Prints mean and spread of the final
mIoU, plus pseudo-label accuracy and the RRN health signals where a method has them.

    .venv/bin/python bench/label_efficiency.py [--seeds 0 1 2] [--iters 800] [--root DIR]

Ablations ride along as extra rows: `--variant rrn-no-fm:rrn:method.w_fm=0` adds an
rrn run with that override for every seed. Long runs can be split across processes
(`--threads 1 --methods ... --out part1.jsonl`) and merged with `--table part*.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from rrn_core.config import load_config
from rrn_core.data.synth import FAMILIES, generate_synthetic
from rrn_core.loop import TrainHooks, train

# Columns of the table: pseudo-label accuracy (all pixels, then only those the critics
# kept) and the RRN health signals, averaged over the last logging window.
HEALTH = ("train/pseudo_acc", "train/pseudo_acc_kept", "train/pseudo_acc_rejected", "train/regions_kept",
          "train/critic_auroc")
EVALS_PER_RUN = 4  # evaluations per run: a collapse at any of them after the first is flagged


class LastLog(TrainHooks):
    """Keeps the last logging window's scalars and every evaluation's collapse verdict."""

    def __init__(self) -> None:
        self.scalars: dict[str, float] = {}
        self.evals: list[dict[str, float]] = []

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        self.scalars = scalars

    def on_evaluation(self, step: int, result, checkpoint_dir: str | None) -> None:
        self.evals.append({"step": step, "miou": result.miou, "dominant_share": result.dominant_share,
                           "collapsed": result.collapsed})


def parse_variant(text: str) -> tuple[str, str, dict[str, object]]:
    """`label:method:key=value,key=value` -> (label, method, overrides); values are YAML."""
    label, method, *rest = text.split(":", 2)
    overrides = {}
    for item in filter(None, (rest[0] if rest else "").split(",")):
        key, value = item.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    return label, method, overrides


def print_table(rows: list[dict]) -> None:
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    iters = sorted({r["iters"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    families = sorted({r.get("family", "textures") for r in rows})
    print(f"\nsynthetic set ({', '.join(families)}), {'/'.join(map(str, iters))} iterations, seeds {seeds}")
    print(f"{'run':<26}{'n':>3}{'mIoU mean':>10}{'std':>8}{'min':>8}{'max':>8}"
          f"{'pl acc':>8}{'kept':>7}{'rej.':>7}{'share':>7}{'auroc':>7}{'coll.':>6}")
    for label, group in by_label.items():
        values = [r["miou"] for r in group]
        std = statistics.stdev(values) if len(values) > 1 else 0.0

        def mean_of(key: str, fmt: str = "{:.3f}") -> str:
            found = [r["last"][key] for r in group if key in r["last"]]
            return fmt.format(statistics.mean(found)) if found else "-"

        collapsed = sum(any(e["collapsed"] for e in r.get("evals", [])[1:]) for r in group)
        print(f"{label:<26}{len(values):>3}{statistics.mean(values):>10.4f}{std:>8.4f}"
              f"{min(values):>8.4f}{max(values):>8.4f}{mean_of(HEALTH[0]):>8}"
              f"{mean_of(HEALTH[1]):>7}{mean_of(HEALTH[2]):>7}{mean_of(HEALTH[3]):>7}"
              f"{mean_of(HEALTH[4]):>7}{collapsed:>6}")
    print_pairs(by_label)


def print_pairs(by_label: dict[str, list[dict]]) -> None:
    """rrn minus each other method at the same ratio, paired by seed (same split, same init)."""
    rrn = next((label for label in by_label if label.startswith("rrn @")), None)
    if rrn is None:
        return
    mine = {r["seed"]: r["miou"] for r in by_label[rrn]}
    for label, group in by_label.items():
        theirs = {r["seed"]: r["miou"] for r in group}
        seeds = sorted(set(mine) & set(theirs))
        if label == rrn or not seeds:
            continue
        diffs = [mine[s] - theirs[s] for s in seeds]
        wins = sum(d > 0 for d in diffs)
        print(f"  {rrn} - {label}: {' '.join(f'{d:+.3f}' for d in diffs)}  "
              f"mean {statistics.mean(diffs):+.4f}, rrn ahead on {wins}/{len(diffs)} seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/synth.yaml")
    parser.add_argument("--root", help="synthetic data set (generated when missing)")
    parser.add_argument("--family", choices=FAMILIES, default="textures", help="synthetic generator")
    parser.add_argument("--classes", type=int, help="class count (default: the config's)")
    parser.add_argument("--ratio", type=float, default=0.125)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iters", type=int, default=800)
    parser.add_argument("--methods", nargs="*", default=["supervised", "cps", "fixmatch", "rrn"])
    parser.add_argument("--no-ceiling", action="store_true", help="skip supervised with all labels")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL:METHOD:K=V,...",
                        help="an extra row: METHOD at the ratio with config overrides")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, help="append one JSON line per run here")
    parser.add_argument("--table", type=Path, nargs="+", help="only print the table of these JSONL files")
    args = parser.parse_args()

    if args.table:
        print_table([json.loads(line) for path in args.table for line in path.read_text().splitlines() if line])
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="rrn-label-eff-"))
    root = Path(args.root) if args.root else work / "synth"
    base = load_config(args.config)
    classes = args.classes or base.data.num_classes
    if not (root / "ImageSets").exists():
        generate_synthetic(root, num_classes=classes, num_train=400, num_val=100,
                           size=96, seed=0, family=args.family)

    fraction = f"1/{round(1 / args.ratio)}"
    runs: list[tuple[str, str, float | None, dict[str, object]]] = [
        (f"{m} @ {fraction}", m, args.ratio, {}) for m in args.methods]
    runs += [(f"{label} @ {fraction}", m, args.ratio, o) for label, m, o in map(parse_variant, args.variant)]
    if not args.no_ceiling:
        runs.append(("supervised @ all labels", "supervised", None, {}))

    rows: list[dict] = []
    for seed in args.seeds:
        for label, method, ratio, overrides in runs:
            cfg = load_config(args.config, {
                "data.root": str(root), "data.num_classes": classes, "data.label_ratio": ratio, "data.split_seed": seed,
                "method.name": method, "runtime.seed": seed, "optim.iters": args.iters,
                "eval.every": max(1, args.iters // EVALS_PER_RUN), "runtime.progress": False, "runtime.resume": False,
                "runtime.output_dir": str(work / f"{label.split()[0]}-{ratio}-{seed}"), **overrides,
            })
            hooks = LastLog()
            tic = time.perf_counter()
            result = train(cfg, hooks)
            row = {"label": label, "family": args.family, "seed": seed, "iters": args.iters,
                   "miou": result.final.miou, "seconds": round(time.perf_counter() - tic, 1),
                   "evals": hooks.evals,
                   "last": {k: v for k, v in hooks.scalars.items() if math.isfinite(v)}}
            rows.append(row)
            if args.out:
                with args.out.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            flag = "  COLLAPSED at an evaluation" if any(e["collapsed"] for e in hooks.evals[1:]) else ""
            print(f"seed {seed}  {label:<24} mIoU {row['miou']:.4f}  ({row['seconds']:.0f} s){flag}", flush=True)
    print(f"(data {root})")
    print_table(rows)


if __name__ == "__main__":
    main()
