"""Label efficiency on the synthetic families: what do unlabeled images buy, and which method buys most?

At one label ratio (1/8 by default), trains every method of the methods table over
several seeds (split seed = model seed) on each synthetic family, plus supervised with
all labels as the ceiling, all at the same budget (configs/synth.yaml unless
--config; `--set optim.iters=1600` or `--set optim.iters=null --set optim.epochs=...`).
Prints, per family, the final evaluation's mean with its 95 % t interval, whether the
runs were still improving (rrn_core/convergence.py), the compute each method spent,
the RRN health signals, and then the verdicts exactly as `rrn report` prints them
(orchestration's evidence module: paired by seed, 95 % t interval).

    .venv/bin/python bench/label_efficiency.py --families textures shapes --seeds 0 1 2 3 4

Ablations ride along as extra rows: `--variant rrn-no-fm:rrn:method.w_fm=0` adds an rrn
run with that override for every seed; each variant is compared with its method and
with cps. Long runs split across processes (`--threads 1 --families shapes --out
part2.jsonl`) and merge with `--table part*.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from scipy import stats

from orchestration.report.evidence import compare_all, one_line
from rrn_core.budget import resolve_budget
from rrn_core.config import load_config
from rrn_core.data.bundle import build_datasets
from rrn_core.convergence import assess_siblings
from rrn_core.data.synth import FAMILIES, generate_synthetic
from rrn_core.loop import TrainHooks, train
from rrn_core.methods.table import METHODS

# RRN health signals, averaged over the last logging window.
HEALTH = ("train/pseudo_acc", "train/pseudo_acc_kept", "train/regions_kept", "train/critic_auroc")
EVALS_PER_RUN = 8   # enough late evaluations for the convergence rule's noise
CEILING = "supervised @ all labels"


class LastLog(TrainHooks):
    """Keeps the last logging window's scalars and every evaluation."""

    def __init__(self) -> None:
        self.scalars: dict[str, float] = {}
        self.evals: list[dict[str, float]] = []

    def on_log(self, step: int, scalars: dict[str, float]) -> None:
        self.scalars = scalars

    def on_evaluation(self, step: int, result, checkpoint_dir: str | None) -> None:
        self.evals.append({"step": step, "miou": result.miou, "collapsed": result.collapsed})


def parse_variant(text: str) -> tuple[str, str, dict[str, object]]:
    """`label:method:key=value,key=value` -> (label, method, overrides); values are YAML."""
    label, method, *rest = text.split(":", 2)
    overrides = {}
    for item in filter(None, (rest[0] if rest else "").split(",")):
        key, value = item.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    return label, method, overrides


def _interval(values: list[float]) -> str:
    if len(values) < 2:
        return "(1 seed)"
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"±{half:.3f}"


def print_family(family: str, rows: list[dict]) -> None:
    by_label: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    budgets = sorted({r["total_steps"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    print(f"\n== {family}: {'/'.join(map(str, budgets))} iterations, seeds {seeds}; "
          "final evaluation's val mIoU, mean ± 95 % t half-width")
    print(f"{'run':<24}{'n':>3}{'mIoU':>8}{'95% CI':>9}{'std':>7}{'impr.':>6}{'swing':>6}"
          f"{'TFLOP':>8}{'dev-s':>7}{'pl acc':>7}{'kept':>6}{'auroc':>6}")
    improving = total = 0
    for label, group in by_label.items():
        values = [r["miou"] for r in group]
        verdicts = assess_siblings([([(e["step"], e["miou"]) for e in r["evals"]], r["total_steps"])
                                    for r in group])
        still = sum(bool(v.still_improving) for v in verdicts)
        swing = sum(bool(v.swinging) for v in verdicts)
        improving, total = improving + still, total + len(group)

        def mean_of(key: str, source: str = "last") -> str:
            found = [r[source][key] for r in group if key in r[source]]
            return f"{statistics.mean(found):.3f}" if found else "-"

        tflop = statistics.mean(r["compute"].get("compute/tflop", math.nan) for r in group)
        dev_s = statistics.mean(r["compute"].get("compute/device_seconds", math.nan) for r in group)
        print(f"{label:<24}{len(values):>3}{statistics.mean(values):>8.4f}{_interval(values):>9}"
              f"{statistics.stdev(values) if len(values) > 1 else 0:>7.3f}{still:>6}{swing:>6}"
              f"{tflop:>8.2f}{dev_s:>7.0f}{mean_of(HEALTH[0]):>7}{mean_of(HEALTH[2]):>6}"
              f"{mean_of(HEALTH[3]):>6}")
    if improving * 2 > total:
        print(f"!! {improving} of {total} runs were still improving at the end: this budget is too "
              "small to compare methods")
    elif improving:
        print(f"({improving} of {total} runs still improving at the end)")
    print_verdicts(by_label)


def print_verdicts(by_label: dict[str, list[dict]]) -> None:
    """Every method pair at the ratio, each variant against its method and cps, and the
    ceiling against every method (paired by seed)."""
    values = {(label, "same"): {r["seed"]: r["miou"] for r in group} for label, group in by_label.items()}
    order = list(by_label)
    variants = {r["label"]: r["method"] for g in by_label.values() for r in g if r.get("variant")}
    # the row label of each method at the ratio ("rrn" -> "rrn @ 1/8"), the ceiling aside
    method_rows = {r["method"]: r["label"] for g in by_label.values() for r in g
                   if not r.get("variant") and r["ratio"] is not None}
    for c in compare_all(values, order):
        a, b = c.method, c.baseline
        if b in variants or a in variants and b not in (method_rows.get(variants[a]), method_rows.get("cps")):
            continue
        if CEILING in (a, b):
            continue
        print("  " + one_line(c).replace(" @ same", ""))
    if CEILING in by_label:
        for label in order:
            if label != CEILING:
                pair = {(CEILING, "same"): values[(CEILING, "same")], (label, "same"): values[(label, "same")]}
                for c in compare_all(pair, [label, CEILING]):
                    print("  " + one_line(c).replace(" @ same", ""))


def print_table(rows: list[dict]) -> None:
    for family in sorted({r["family"] for r in rows}):
        print_family(family, [r for r in rows if r["family"] == family])


def run_one(args, family: str, root: Path, seed: int, label: str, method: str, ratio: float | None,
            overrides: dict, work: Path, data_overrides: dict | None = None) -> dict:
    cfg = load_config(args.config, {
        **(data_overrides or {}), "data.root": str(root), "data.label_ratio": ratio, "data.split_seed": seed,
        "method.name": method, "runtime.seed": seed, "runtime.progress": False,
        "runtime.resume": False, **args.set, **overrides,
        "runtime.output_dir": str(work / f"{family}-{label.split()[0]}-{ratio}-{seed}"),
    })
    cfg, bundle = _with_eval_every(cfg, seed)
    hooks = LastLog()
    tic = time.perf_counter()
    result = train(cfg, hooks, bundle=bundle)
    return {"label": label, "method": method, "variant": bool(overrides), "family": family,
            "seed": seed, "ratio": ratio, "total_steps": result.steps,
            "miou": result.final.miou, "miou_best": result.best_miou,
            "seconds": round(time.perf_counter() - tic, 1), "evals": hooks.evals,
            "budget": result.budget.as_params() if result.budget else {},
            "compute": result.compute,
            "last": {k: v for k, v in hooks.scalars.items() if math.isfinite(v)}}


def _with_eval_every(cfg, seed: int):
    """The config with EVALS_PER_RUN evaluations, whatever the budget resolves to, and its data."""
    bundle = build_datasets(cfg.data, seed)
    budget = resolve_budget(cfg.optim, len(bundle.labeled), len(bundle.unlabeled or []),
                            cfg.data.batch_size, cfg.data.unlabeled_batch_size,
                            uses_unlabeled=METHODS[cfg.method.name].uses_unlabeled)
    every = max(1, math.ceil(budget.iters / EVALS_PER_RUN))
    return cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"every": every})}), bundle


def data_sets(args, work: Path) -> list[tuple[str, Path, dict]]:
    """(name, root, config overrides) of every set to run: generated synthetic families,
    then the user's own sets, whose class count comes from their classes.txt."""
    families = args.families if args.families is not None else ([] if args.data else list(FAMILIES))
    sets = []
    for family in families:
        root = work / family
        generate_synthetic(root, num_classes=load_config(args.config).data.num_classes, num_train=400,
                           num_val=100, size=96, seed=0, family=family)
        sets.append((family, root, {}))
    for item in args.data:
        name, root = item.split("=", 1)
        classes = [line for line in (Path(root) / "classes.txt").read_text().splitlines() if line.strip()]
        sets.append((name, Path(root), {"data.num_classes": len(classes)}))
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/synth.yaml")
    parser.add_argument("--families", nargs="*", choices=FAMILIES,
                        help="synthetic families (default: both, unless --data is given)")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=ROOT",
                        help="a VOC-layout set of your own (bench/real_sets.py builds two), its class "
                             "count from ROOT/classes.txt")
    parser.add_argument("--ratio", type=float, default=0.125)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run (the budget, say)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--no-ceiling", action="store_true", help="skip supervised with all labels")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL:METHOD:K=V,...",
                        help="an extra row: METHOD at the ratio with config overrides")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, help="append one JSON line per run here")
    parser.add_argument("--table", type=Path, nargs="+", help="only print the table of these JSONL files")
    args = parser.parse_args()
    args.set = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}

    if args.table:
        print_table([json.loads(line) for path in args.table for line in path.read_text().splitlines() if line])
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="rrn-label-eff-"))
    fraction = f"1/{round(1 / args.ratio)}"
    runs = [(f"{m} @ {fraction}", m, args.ratio, {}) for m in args.methods]
    runs += [(f"{label} @ {fraction}", m, args.ratio, o) for label, m, o in map(parse_variant, args.variant)]
    if not args.no_ceiling:
        runs.append((CEILING, "supervised", None, {}))
    rows: list[dict] = []
    for family, root, data_overrides in data_sets(args, work):
        for seed in args.seeds:
            for label, method, ratio, overrides in runs:
                row = run_one(args, family, root, seed, label, method, ratio, overrides, work, data_overrides)
                rows.append(row)
                if args.out:
                    with args.out.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                print(f"{family:<9} seed {seed}  {label:<24} mIoU {row['miou']:.4f}  "
                      f"({row['seconds']:.0f} s, {row['total_steps']} it)", flush=True)
    print_table(rows)


if __name__ == "__main__":
    main()
