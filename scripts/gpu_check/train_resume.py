"""One short `train` of configs/synth.yaml, and an exact resume from its checkpoint.

Three runs of the same config and overrides (device, AMP, channels_last), on a
generated synthetic set, each prepared as `rrn train` prepares it (the CLI's
`prepared_run`: config, --set overrides, preflight):
  straight   all `iters` steps in one go (in this process);
  cut        the same, stopped by a hook after its first evaluation (step `every`);
  resumed    `python -m rrn_core train` (the command `rrn train` is, minus MLflow) on
             cut's output folder: it must start from cut's checkpoint (evaluate only
             after it) and end where straight ended: same mIoU, same weights up to
             the tolerance.
On CPU the resumed run matches to rounding (tolerance 1e-5); on CUDA, cuDNN and
atomics pick per-run kernels, so it is close, not bit-equal (5e-2, the measured
differences are written to the JSON either way); mIoU printed by the CLI is
compared to its 4 decimals.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "synth.yaml"
EVAL_LINE = re.compile(r"step (\d+): mIoU ([\d.]+)")


def overrides(data: Path, device: str, amp: str, iters: int, every: int) -> list[str]:
    return [f"data.root={data}", f"runtime.device={device}", f"runtime.amp={amp}",
            "runtime.channels_last=true", f"optim.iters={iters}", f"optim.warmup_iters={every // 2}",
            f"eval.every={every}", "eval.overlays=0", f"runtime.log_every={every}", "runtime.progress=false",
            "method.warmup_epochs=0.1"]


def cli_train(sets: list[str], out: Path, timeout: float) -> dict[int, float]:
    """`python -m rrn_core train`; its evaluations as {step: mIoU}."""
    cmd = [sys.executable, "-m", "rrn_core", "train", str(CONFIG), "--output-dir", str(out)]
    for item in sets:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    print(proc.stdout + proc.stderr, flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[1:4])} exited {proc.returncode}")
    return {int(s): float(m) for s, m in EVAL_LINE.findall(proc.stderr + proc.stdout)}


def in_process(sets: list[str], out: Path, stop_after_first: bool) -> dict[int, float]:
    """The CLI's config preparation, then train(); its evaluations as {step: mIoU}."""
    from rrn.run_commands import prepared_run
    from rrn_core.loop import TrainHooks, train

    class Evaluations(TrainHooks):
        def __init__(self) -> None:
            self.evals: dict[int, float] = {}

        def on_evaluation(self, step, result, checkpoint_dir):
            self.evals[step] = result.miou
            print(f"step {step}: mIoU {result.miou:.4f}", flush=True)

        def should_stop(self) -> bool:
            return stop_after_first and bool(self.evals)

    hooks = Evaluations()
    train(prepared_run(CONFIG, sets, str(out), resume=True), hooks)
    return hooks.evals


def tensors(state: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested state (lists, dicts), by its path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, list) else ()
    return {k: v for key, sub in items for k, v in tensors(sub, f"{prefix}/{key}").items()}


def weight_difference(a: Path, b: Path) -> tuple[int, int, float]:
    """Steps of two last.pt files and the largest per-tensor relative L2 difference of their models."""
    sa = torch.load(a / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    sb = torch.load(b / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    ta, tb = tensors(sa["model"]), tensors(sb["model"])
    if ta.keys() != tb.keys():
        return sa["step"], sb["step"], float("inf")
    worst = 0.0
    for key, x in ta.items():
        y = tb[key]
        if not torch.is_floating_point(x):
            worst = max(worst, 0.0 if torch.equal(x, y) else float("inf"))
            continue
        x, y = x.double(), y.double()
        worst = max(worst, float((x - y).norm() / x.norm().clamp_min(1e-12)))
    return sa["step"], sb["step"], worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--amp", default="bf16")
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--images", type=int, default=64, help="synthetic train images (val: a quarter)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--timeout", type=float, default=150, help="seconds per CLI run")
    args = parser.parse_args()
    tol = 1e-5 if args.device == "cpu" else 5e-2
    from rrn_core.data.synth import generate_synthetic

    with tempfile.TemporaryDirectory(prefix="rrn-gpu-check-") as tmp:
        work = Path(tmp)
        data = generate_synthetic(work / "data", num_train=args.images, num_val=max(2, args.images // 4), size=96)
        sets = overrides(data, args.device, args.amp, args.iters, args.every)
        tic = time.perf_counter()
        straight = in_process(sets, work / "straight", stop_after_first=False)
        straight_s = time.perf_counter() - tic
        cut = in_process(sets, work / "cut", stop_after_first=True)
        resumed = cli_train(sets, work / "cut", args.timeout)
        step_a, step_b, rel = weight_difference(work / "straight", work / "cut")
    last = args.iters
    miou_tol = max(tol, 1e-4)   # the CLI prints mIoU to 4 decimals
    report = {"device": args.device, "amp": args.amp, "iters": last, "every": args.every,
              "straight_miou": straight, "cut_miou": cut, "resumed_miou": resumed, "straight_s": straight_s,
              "steps": [step_a, step_b], "weights_max_rel_l2": rel, "tolerance": tol}
    checks = {
        "straight evaluated at every and at the end": sorted(straight) == [args.every, last],
        "cut stopped after its first evaluation": sorted(cut) == [args.every],
        "resumed from the checkpoint (no evaluation before it)": sorted(resumed) == [last],
        "both checkpoints at the last step": step_a == step_b == last,
        "same mIoU at the cut": abs(cut.get(args.every, -1) - straight.get(args.every, 2)) <= miou_tol,
        "same final mIoU": abs(resumed.get(last, -1) - straight.get(last, 2)) <= miou_tol,
        "same final weights": rel <= tol}
    report["checks"] = checks
    report["ok"] = all(checks.values())
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
