"""Every manifest `kubectl apply -k deploy/k8s/overlays/<x>` would send is schema-valid,
and each overlay carries what it promises (GPU limits, autoscaling bounds, services)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from deploy_helpers import OVERLAYS, REPO, schema_errors

EXAMPLES = REPO / "deploy" / "k8s" / "examples"


def by_kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def test_overlays_exist() -> None:
    assert {"dev", "gpu"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_manifest_is_schema_valid(rendered: dict, overlay: str) -> None:
    docs = rendered[overlay]
    assert docs, f"overlay {overlay} rendered nothing"
    problems = [p for doc in docs for p in schema_errors(doc)]
    assert problems == []
    for doc in docs:
        assert doc["metadata"].get("namespace") == "rrn", f"{doc['kind']}/{doc['metadata']['name']}"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "rrn"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_has_the_services_a_sweep_needs(rendered: dict, overlay: str) -> None:
    docs = rendered[overlay]
    for name, port in (("mlflow", 5000), ("postgres", 5432), ("s3", 8333)):
        service = by_kind(docs, "Service", name)
        assert [p["port"] for p in service["spec"]["ports"]] == [port]
    assert by_kind(docs, "PersistentVolumeClaim", "rrn-data")["spec"]["resources"]["requests"]["storage"]
    postgres = by_kind(docs, "StatefulSet", "postgres")
    store = by_kind(docs, "StatefulSet", "s3")
    for workload in (postgres, store):  # persistent volumes
        assert workload["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    mlflow = by_kind(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert "--serve-artifacts" in mlflow["args"]
    assert "--artifacts-destination=s3://rrn/mlartifacts" in mlflow["args"]
    env = {e["name"]: e for e in mlflow["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("postgresql://$(PGUSER):$(PGPASSWORD)@postgres:5432/")
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "rrn-postgres", "key": "password"}


def _worker_group(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cluster = by_kind(docs, "RayCluster", "rrn")["spec"]
    assert cluster["enableInTreeAutoscaling"] is True
    (group,) = cluster["workerGroupSpecs"]
    assert 0 <= group["minReplicas"] <= group["maxReplicas"]
    return group


def test_gpu_overlay_has_an_autoscaling_gpu_worker_group(rendered: dict) -> None:
    group = _worker_group(rendered["gpu"])
    container = group["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert group["maxReplicas"] == 8
    assert container["image"].endswith(":0.1.0-cu128")
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        group["template"]["spec"]["tolerations"]
    # Workers span nodes: the data volume they all mount must be shareable.
    assert by_kind(rendered["gpu"], "PersistentVolumeClaim", "rrn-data")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_dev_overlay_is_cpu_only_and_small(rendered: dict) -> None:
    group = _worker_group(rendered["dev"])
    spec = group["template"]["spec"]
    assert group["groupName"] == "cpu"
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]
    assert "tolerations" not in spec
    assert group["maxReplicas"] == 2
    claims = [by_kind(rendered["dev"], "StatefulSet", n)["spec"]["volumeClaimTemplates"][0] for n in ("postgres", "s3")]
    assert [c["spec"]["resources"]["requests"]["storage"] for c in claims] == ["5Gi", "5Gi"]
    assert by_kind(rendered["dev"], "PersistentVolumeClaim", "rrn-data")["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_validators_reject_broken_manifests(rendered: dict) -> None:
    """The checks above can fail: a typo'd field or a wrong type is caught in both kinds."""
    docs = rendered["gpu"]
    deployment = copy.deepcopy(by_kind(docs, "Deployment", "mlflow"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    assert any("imagePullPolcy" in p for p in schema_errors(deployment))

    cluster = copy.deepcopy(by_kind(docs, "RayCluster", "rrn"))
    cluster["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    assert any("maxReplica" in p for p in schema_errors(cluster))
    cluster = copy.deepcopy(by_kind(docs, "RayCluster", "rrn"))
    cluster["spec"]["workerGroupSpecs"][0]["minReplicas"] = "zero"
    assert any("minReplicas" in p for p in schema_errors(cluster))
    cluster = copy.deepcopy(by_kind(docs, "RayCluster", "rrn"))
    cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "two"
    assert schema_errors(cluster), "a malformed quantity must fail the CRD's pattern"
    cluster = copy.deepcopy(by_kind(docs, "RayCluster", "rrn"))
    cluster["metadata"]["name"] = "Not_A_Name"
    assert schema_errors(cluster)


def test_example_manifests_are_schema_valid() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d and "apiVersion" in d]
    kinds = {d["kind"] for d in docs}
    assert {"RayJob", "ConfigMap", "Job", "NetworkPolicy"} <= kinds
    assert [p for d in docs for p in schema_errors(d)] == []


def test_secret_templates_are_schema_valid() -> None:
    files = sorted((REPO / "deploy" / "k8s" / "secrets").glob("*.yaml"))
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    assert {d["metadata"]["name"] for d in docs} == {"rrn-postgres", "rrn-s3", "rrn-ray-auth", "rrn-mlflow-auth"}
    assert [p for d in docs for p in schema_errors(d)] == []


def test_kustomizations_use_only_standard_fields() -> None:
    """So `kubectl apply -k` reads them exactly as deploy/render.py does."""
    for path in (REPO / "deploy" / "k8s").rglob("kustomization.yaml"):
        data = yaml.safe_load(path.read_text())
        assert data["apiVersion"] == "kustomize.config.k8s.io/v1beta1", path
        assert data["kind"] == "Kustomization", path
