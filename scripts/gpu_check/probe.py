"""What this machine is, whether rrn_core imports here, and the chip's bf16 matmul rate.

Prints and writes (`--json`) the Python, torch, CUDA and cuDNN versions, the GPU's
name and memory; imports every rrn_core module a run uses and fails if that pulled
in Ray, MLflow or Optuna (rrn_core must run where they are not installed); then
times one large bf16 matrix product (random data, median of CUDA-event-timed
repeats after warm-ups), the reference the throughput figures are read against.
On CPU (`--device cpu`, the rehearsal) the product is small and means nothing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import statistics
import sys
import time
from importlib import metadata

import torch

CLUSTER_PACKAGES = ("ray", "mlflow", "optuna")
RUN_MODULES = ("rrn_core.config", "rrn_core.loop", "rrn.run_commands", "rrn_core.evaluate",
               "rrn_core.checkpoint_writer", "rrn_core.methods.build", "rrn_core.data.bundle",
               "rrn_core.data.synth", "rrn_core.run_checks")
VERSIONS_OF = ("torch", "torchvision", "timm", "numpy", "pydantic", "pydantic_core", "typing_extensions",
               "torchmetrics", "typer", "rich", "fsspec", "PyYAML", "opencv-python-headless", "pytest",
               "pytest-timeout")


def versions() -> dict[str, str | None]:
    found = {}
    for name in VERSIONS_OF:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def import_check() -> dict[str, object]:
    """Import what a run uses; name the cluster packages it loaded (must be none)."""
    for name in RUN_MODULES:
        importlib.import_module(name)
    import pydantic

    return {"modules": list(RUN_MODULES), "pydantic_from": pydantic.__file__,
            "cluster_packages_installed": [n for n in CLUSTER_PACKAGES if importlib.util.find_spec(n)],
            "cluster_packages_loaded": [n for n in CLUSTER_PACKAGES if n in sys.modules]}


def matmul_tflops(device: torch.device, n: int, repeats: int) -> float:
    """bf16 n x n x n product on random data: 2 n^3 FLOPs over the median time."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            tic = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - tic)
    return 2 * n**3 / statistics.median(times) / 1e12


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    info: dict[str, object] = {
        "python": sys.version.split()[0], "executable": sys.executable, "machine": platform.machine(),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(), "device_count": torch.cuda.device_count(),
        "versions": versions()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                    bf16=torch.cuda.is_bf16_supported())
    info["imports"] = imports = import_check()
    size = 8192 if device.type == "cuda" else 256
    info["matmul_bf16"] = {"n": size, "tflops": matmul_tflops(device, size, 10 if device.type == "cuda" else 3)}
    print(json.dumps(info, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(info, fh, indent=1)
    if imports["cluster_packages_loaded"]:
        print(f"error: importing rrn_core loaded {imports['cluster_packages_loaded']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
