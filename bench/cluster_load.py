"""Load on the multi-node cluster: how a sweep of short trials spreads over the workers.

Starts the one-machine cluster of orchestration/cluster/local.py (Ray head with no
CPUs, N worker nodes with a private /tmp each, MLflow on PostgreSQL, S3), submits
an undisturbed sweep of `--seeds` x 2 tiny trials with `rrn submit` (the same
space as tests/orchestration/test_cluster.py, max_concurrent_trials = the workers'
slots), and prints: trials placed per node, wall time against the sum of trial
times (the parallel speed-up, and what the cluster adds on top of training), the
sweep driver's peak resident memory, and the cluster's start-up time. The test
asserts correctness; the figures live here (quoted in docs/operations.md).

    PYTHONPATH=. .venv/bin/python bench/cluster_load.py --seeds 12
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "orchestration")]
for _k, _v in {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
               "DO_NOT_TRACK": "1"}.items():
    os.environ.setdefault(_k, _v)


def _train_alone(space: Path) -> float:
    """Seconds of `rrn_core.loop.train` for the sweep's first grid point, here."""
    import torch

    from orchestration.space import load_space
    from rrn_core.config import build_config
    from rrn_core.loop import train

    torch.set_num_threads(1)
    resolved = load_space(space)
    cfg = resolved.trial_config(resolved.grid_points()[0], {})
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(cfg.model_dump(mode="json"), {"runtime.output_dir": tmp})
        tic = time.monotonic()
        train(cfg)
        return time.monotonic() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12, help="grid seeds (x 2 label ratios)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from mlflow import MlflowClient
    from typer.testing import CliRunner

    import typer
    from cluster_faults import SWEEP, driver_rss_mb, sweep_runs, write_space
    from rrn import jobs_commands
    from orchestration.cluster.jobs import connect
    from orchestration.cluster.local import LocalCluster
    from rrn_core.data import generate_synthetic

    shared = Path(tempfile.mkdtemp(prefix="rrn-bench-cluster-", dir="/var/tmp"))
    cluster = LocalCluster(shared / "cluster", workers=args.workers)
    try:
        tic = time.monotonic()
        cluster.start()
        startup = time.monotonic() - tic
        os.environ.update(cluster.client_env())
        data = generate_synthetic(shared / "data", num_classes=4, num_train=16, num_val=4, size=32, seed=0)
        space = write_space(shared / "job", data, tracking_uri=cluster.mlflow.url,
                            storage_path=cluster.storage_path, endpoint_url=cluster.s3.url,
                            seeds=args.seeds, max_concurrent=args.workers * cluster.cpus_per_worker)
        app = typer.Typer()
        jobs_commands.register(app)
        tic = time.monotonic()
        out = CliRunner().invoke(app, ["submit", str(space), "--address", cluster.dashboard,
                                       "--working-dir", str(space.parent), "--no-forward-credentials",
                                       "--entrypoint-num-cpus", "0", "--env", f"RRN_HOME={shared / 'home'}"])
        assert out.exit_code == 0, out.output
        sid = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("submitted "))
        jobs = connect(cluster.dashboard)
        rss = 0.0
        while not jobs.get_job_status(sid).is_terminal():
            rss = max(rss, driver_rss_mb(SWEEP))
            time.sleep(0.5)
        wall = time.monotonic() - tic
        status = jobs.get_job_status(sid)
        _, children = sweep_runs(MlflowClient(cluster.mlflow.url))
        names = cluster.node_names()
        per_node: dict[str, int] = {}
        busy = 0.0
        for child in children:
            node = names.get(child.data.tags.get("rrn.nodes", "?").split(",")[-1], "?")
            per_node[node] = per_node.get(node, 0) + 1
            busy += (child.info.end_time - child.info.start_time) / 1000
        trials = len(children)
        span = (max(c.info.end_time for c in children) - min(c.info.start_time for c in children)) / 1000
        train_alone = _train_alone(space)
        print(f"cluster start-up            {startup:.1f} s ({args.workers} workers, "
              f"{'private /tmp each' if cluster.isolate else 'shared /tmp'})")
        print(f"job                         {sid}: {status}, {trials} trial(s)")
        print(f"trials per node             {dict(sorted(per_node.items()))}")
        print(f"wall (submit -> done)       {wall:.1f} s")
        print(f"sum of trial times          {busy:.1f} s  ({busy / max(trials, 1):.1f} s per trial, "
              f"MLflow child run start -> end)")
        print(f"trial span (first start -> last end) {span:.1f} s; speed-up sum / span "
              f"{busy / span:.2f} x on {args.workers} slot(s)")
        print(f"one trial's training alone  {train_alone:.1f} s (rrn_core.loop.train in this process, no "
              "Ray, no MLflow, no S3): the rest of a trial's time is tracking, checkpoint upload, start-up")
        print(f"sweep driver peak RSS       {rss:.0f} MB")
    finally:
        cluster.stop()
        shutil.rmtree(shared, ignore_errors=True)


if __name__ == "__main__":
    main()
