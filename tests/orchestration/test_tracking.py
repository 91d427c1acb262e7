"""MLflow tracking of sweeps against a real sqlite store: parent/child runs, metrics,
artifacts, idempotent resume, and nothing left RUNNING."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from PIL import Image

from orchestration.names import TAG_CHECKPOINT, TAG_PARENT
from orchestration.display_names import method_color, sanitize_metric_key
from orchestration.tracking.overlays import MIN_PANEL_PX
from orchestration.tracking.sweep_run import SweepTracker
from orchestration.tracking.trial_run import TrialTracker
from orchestration.tracking.mlflow_calls import class_metric_keys
from orchestration.tracking.store import resolve_tracking_uri
from rrn_core.config import build_config
from rrn_core.evaluate import EvalResult, PredictionSample

from method_lists import all_methods

CLASS_NAMES = ["back/ground", "traffic light", "a:b (c)", "."]


def make_config(method: str = "rrn", ratio: float | None = 0.25, seed: int = 0, **extra):
    tree = {"name": "t", "data": {"root": "/nonexistent", "num_classes": len(CLASS_NAMES),
                                  "class_names": CLASS_NAMES, "label_ratio": ratio,
                                  "crop_size": 48},
            "method": {"name": method}, "runtime": {"seed": seed, "progress": False}}
    return build_config(tree, extra)


def make_space(folder: Path, name: str):
    """A real space file through the real loader (the format E1's sweeps use)."""
    from orchestration.space import load_space

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(
        {"name": "base", "data": {"root": "/nonexistent", "num_classes": 4, "crop_size": 48},
         "runtime": {"progress": False}}))
    (folder / "space.yaml").write_text(yaml.safe_dump({
        "name": name, "base_config": "base.yaml",
        "fixed": {"optim.iters": 4},
        "grid": {"data.label_ratio": [0.25, 0.5], "method.name": ["supervised", "rrn"],
                 "runtime.seed": [0]},
        "search": {"optim.lr": {"type": "loguniform", "low": 0.001, "high": 0.1}},
        "num_samples": 2, "metric": "val/mIoU", "mode": "max",
    }))
    return load_space(folder / "space.yaml")


def make_result(confusion, names=CLASS_NAMES, samples=()) -> EvalResult:
    return EvalResult(confusion=np.asarray(confusion), class_names=list(names),
                      samples=list(samples))


def sample(image_hw: tuple[int, int], seed: int, sid: str) -> PredictionSample:
    rng = np.random.default_rng(seed)
    h, w = image_hw
    gt = rng.integers(0, len(CLASS_NAMES), size=(h, w))
    gt[0, :] = 255  # padding/ignore pixels must not break the overlay
    return PredictionSample(id=sid, image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                            pred=rng.integers(0, len(CLASS_NAMES), size=(h, w)), gt=gt)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One sqlite store per module (creating its tables costs ~2 s); tests use own sweeps."""
    return resolve_tracking_uri(f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db")


@pytest.fixture(scope="module")
def client(store) -> MlflowClient:
    return MlflowClient(tracking_uri=store)


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_resolve_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = resolve_tracking_uri("sqlite:///sub/dir/m.db")
    assert uri == f"sqlite:///{tmp_path.resolve()}/sub/dir/m.db"
    assert (tmp_path / "sub" / "dir").is_dir()
    assert resolve_tracking_uri("plain/m.db") == f"sqlite:///{tmp_path.resolve()}/plain/m.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("RRN_HOME", str(tmp_path / "home"))
    assert resolve_tracking_uri(None) == f"sqlite:///{(tmp_path / 'home').resolve()}/mlflow.db"
    assert (tmp_path / "home").is_dir()


def test_metric_key_sanitising_gives_valid_unique_keys():
    keys = class_metric_keys(["a/b", "a_b", "traffic light", ".", "", "x:y"])
    assert len(set(keys)) == 6
    assert keys[2] == "val/IoU/traffic light"
    assert all(k.count("/") == 2 and not k.endswith("/.") for k in keys)
    assert sanitize_metric_key("..") == "_"


def test_parent_children_params_metrics_and_artifacts(tmp_path, store, client):
    space = make_space(tmp_path / "space", "main")
    sweep = SweepTracker(store, "exp-main", "main")
    parent_id = sweep.start(space, git_commit="abc123", dataset_hash="d" * 64,
                            split_hashes={"ratio=0.25": "s1"}, resume=False)
    parent = client.get_run(parent_id)
    assert parent.data.tags["rrn.sweep"] == "main"
    assert parent.data.tags["rrn.git_commit"] == "abc123"
    assert parent.data.tags["rrn.dataset_hash"] == "d" * 64
    assert parent.data.params["trial_count"] == str(space.trial_count) == "8"
    assert {a.path for a in client.list_artifacts(parent_id, "space")} >= {
        "space/space.yaml", "space/resolved.txt", "space/base_config.yaml"}

    # artifacts of a sqlite store live next to it, where `rrn ui` serves them from
    exp = client.get_experiment_by_name("exp-main")
    db_dir = Path(store.split(":///", 1)[1]).parent
    assert exp.artifact_location == (db_dir / "mlartifacts").resolve().as_uri()

    cfg = make_config("rrn", 0.25, seed=3, **{"method.w_select": 0.5})
    trial = TrialTracker(store, "exp-main", parent_id, "trial_0001", "rrn-0.25-0", cfg,
                         tags={"rrn.extra": "x"})
    trial.on_log(1, {"train/loss": 2.0, "train/lr": 0.01})
    trial.on_log(2, {"train/loss": 1.5, "train/lr": 0.009})
    confusion = np.array([[5, 1, 0, 0], [0, 4, 0, 0], [0, 2, 6, 0], [0, 0, 0, 0]])
    result = make_result(confusion, samples=[sample((20, 30), 0, "img/001"),
                                             sample((20, 30), 1, "img 2")])
    trial.on_evaluation(2, result, "/ckpt/trial_0001/checkpoints")
    trial.close()

    run = client.get_run(trial.run_id)
    assert run.info.status == "FINISHED"
    tags, params = run.data.tags, run.data.params
    assert tags[TAG_PARENT] == parent_id
    assert (tags["rrn.trial_id"], tags["rrn.method"], tags["rrn.label_ratio"], tags["rrn.seed"]) \
        == ("trial_0001", "rrn", "0.25", "3")
    assert tags["rrn.extra"] == "x"
    assert tags[TAG_CHECKPOINT] == "/ckpt/trial_0001/checkpoints"
    assert params["method.w_select"] == "0.5"
    assert params["data.crop_size"] == "48"
    assert params["model.backbone"] == "resnet50c"      # the default: ResNet-50 with the paper's deep stem
    assert (tags["rrn.backbone"], tags["rrn.weights"], tags["rrn.weights_sha256"]) == ("resnet50c", "none", "")
    assert params["method.discriminator.lr"] == "0.0001"   # rrn's critic is rrn's to log
    assert len(params) > 50  # the whole flattened config an rrn run uses, not a hand-picked subset
    assert not any(k.startswith("runtime.output_dir") for k in params)

    assert history(client, trial.run_id, "train/loss") == [(1, 2.0), (2, 1.5)]
    m = run.data.metrics
    # IoU from the matrix: class0 5/6, class1 4/7, class2 6/8; class3 never occurs -> not logged
    assert m["val/IoU/back_ground"] == pytest.approx(5 / 6)
    assert m["val/IoU/traffic light"] == pytest.approx(4 / 7)
    assert m["val/IoU/a_b _c_"] == pytest.approx(6 / 8)
    assert not any(k.startswith("val/IoU/_") for k in m)
    assert m["val/mIoU"] == pytest.approx((5 / 6 + 4 / 7 + 6 / 8) / 3)
    assert m["val/pixel_acc"] == pytest.approx(15 / 18)

    files = {a.path for a in client.list_artifacts(trial.run_id, "eval/step_0000002")}
    assert "eval/step_0000002/confusion.png" in files
    overlays = sorted(f for f in files if "/overlay_" in f)
    assert len(overlays) == 2
    got = Path(client.download_artifacts(trial.run_id, overlays[0], str(tmp_path)))
    with Image.open(got) as img:
        # image | ground truth | prediction, titled, each panel scaled up to be readable
        assert img.size[0] >= 3 * MIN_PANEL_PX and img.size[1] > MIN_PANEL_PX * 20 // 30
    got = Path(client.download_artifacts(trial.run_id, "eval/step_0000002/confusion.png",
                                         str(tmp_path)))
    with Image.open(got) as img:
        assert img.format == "PNG" and min(img.size) > 100
    cfg_file = Path(client.download_artifacts(trial.run_id, "config.yaml", str(tmp_path)))
    assert yaml.safe_load(cfg_file.read_text())["method"]["w_select"] == 0.5
    sweep.finish()
    assert client.get_run(parent_id).info.status == "FINISHED"


def test_trial_is_idempotent_on_trial_id(tmp_path, store, client):
    space = make_space(tmp_path / "space", "idem")
    sweep = SweepTracker(store, "exp-idem", "idem")
    parent_id = sweep.start(space, git_commit=None, dataset_hash=None, split_hashes={},
                            resume=False)
    cfg = make_config("cps", 0.5, seed=1)
    first = TrialTracker(store, "exp-idem", parent_id, "t1", "cps", cfg)
    for step in (1, 2, 3, 4):
        first.on_log(step, {"train/loss": float(step)})
    first.close("FAILED")  # the worker died after step 4; the checkpoint was at step 2

    again = TrialTracker(store, "exp-idem", parent_id, "t1", "cps", cfg)
    assert again.run_id == first.run_id
    assert client.get_run(again.run_id).info.status == "RUNNING"
    for step in (3, 4, 5, 6):  # the loop replays 3..4 from the checkpoint, then goes on
        again.on_log(step, {"train/loss": float(step) + 0.5})
    again.close()
    assert history(client, again.run_id, "train/loss") == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.5), (6, 6.5)]
    runs = client.search_runs([client.get_experiment_by_name("exp-idem").experiment_id],
                              f"tags.`{TAG_PARENT}` = '{parent_id}'")
    assert len(runs) == 1

    other = TrialTracker(store, "exp-idem", parent_id, "t2", "cps", cfg)
    assert other.run_id != first.run_id
    other.close()

    # a resumed sweep reopens its parent; a fresh start with the same name does not
    resumed = SweepTracker(store, "exp-idem", "idem")
    assert resumed.start(space, git_commit=None, dataset_hash=None, split_hashes={},
                         resume=True) == parent_id
    assert client.get_run(parent_id).data.tags["rrn.resumed"] == "1"
    fresh = SweepTracker(store, "exp-idem", "idem")
    assert fresh.start(space, git_commit=None, dataset_hash=None, split_hashes={},
                       resume=False) != parent_id
    resumed.finish()
    fresh.finish()


@pytest.mark.parametrize("status,orphan_status", [("FINISHED", "FAILED"), ("KILLED", "KILLED")])
def test_finish_leaves_no_run_running(tmp_path, store, client, status, orphan_status):
    name = f"fin-{status.lower()}"
    space = make_space(tmp_path / "space", name)
    sweep = SweepTracker(store, "exp-finish", name)
    parent_id = sweep.start(space, git_commit=None, dataset_hash=None, split_hashes={},
                            resume=False)
    done = TrialTracker(store, "exp-finish", parent_id, "done", "done", make_config())
    done.close()
    orphan = TrialTracker(store, "exp-finish", parent_id, "orphan", "orphan", make_config())
    # the orphan's worker "died": close() is never called
    assert client.get_run(orphan.run_id).info.status == "RUNNING"
    sweep.finish(status)
    assert client.get_run(parent_id).info.status == status
    assert client.get_run(done.run_id).info.status == "FINISHED"
    assert client.get_run(orphan.run_id).info.status == orphan_status


def test_long_param_values_are_truncated_not_rejected(tmp_path, store, client):
    space = make_space(tmp_path / "space", "long")
    sweep = SweepTracker(store, "exp-long", "long")
    parent_id = sweep.start(space, git_commit=None, dataset_hash=None, split_hashes={},
                            resume=False)
    names = [f"a_rather_long_class_name_{i:04d}" for i in range(400)]
    cfg = build_config({"data": {"root": "/x", "num_classes": 400, "class_names": names}})
    trial = TrialTracker(store, "exp-long", parent_id, "t", "t", cfg)
    value = client.get_run(trial.run_id).data.params["data.class_names"]
    assert len(value) == 6000 and value.startswith('["a_rather_long_class_name_0000"')
    trial.close()
    sweep.finish()


def test_real_training_loop_feeds_the_child_run(tmp_path, store, client):
    """rrn_core.loop.train with a TrialTracker as its hooks: the contract end to end."""
    import torch

    from rrn_core.data.synth import generate_synthetic
    from rrn_core.loop import train

    generate_synthetic(tmp_path / "data", num_classes=4, num_train=16, num_val=2, size=32, seed=0)
    cfg = build_config({
        "data": {"root": str(tmp_path / "data"), "num_classes": 4, "label_ratio": 0.25,
                 "crop_size": 32, "batch_size": 2, "unlabeled_batch_size": 2},
        "model": {"backbone": "resnet18d", "base_width": 8,
                  "aspp_channels": 16, "low_level_channels": 8, "head_channels": 16},
        "method": {"name": "cps"}, "optim": {"iters": 4},
        "eval": {"every": 2, "overlays": 1},
        "runtime": {"device": "cpu", "progress": False, "log_every": 2,
                    "output_dir": str(tmp_path / "run")}})
    space = make_space(tmp_path / "space", "loop")
    sweep = SweepTracker(store, "exp-loop", "loop")
    parent_id = sweep.start(space, git_commit=None, dataset_hash=None, split_hashes={},
                            resume=False)
    trial = TrialTracker(store, "exp-loop", parent_id, "loop_0", "cps", cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net: threads only fight over CI's two cores
    try:
        out = train(cfg, trial)
    finally:
        torch.set_num_threads(threads)
    trial.close()
    sweep.finish()

    miou = history(client, trial.run_id, "val/mIoU")
    assert [s for s, _ in miou] == [2, 4]
    assert miou[-1][1] == pytest.approx(out.final.miou)
    assert max(v for _, v in miou) == pytest.approx(out.best_miou)
    assert [s for s, _ in history(client, trial.run_id, "train/loss")] == [2, 4]
    run = client.get_run(trial.run_id)
    assert run.data.tags[TAG_CHECKPOINT] == str(tmp_path / "run" / "checkpoints")
    files = {a.path for a in client.list_artifacts(trial.run_id, "eval/step_0000004")}
    assert "eval/step_0000004/confusion.png" in files
    assert sum("/overlay_" in f for f in files) == 1


def test_credentials_never_reach_params_or_artifacts(tmp_path, store, client):
    space = make_space(tmp_path / "space", "secret")
    sweep = SweepTracker(store, "exp-secret", "secret")
    parent_id = sweep.start(space, git_commit=None, dataset_hash=None, split_hashes={},
                            resume=False)
    cfg = make_config(**{"runtime.storage_options": {
        "key": "AKIAEXAMPLEKEY", "secret": "s3cr3t-value",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}})
    trial = TrialTracker(store, "exp-secret", parent_id, "t", "t", cfg)
    trial.on_evaluation(1, make_result(np.eye(4, dtype=int)), "s3://u:pw-value@bucket/ckpt")
    trial.close()
    sweep.finish()
    run = client.get_run(trial.run_id)
    logged = " ".join([*run.data.params.values(), *run.data.tags.values()])
    text = Path(client.download_artifacts(trial.run_id, "config.yaml", str(tmp_path))).read_text()
    for secret in ("AKIAEXAMPLEKEY", "s3cr3t-value", "pw-value"):
        assert secret not in logged and secret not in text
    # what is not secret stays usable
    assert run.data.params["runtime.storage_options.client_kwargs.endpoint_url"] == \
        "http://127.0.0.1:9000"


# --------------------------------------------------------------------------- what runs say


def test_params_are_what_the_method_uses_and_nothing_machine_local(tmp_path, store, client):
    from orchestration.names import EXPERIMENT_KIND_TRAINING, TAG_EXPERIMENT_KIND

    space = make_space(tmp_path / "space", "params")
    sweep = SweepTracker(store, "exp-params", "params")
    parent_id = sweep.start(space, git_commit=None, dataset_hash=None, split_hashes={},
                            resume=False)
    exp = client.get_experiment_by_name("exp-params")
    assert exp.tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND_TRAINING  # the UI's runs view
    parent = client.get_run(parent_id)
    assert parent.data.params["search.optim.lr"] == "loguniform [0.001, 0.1]"

    local = {"runtime.output_dir": str(tmp_path / "scratch" / "trial-x"),
             "data.labeled_split": "/nonexistent/splits/r0.25/labeled.txt",
             "data.unlabeled_split": "/nonexistent/splits/r0.25/unlabeled.txt"}
    logged = {}
    for method in all_methods():
        cfg = make_config(method, 0.25, **local)
        trial = TrialTracker(store, "exp-params", parent_id, f"t-{method}", method, cfg)
        trial.close()
        logged[method] = client.get_run(trial.run_id).data.params
        # one colour per method in the UI's tables and charts, the same as in our plots
        assert client.get_run(trial.run_id).data.tags["mlflow.runColor"] == method_color(method)
        text = Path(client.download_artifacts(trial.run_id, "config.yaml",
                                              str(tmp_path / method))).read_text()
        assert str(tmp_path) not in text and "output_dir" not in text
        tree = yaml.safe_load(text)
        assert tree["data"]["labeled_split"] == "splits/r0.25/labeled.txt"  # relative to root
        assert build_config(tree).method.name == method                     # still loads
    for method, params in logged.items():
        assert not any(k.startswith(("runtime.output_dir", "runtime.resume", "runtime.progress"))
                       for k in params), method
        assert params["optim.lr"] and params["data.crop_size"] == "48"
    sup, cps, fix, rrn = (logged[m] for m in ("supervised", "cps", "fixmatch", "rrn"))
    assert not any(k.startswith(("method.w_", "method.discriminator", "method.tau",
                                 "data.unlabeled", "data.cutmix", "method.conf")) for k in sup
                   )
    assert "method.name" in sup and "method.unsup_rampup" not in sup
    assert "method.w_cps" in cps and "method.tau_region" not in cps and "method.w_unsup" not in cps
    assert "method.w_unsup" in fix and "method.conf_thresh" in fix and "method.w_cps" not in fix
    assert {"method.w_cps", "method.w_select", "method.tau_region",
            "method.discriminator.lr"} <= set(rrn)
    sweep.finish()


def test_collapsed_evaluations_are_tagged(tmp_path, store, client):
    space = make_space(tmp_path / "space", "collapse")
    sweep = SweepTracker(store, "exp-collapse", "collapse")
    parent_id = sweep.start(space, git_commit=None, dataset_hash=None, split_hashes={},
                            resume=False)
    one_class = np.zeros((4, 4), int)
    one_class[:, 0] = [50, 10, 10, 5]                      # every pixel predicted as class 0
    healthy = np.diag([20, 10, 10, 5])
    assert make_result(one_class).collapsed and not make_result(healthy).collapsed
    trial = TrialTracker(store, "exp-collapse", parent_id, "t", "t", make_config("cps"))
    trial.on_evaluation(2, make_result(one_class), None)
    tags = client.get_run(trial.run_id).data.tags
    assert (tags["rrn.collapsed"], tags["rrn.collapsed_at"]) == ("true", "2")
    assert client.get_run(trial.run_id).data.metrics["val/dominant_share"] == 1.0
    trial.on_evaluation(4, make_result(healthy), None)     # recovered: the history stays
    tags = client.get_run(trial.run_id).data.tags
    assert (tags["rrn.collapsed"], tags["rrn.collapsed_at"]) == ("false", "2")
    trial.close("FAILED")
    again = TrialTracker(store, "exp-collapse", parent_id, "t", "t", make_config("cps"))
    again.on_evaluation(6, make_result(one_class), None)   # a resumed run keeps the earlier steps
    assert client.get_run(trial.run_id).data.tags["rrn.collapsed_at"] == "2,6"
    again.close()
    sweep.finish()
