"""`rrn k8s rayjob`: write the KubeRay RayJob (and its ConfigMap) for a sweep.

Users should not hand-edit cluster YAML: the command checks the space and the
options together (see orchestration/cluster/k8s.py) and prints manifests that follow the
same rules as deploy/k8s. Nothing is written when anything is wrong (exit 2).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from rrn.console import cli_app, err, fail

app = cli_app(None, "Kubernetes: generate KubeRay manifests for sweeps (see deploy/README.md).")


@app.command("rayjob")
def rayjob_command(
    space_file: Annotated[Path, typer.Argument(help="Search-space YAML, e.g. search_spaces/voc_label_ratio.yaml.")],
    image: Annotated[str, typer.Option("--image", help="Image with a pinned tag, e.g. ghcr.io/you/rrn:0.1.0-cu128.")],
    gpus: Annotated[Optional[int], typer.Option(
        help="nvidia.com/gpu per worker pod. (default: 1 if the space has scaling.use_gpu, else 0)")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace of deploy/k8s.")] = "rrn",
    min_workers: Annotated[int, typer.Option(help="Worker pods kept while idle.")] = 0,
    max_workers: Annotated[Optional[int], typer.Option(
        help="Worker pods the autoscaler may start. (default: max_concurrent_trials x num_workers)")] = None,
    worker_cpu: Annotated[Optional[str], typer.Option(
        help="CPU per worker pod. (default: resources_per_worker.CPU, at least 8 with GPUs or 2 without)")] = None,
    worker_memory: Annotated[Optional[str], typer.Option(
        help="Memory per worker pod. (default: 4Gi per CPU with GPUs, else 2Gi)")] = None,
    head_cpu: Annotated[Optional[str], typer.Option(
        help="CPU of the head pod. (default: max(2, max_concurrent_trials))")] = None,
    head_memory: Annotated[str, typer.Option(help="Memory of the head pod.")] = "4Gi",
    tracking_uri: Annotated[Optional[str], typer.Option(
        help="MLflow tracking URI; overrides the space. (default: the space's, else http://mlflow:5000)")] = None,
    storage_path: Annotated[Optional[str], typer.Option(
        help="Ray results path; overrides the space. (default: the space's, else s3://rrn/results)")] = None,
    s3_endpoint: Annotated[Optional[str], typer.Option(
        help="S3 endpoint URL. (default: the space's, else http://s3:8333, the in-cluster store)")] = None,
    s3_secret: Annotated[str, typer.Option(
        help="Secret holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (read via secretKeyRef).")] = "rrn-s3",
    ray_auth_secret: Annotated[str, typer.Option(
        help="Secret holding the Ray token (key auth_token): the RayJob's authOptions.")] = "rrn-ray-auth",
    mlflow_auth_secret: Annotated[str, typer.Option(
        help="Secret holding the tracking server's login (keys username, password).")] = "rrn-mlflow-auth",
    data_pvc: Annotated[str, typer.Option(
        help="PersistentVolumeClaim with the data sets, mounted read-write in every Ray pod "
             "(deploy/k8s creates rrn-data); 'none' mounts nothing.")] = "rrn-data",
    data_mount: Annotated[str, typer.Option(help="Where --data-pvc is mounted (the configs' data.root).")] = "/data",
    ttl: Annotated[int, typer.Option(help="Seconds the finished cluster is kept before deletion.")] = 600,
    deadline: Annotated[Optional[int], typer.Option(help="Stop the sweep after this many seconds.")] = None,
    retries: Annotated[int, typer.Option(help="Resubmissions after a failed sweep (it resumes).")] = 0,
    pull_policy: Annotated[str, typer.Option(help="imagePullPolicy of the Ray pods.")] = "IfNotPresent",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Write the RayJob (and a ConfigMap holding the space) that runs one sweep.

    The RayJob starts a fresh autoscaling Ray cluster, runs `rrn sweep` on it and
    deletes the cluster when the sweep ends. The space is validated first; options
    are checked against it (GPUs, CPUs per worker, storage). Apply with:

        rrn k8s rayjob SPACE --image IMG | kubectl apply -f -
    """
    from orchestration.cluster.k8s import rayjob_manifests, to_yaml
    from orchestration.cluster.k8s_plan import K8sError, RayJobOptions, sweep_facts
    from orchestration.space_schema import SpaceError

    options = RayJobOptions(
        image=image, namespace=namespace, gpus=gpus, min_workers=min_workers, max_workers=max_workers,
        worker_cpu=worker_cpu, worker_memory=worker_memory, head_cpu=head_cpu, head_memory=head_memory,
        tracking_uri=tracking_uri, s3_endpoint=s3_endpoint, storage_path=storage_path, s3_secret=s3_secret,
        ray_auth_secret=ray_auth_secret, mlflow_auth_secret=mlflow_auth_secret,
        ttl_seconds=ttl, deadline_seconds=deadline, retries=retries,
        data_pvc=None if data_pvc.lower() == "none" else data_pvc,
        data_mount=data_mount, image_pull_policy=pull_policy,
    )
    try:
        facts = sweep_facts(space_file)
        docs, warnings = rayjob_manifests(facts, options)
    except (SpaceError, K8sError) as e:
        raise fail(str(e))
    for warning in warnings:
        err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    header = (f"Sweep '{facts.name}': a ConfigMap holding its space and the RayJob that runs it,\n"
              "generated by `rrn k8s rayjob` (edit the space and regenerate rather than this file).\n"
              f"Apply: kubectl apply -f FILE    Watch: kubectl -n {namespace} get rayjob -w")
    text = to_yaml(docs, header=header)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, out)  # all or nothing: a half-written manifest is never left behind
    except OSError as e:
        raise fail(f"--out {out}: cannot write: {e}")
    err.print(f"wrote {escape(str(out))}: ConfigMap {docs[0]['metadata']['name']} + "
              f"RayJob {docs[1]['metadata']['name']} (namespace {namespace})", highlight=False)
