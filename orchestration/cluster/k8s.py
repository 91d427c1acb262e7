"""The KubeRay RayJob that runs one sweep on Kubernetes, built from its space file.

Why generate instead of hand-editing YAML: the RayJob must agree with the space
(GPUs per worker vs. `scaling.use_gpu`, worker pods vs. trials x workers, CPUs for
`resources_per_worker`), with the in-cluster services of deploy/k8s (MLflow at
http://mlflow:5000 behind its basic-auth app, the object store at http://s3:8333,
Secrets rrn-s3, rrn-ray-auth and rrn-mlflow-auth) and with the security rules every
manifest of deploy/ follows (Ray token auth on, the submitter labelled for the Ray
pods' NetworkPolicy). A mismatch found here costs a
second; found by the cluster it costs an idle GPU node.

The space travels in a ConfigMap emitted with the RayJob (key `space.yaml`, plus
`base.yaml` when the space names a base_config file), mounted at /etc/rrn-space in
every Ray pod: editing a sweep needs no image rebuild. Tracking and storage reach
the sweep through the environment variables orchestration/space.py reads:
MLFLOW_TRACKING_URI / AWS_ENDPOINT_URL are fallbacks below the file's own values;
RRN_TRACKING_URI / RRN_STORAGE_PATH / RRN_STORAGE_ENDPOINT_URL (explicit options)
override it. Credentials only ever appear as secretKeyRef.
"""

from __future__ import annotations

from typing import Any

import yaml

from orchestration.cluster.k8s_plan import (SPACE_MOUNT, RUN_AS, SUBMITTER_LABEL, K8sError, RayJobOptions,
                                            SweepFacts, k8s_name, _Plan, plan)


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(cpu: str, memory: str, gpus: int = 0) -> dict[str, Any]:
    # Requests equal limits: Ray sizes itself from the limits, so the node must really have them.
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = gpus
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}


def _health_probe(path: str, port: int | str, *, liveness: bool) -> dict[str, Any]:
    # Ray's own health endpoints (what KubeRay's default probes query); liveness is
    # lenient because a busy raylet must not be killed mid-trial.
    probe: dict[str, Any] = {"httpGet": {"path": path, "port": port}, "periodSeconds": 5,
                             "timeoutSeconds": 5 if liveness else 10}
    probe.update({"initialDelaySeconds": 30, "failureThreshold": 120} if liveness
                 else {"initialDelaySeconds": 10, "failureThreshold": 10})
    return probe


def _volumes(config_map: str, options: RayJobOptions, shm: str) -> tuple[list[dict], list[dict]]:
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        {"name": "home", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}},
        {"name": "space", "configMap": {"name": config_map}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "home", "mountPath": "/home/rrn"},
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "space", "mountPath": SPACE_MOUNT, "readOnly": True},
    ]
    if options.data_pvc:
        # Read-write: split files are drawn once and written under the data root.
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": options.data_pvc}})
        mounts.append({"name": "data", "mountPath": options.data_mount})
    return volumes, mounts


def _ray_container(name: str, options: RayJobOptions, p: _Plan, resources: dict[str, Any],
                   mounts: list[dict[str, Any]], head: bool) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        # Relative paths in configs (runtime.output_dir: rrn-home/...) land on the writable /tmp.
        "workingDir": "/tmp",
        "env": [dict(e) for e in p.env],
    }
    if head:
        container["ports"] = [
            {"name": "gcs-server", "containerPort": 6379},
            {"name": "dashboard", "containerPort": 8265},
            {"name": "client", "containerPort": 10001},
        ]
        container["readinessProbe"] = _health_probe("/api/gcs_healthz", "dashboard", liveness=False)
    else:
        container["readinessProbe"] = _health_probe("/api/local_raylet_healthz", 52365, liveness=False)
    container["livenessProbe"] = _health_probe("/api/local_raylet_healthz", 52365, liveness=True)
    container["resources"] = resources
    container["securityContext"] = _container_security()
    container["volumeMounts"] = [dict(m) for m in mounts]
    return container


def rayjob_manifests(facts: SweepFacts, options: RayJobOptions) -> tuple[list[dict[str, Any]], list[str]]:
    """[ConfigMap, RayJob] for one sweep, and warnings for the user. Raises K8sError."""
    p = plan(facts, options)
    job_name = k8s_name("rrn-sweep", facts.name)
    config_map = k8s_name("rrn-space", facts.name, limit=63)
    labels = {
        "app.kubernetes.io/part-of": "rrn",
        "app.kubernetes.io/component": "sweep",
        "app.kubernetes.io/name": "rrn-ray",
        "rrn/space": k8s_name("", facts.name, limit=63),
    }
    head_volumes, head_mounts = _volumes(config_map, options, shm="2Gi")
    worker_volumes, worker_mounts = _volumes(config_map, options, shm="8Gi" if p.gpus else "1Gi")
    head_spec: dict[str, Any] = {
        # The in-tree autoscaler runs in the head pod and calls the Kubernetes API with
        # the service account KubeRay creates for it: the token must stay mounted here.
        "securityContext": _pod_security(),
        "containers": [_ray_container("ray-head", options, p, _resources(p.head_cpu, options.head_memory),
                                      head_mounts, head=True)],
        "volumes": head_volumes,
    }
    worker_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": _pod_security(),
        "containers": [_ray_container("ray-worker", options, p,
                                      _resources(p.worker_cpu, p.worker_memory, p.gpus),
                                      worker_mounts, head=False)],
        "volumes": worker_volumes,
    }
    if p.gpus:
        worker_spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

    cluster_spec: dict[str, Any] = {
        "rayVersion": p.ray_version,
        # Ray's token auth: KubeRay sets RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (from the
        # Secret's `auth_token`) in every Ray container and in the submitter.
        "authOptions": {"mode": "token", "secretName": options.ray_auth_secret},
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            "upscalingMode": "Default",
            "idleTimeoutSeconds": 120,
            "imagePullPolicy": options.image_pull_policy,
            "resources": _resources_pair("200m", "512Mi", "500m", "1Gi"),
            "securityContext": _container_security(),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        },
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": str(p.head_num_cpus), "dashboard-host": "0.0.0.0"},
            "template": {"metadata": {"labels": dict(labels)}, "spec": head_spec},
        },
        "workerGroupSpecs": [{
            "groupName": "gpu" if p.gpus else "cpu",
            "replicas": p.min_workers,
            "minReplicas": p.min_workers,
            "maxReplicas": p.max_workers,
            "rayStartParams": {},
            "template": {"metadata": {"labels": dict(labels)}, "spec": worker_spec},
        }],
    }
    spec: dict[str, Any] = {
        # The cluster's Python, not the `rrn` script: PATH need not hold the image's
        # scripts folder (as for `rrn submit`, see orchestration/cluster/jobs.py).
        "entrypoint": f"python -m rrn sweep {SPACE_MOUNT}/space.yaml",
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": options.ttl_seconds,
        "backoffLimit": options.retries,
    }
    if options.deadline_seconds:
        spec["activeDeadlineSeconds"] = options.deadline_seconds
    spec["submitterPodTemplate"] = {
        # The submitter label lets it through the Ray pods' NetworkPolicy to port 8265.
        "metadata": {"labels": {**labels, SUBMITTER_LABEL: "true"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": _pod_security(),
            "containers": [{
                # KubeRay fills in the `ray job submit` command and the dashboard address.
                "name": "ray-job-submitter",
                "image": options.image,
                "imagePullPolicy": options.image_pull_policy,
                "workingDir": "/tmp",
                "resources": _resources_pair("100m", "256Mi", "500m", "512Mi"),
                "securityContext": _container_security(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }
    spec["rayClusterSpec"] = cluster_spec

    config_map_doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_map, "namespace": options.namespace, "labels": dict(labels)},
        "data": dict(facts.files),
    }
    rayjob = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": job_name, "namespace": options.namespace, "labels": dict(labels)},
        "spec": spec,
    }
    return [config_map_doc, rayjob], p.warnings


def _resources_pair(cpu_req: str, mem_req: str, cpu_lim: str, mem_lim: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu_req, "memory": mem_req}, "limits": {"cpu": cpu_lim, "memory": mem_lim}}


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the space files in the ConfigMap) as readable `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def to_yaml(docs: list[dict[str, Any]], header: str | None = None) -> str:
    """Multi-document YAML for `kubectl apply -f`, with an optional comment header."""
    text = yaml.dump_all(docs, Dumper=_BlockDumper, sort_keys=False)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    return text
