"""The GPU check's figures in one Markdown page (printed last, and summary.md).

Reads what scripts/gpu-check.sh left in its results folder: steps.tsv (each step's
status and seconds), env.json (versions, the chip's bf16 matmul TFLOP/s),
gpu_throughput.json (bench rows), pytest-gpu.xml (the CUDA-marked tests) and
train_resume.json. Throughput rows are read against the measured matmul rate:
`share` = achieved TFLOP/s (all counted FLOPs of a step over its time) / matmul
TFLOP/s; `conv share` counts only the convolutions' FLOPs (forward and backward,
torch.utils.flop_counter) over the whole step's time, a lower bound on the rate
the convolutions themselves ran at.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def steps_section(results: Path) -> list[str]:
    lines = ["| step | status | seconds |", "|---|---|---|"]
    tsv = results / "steps.tsv"
    for row in tsv.read_text().splitlines() if tsv.exists() else []:
        name, status, seconds = row.split("\t")
        lines.append(f"| {name} | {status} | {seconds} |")
    return lines


def throughput_section(bench: dict, ref: float | None) -> list[str]:
    lines = [f"Throughput: {bench['device']}, {bench['backbone']}, crop {bench['crop']}, batch {bench['batch']} "
             f"+ 2x{bench['batch']}, median of {bench['steps']} steps; torch {bench['torch']}"
             + (f"; bf16 matmul reference {ref:.0f} TFLOP/s" if ref else ""), "",
             "| method | precision | channels_last | ms/step | images/s | peak GiB | TFLOP/s | share | "
             "conv TFLOP/s | conv share |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows = [r for r in bench["rows"] if "error" not in r]
    for r in bench["rows"]:
        if "error" in r:
            lines.append(f"| {r['method']} | {r['precision']} | | {r['error']} | | | | | | |")
            continue
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "n/a"
        share = f"{r['tflops'] / ref:.0%}" if ref else "n/a"
        conv_share = f"{r['conv_tflops'] / ref:.0%}" if ref else "n/a"
        lines.append(f"| {r['method']} | {r['precision']} | {r['channels_last']} | {r['ms_per_step']:.1f} | "
                     f"{r['images_s']:.1f} | {peak} | {r['tflops']:.1f} | {share} | {r['conv_tflops']:.1f} | "
                     f"{conv_share} |")
    by = {(r["method"], r["precision"]): r for r in rows}
    for method in dict.fromkeys(r["method"] for r in rows):
        if (method, "bf16") in by and (method, "fp32") in by:
            lines.append(f"- {method}: bf16 / fp32 images/s = "
                         f"{by[method, 'bf16']['images_s'] / by[method, 'fp32']['images_s']:.2f}x")
    return lines


def tests_section(xml_path: Path) -> list[str]:
    if not xml_path.exists():
        return ["CUDA-marked tests: no report (step did not finish)"]
    outcome: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome["failed"].append(name)
        elif (skip := case.find("skipped")) is not None:
            outcome["skipped"].append(f"{name} ({skip.get('message', '')})")
        else:
            outcome["passed"].append(name)
    lines = [f"CUDA-marked tests: {len(outcome['passed'])} passed, {len(outcome['failed'])} failed, "
             f"{len(outcome['skipped'])} skipped"]
    for kind in ("failed", "skipped"):
        lines += [f"- {kind}: {name}" for name in outcome[kind]]
    return lines


def main() -> int:
    results = Path(sys.argv[1])
    env = load(results / "env.json") or {}
    ref = (env.get("matmul_bf16") or {}).get("tflops") if env.get("cuda_available") else None
    lines = ["# GPU check", "", f"Machine: {env.get('gpu', 'no GPU')}, python {env.get('python')}, "
             f"torch {env.get('torch')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}"]
    if ref:
        lines.append(f"bf16 matmul {env['matmul_bf16']['n']}^3: {ref:.0f} TFLOP/s")
    lines += [""] + steps_section(results) + [""] + tests_section(results / "pytest-gpu.xml") + [""]
    bench = load(results / "gpu_throughput.json")
    lines += throughput_section(bench, ref) if bench else ["Throughput: no rows (step did not finish)"]
    train = load(results / "train_resume.json")
    lines.append("")
    if train:
        lines.append(f"Train + resume ({train['device']}, amp {train['amp']}, {train['iters']} steps): "
                     f"{'ok' if train['ok'] else 'FAILED'}; final mIoU straight {train['straight_miou']}, "
                     f"resumed {train['resumed_miou']}; weights max rel L2 {train['weights_max_rel_l2']:.2e}")
        lines += [f"- {name}: {'ok' if ok else 'FAILED'}" for name, ok in train["checks"].items() if not ok]
    else:
        lines.append("Train + resume: no result (step did not finish)")
    text = "\n".join(lines) + "\n"
    (results / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
