"""Every command refuses bad input the same way: exit code 2, one message naming the
file and the field, no traceback, and nothing written anywhere.

One table, one tiny data set, one trained checkpoint and one Ray start with its
dashboard (for the resource and submission cases, the only ones that need a
cluster) back every row. Each row may
plant its defect in its own folder first; the whole working tree (data, config,
RRN_HOME with the MLflow store and results, the space's own store) is then
snapshotted before and after the command, so a split file, an MLflow run, a
results folder or an output folder written before the refusal fails the row; for
the rows that reach the cluster, so does a job left in its job list.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import ray  # noqa: F401  (imported before any CliRunner run, so Ray's log handlers bind to the real stderr)
import yaml
from PIL import Image
from typer.testing import CliRunner

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- world


@dataclass
class World:
    """The shared, good inputs every row starts from."""

    root: Path
    data: Path
    config: Path          # relative data.root ("data"): resolved against the config's folder
    space: Path
    checkpoint: Path      # a run's output folder (checkpoints/last.pt inside)
    image: Path
    dashboard: str = "http://127.0.0.1:9"   # the Ray dashboard URL once `ray_cluster` is up

    def case_dir(self, name: str) -> Path:
        folder = self.root / "cases" / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder


GOOD_CONFIG: dict[str, Any] = {
    "name": "tiny",
    "data": {"root": "data", "num_classes": 4, "label_ratio": 0.5, "crop_size": 32,
             "batch_size": 2, "unlabeled_batch_size": 2},
    "model": {"backbone": "resnet18d", "base_width": 8,
              "aspp_channels": 16, "low_level_channels": 8, "head_channels": 16},
    "method": {"name": "cps"},
    "optim": {"iters": 2},
    "eval": {"every": 2, "overlays": 0},
    "runtime": {"device": "cpu", "progress": False, "log_every": 1, "output_dir": "run"},
}


def write_yaml(path: Path, tree: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def space_tree(world_root: Path, name: str = "bad", **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_config": "../../cfg.yaml",
            "grid": {"method.name": ["cps"]}, "num_samples": 1, "metric": "val/mIoU",
            "tracking": {"uri": f"sqlite:///{world_root / 'store' / 'mlflow.db'}"},
            "storage": {"path": str(world_root / "store" / "results")}, **extra}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from rrn_core.config import load_config
    from rrn_core.data import generate_synthetic
    from rrn_core.loop import train

    root = tmp_path_factory.mktemp("bad-input")
    data = generate_synthetic(root / "data", num_classes=4, num_train=8, num_val=4, size=32, seed=0)
    config = write_yaml(root / "cfg.yaml", GOOD_CONFIG)
    space = write_yaml(root / "spaces" / "good" / "space.yaml", space_tree(root, "good"))
    run = root / "run"
    train(load_config(config, {"runtime.output_dir": str(run), "runtime.resume": False}))
    image = next((data / "JPEGImages").iterdir())
    return World(root, data, config, space, run, image)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One small local Ray head for the rows whose refusal needs the cluster's totals
    or its Jobs API (ray_head.py: free ports, so another Ray on the machine cannot take
    its dashboard agent's); this process connects to it as `rrn sweep` would. Its
    nodes' environment is this process's, venv first on PATH, as on a good head.
    Yields the dashboard URL."""
    import os


    from ray_head import ray_head

    temp_dir = Path(os.environ["RAY_TMPDIR"]) / f"bad{os.getpid()}"   # short: Ray puts sockets here
    assert not ray.is_initialized()
    with ray_head(temp_dir, tmp_path_factory.mktemp("ray-head") / "ray-start.log") as head:
        ray.init(address=head.gcs_address, log_to_driver=False)
        try:
            yield head.dashboard
        finally:
            ray.shutdown()


# --------------------------------------------------------------------------- defects


def copy_data(w: World, case: Path) -> Path:
    target = case / "data"
    if not target.exists():
        shutil.copytree(w.data, target)
    return target


def case_config(w: World, case: Path, **sections: dict[str, Any]) -> Path:
    """cfg.yaml in the case folder on a private copy of the data (root relative: `data`)."""
    copy_data(w, case)
    tree = yaml.safe_load(yaml.safe_dump(GOOD_CONFIG))
    for section, values in sections.items():
        tree.setdefault(section, {}).update(values)
    return write_yaml(case / "cfg.yaml", tree)


def first_id(data: Path, split: str = "train") -> str:
    return (data / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()[0]


def defect_truncated_jpeg(data: Path) -> str:
    sid = first_id(data)
    path = data / "JPEGImages" / f"{sid}.jpg"
    path.write_bytes(path.read_bytes()[:200])
    return f"{sid}.jpg"


def defect_size_mismatch(data: Path) -> str:
    sid = first_id(data)
    Image.new("L", (20, 20), 0).save(data / "SegmentationClass" / f"{sid}.png")
    return f"{sid}.png"


def defect_rgb_mask(data: Path) -> str:
    sid = first_id(data)
    path = data / "SegmentationClass" / f"{sid}.png"
    w, h = Image.open(path).size
    Image.new("RGB", (w, h), (12, 200, 7)).save(path)
    return f"{sid}.png"


def defect_mask_value(data: Path) -> str:
    sid = first_id(data, "val")
    path = data / "SegmentationClass" / f"{sid}.png"
    w, h = Image.open(path).size
    Image.new("L", (w, h), 9).save(path)
    return f"{sid}.png"


def defect_empty_val(data: Path) -> str:
    (data / "ImageSets" / "Segmentation" / "val.txt").write_text("")
    return "val.txt"


def defect_no_train_split(data: Path) -> str:
    (data / "ImageSets" / "Segmentation" / "train.txt").unlink()
    return "train.txt"


def defect_class_names(data: Path) -> str:
    (data / "classes.txt").write_text("a\nb\n")
    return "classes.txt"


def broken_unlabeled(w: World, case: Path) -> Path:
    """Explicit split files whose unlabeled part lists a non-image; method supervised."""
    data = copy_data(w, case)
    ids = (data / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    (data / "JPEGImages" / f"{ids[-1]}.jpg").write_text("not an image")
    (data / "lab.txt").write_text("\n".join(ids[:4]) + "\n")
    (data / "unlab.txt").write_text("\n".join(ids[4:]) + "\n")
    return case_config(w, case, data={"label_ratio": None, "labeled_split": "lab.txt",
                                      "unlabeled_split": "unlab.txt"},
                       method={"name": "supervised"})


def cps_broken_unlabeled(w: World, case: Path) -> Path:
    """The same non-image in the unlabeled part, with a method that reads it (cps)."""
    broken_unlabeled(w, case)
    return case_config(w, case, data={"label_ratio": None, "labeled_split": "lab.txt",
                                      "unlabeled_split": "unlab.txt"}, method={"name": "cps"})


def data_defect(defect: Callable[[Path], str]) -> Callable[[World, Path], tuple[list[str], list[str]]]:
    """A row setup: the defect planted in a private data copy; `rrn train` on it."""
    def setup(w: World, case: Path) -> tuple[list[str], list[str]]:
        cfg = case_config(w, case)
        name = defect(case / "data")
        return ["train", str(cfg), "--no-track"], [name]
    return setup


def sweep_on(defect: Callable[[Path], str]) -> Callable[[World, Path], tuple[list[str], list[str]]]:
    """A row setup: the same defect, through `rrn sweep` (a space on the private copy)."""
    def setup(w: World, case: Path) -> tuple[list[str], list[str]]:
        cfg = case_config(w, case)
        name = defect(case / "data")
        tree = space_tree(w.root)
        tree["base_config"] = str(cfg)
        space = write_yaml(case / "space.yaml", tree)
        return ["sweep", str(space)], [name, "space.yaml"]
    return setup


def space_with(**extra: Any) -> Callable[[World, Path], Path]:
    def make(w: World, case: Path) -> Path:
        tree = space_tree(w.root)
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(tree.get(key), dict):
                tree[key] = {**tree[key], **value}
            else:
                tree[key] = value
        return write_yaml(case / "space.yaml", tree)
    return make


# --------------------------------------------------------------------------- table


Setup = Callable[[World, Path], tuple[list[str], list[str]]]


@dataclass
class Row:
    id: str
    setup: Setup
    ray: bool = False
    cuda_free: bool = False      # only meaningful on a machine without CUDA
    extra_names: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)    # never echoed (a secret given as input)
    env: dict[str, str] = field(default_factory=dict)  # set for the command ({case} filled in)


def argv(*args: Any, names: list[str]) -> Setup:
    """A row whose arguments only need the world's paths: `{cfg}`, `{space}`, ..."""
    def setup(w: World, case: Path) -> tuple[list[str], list[str]]:
        subs = {"cfg": w.config, "space": w.space, "ckpt": w.checkpoint, "img": w.image,
                "case": case, "root": w.root, "data": w.data, "dashboard": w.dashboard}
        return [str(a).format(**subs) for a in args], [n.format(**subs) for n in names]
    return setup


def custom(make: Callable[[World, Path], tuple[list[str], list[str]]]) -> Setup:
    return make


def _cfg_with(**sections: dict[str, Any]) -> Callable[[World, Path], Path]:
    return lambda w, case: case_config(w, case, **sections)


def train_on(make_cfg: Callable[[World, Path], Path], names: list[str], *extra: str) -> Setup:
    def setup(w: World, case: Path) -> tuple[list[str], list[str]]:
        cfg = make_cfg(w, case)
        return ["train", str(cfg), "--no-track", *extra], [str(cfg.name), *names]
    return setup


def sweep_space(make: Callable[[World, Path], Path], names: list[str], *extra: str) -> Setup:
    def setup(w: World, case: Path) -> tuple[list[str], list[str]]:
        space = make(w, case)
        return ["sweep", str(space), *[e.format(case=case) for e in extra]], ["space.yaml", *names]
    return setup


def write_file(case: Path, name: str, content: bytes | str) -> Path:
    path = case / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _not_yaml(w: World, case: Path) -> tuple[list[str], list[str]]:
    path = write_file(case, "cfg.yaml", "data: [unclosed\n")
    return ["train", str(path), "--no-track"], ["cfg.yaml", "YAML"]


def _list_top(w: World, case: Path) -> tuple[list[str], list[str]]:
    path = write_file(case, "cfg.yaml", "- a\n- b\n")
    return ["train", str(path), "--no-track"], ["cfg.yaml", "mapping"]


def _output_under_file(w: World, case: Path) -> tuple[list[str], list[str]]:
    blocker = write_file(case, "blocker", "x")
    return (["train", str(w.config), "--no-track", "--output-dir", str(blocker / "out")],
            ["runtime.output_dir", "blocker"])


def _sqlite_under_file(w: World, case: Path) -> tuple[list[str], list[str]]:
    blocker = write_file(case, "blocker", "x")
    return (["train", str(w.config), "--set", f"runtime.output_dir={case / 'out'}",
             "--tracking-uri", f"sqlite:///{blocker}/mlflow.db"], ["--tracking-uri", "blocker"])


def _random_ckpt(w: World, case: Path) -> tuple[list[str], list[str]]:
    path = write_file(case, "rand.pt", bytes(range(256)) * 8)
    return ["eval", str(path)], ["rand.pt", "not a readable checkpoint"]


def _truncated_ckpt(w: World, case: Path) -> tuple[list[str], list[str]]:
    data = (w.checkpoint / "checkpoints" / "last.pt").read_bytes()
    path = write_file(case, "trunc.pt", data[: len(data) // 3])
    return ["eval", str(path)], ["trunc.pt", "not a readable checkpoint"]


def _not_a_checkpoint(w: World, case: Path) -> tuple[list[str], list[str]]:
    import torch

    path = case / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    return ["predict", str(path), str(w.image), "-o", str(case / "pred")], ["other.pt", "'config'"]


def _eval_not_a_checkpoint(w: World, case: Path) -> tuple[list[str], list[str]]:
    import torch

    path = case / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    return ["eval", str(path)], ["other.pt", "'config'"]


def _predict_only_image_bad(w: World, case: Path) -> tuple[list[str], list[str]]:
    bad = write_file(case, "bad.jpg", b"\xff\xd8 not really a JPEG")
    return ["predict", str(w.checkpoint), str(bad), "-o", str(case / "pred")], ["bad.jpg", "IMAGES"]


def _predict_one_bad(w: World, case: Path) -> tuple[list[str], list[str]]:
    bad = write_file(case, "bad.png", "no image")
    return (["predict", str(w.checkpoint), str(w.image), str(bad), "-o", str(case / "pred")],
            ["bad.png", "IMAGES"])


def _predict_out_is_file(w: World, case: Path) -> tuple[list[str], list[str]]:
    out = write_file(case, "pred", "x")
    return ["predict", str(w.checkpoint), str(w.image), "-o", str(out)], ["--out", "pred"]


def _relative_root_missing(w: World, case: Path) -> tuple[list[str], list[str]]:
    cfg = write_yaml(case / "sub" / "cfg.yaml", GOOD_CONFIG)  # root `data` = sub/data: absent
    return ["train", str(cfg), "--no-track"], ["cfg.yaml", "data.root", str(case / "sub" / "data")]


def _sweep_relative_root_missing(w: World, case: Path) -> tuple[list[str], list[str]]:
    write_yaml(case / "sub" / "cfg.yaml", GOOD_CONFIG)
    tree = space_tree(w.root)
    tree["base_config"] = "sub/cfg.yaml"
    space = write_yaml(case / "space.yaml", tree)
    return ["sweep", str(space)], ["space.yaml", "data.root", str(case / "sub" / "data")]


def _storage_is_file(w: World, case: Path) -> tuple[list[str], list[str]]:
    blocker = write_file(case, "results", "x")
    return ["sweep", str(w.space), "--storage", str(blocker)], ["--storage", "results"]


def _sweep_sqlite_under_file(w: World, case: Path) -> tuple[list[str], list[str]]:
    blocker = write_file(case, "blocker", "x")
    return (["sweep", str(w.space), "--tracking-uri", f"sqlite:///{blocker}/m.db"],
            ["--tracking-uri", "blocker"])


def _data_check_relative_bad(w: World, case: Path) -> tuple[list[str], list[str]]:
    data = copy_data(w, case)
    name = defect_mask_value(data)
    return ["data", "check", str(data)], [name, "outside 0..3"]


#: `rrn submit` of the world's good space, the world's folder uploaded as working_dir.
SUBMIT = ("submit", "{space}", "--working-dir", "{root}")

ROWS: list[Row] = [
    # ---- rrn train: the config file
    Row("train-config-missing", argv("train", "{case}/nope.yaml", "--no-track", names=["nope.yaml", "not found"])),
    Row("train-config-not-yaml", custom(_not_yaml)),
    Row("train-config-not-mapping", custom(_list_top)),
    Row("train-unknown-field", argv("train", "{cfg}", "--no-track", "--set", "data.rot=1",
                                    names=["cfg.yaml", "data.rot"])),
    Row("train-out-of-range", argv("train", "{cfg}", "--no-track", "--set", "optim.lr=-1",
                                   names=["cfg.yaml", "optim.lr"])),
    Row("train-nan-ratio", argv("train", "{cfg}", "--no-track", "--set", "data.label_ratio=.nan",
                                names=["cfg.yaml", "data.label_ratio", "must be a number in (0, 1], got nan"])),
    Row("train-set-not-key-value", argv("train", "{cfg}", "--no-track", "--set", "optim.lr",
                                        names=["optim.lr", "KEY=VALUE"])),
    Row("train-bad-method", argv("train", "{cfg}", "--no-track", "--set", "method.name=mean_teacher",
                                 names=["cfg.yaml", "method.name"])),
    # ---- rrn train: what the config points at
    Row("train-relative-root-missing", custom(_relative_root_missing)),
    Row("train-device-cuda", argv("train", "{cfg}", "--no-track", "--set", "runtime.device=cuda",
                                  names=["cfg.yaml", "runtime.device"]), cuda_free=True),
    Row("train-pretrained-missing", argv("train", "{cfg}", "--no-track", "--set",
                                         "model.pretrained={case}/r18.pth",
                                         names=["cfg.yaml", "model.pretrained", "r18.pth"])),
    # named weights, offline, nothing cached: how to pre-fetch, before anything is written
    Row("train-pretrained-offline", argv("train", "{cfg}", "--no-track", "--set", "model.base_width=null",
                                         "--set", "model.pretrained=imagenet",
                                         names=["cfg.yaml", "model.pretrained", "not in the cache",
                                                "{case}/hf/hub", "rrn weights fetch resnet18d"]),
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": "{case}/hf"}),
    Row("train-ratio-1-cps", train_on(_cfg_with(data={"label_ratio": 1.0}), ["method.name", "unlabeled"])),
    Row("train-label-count-too-big", train_on(_cfg_with(data={"label_ratio": None, "label_count": 99}),
                                              ["data.label_count"])),
    Row("train-output-under-file", custom(_output_under_file)),
    Row("train-output-unreachable-s3", argv(
        "train", "{cfg}", "--no-track", "--set", "runtime.output_dir=s3://rrn-nowhere/run",
        "--set", "runtime.storage_options={{endpoint_url: 'http://127.0.0.1:9', key: k, secret: s}}",
        names=["cfg.yaml", "runtime.output_dir", "s3://rrn-nowhere/run"])),
    Row("train-tracking-bogus", argv("train", "{cfg}", "--set", "runtime.output_dir={case}/out",
                                     "--tracking-uri", "bogus://x", names=["--tracking-uri", "bogus"])),
    Row("train-tracking-sqlite-under-file", custom(_sqlite_under_file)),
    # ---- rrn train: the data set (scanned up front, unlabeled part included)
    Row("train-truncated-jpeg", data_defect(defect_truncated_jpeg)),
    Row("train-mask-size-mismatch", data_defect(defect_size_mismatch)),
    Row("train-rgb-mask", data_defect(defect_rgb_mask)),
    Row("train-mask-value", data_defect(defect_mask_value)),
    Row("train-empty-val", data_defect(defect_empty_val)),
    Row("train-no-train-split", data_defect(defect_no_train_split)),
    Row("train-class-names", data_defect(defect_class_names)),
    Row("train-supervised-broken-unlabeled", train_on(broken_unlabeled, ["unreadable"])),
    Row("train-cps-broken-unlabeled", train_on(cps_broken_unlabeled, ["unreadable"])),
    # ---- rrn data
    Row("data-check-missing", argv("data", "check", "{case}/nowhere", names=["nowhere"])),
    Row("data-check-bad-layout", argv("data", "check", "{data}", "--layout", "coco", names=["--layout"])),
    Row("data-check-broken-mask", custom(_data_check_relative_bad)),
    Row("data-split-both", argv("data", "split", "{data}", "--ratio", "0.5", "--count", "2",
                                names=["--ratio", "--count"])),
    Row("data-split-zero", argv("data", "split", "{data}", "--ratio", "0", names=["--ratio"])),
    # ---- rrn eval / predict
    Row("eval-random-bytes", custom(_random_ckpt), absent=["weights_only"]),
    Row("eval-truncated", custom(_truncated_ckpt), absent=["weights_only"]),
    Row("eval-not-a-checkpoint", custom(_eval_not_a_checkpoint)),
    Row("eval-missing", argv("eval", "{case}/none.pt", names=["none.pt", "no checkpoint"])),
    Row("eval-bad-mode", argv("eval", "{ckpt}", "--mode", "bogus", names=["--mode", "bogus"])),
    Row("eval-data-root-missing", argv("eval", "{ckpt}", "--set", "data.root={case}/gone",
                                       names=["data.root", "gone"])),
    Row("eval-model-mismatch", argv("eval", "{ckpt}", "--set", "model.backbone=resnet34",
                                    names=["model.backbone", "does not fit"])),
    Row("predict-not-a-checkpoint", custom(_not_a_checkpoint)),
    Row("predict-one-bad-image", custom(_predict_one_bad)),
    Row("predict-only-image-bad", custom(_predict_only_image_bad)),
    Row("predict-missing-image", argv("predict", "{ckpt}", "{case}/gone.jpg", "-o", "{case}/pred",
                                      names=["gone.jpg", "IMAGES"])),
    Row("predict-out-is-file", custom(_predict_out_is_file)),
    # ---- rrn space validate / rrn sweep: static
    Row("space-missing", argv("space", "validate", "{case}/none.yaml", names=["none.yaml"])),
    Row("space-unknown-field", sweep_space(space_with(num_sample=2), ["num_sample"])),
    Row("space-grid-only-searched", sweep_space(
        space_with(search={"data.label_ratio": {"type": "uniform", "low": 0.1, "high": 0.5}}),
        ["search.data.label_ratio"])),
    Row("sweep-metric-not-produced", sweep_space(space_with(metric="val/accuracy"), ["metric", "val/accuracy"])),
    Row("sweep-set-grid-key", argv("sweep", "{space}", "--set", "method.name=rrn",
                                   names=["--set method.name", "grid"])),
    Row("sweep-device-cuda-no-gpu", argv("sweep", "{space}", "--set", "runtime.device=cuda",
                                         names=["space.yaml", "runtime.device", "scaling.use_gpu"])),
    Row("sweep-storage-is-file", custom(_storage_is_file)),
    Row("sweep-tracking-bogus", argv("sweep", "{space}", "--tracking-uri", "bogus://x",
                                     names=["--tracking-uri", "bogus"])),
    Row("sweep-tracking-sqlite-under-file", custom(_sweep_sqlite_under_file)),
    Row("sweep-relative-root-missing", custom(_sweep_relative_root_missing)),
    Row("sweep-nan-ratio", sweep_space(space_with(fixed={"data.label_ratio": float("nan")}),
                                       ["fixed.data.label_ratio", "must be a number in (0, 1]"])),
    Row("sweep-ratio-1-cps", sweep_space(space_with(fixed={"data.label_ratio": 1.0}),
                                         ["method.name", "unlabeled"])),
    Row("sweep-mask-value", sweep_on(defect_mask_value)),
    Row("sweep-truncated-jpeg", sweep_on(defect_truncated_jpeg)),
    # ---- rrn sweep: resources the cluster can never give (refused after Ray connects,
    # before the first write)
    Row("sweep-use-gpu-on-cpu", sweep_space(space_with(scaling={"use_gpu": True}), ["scaling", "GPU"]),
        ray=True, cuda_free=True),
    Row("sweep-gpu-resource-on-cpu", sweep_space(
        space_with(scaling={"resources_per_worker": {"CPU": 1, "GPU": 1}}), ["scaling", "GPU"]),
        ray=True, cuda_free=True),
    Row("sweep-64-cpus", sweep_space(space_with(scaling={"resources_per_worker": {"CPU": 64}}),
                                     ["scaling", "CPU: 64"]), ray=True),
    Row("sweep-8-workers", sweep_space(space_with(scaling={"num_workers": 8}), ["scaling", "8 worker"]),
        ray=True),
    # ---- rrn submit: the space is checked here, before any upload ...
    Row("submit-space-outside-working-dir", argv("submit", "{space}", "--working-dir", "{case}",
                                                 "--address", "{dashboard}",
                                                 names=["space.yaml", "inside the uploaded working directory"])),
    Row("submit-bad-space", argv("submit", "{case}/none.yaml", "--working-dir", "{root}",
                                 "--address", "{dashboard}", names=["none.yaml"])),
    # ... secrets never go into a runtime env (Ray logs it in clear) ...
    Row("submit-forward-credentials", argv(*SUBMIT, "--forward-credentials", "--address", "{dashboard}",
                                           names=["--forward-credentials", "runtime env"])),
    Row("submit-secret-env", argv(*SUBMIT, "--env", "AWS_SECRET_ACCESS_KEY=hunter2-secret",
                                  "--address", "{dashboard}",
                                  names=["--env AWS_SECRET_ACCESS_KEY", "runtime env"]),
        absent=["hunter2-secret"]),
    Row("submit-tracking-uri-password", argv(*SUBMIT, "--tracking-uri", "http://u:hunter2-secret@mlflow:5000",
                                             "--address", "{dashboard}",
                                             names=["--tracking-uri", "password", "runtime env"]),
        absent=["hunter2-secret"]),
    # ... and a cluster whose `python` is not rrn's (a head started without the venv on
    # PATH, issue 12 #7) gets only the check job, deleted again: nothing submitted
    Row("submit-cluster-python-lacks-rrn", argv(
        *SUBMIT, "--address", "{dashboard}", "--env", "PATH=/usr/bin:/bin", "--check-timeout", "120",
        names=["space.yaml", "not submitted to {dashboard}", "cannot run rrn"]), ray=True),
    # ---- rrn ui / rrn report: an unknown store scheme before MLflow (its traceback) sees it
    Row("ui-tracking-bogus", argv("ui", "--tracking-uri", "bogus://x", names=["--tracking-uri", "bogus"])),
    Row("report-tracking-bogus", argv("report", "good", "--tracking-uri", "bogus://x",
                                      names=["--tracking-uri", "bogus"])),
]


# --------------------------------------------------------------------------- checks


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `root` with its size and mtime."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_size if path.is_file() else -1, st.st_mtime_ns)
    return out


def cluster_jobs(dashboard: str) -> list[str]:
    """The submission ids on the test cluster (the driver of this process has none)."""
    from ray.job_submission import JobSubmissionClient

    return sorted(j.submission_id for j in JobSubmissionClient(dashboard).list_jobs() if j.submission_id)


def test_the_table_has_at_least_40_rows() -> None:
    assert len(ROWS) >= 40
    assert len({r.id for r in ROWS}) == len(ROWS)


def case_in_isolation(world: World, row: Row, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A row's case folder, run with no inherited store, storage or cluster address and
    its own RRN_HOME, from the world's root (what every table of rows starts from)."""
    for name in ("RRN_TRACKING_URI", "MLFLOW_TRACKING_URI", "RRN_STORAGE_PATH",
                 "RRN_STORAGE_ENDPOINT_URL", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RRN_HOME", str(world.root / "home"))
    monkeypatch.chdir(world.root)
    return world.case_dir(row.id)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_refused(row: Row, world: World, request: pytest.FixtureRequest,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from rrn.cli import app

    if row.cuda_free and torch.cuda.is_available():
        pytest.skip(reason="this machine has CUDA: the input is valid here")
    if row.ray:
        world.dashboard = request.getfixturevalue("ray_cluster")
    case = case_in_isolation(world, row, monkeypatch)
    args, names = row.setup(world, case)
    for name, value in row.env.items():
        monkeypatch.setenv(name, value.format(case=case))

    before = snapshot(world.root)
    jobs_before = cluster_jobs(world.dashboard) if row.ray else []
    result = CliRunner().invoke(app, args)
    after = snapshot(world.root)
    assert not row.ray or cluster_jobs(world.dashboard) == jobs_before, "a job was left on the cluster"

    output = result.output
    assert result.exit_code == 2, f"{args}: exit {result.exit_code}\n{output}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output, output
    assert "error" in output.lower(), output
    for name in names + row.extra_names:
        assert name in output, f"message does not name {name!r}:\n{output}"
    for secret in row.absent:
        assert secret not in output, f"the message echoes {secret!r}"
    written = sorted(set(after) - set(before))
    changed = sorted(k for k in set(after) & set(before) if after[k] != before[k]
                     and after[k][0] != -1)  # folders' mtimes change when files are added only
    assert not written and not changed, f"written: {written[:10]}, changed: {changed[:10]}"
