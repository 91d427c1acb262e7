"""What does running a trial through `rrn sweep` cost on top of the training itself?

Runs N short identical trials (a) one after another in this process with
`rrn_core.loop.train`, and (b) through the sweep engine, one trial at a time, in
each execution mode (`direct`: the loop inside the Tune trial; `trainer`: a Ray
TorchTrainer per trial, the DDP path). Each mode runs a 1-trial and an N-trial
sweep on one shared local Ray, so the marginal cost of a trial, (T_N - T_1)/(N-1),
separates per-trial start-up from the once-per-sweep set-up (splits, MLflow parent
run, Tune experiment). Prints the figures; writes nothing outside a temp folder.

    .venv/bin/python bench/sweep_overhead.py --trials 3 --iters 4
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def base_tree(data_root: Path, iters: int) -> dict[str, Any]:
    return {
        "name": "bench",
        "data": {"root": str(data_root), "num_classes": 4, "label_ratio": 0.25, "crop_size": 32,
                 "batch_size": 2, "unlabeled_batch_size": 2},
        "model": {"backbone": "resnet18d", "base_width": 8, "aspp_channels": 16,
                  "low_level_channels": 8, "head_channels": 16},
        "method": {"name": "supervised"},
        "optim": {"iters": iters},
        "eval": {"every": iters, "overlays": 0},
        "runtime": {"device": "cpu", "progress": False, "log_every": iters},
    }


def in_process(tree: dict[str, Any], trials: int, work: Path) -> float:
    """Seconds for `trials` trainings in this process, each in a fresh output folder."""
    import torch

    from rrn_core.config import build_config
    from rrn_core.loop import train

    torch.set_num_threads(1)  # a Ray trial with one CPU runs one thread (OMP_NUM_THREADS=1)
    start = time.perf_counter()
    for i in range(trials):
        train(build_config(tree, {"runtime.output_dir": str(work / f"inproc-{i}")}))
    return time.perf_counter() - start


def sweep(tree: dict[str, Any], trials: int, execution: str, work: Path, tag: str) -> float:
    """Seconds for a whole `run_sweep` of `trials` identical trials, one at a time."""
    from orchestration.sweep.run import run_sweep
    from orchestration.sweep.prepare import SweepOptions

    folder = work / tag
    folder.mkdir()
    (folder / "base.yaml").write_text(yaml.safe_dump(tree))
    (folder / "space.yaml").write_text(yaml.safe_dump({
        "name": tag.replace("_", "-"), "base_config": "base.yaml", "num_samples": trials,
        "max_concurrent_trials": 1,
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": "bench"},
        "storage": {"path": str(folder / "results")},
    }))
    start = time.perf_counter()
    options = SweepOptions(execution=execution, progress=False)
    outcome = run_sweep(folder / "space.yaml", options, say=lambda m: None)
    seconds = time.perf_counter() - start
    bad = [t for t in outcome.trials if not t.fully_trained]
    if bad or len(outcome.trials) != trials:
        raise SystemExit(f"{tag}: {len(bad)} trial(s) did not finish: {[t.error for t in bad]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="N trials per measurement (>= 2)")
    parser.add_argument("--iters", type=int, default=4, help="training iterations per trial")
    parser.add_argument("--modes", default="direct,trainer", help="execution modes to measure")
    args = parser.parse_args()
    if args.trials < 2:
        parser.error("--trials must be at least 2")

    import ray

    from rrn_core.data import generate_synthetic

    logging.getLogger("ray").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="rrn-bench-") as tmp:
        work = Path(tmp)
        data = generate_synthetic(work / "synth", num_classes=4, num_train=16, num_val=4, size=32)
        tree = base_tree(data, args.iters)
        print(f"{args.trials} trials of {args.iters} iterations (supervised, 32 px, tiny ResNet-18), "
              f"{os.cpu_count()} CPU(s)")
        in_process(tree, 1, work / "warmup")  # imports and first-call costs out of the figure
        t_in = in_process(tree, args.trials, work)
        per_train = t_in / args.trials
        print(f"in-process      {t_in:7.1f} s   ({per_train:.2f} s per trial)")

        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
        print(f"ray.init        {time.perf_counter() - start:7.1f} s   (once per sweep; shared below)")
        try:
            sweep(tree, 1, "direct", work, "sweep_warmup")  # driver-side imports (Tune, MLflow) once
            for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
                t1 = sweep(tree, 1, mode, work, f"{mode}_1")
                tn = sweep(tree, args.trials, mode, work, f"{mode}_{args.trials}")
                marginal = (tn - t1) / (args.trials - 1)
                fixed = t1 - marginal
                print(f"sweep {mode:<8}  {tn:7.1f} s   ratio {tn / t_in:5.1f}x in-process;  per trial "
                      f"{marginal:.1f} s = {per_train:.2f} s training + {marginal - per_train:.1f} s "
                      f"start-up;  per sweep {fixed:.1f} s set-up")
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
