"""What a sweep's RayJob needs, checked: the sweep's facts from its space file, the options, the plan.

The manifests (orchestration/cluster/k8s.py) are written from a checked plan, so every
refusal (a bad quantity, an image without a tag, too few cores) happens here, before
any YAML exists.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from orchestration.storage.filesystems import is_remote
from rrn_core.yaml_files import read_yaml_file


DEFAULT_NAMESPACE = "rrn"
IN_CLUSTER_MLFLOW = "http://mlflow:5000"
IN_CLUSTER_S3 = "http://s3:8333"
IN_CLUSTER_STORAGE = "s3://rrn/results"
S3_SECRET = "rrn-s3"
#: Ray's token (key `auth_token`, KubeRay's name) and the MLflow login (username, password).
RAY_AUTH_SECRET = "rrn-ray-auth"
MLFLOW_AUTH_SECRET = "rrn-mlflow-auth"
#: The label of pods allowed to reach a Ray head's dashboard / Jobs API (port 8265):
#: RayJob submitters and whatever pod a user runs `rrn submit` from (networkpolicies.yaml).
SUBMITTER_LABEL = "rrn/ray-submitter"
SPACE_MOUNT = "/etc/rrn-space"
RUN_AS = 10001  # the image's user (deploy/Dockerfile)
MAX_RAYJOB_NAME = 47  # KubeRay names the cluster "<rayjob>-<5 chars>", itself a 63-char DNS label
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The Kubernetes resource.Quantity grammar (apimachinery), as the API server checks it.
_QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
class K8sError(ValueError):
    """Options or a space that cannot make a working RayJob; names the option or field."""
@dataclass(frozen=True)
class RayJobOptions:
    """What `rrn k8s rayjob` lets a user choose; None means "derive from the space"."""

    image: str
    namespace: str = DEFAULT_NAMESPACE
    gpus: int | None = None
    min_workers: int = 0
    max_workers: int | None = None
    worker_cpu: str | None = None
    worker_memory: str | None = None
    head_cpu: str | None = None
    head_memory: str = "4Gi"
    tracking_uri: str | None = None
    s3_endpoint: str | None = None
    storage_path: str | None = None
    s3_secret: str = S3_SECRET
    ray_auth_secret: str = RAY_AUTH_SECRET
    mlflow_auth_secret: str = MLFLOW_AUTH_SECRET
    ttl_seconds: int = 600
    deadline_seconds: int | None = None
    retries: int = 0
    data_pvc: str | None = "rrn-data"
    data_mount: str = "/data"
    image_pull_policy: str = "IfNotPresent"
    ray_version: str | None = None
@dataclass(frozen=True)
class SweepFacts:
    """The parts of a validated space the RayJob depends on, plus the files to ship."""

    name: str
    num_workers: int
    use_gpu: bool
    max_concurrent_trials: int
    cpu_per_worker: float | None
    gpu_per_worker: float | None
    storage_path: str | None
    files: dict[str, str] = field(default_factory=dict)
def installed_ray_version() -> str:
    """The Ray this package runs with: the cluster's rayVersion must equal the image's."""
    return metadata.version("ray")
def sweep_facts(space_path: str | Path) -> SweepFacts:
    """Validate SPACE_PATH with orchestration.space and collect what the RayJob needs.

    The ConfigMap copy is made self-contained (base_config -> base.yaml next to it)
    and validated again from a scratch folder, so what the cluster reads is exactly
    what was checked here.
    """
    from orchestration.space import load_space
    from orchestration.space_schema import SpaceError

    space_path = Path(space_path)
    resolved = load_space(space_path)
    raw = read_yaml_file(space_path) or {}  # within limits: load_space read it so
    files: dict[str, str] = {}
    if raw.get("base_config") is not None:
        files["base.yaml"] = Path(resolved.base_path).read_text()
        raw["base_config"] = "base.yaml"
        files["space.yaml"] = yaml.safe_dump(raw, sort_keys=False)
    else:
        files["space.yaml"] = space_path.read_text()  # verbatim, comments included
    with tempfile.TemporaryDirectory(prefix="rrn-k8s-") as scratch:
        for name, text in files.items():
            (Path(scratch) / name).write_text(text)
        try:
            load_space(Path(scratch) / "space.yaml")
        except SpaceError as err:
            raise K8sError(f"{space_path}: the copy for the ConfigMap does not validate: {err}") from None
    space = resolved.space
    per_worker = space.scaling.resources_per_worker or {}
    return SweepFacts(
        name=space.name,
        num_workers=space.scaling.num_workers,
        use_gpu=space.scaling.use_gpu,
        max_concurrent_trials=space.max_concurrent_trials,
        cpu_per_worker=per_worker.get("CPU"),
        gpu_per_worker=per_worker.get("GPU"),
        storage_path=space.storage.path,
        files=files,
    )
def k8s_name(prefix: str, name: str, limit: int = MAX_RAYJOB_NAME) -> str:
    """A DNS-1123 name from a space name ([a-z0-9_-]+), shortened with a hash if needed."""
    base = re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{name}".lower()).strip("-")
    if len(base) <= limit:
        return base
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    return f"{base[: limit - 7].rstrip('-')}-{digest}"
@dataclass(frozen=True)
class _Plan:
    """Options resolved against the space: every number the manifest needs."""

    gpus: int
    min_workers: int
    max_workers: int
    worker_cpu: str
    worker_memory: str
    head_cpu: str
    head_num_cpus: int
    ray_version: str
    env: list[dict[str, Any]]
    warnings: list[str]
def _check_quantity(option: str, value: str) -> None:
    if not _QUANTITY.match(value):
        raise K8sError(f"{option}: {value!r} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)")
def _check_image(image: str) -> None:
    from_name = image.rsplit("/", 1)[-1]
    if not image or any(c.isspace() for c in image):
        raise K8sError(f"--image: {image!r} is not an image reference")
    if "@" not in image and (":" not in from_name or from_name.endswith(":latest")):
        raise K8sError(f"--image: {image!r} has no pinned tag; give e.g. registry/rrn:0.1.0 "
                       "(an untagged or :latest image changes under a running sweep)")
def plan(facts: SweepFacts, options: RayJobOptions) -> _Plan:
    """Check the options against the space; every error names the option or space field."""
    _check_image(options.image)
    for option, value in (("--namespace", options.namespace), ("--s3-secret", options.s3_secret),
                          ("--ray-auth-secret", options.ray_auth_secret),
                          ("--mlflow-auth-secret", options.mlflow_auth_secret),
                          ("--data-pvc", options.data_pvc)):
        if value is not None and (not _DNS_LABEL.match(value) or len(value) > 63):
            raise K8sError(f"{option}: {value!r} is not a valid Kubernetes name (lowercase, digits, '-')")
    if options.image_pull_policy not in ("Always", "IfNotPresent", "Never"):
        raise K8sError(f"--pull-policy: {options.image_pull_policy!r} is not Always, IfNotPresent or Never")
    if not options.data_mount.startswith("/"):
        raise K8sError(f"--data-mount: {options.data_mount!r} must be an absolute path")
    warnings: list[str] = []

    gpus = options.gpus if options.gpus is not None else (1 if facts.use_gpu else 0)
    if gpus < 0:
        raise K8sError(f"--gpus: {gpus} must be >= 0")
    if facts.use_gpu and gpus == 0:
        raise K8sError("--gpus 0 but the space has scaling.use_gpu: true: its trials would wait "
                       "forever for a GPU; give --gpus N (per worker pod) or set use_gpu: false")
    if not facts.use_gpu and gpus > 0:
        warnings.append(f"--gpus {gpus} but the space has scaling.use_gpu: false: the trials will "
                        "not use the GPUs (set scaling.use_gpu: true in the space)")
    if facts.gpu_per_worker and facts.gpu_per_worker > gpus:
        raise K8sError(f"scaling.resources_per_worker.GPU is {facts.gpu_per_worker} but a worker pod "
                       f"has --gpus {gpus}: no pod could host a training worker")

    cpu_need = facts.cpu_per_worker or 1.0
    worker_cpu = options.worker_cpu or str(max(math.ceil(cpu_need), 8 if gpus else 2))
    _check_quantity("--worker-cpu", worker_cpu)
    if _cpu_cores(worker_cpu) < cpu_need:
        raise K8sError(f"--worker-cpu {worker_cpu} is below scaling.resources_per_worker.CPU "
                       f"({cpu_need}): no pod could host a training worker")
    gib_per_cpu = 4 if gpus else 2
    worker_memory = options.worker_memory or f"{gib_per_cpu * max(1, math.ceil(_cpu_cores(worker_cpu)))}Gi"
    _check_quantity("--worker-memory", worker_memory)

    # The head hosts the light per-trial Tune actors (1 CPU each), never a training worker
    # when GPUs are used; its logical CPU count is therefore the trial concurrency.
    head_num_cpus = facts.max_concurrent_trials
    head_cpu = options.head_cpu or str(max(2, head_num_cpus))
    _check_quantity("--head-cpu", head_cpu)
    _cpu_cores(head_cpu, "--head-cpu")
    _check_quantity("--head-memory", options.head_memory)

    max_workers = options.max_workers
    if max_workers is None:
        max_workers = max(1, facts.max_concurrent_trials * facts.num_workers)
    if options.min_workers < 0 or max_workers < 1:
        raise K8sError(f"--min-workers {options.min_workers} / --max-workers {max_workers}: "
                       "need min >= 0 and max >= 1")
    if options.min_workers > max_workers:
        raise K8sError(f"--min-workers {options.min_workers} is above --max-workers {max_workers}")
    if max_workers < facts.num_workers:
        warnings.append(f"--max-workers {max_workers} is below scaling.num_workers "
                        f"({facts.num_workers}): a trial may not find room for all its workers")
    for option, value in (("--ttl", options.ttl_seconds), ("--retries", options.retries)):
        if value < 0:
            raise K8sError(f"{option}: {value} must be >= 0")
    if options.deadline_seconds is not None and options.deadline_seconds < 1:
        raise K8sError(f"--deadline: {options.deadline_seconds} must be >= 1")

    storage_path = options.storage_path
    if storage_path is None and facts.storage_path is None:
        storage_path = IN_CLUSTER_STORAGE
    elif storage_path is None and not is_remote(facts.storage_path):
        raise K8sError(f"storage.path is a local path ({facts.storage_path}): the Ray pods of a "
                       "cluster do not share a disk; leave it null (in-cluster object store) or "
                       "pass --storage-path s3://bucket/prefix")
    return _Plan(
        gpus=gpus,
        min_workers=options.min_workers,
        max_workers=max_workers,
        worker_cpu=worker_cpu,
        worker_memory=worker_memory,
        head_cpu=head_cpu,
        head_num_cpus=head_num_cpus,
        ray_version=options.ray_version or installed_ray_version(),
        env=_environment(options, storage_path),
        warnings=warnings,
    )
def _cpu_cores(quantity: str, option: str = "--worker-cpu") -> float:
    """CPU quantity in cores: plain or exponent numbers, or millicores ("500m")."""
    try:
        return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    except ValueError:
        raise K8sError(f"{option}: {quantity!r}: give cores (e.g. 8) or millicores (e.g. 500m)") from None


def _environment(options: RayJobOptions, storage_path: str | None) -> list[dict[str, Any]]:
    """Env of every Ray pod. Explicit options use the RRN_* overrides (they beat the
    space file); the in-cluster defaults use the fallbacks the file's values beat."""
    env: list[dict[str, Any]] = []
    if options.tracking_uri:
        env.append({"name": "RRN_TRACKING_URI", "value": options.tracking_uri})
    env.append({"name": "MLFLOW_TRACKING_URI", "value": options.tracking_uri or IN_CLUSTER_MLFLOW})
    if storage_path:
        env.append({"name": "RRN_STORAGE_PATH", "value": storage_path})
    if options.s3_endpoint:
        env.append({"name": "RRN_STORAGE_ENDPOINT_URL", "value": options.s3_endpoint})
    env += [
        {"name": "AWS_ENDPOINT_URL", "value": options.s3_endpoint or IN_CLUSTER_S3},
        {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
    ]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": options.s3_secret, "key": key}}})
    # The tracking server's login (MLflow's basic-auth app): trials and the driver log in with it.
    for name, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password")):
        env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": options.mlflow_auth_secret, "key": key}}})
    env += [
        {"name": "RRN_HOME", "value": "/tmp/rrn-home"},
        {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
    ]
    return env
