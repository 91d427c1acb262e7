"""`rrn k8s rayjob`: the RayJob it writes is schema-valid and carries what was asked for;
bad input exits 2 with a message naming the option or field, and writes nothing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from deploy_helpers import REPO, schema_errors
from typer.testing import CliRunner

from rrn import k8s_commands as cli_k8s
from orchestration.space import load_space

EXAMPLES = REPO / "deploy" / "k8s" / "examples"
BASE = {
    "data": {"root": "/data/synth", "num_classes": 6, "crop_size": 64},
    "model": {"backbone": "resnet18", "base_width": 16},
    "optim": {"iters": 100},
    "eval": {"every": 50},
}


def constraint(package: str) -> str:
    text = (REPO / "constraints.txt").read_text()
    return re.search(rf"^{re.escape(package)}==(\S+)$", text, re.M).group(1)


def make_space(directory: Path, name: str = "k8s_demo", **fields: Any) -> Path:
    space = {
        "name": name,
        "base": BASE,
        "grid": {"data.label_ratio": [0.25, 0.5], "method.name": ["rrn"]},
        "search": {"method.w_select": {"type": "loguniform", "low": 0.1, "high": 3.0}},
        "num_samples": 2,
        "max_concurrent_trials": 3,
        "scaling": {"num_workers": 2, "use_gpu": True, "resources_per_worker": {"CPU": 4, "GPU": 1}},
        **fields,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def run(*args: str) -> tuple[int, str, str]:
    app = typer.Typer()
    app.add_typer(cli_k8s.app, name="k8s")
    result = CliRunner().invoke(app, ["k8s", "rayjob", *args])
    return result.exit_code, result.stdout, result.stderr


def manifests(*args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    code, out, err = run(*args)
    assert code == 0, err
    config_map, rayjob = [d for d in yaml.safe_load_all(out) if d]
    assert [p for d in (config_map, rayjob) for p in schema_errors(d)] == []
    return config_map, rayjob


def cluster_pods(rayjob: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = rayjob["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]


def env_of(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pod["containers"][0]["env"]}


def test_gpu_sweep_with_explicit_options(tmp_path: Path) -> None:
    space = make_space(tmp_path)
    config_map, rayjob = manifests(
        str(space), "--image", "reg.io/rrn:0.1.0-cu128", "--gpus", "2", "--namespace", "ml",
        "--min-workers", "1", "--max-workers", "6", "--s3-secret", "my-s3", "--data-pvc", "voc",
        "--ttl", "120", "--deadline", "86400", "--retries", "1")
    spec = rayjob["spec"]
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    assert rayjob["metadata"] == {**rayjob["metadata"], "name": "rrn-sweep-k8s-demo", "namespace": "ml"}
    assert config_map["metadata"]["namespace"] == "ml"
    assert spec["entrypoint"] == "python -m rrn sweep /etc/rrn-space/space.yaml"
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert (spec["ttlSecondsAfterFinished"], spec["activeDeadlineSeconds"], spec["backoffLimit"]) == (120, 86400, 1)
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == constraint("ray")
    assert cluster["enableInTreeAutoscaling"] is True
    (group,) = cluster["workerGroupSpecs"]
    assert (group["groupName"], group["minReplicas"], group["maxReplicas"], group["replicas"]) == ("gpu", 1, 6, 1)
    worker = group["template"]["spec"]
    limits = worker["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 2
    assert worker["tolerations"][0]["key"] == "nvidia.com/gpu"
    # The head hosts one Tune actor per concurrent trial and no GPU.
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "3"
    assert "nvidia.com/gpu" not in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    for pod in cluster_pods(rayjob):
        env = env_of(pod)
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": "my-s3", "key": key}}}
        assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow:5000"
        assert env["RRN_STORAGE_PATH"]["value"] == "s3://rrn/results"
        assert env["AWS_ENDPOINT_URL"]["value"] == "http://s3:8333"
        assert "RRN_TRACKING_URI" not in env  # the file's tracking.uri (if any) still wins
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["space"]["configMap"]["name"] == config_map["metadata"]["name"]
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "voc"
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert {"/etc/rrn-space", "/data", "/tmp", "/dev/shm"} <= mounts
    assert yaml.safe_load(config_map["data"]["space.yaml"])["name"] == "k8s_demo"


def test_cpu_sweep_defaults_follow_the_space(tmp_path: Path) -> None:
    space = make_space(tmp_path, scaling={"num_workers": 2, "use_gpu": False}, max_concurrent_trials=2)
    _, rayjob = manifests(str(space), "--image", "rrn:0.1.0")
    (group,) = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    container = group["template"]["spec"]["containers"][0]
    for pod in cluster_pods(rayjob):  # the data volume deploy/k8s creates, by default
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "rrn-data"}} in pod["volumes"]
    assert group["groupName"] == "cpu"
    assert (group["minReplicas"], group["maxReplicas"]) == (0, 4)  # 2 concurrent trials x 2 workers
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "tolerations" not in group["template"]["spec"]
    assert container["resources"]["requests"] == container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}


def test_explicit_tracking_and_storage_override_the_space(tmp_path: Path) -> None:
    space = make_space(tmp_path, tracking={"uri": "http://elsewhere:5000"})
    _, rayjob = manifests(str(space), "--image", "rrn:0.1.0", "--tracking-uri", "http://mlflow.team.svc:5000",
                          "--storage-path", "s3://team/results", "--s3-endpoint", "http://minio.team.svc:9000",
                          "--worker-cpu", "12", "--worker-memory", "48Gi", "--head-cpu", "500m")
    env = env_of(cluster_pods(rayjob)[1])
    assert env["RRN_TRACKING_URI"]["value"] == "http://mlflow.team.svc:5000"
    assert env["RRN_STORAGE_PATH"]["value"] == "s3://team/results"
    assert env["RRN_STORAGE_ENDPOINT_URL"]["value"] == "http://minio.team.svc:9000"
    worker = cluster_pods(rayjob)[1]["containers"][0]["resources"]["limits"]
    assert (worker["cpu"], worker["memory"]) == ("12", "48Gi")
    assert cluster_pods(rayjob)[0]["containers"][0]["resources"]["limits"]["cpu"] == "500m"
    _, rayjob = manifests(str(space), "--image", "rrn:0.1.0", "--data-pvc", "none")
    for pod in cluster_pods(rayjob):
        assert "data" not in {v["name"] for v in pod["volumes"]}


def test_space_with_a_base_config_file_is_shipped_self_contained(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text("# my base\n" + yaml.safe_dump(BASE))
    (tmp_path / "spaces").mkdir()
    space = make_space(tmp_path / "spaces", base=None, base_config="../configs/base.yaml")
    text = space.read_text().replace("base: null\n", "")
    space.write_text(text)
    config_map, _ = manifests(str(space), "--image", "rrn:0.1.0")
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name, content in config_map["data"].items():
        (shipped / name).write_text(content)
    assert config_map["data"]["base.yaml"].startswith("# my base")
    assert load_space(shipped / "space.yaml").base == load_space(space).base


def test_out_file_and_gpu_warning(tmp_path: Path) -> None:
    space = make_space(tmp_path, scaling={"num_workers": 1, "use_gpu": False})
    out = tmp_path / "k8s" / "rayjob.yaml"
    code, stdout, stderr = run(str(space), "--image", "rrn:0.1.0", "--gpus", "1", "--out", str(out))
    assert code == 0 and stdout == ""
    assert "use_gpu: false" in stderr and "wrote" in stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(out.read_text()) if d]
    assert kinds == ["ConfigMap", "RayJob"]


@pytest.mark.parametrize("extra, fields, message", [
    (["--image", "rrn"], {}, "--image"),
    (["--image", "rrn:latest"], {}, "--image"),
    (["--image", "rrn:1", "--gpus", "0"], {}, "use_gpu"),
    (["--image", "rrn:1", "--min-workers", "5", "--max-workers", "2"], {}, "--min-workers"),
    (["--image", "rrn:1", "--worker-cpu", "2"], {}, "resources_per_worker.CPU"),
    (["--image", "rrn:1", "--worker-memory", "lots"], {}, "--worker-memory"),
    (["--image", "rrn:1", "--worker-cpu", "1k"], {}, "--worker-cpu"),
    (["--image", "rrn:1", "--namespace", "Bad_NS"], {}, "--namespace"),
    (["--image", "rrn:1"], {"storage": {"path": "/mnt/results"}}, "storage.path"),
    (["--image", "rrn:1"], {"serach": {}}, "serach"),
])
def test_bad_input_exits_2_and_keeps_the_old_file(tmp_path: Path, extra: list[str], fields: dict,
                                                  message: str) -> None:
    space = make_space(tmp_path, **fields)
    out = tmp_path / "rayjob.yaml"
    out.write_text("previous\n")
    code, stdout, stderr = run(str(space), *extra, "--out", str(out))
    assert code == 2, stderr
    assert message in stderr
    assert out.read_text() == "previous\n"


def test_missing_space_file_names_it(tmp_path: Path) -> None:
    code, _, stderr = run(str(tmp_path / "nope.yaml"), "--image", "rrn:1")
    assert code == 2 and "nope.yaml" in stderr


def test_long_space_names_make_valid_kubernetes_names(tmp_path: Path) -> None:
    space = make_space(tmp_path, name="a_very_long_sweep_name_" + "x" * 40)
    config_map, rayjob = manifests(str(space), "--image", "rrn:0.1.0")
    assert len(rayjob["metadata"]["name"]) <= 47
    assert len(config_map["metadata"]["name"]) <= 63


@pytest.mark.parametrize("space", sorted((REPO / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_search_space_makes_a_valid_rayjob(space: Path) -> None:
    manifests(str(space), "--image", "rrn:0.1.0-cu128", "--storage-path", "s3://rrn/results")


def test_committed_example_matches_the_generator() -> None:
    """deploy/k8s/examples/rayjob-synth.yaml is what the README shows; regenerate with
    rrn k8s rayjob deploy/k8s/examples/synth-space.yaml --image rrn:0.1.0 -o deploy/k8s/examples/rayjob-synth.yaml
    """
    code, out, err = run(str(EXAMPLES / "synth-space.yaml"), "--image", "rrn:0.1.0")
    assert code == 0, err
    assert out == (EXAMPLES / "rayjob-synth.yaml").read_text()


def test_generated_cluster_follows_the_base_raycluster(rendered: dict) -> None:
    """The RayJob's cluster and deploy/k8s/base's RayCluster share version, security and env."""
    base = next(d for d in rendered["gpu"] if d["kind"] == "RayCluster")["spec"]
    _, rayjob = manifests(str(EXAMPLES / "synth-space.yaml"), "--image", "rrn:0.1.0", "--gpus", "1")
    generated = rayjob["spec"]["rayClusterSpec"]
    assert generated["rayVersion"] == base["rayVersion"] == constraint("ray")
    pairs = [(generated["headGroupSpec"], base["headGroupSpec"]),
             (generated["workerGroupSpecs"][0], base["workerGroupSpecs"][0])]
    for ours_group, theirs_group in pairs:
        ours, theirs = ours_group["template"]["spec"], theirs_group["template"]["spec"]
        assert ours["containers"][0]["workingDir"] == theirs["containers"][0]["workingDir"]
        assert ours.get("tolerations") == theirs.get("tolerations")
        assert ours["containers"][0]["readinessProbe"]["httpGet"] == theirs["containers"][0]["readinessProbe"]["httpGet"]
        assert ours["securityContext"] == theirs["securityContext"]
        assert ours["containers"][0]["securityContext"] == theirs["containers"][0]["securityContext"]
        assert set(env_of(theirs)) <= set(env_of(ours))
        base_mounts = {m["mountPath"] for m in theirs["containers"][0]["volumeMounts"]}
        assert base_mounts <= {m["mountPath"] for m in ours["containers"][0]["volumeMounts"]}
    assert generated["autoscalerOptions"]["securityContext"] == base["autoscalerOptions"]["securityContext"]
