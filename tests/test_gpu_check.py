"""The GPU check kit, rehearsed on CPU, in a Python like a lent GPU machine's.

A lent GPU machine comes rarely, for minutes, without network and without Ray,
MLflow, Optuna or pydantic. So the kit (scripts/gpu-check.sh) is run here first,
with `--cpu-rehearsal`, in a fresh virtual environment that holds only what such a
machine has (the packages below, linked from this venv with their requirements)
plus what the carried wheels supply: a broken script, or an rrn_core that needs a
cluster package, fails here and not there. Nothing is downloaded: the wheels
step installs from .whl/ with --no-index when it is there (scripts/gpu-wheels.sh),
and says it uses this Python's packages when it is not (a clean clone).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import venv
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
#: What a lent GPU machine has that rrn_core and the tests use (issue 25, KINDS.md);
#: their own requirements come along. Everything else, Ray, MLflow and Optuna
#: included, is absent from the rehearsal's Python.
GPU_MACHINE_HAS = ("torch", "torchvision", "timm", "numpy", "pillow", "opencv-python-headless", "PyYAML",
                   "typer", "rich", "fsspec", "matplotlib", "torchmetrics", "pytest", "pytest-timeout",
                   "packaging", "pip")
CLUSTER_PACKAGES = ("ray", "mlflow", "optuna")


def wheel_names() -> list[str]:
    """The distributions scripts/gpu-wheels.txt carries to the machine."""
    lines = (REPO / "scripts" / "gpu-wheels.txt").read_text().splitlines()
    return [line.split("#")[0].split()[0] for line in lines if line.split("#")[0].strip()]


def requirement_closure(roots: list[str]) -> set[str]:
    """`roots` and everything they require (no extras), as installed in this venv."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def link_distribution(dist: metadata.Distribution, site: Path) -> None:
    """Symlink a distribution's top-level files and folders (from its RECORD) into `site`."""
    tops = {Path(str(f)).parts[0] for f in dist.files or []}
    for top in sorted(tops):
        if top.startswith("..") or top.endswith(".pth") or top == "__pycache__":
            continue   # scripts outside site-packages, editable-install hooks
        source = Path(str(dist.locate_file(top)))
        if source.exists() and not (site / top).exists():
            (site / top).symlink_to(source)


@pytest.fixture(scope="module")
def gpu_like_python(tmp_path_factory) -> Path:
    """A fresh venv (no system site-packages) holding the GPU machine's packages only."""
    if sys.prefix == sys.base_prefix:
        pytest.fail("run the suite from its venv (scripts/test.sh): the rehearsal links packages out of it")
    root = tmp_path_factory.mktemp("gpu-like") / "venv"
    venv.create(root, with_pip=False, symlinks=True)
    python = root / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    allowed = requirement_closure([*GPU_MACHINE_HAS, *wheel_names()])
    assert not allowed & set(CLUSTER_PACKAGES), "a GPU-machine package requires a cluster package"
    for name in sorted(allowed):
        link_distribution(metadata.distribution(name), site)
    return python


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without PYTHONPATH or venv settings (a lent machine has neither)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


TRAIN_WITHOUT_CLUSTER = """
import importlib.util, sys, tempfile
from pathlib import Path
hidden = [n for n in ("ray", "mlflow", "optuna") if importlib.util.find_spec(n) is None]
assert hidden == ["ray", "mlflow", "optuna"], f"visible here: {hidden}"
from rrn_core.config import build_config
from rrn_core.data.synth import generate_synthetic
from rrn_core.loop import train
tmp = Path(tempfile.mkdtemp())
root = generate_synthetic(tmp / "data", num_classes=3, num_train=8, num_val=2, size=32)
tree = {"data": {"root": str(root), "num_classes": 3, "label_ratio": 0.5, "crop_size": 32,
                 "batch_size": 2, "unlabeled_batch_size": 2},
        "model": {"backbone": "resnet18d", "base_width": 8, "aspp_channels": 16,
                  "low_level_channels": 8, "head_channels": 16},
        "method": {"name": "rrn", "warmup_epochs": 0.1,
                   "discriminator": {"regions_per_side": 2, "base_channels": 8}},
        "optim": {"iters": 2, "lr": 0.01}, "eval": {"every": 2, "overlays": 0},
        "runtime": {"output_dir": str(tmp / "run"), "log_every": 1, "progress": False}}
result = train(build_config(tree))
loaded = sorted(n for n in sys.modules if n.split(".")[0] in ("ray", "mlflow", "optuna"))
assert not loaded, loaded
print("trained", result.steps, "steps, final mIoU", result.final.miou)
"""


def test_rrn_core_imports_and_trains_where_ray_mlflow_and_optuna_are_absent(gpu_like_python, tmp_path):
    proc = subprocess.run([str(gpu_like_python), "-c", TRAIN_WITHOUT_CLUSTER], cwd=tmp_path,
                          env=clean_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "trained 2 steps" in proc.stdout


#: The project's own packages: they travel with the repository.
FIRST_PARTY = {"rrn", "rrn_core"}
#: What `python -m rrn_core` runs beside rrn_core: the CLI modules of its commands.
CORE_CLI = ("rrn/console.py", "rrn/run_commands.py", "rrn/data_commands.py")


def third_party_imports(package: Path) -> set[str]:
    """Top-level names imported anywhere in `package` (a folder or one module; module
    level or inside functions)."""
    names: set[str] = set()
    for path in (package.rglob("*.py") if package.is_dir() else [package]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in FIRST_PARTY}


def test_every_import_of_rrn_core_is_on_a_gpu_machine_or_in_its_wheels():
    """Also the imports inside functions, which an import of rrn_core does not reach."""
    allowed = requirement_closure([*GPU_MACHINE_HAS, *wheel_names()])
    owners = metadata.packages_distributions()
    missing = {}
    imported = set().union(*(third_party_imports(REPO / p) for p in ("rrn_core", *CORE_CLI)))
    for name in sorted(imported):
        dists = {canonicalize_name(d) for d in owners.get(name, [])}
        if not dists & allowed:
            missing[name] = sorted(dists) or ["not installed"]
    assert not missing, f"rrn_core imports what a lent GPU machine lacks: {missing}"


def test_cpu_rehearsal_of_the_gpu_check_runs_every_step(gpu_like_python, tmp_path):
    results = tmp_path / "results"
    proc = subprocess.run(["bash", "scripts/gpu-check.sh", "--cpu-rehearsal"], cwd=REPO,
                          env=clean_env(PYTHON=str(gpu_like_python), OUT=str(results), TMPDIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    steps = dict(line.split("\t")[:2] for line in (results / "steps.tsv").read_text().splitlines())
    assert steps == {"wheels": "ok", "nvidia-smi": "skipped (CPU rehearsal)", "probe": "ok",
                     "pytest-gpu": "ok", "throughput": "ok", "train": "ok", "summary": "ok"}, log[-6000:]
    wheels = sorted((REPO / ".whl").glob("*.whl"))
    assert (f"installed {len(wheels)} wheel(s)" if wheels else "no wheels in .whl/") in log

    env = json.loads((results / "env.json").read_text())
    assert env["executable"].startswith(str(gpu_like_python.parent))
    assert env["imports"]["cluster_packages_installed"] == [] == env["imports"]["cluster_packages_loaded"]

    suite = ET.parse(results / "pytest-gpu.xml").getroot()
    cases = list(suite.iter("testcase"))
    assert cases and all(s.get("errors") == "0" for s in suite.iter("testsuite"))
    for case in cases:   # on CPU every CUDA-marked test is collected and skipped, with its reason
        skipped = case.find("skipped")
        assert skipped is not None and "CUDA" in skipped.get("message", ""), ET.tostring(case)[:500]

    bench = json.loads((results / "gpu_throughput.json").read_text())
    assert [(r["method"], r["precision"]) for r in bench["rows"]] == [
        (m, p) for m in ("rrn", "cps", "supervised") for p in ("bf16", "fp32")]
    for row in bench["rows"]:
        assert row["step_s"] > 0 and row["images_s"] > 0 and 0 < row["conv_flops"] <= row["flops"]

    train = json.loads((results / "train_resume.json").read_text())
    assert train["ok"] and train["checks"] and all(train["checks"].values()), train
    assert train["resumed_miou"].keys() == {"2"} and train["weights_max_rel_l2"] <= 1e-5

    summary = (results / "summary.md").read_text()
    assert "| rrn | bf16 |" in summary and "Train + resume (cpu" in summary
    assert sorted(p.name for p in results.iterdir()) == sorted(
        ["gpu-check.log", "steps.tsv", "env.json", "pytest-gpu.xml", "gpu_throughput.json",
         "train_resume.json", "summary.md"])   # a lent machine returns at most 8 files


def test_a_row_out_of_gpu_memory_is_reported_and_the_others_still_run(monkeypatch, tmp_path):
    """fp32 at the VOC config may not fit an 80 GB card: that row says so, in the JSON and
    the summary, and the bench goes on with the next rows instead of losing them all."""
    import argparse

    import torch

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import gpu_throughput

    def fake_run(args, name, precision, device, info):
        if (name, precision) == ("rrn", "fp32"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"method": name, "precision": precision, "gpus": 1, "step_s": 0.5, "images_s": 48.0,
                "peak": 2**30, "flops": 10**13, "channels_last": True, "conv_flops": 9 * 10**12, "matmul_flops": 0}

    monkeypatch.setattr(gpu_throughput, "run_method", fake_run)
    args = argparse.Namespace(methods=["rrn", "cps"], precisions=["bf16", "fp32"])
    rows = gpu_throughput.run_all(args, torch.device("cpu"), gpu_throughput.DistInfo())
    gpu_throughput.write_json(str(tmp_path / "gpu_throughput.json"),
                              {"device": "test", "torch": "x", "backbone": "resnet101", "crop": 512, "batch": 8,
                               "steps": 8}, rows)
    (tmp_path / "env.json").write_text(json.dumps({"cuda_available": True, "gpu": "test",
                                                   "matmul_bf16": {"n": 8192, "tflops": 40.0}}))
    written = json.loads((tmp_path / "gpu_throughput.json").read_text())["rows"]
    assert [r.get("error", "")[:13] for r in written] == ["", "out of memory", "", ""]
    assert written[0]["tflops"] == pytest.approx(20.0) and written[0]["conv_tflops"] == pytest.approx(18.0)
    proc = subprocess.run([sys.executable, "scripts/gpu_check/summary.py", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "| rrn | fp32 | | out of memory" in proc.stdout
    assert "| rrn | bf16 | True | 500.0 | 48.0 | 1.0 | 20.0 | 50% | 18.0 | 45% |" in proc.stdout
    assert "- cps: bf16 / fp32 images/s = 1.00x" in proc.stdout
