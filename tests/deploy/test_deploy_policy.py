"""deploy/policy.py over every pod deploy/ can create: overlays, examples and RayJobs
from `rrn k8s rayjob` (KubeRay pods included, which checkov does not inspect)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import REPO, policy

from orchestration.cluster.k8s import rayjob_manifests
from orchestration.cluster.k8s_plan import RayJobOptions, SweepFacts

EXAMPLES = REPO / "deploy" / "k8s" / "examples"


def generated_rayjobs() -> list[dict[str, Any]]:
    """RayJobs for a spread of option sets (the generator's branches)."""
    docs: list[dict[str, Any]] = []
    for use_gpu, options in [
        (True, RayJobOptions(image="r/rrn:1-cu128", gpus=4, min_workers=1, max_workers=3, data_pvc="voc")),
        (False, RayJobOptions(image="rrn@sha256:" + "0" * 64, tracking_uri="http://m:5000",
                              storage_path="s3://b/p", s3_endpoint="http://s:1", deadline_seconds=60)),
        (False, RayJobOptions(image="rrn:1", gpus=1, image_pull_policy="Always", data_pvc=None)),
    ]:
        facts = SweepFacts(name="policy_check", num_workers=2, use_gpu=use_gpu, max_concurrent_trials=2,
                           cpu_per_worker=None, gpu_per_worker=None, storage_path=None,
                           files={"space.yaml": "name: policy_check\n"})
        generated, _ = rayjob_manifests(facts, options)
        docs += generated
    return docs


def all_documents(rendered: dict) -> list[dict[str, Any]]:
    docs = [d for overlay in rendered.values() for d in overlay]
    docs += [d for f in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())
             if d and "apiVersion" in d]
    return docs + generated_rayjobs()


def test_every_pod_follows_the_policy(rendered: dict) -> None:
    used: set[tuple[str, str]] = set()
    docs = all_documents(rendered)
    pods = [p for d in docs for p in policy.pods(d)]
    assert len(pods) >= 15, "the policy must see the KubeRay pods too"
    findings = policy.check_documents(docs, used)
    assert [str(f) for f in findings] == []
    stale = set(policy.EXCEPTIONS) - used
    assert not stale, f"exceptions no pod needs any more (remove them): {stale}"
    for key, reason in policy.EXCEPTIONS.items():
        assert len(reason) > 40, f"exception {key} needs a real justification"


@pytest.mark.parametrize("breakage, rule", [
    (lambda c, p: c["securityContext"].update(allowPrivilegeEscalation=True), "no-privilege-escalation"),
    (lambda c, p: c["securityContext"].update(readOnlyRootFilesystem=False), "read-only-root"),
    (lambda c, p: c["securityContext"]["capabilities"].update(drop=[]), "drop-all-capabilities"),
    (lambda c, p: (c["securityContext"].pop("runAsUser"), p["securityContext"].update(runAsUser=0)), "run-as-non-root"),
    (lambda c, p: c["resources"]["limits"].pop("memory"), "resources"),
    (lambda c, p: c.pop("livenessProbe"), "probes"),
    (lambda c, p: c.update(image="mlflow:latest"), "pinned-image"),
    (lambda c, p: c["env"].append({"name": "DB_PASSWORD", "value": "hunter2"}), "secret-in-env"),
    (lambda c, p: c["env"].append({"name": "URI", "value": "postgresql://u:pw@db/x"}), "secret-in-env"),
    (lambda c, p: p.pop("automountServiceAccountToken"), "service-account-token"),
    (lambda c, p: p["securityContext"].pop("seccompProfile"), "seccomp"),
    (lambda c, p: p.update(hostNetwork=True), "host-namespaces"),
])
def test_policy_catches_each_breakage(rendered: dict, breakage: Any, rule: str) -> None:
    deployment = copy.deepcopy(next(d for d in rendered["dev"] if d["kind"] == "Deployment"))
    pod = deployment["spec"]["template"]["spec"]
    breakage(pod["containers"][0], pod)
    assert rule in {f.rule for f in policy.check_documents([deployment])}


def test_policy_reaches_into_kuberay_worker_groups(rendered: dict) -> None:
    cluster = copy.deepcopy(next(d for d in rendered["gpu"] if d["kind"] == "RayCluster"))
    cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    cluster["spec"]["autoscalerOptions"]["securityContext"]["allowPrivilegeEscalation"] = True
    rules = {(f.where, f.rule) for f in policy.check_documents([cluster])}
    assert any("group gpu" in where and rule == "no-privileged" for where, rule in rules)
    assert any("autoscaler" in where and rule == "no-privilege-escalation" for where, rule in rules)


def test_policy_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert policy.main([str(REPO / "deploy" / "k8s" / "overlays" / "dev")]) == 0
    bad = tmp_path / "bad.yaml"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "x"}]}}
    bad.write_text(yaml.safe_dump(pod))
    assert policy.main([str(bad)]) == 1
    assert "Pod/p container c" in capsys.readouterr().out


def test_ray_entry_points_need_the_token_and_stay_inside(rendered: dict) -> None:
    """Every overlay: Ray token auth on, the head not exposed, and the Ray pods' NetworkPolicy
    (Ray pods reach each other; only submitters and the KubeRay operator reach 8265)."""
    for overlay, docs in rendered.items():
        assert policy.network_findings(docs, whole=True) == [], overlay
        ray = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "ray")
        assert ray["spec"]["podSelector"]["matchLabels"] == policy.RAY_POD
    assert policy.network_findings(generated_rayjobs(), whole=False) == []


def _with(docs: list[dict[str, Any]], change: Any) -> list[dict[str, Any]]:
    docs = copy.deepcopy(docs)
    change(docs)
    return docs


def _ray_policy(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "ray")


def _cluster(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "RayCluster")


@pytest.mark.parametrize("breakage, rule", [
    (lambda ds: ds.remove(_ray_policy(ds)), "ray-network-policy"),
    # the namespace's pods on the GCS / Ray Client ports
    (lambda ds: _ray_policy(ds)["spec"]["ingress"].append({"from": [{"podSelector": {}}],
                                                         "ports": [{"port": 6379}, {"port": 10001}]}), "ray-network-policy"),
    # submitters on every port, not only 8265
    (lambda ds: _ray_policy(ds)["spec"]["ingress"][1].pop("ports"), "ray-network-policy"),
    # anyone, anywhere
    (lambda ds: _ray_policy(ds)["spec"]["ingress"].append({}), "ray-network-policy"),
    (lambda ds: _cluster(ds)["spec"].pop("authOptions"), "ray-auth"),
    (lambda ds: _cluster(ds)["spec"]["authOptions"].update(mode="disabled"), "ray-auth"),
    (lambda ds: _cluster(ds)["spec"]["headGroupSpec"].update(serviceType="LoadBalancer"), "dashboard-exposed"),
    (lambda ds: ds.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ray"},
                           "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                               "service": {"name": "rrn-head-svc", "port": {"number": 8265}}}}]}}]}}),
     "dashboard-exposed"),
])
def test_network_policy_catches_each_breakage(rendered: dict, breakage: Any, rule: str) -> None:
    assert rule in {f.rule for f in policy.network_findings(_with(rendered["dev"], breakage), whole=True)}
