"""A real multi-node sweep with the production services, and faults survived with nothing lost.

One cluster per module (orchestration/cluster/local.py): a Ray head with no CPUs,
two worker nodes each in its own mount namespace with a private /tmp (when root),
MLflow on PostgreSQL with artifacts proxied to S3, moto's S3 behind a relay. One
sweep of 24 seeded trials is submitted with `rrn submit` (a Ray Job) and, while
it runs, four faults are injected one after the other:

1. a worker node is SIGKILLed (raylet and every worker process) while trials run
   on it; it is restarted as a new node;
2. the S3 endpoint is taken away for 30 s, then brought back;
3. the MLflow server is stopped for 30 s, then restarted;
4. the Ray job is stopped, then resubmitted with `rrn submit --resume`.

Each test below then checks one promise against what the services hold: every
trial finished exactly once, its metrics present once per step, no run left
RUNNING, every checkpoint readable, results equal to an undisturbed run of the
same seeds, and no credential (S3 keys, database password, Ray token, MLflow admin
password, Flask key) anywhere in the database, the bucket, the shared disk or the
nodes' logs. Every service asks for credentials (Ray token auth, MLflow's basic-auth
app): a request without them is refused, the same request with them answers.
The module costs 4.5-5.5 minutes on 2 cores: the cluster 25-48 s, the disturbed
sweep 3.5-4.5 min (of it ~1 min the two outages, which overlap by 20 s).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cluster_auth import entry_point_statuses, gcs_join_without_token, status_of
from leak_scan import files_holding
from cluster_faults import (EVAL_EVERY, ITERS, SWEEP, Timeline, all_objects, driver_rss_mb,
                            eventually, experiment_state, sweep_runs, write_space)
from rrn import jobs_commands
from orchestration.cluster.local import LocalCluster
from orchestration.cluster.local_services import can_isolate_nodes, postgres_bin

pytestmark = pytest.mark.slow

OUTAGE_S = 30.0
TRIALS = 24
STEPS = list(range(EVAL_EVERY, ITERS + 1, EVAL_EVERY))


def _app() -> typer.Typer:
    app = typer.Typer()
    jobs_commands.register(app)
    return app


def _rrn(*args: str) -> Any:
    result = CliRunner().invoke(_app(), list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def shared() -> Iterator[Path]:
    """The cluster's shared disk (what NFS is on a real cluster): outside /tmp, so
    the isolated worker nodes see it while they cannot see each other's /tmp."""
    root = Path(tempfile.mkdtemp(prefix="rrn-cluster-", dir="/var/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(shared: Path) -> Iterator[LocalCluster]:
    if postgres_bin() is None:
        pytest.skip(reason="no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql "
                    "(scripts/setup.sh does when it can)")
    pytest.importorskip("psycopg2", reason="psycopg2-binary is not installed (scripts/setup.sh)")
    if shutil.which("runuser") is None and os.geteuid() == 0:
        pytest.skip(reason="root without runuser: cannot start PostgreSQL as the postgres user")
    cluster = LocalCluster(shared / "cluster")
    patch = pytest.MonkeyPatch()
    try:
        cluster.start()
        # This process reads the bucket and the tracking server like a user's shell.
        for key, value in cluster.client_env().items():
            patch.setenv(key, value)
        for key in ("RRN_TRACKING_URI", "RRN_STORAGE_PATH", "RRN_STORAGE_ENDPOINT_URL"):
            patch.delenv(key, raising=False)
        yield cluster
    finally:
        patch.undo()
        cluster.stop()


@pytest.fixture(scope="module")
def s3(cluster: LocalCluster) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=cluster.s3.url, region_name="us-east-1",
                        aws_access_key_id=cluster.secrets.aws_key_id,
                        aws_secret_access_key=cluster.secrets.aws_secret)


@pytest.fixture(scope="module")
def mlflow_client(cluster: LocalCluster) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(cluster.mlflow.url)


@pytest.fixture(scope="module")
def space(cluster: LocalCluster, shared: Path) -> Path:
    from rrn_core.data import generate_synthetic

    data = generate_synthetic(shared / "data" / "synth", num_classes=4, num_train=16, num_val=4,
                              size=32, seed=0)
    return write_space(shared / "job", data, tracking_uri=cluster.mlflow.url,
                       storage_path=cluster.storage_path, endpoint_url=cluster.s3.url,
                       seeds=TRIALS // 2, max_concurrent=len(cluster.nodes) * cluster.cpus_per_worker)


def _submit(cluster: LocalCluster, space: Path, *extra: str) -> str:
    out = _rrn("submit", str(space), "--address", cluster.dashboard, "--working-dir", str(space.parent),
               "--no-forward-credentials", "--entrypoint-num-cpus", "0",
               "--env", f"RRN_HOME={space.parent / 'home'}", *extra)
    line = next(line for line in out.stdout.splitlines() if line.startswith("submitted "))
    return line.split()[1]


def _running(client: Any) -> dict[str, Any]:
    _, children = sweep_runs(client)
    return {c.data.tags["rrn.trial_id"]: c for c in children if c.info.status == "RUNNING"}


def _training(client: Any, within_s: float = 2.0) -> set[str]:
    """Running trials that logged a training step in the last `within_s` seconds."""
    recent = (time.time() - within_s) * 1000
    return {tid for tid, run in _running(client).items()
            if any(m.timestamp > recent for m in client.get_metric_history(run.info.run_id, "train/loss"))}


def _finished(client: Any) -> set[str]:
    _, children = sweep_runs(client)
    return {c.data.tags["rrn.trial_id"] for c in children if c.info.status == "FINISHED"}


@pytest.fixture(scope="module")
def disturbed(cluster: LocalCluster, space: Path, mlflow_client: Any, s3: Any) -> Timeline:
    """Run the sweep as a Ray Job and inject the four faults into it (see module doc)."""
    from orchestration.cluster.jobs import connect, wait_for

    line = Timeline()
    jobs = connect(cluster.dashboard)
    started = time.monotonic()
    sid = _submit(cluster, space)
    line.submission_ids.append(sid)
    line.note(f"submitted {sid}")
    names = cluster.node_names()
    victim = cluster.nodes[0]

    def rss() -> None:
        line.driver_rss_mb = max(line.driver_rss_mb, driver_rss_mb(SWEEP))

    # 1. A worker node dies while a trial whose checkpoint Tune registered runs on it.
    # A trial's second checkpoint in S3 means Tune has registered its first (a function
    # trainable's report waits for the driver to take the previous result), and the
    # trial still has half its steps to go: kill at once, no wait that it could finish in.
    def checkpointed(tid: str) -> bool:
        listing = s3.list_objects_v2(Bucket=cluster.s3.bucket, Prefix=f"results/{SWEEP}/")
        return any(tid in o["Key"] and "/checkpoint_000001/" in o["Key"] for o in listing.get("Contents", []))

    def trial_on_victim() -> set[str]:
        rss()
        by_id = cluster.node_names()
        return {tid for tid, run in _running(mlflow_client).items()
                if by_id.get(run.data.tags.get("rrn.nodes", "").split(",")[-1]) == victim.name
                and checkpointed(tid)}
    line.on_killed_node = eventually(trial_on_victim, 240, f"a checkpointed trial on {victim.name}", 0.2)
    line.killed_node = next(n for n, name in names.items() if name == victim.name)
    victim.kill()
    line.killed_at = time.time()
    line.note(f"SIGKILLed {victim.name} ({line.killed_node[:8]}) running {sorted(line.on_killed_node)}")
    victim.start()    # comes back as a new node (new id) while the sweep goes on

    # 2 + 3. S3 away for 30 s; 10 s into it the MLflow server is stopped for 30 s too
    # (then restarted). S3 goes when a trial is training (it logged a step in the last
    # 2 s), not merely RUNNING in MLflow: the runs of the killed node's trials stay
    # RUNNING until restarted, and a trial still starting up might not write in time.
    # A training trial meets S3 at its next evaluation (~1 s): its confusion-matrix
    # upload through MLflow's proxy fails (the server tries S3 once, see
    # local_cluster.py) and is retried, or its checkpoint write is. Its retries then
    # meet the MLflow outage too; overlapping the two keeps the module's time down.
    line.running_during_s3 = eventually(lambda: (rss() or True) and _training(mlflow_client), 120,
                                        "a training trial", 0.2)
    s3_down = time.time()
    cluster.s3.stop_relay()
    time.sleep(10)
    line.running_during_mlflow = set(_running(mlflow_client))
    mlflow_down = time.time()
    cluster.mlflow.stop()
    time.sleep(OUTAGE_S - 10)
    cluster.s3.start_relay()
    line.s3_down = (s3_down, time.time())
    line.note(f"S3 endpoint was down {line.s3_down[1] - line.s3_down[0]:.0f}s")
    time.sleep(max(0.0, mlflow_down + OUTAGE_S - time.time()))
    cluster.mlflow.start()
    line.mlflow_down = (mlflow_down, time.time())
    line.note(f"MLflow server was down {line.mlflow_down[1] - line.mlflow_down[0]:.0f}s "
              "(30 s stopped, then its start-up)")
    cluster.wait_for_nodes()

    # 4. The job is stopped mid-sweep, then resubmitted with --resume.
    eventually(lambda: len(_finished(mlflow_client)) >= 2 and (rss() or True), 240, "two finished trials")
    state = experiment_state(s3, cluster.s3.bucket)
    line.finished_before_stop = {t for t, s in state.items() if s["status"] == "TERMINATED"}
    _rrn("jobs", "stop", sid, "--address", cluster.dashboard)
    line.note(f"stopped {sid} with {len(line.finished_before_stop)} trial(s) finished in the state")
    state = experiment_state(s3, cluster.s3.bucket)
    line.finished_before_stop = {t for t, s in state.items() if s["status"] == "TERMINATED"}
    line.unfinished_at_stop = {t for t, s in state.items() if s["status"] != "TERMINATED"}
    assert str(jobs.get_job_status(sid)) == "STOPPED"
    resumed = _submit(cluster, space, "--resume")
    line.submission_ids.append(resumed)
    line.note(f"resubmitted as {resumed}")
    deadline = time.monotonic() + 420
    while not jobs.get_job_status(resumed).is_terminal() and time.monotonic() < deadline:
        rss()
        time.sleep(1.0)
    line.wall_s = time.monotonic() - started
    status = str(wait_for(jobs, resumed, timeout=5))
    line.note(f"{resumed}: {status} after {line.wall_s:.0f}s in all; driver RSS max {line.driver_rss_mb:.0f} MB")
    line.node_logs = cluster.node_logs()
    line.driver_log = "\n".join(jobs.get_job_logs(j) for j in line.submission_ids)
    assert status == "SUCCEEDED", jobs.get_job_logs(resumed)[-5000:]
    return line


# --------------------------------------------------------------------------- checks


def test_cluster_has_isolated_worker_nodes_and_a_cpu_less_head(cluster: LocalCluster) -> None:
    nodes = cluster.ray_nodes()
    head = [n for n in nodes if n["is_head_node"]]
    assert len(head) == 1 and head[0]["resources_total"].get("CPU", 0) == 0
    workers = [n for n in nodes if not n["is_head_node"] and n["state"] == "ALIVE"]
    assert len(workers) == 2 and all(n["resources_total"]["CPU"] == 1 for n in workers)
    if not can_isolate_nodes():
        pytest.skip(reason="not root or no unshare: worker nodes share this machine's /tmp")
    assert cluster.isolate
    # A file in this process's /tmp is invisible on a worker node, and vice versa.
    import subprocess

    probe = Path(tempfile.mkdtemp()) / "head-only"
    probe.write_text("x")
    pid = cluster.nodes[1].proc.popen.pid
    seen = subprocess.run(["nsenter", "-t", str(pid), "-m", "test", "-e", str(probe)])
    assert seen.returncode != 0, "a worker node can read the head's /tmp"
    shutil.rmtree(probe.parent)


def test_no_entry_point_answers_without_credentials(cluster: LocalCluster, tmp_path: Path) -> None:
    """The Ray Jobs API, the dashboard's data and the MLflow REST API refuse a request
    without credentials (and with wrong ones), and answer the same request with them;
    a process without the token cannot join the cluster's GCS either."""
    seen = entry_point_statuses(cluster)
    print(f"\nno credentials / wrong / right: {seen}")
    for path, statuses in seen.items():
        assert statuses == ([401, 401, 200] if path.startswith(cluster.mlflow.url) else [401, 403, 200]), \
            f"{path}: {statuses}"
    assert status_of(cluster.mlflow.url + "/health") == 200, "the probes' endpoint stays open"
    refused = gcs_join_without_token(cluster, tmp_path)
    assert "JOINED" not in refused.stdout and refused.returncode != 0
    assert "AuthenticationError" in refused.stderr, refused.stderr[-2000:]


def test_every_trial_finished_exactly_once(disturbed: Timeline, mlflow_client: Any, s3: Any,
                                           cluster: LocalCluster) -> None:
    state = experiment_state(s3, cluster.s3.bucket)
    assert len(state) == TRIALS and {s["status"] for s in state.values()} == {"TERMINATED"}, state
    parent, children = sweep_runs(mlflow_client)
    assert parent.info.status == "FINISHED"
    ids = [c.data.tags["rrn.trial_id"] for c in children]
    assert sorted(ids) == sorted(state), "one child run per trial, no duplicates"
    assert [c.info.status for c in children] == ["FINISHED"] * TRIALS
    exp = mlflow_client.get_experiment_by_name("rrn-cluster")
    running = mlflow_client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert running == [], "no run may be left RUNNING"
    for child in children:
        for key in ("val/mIoU", "train/loss"):
            steps = [m.step for m in mlflow_client.get_metric_history(child.info.run_id, key)]
            want = STEPS if key == "val/mIoU" else list(range(1, ITERS + 1))
            assert steps == want, f"{child.data.tags['rrn.trial_id']} {key}: {steps}"


def test_killed_worker_node_trials_continue_from_s3_checkpoint(disturbed: Timeline, mlflow_client: Any,
                                                               s3: Any, cluster: LocalCluster) -> None:
    _, children = sweep_runs(mlflow_client)
    by_id = {c.data.tags["rrn.trial_id"]: c for c in children}
    # a trial seen running there that still finished before the SIGKILL landed was not hit
    hit = {tid for tid in disturbed.on_killed_node if by_id[tid].info.end_time / 1000 > disturbed.killed_at}
    print(f"\nkilled {disturbed.killed_node[:8]}: trials seen running there {sorted(disturbed.on_killed_node)}, "
          f"hit {sorted(hit)}")
    assert hit, "the node was killed with no trial on it"
    for tid in hit:
        run = by_id[tid]
        nodes = run.data.tags["rrn.nodes"].split(",")
        assert nodes[0] == disturbed.killed_node and len(nodes) >= 2 and nodes[-1] != disturbed.killed_node
        assert int(run.data.tags.get("rrn.resumed", "0")) >= 1, "the restarted trial must reuse its run"
    keys = all_objects(s3, cluster.s3.bucket)
    for tid in hit:
        # Tune's own record of the trial's results: a restart from scratch would
        # report the first evaluation (step 2) a second time; resuming does not.
        (key,) = [k for k in keys if k.endswith(f"-{tid}/progress.csv")]
        rows = list(csv.DictReader(io.StringIO(s3.get_object(Bucket=cluster.s3.bucket, Key=key)["Body"]
                                               .read().decode())))
        steps = [int(float(r["rrn/step"])) for r in rows]
        assert steps.count(EVAL_EVERY) == 1 and steps[-1] == ITERS, f"{tid} restarted from scratch: {steps}"
    assert not any(n == disturbed.killed_node for n in cluster.alive_node_ids())


def test_outages_were_survived(disturbed: Timeline, mlflow_client: Any) -> None:
    """The S3 and MLflow outages hit training trials (their retry warnings are in the
    trial logs), and those trials finished with every metric point: the writes of
    the outage were retried, not dropped, and no trial died of it."""
    assert disturbed.running_during_s3 and disturbed.running_during_mlflow
    logs = "\n".join(disturbed.node_logs.values()) + disturbed.driver_log
    node_lines = "\n".join(disturbed.node_logs.values()).splitlines()
    # Trials meet an S3 outage first through MLflow's artifact proxy (the server's one
    # S3 attempt fails, and the trial's tracking call retries the upload) or through
    # their checkpoint writes (storage retries); the driver's experiment-state syncs
    # (every 10 s) retry too.
    storage = [line for line in node_lines if "storage: " in line and "retrying in" in line]
    proxied = [line for line in node_lines if "tracking server unreachable" in line and "mlflow-artifacts" in line]
    driver = [line for line in disturbed.driver_log.splitlines() if "storage: " in line and "retrying in" in line]
    print(f"\nS3 outage met by: {len(storage)} trial storage retries, {len(proxied)} trial artifact "
          f"uploads through MLflow's proxy, {len(driver)} driver state syncs; e.g. "
          f"{[x[:200] for x in (storage[:1] + proxied[:1] + driver[:1])]}")
    assert driver, "the driver's experiment-state sync never met the S3 outage"
    # (an artifact upload's retry may have begun in either outage: they overlap)
    assert storage or proxied, "no trial's S3-bound write (checkpoint or artifact) had to be retried"
    assert "tracking server unreachable" in logs and "went through after" in logs, \
        "no MLflow call met the tracking server's outage, or none went through after it"
    _, children = sweep_runs(mlflow_client)
    by_id = {c.data.tags["rrn.trial_id"]: c for c in children}
    for tid in disturbed.running_during_s3 | disturbed.running_during_mlflow:
        assert by_id[tid].info.status == "FINISHED"
        history = mlflow_client.get_metric_history(by_id[tid].info.run_id, "train/loss")
        assert [m.step for m in history] == list(range(1, ITERS + 1))
    assert "StorageUnavailable" not in logs, "a write gave up during a 30 s outage"


def _tensors(tree: Any) -> int:
    import torch

    if isinstance(tree, torch.Tensor):
        return 1
    if isinstance(tree, dict):
        return sum(_tensors(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_tensors(v) for v in tree)
    return 0


def test_checkpoints_are_complete_and_readable(disturbed: Timeline, s3: Any, cluster: LocalCluster) -> None:
    from rrn_core.checkpoint import load_checkpoint

    keys = all_objects(s3, cluster.s3.bucket)
    checkpoints = [k for k in keys if k.startswith(f"results/{SWEEP}/") and k.endswith(".pt")]
    assert len(checkpoints) >= TRIALS, f"{len(checkpoints)} checkpoint files for {TRIALS} trials"
    with tempfile.TemporaryDirectory() as tmp:
        for key in checkpoints:
            local = Path(tmp) / "c.pt"
            s3.download_file(cluster.s3.bucket, key, str(local))
            state = load_checkpoint(str(local))
            assert state["step"] in STEPS and _tensors(state["model"]) > 0, key
    leftovers = [k for k in keys if "rrn-upload-" in k or k.endswith(".tmp")]
    assert leftovers == []


def test_resumed_job_ran_only_unfinished_trials(disturbed: Timeline, mlflow_client: Any) -> None:
    assert len(disturbed.submission_ids) == 2 and disturbed.submission_ids[1].endswith("-2")
    assert disturbed.finished_before_stop and disturbed.unfinished_at_stop, "the stop was not mid-sweep"
    _, children = sweep_runs(mlflow_client)
    by_id = {c.data.tags["rrn.trial_id"]: c for c in children}
    for tid in disturbed.finished_before_stop:
        if tid not in disturbed.on_killed_node:
            assert "rrn.resumed" not in by_id[tid].data.tags, f"{tid} finished, then ran again"


def test_results_equal_an_undisturbed_run(disturbed: Timeline, mlflow_client: Any, space: Path) -> None:
    """Every disturbed trial's val/mIoU curve equals the same seed trained alone, here."""
    import torch

    from orchestration.space import load_space
    from rrn_core.config import build_config
    from rrn_core.loop import TrainHooks, train

    resolved = load_space(space)
    points = {resolved.point_label(p): p for p in resolved.grid_points()}
    _, children = sweep_runs(mlflow_client)
    disturbed_ids = (disturbed.on_killed_node | disturbed.running_during_s3
                     | disturbed.running_during_mlflow | disturbed.unfinished_at_stop)
    # one trial per fault (the training is repeated here, in this process: keep it short)
    chosen = []
    for group in (disturbed.on_killed_node, disturbed.running_during_s3, disturbed.running_during_mlflow,
                  disturbed.unfinished_at_stop):
        chosen += [c for c in children if c.data.tags["rrn.trial_id"] in group and c not in chosen][:1]
    assert chosen and {c.data.tags["rrn.trial_id"] for c in chosen} <= disturbed_ids

    class Curve(TrainHooks):
        def __init__(self) -> None:
            self.values: list[float] = []

        def on_evaluation(self, step: int, result: Any, checkpoint_dir: str | None) -> None:
            self.values.append(float(result.as_metrics(prefix="val/")["val/mIoU"]))

    torch.set_num_threads(1)
    for child in chosen:
        cfg = resolved.trial_config(points[child.data.tags["rrn.grid_point"]], {})
        with tempfile.TemporaryDirectory() as tmp:
            cfg = build_config(cfg.model_dump(mode="json"), {"runtime.output_dir": tmp})
            curve = Curve()
            train(cfg, curve)
        logged = [m.value for m in sorted(mlflow_client.get_metric_history(child.info.run_id, "val/mIoU"),
                                          key=lambda m: m.step)]
        assert logged == pytest.approx(curve.values, abs=1e-6), child.data.tags["rrn.trial_id"]


def test_no_credential_anywhere(disturbed: Timeline, cluster: LocalCluster, s3: Any, shared: Path) -> None:
    secrets = [s.encode() for s in cluster.all_secrets()]
    hits: list[str] = []
    # every object in the bucket (checkpoints, Tune state, MLflow artifacts)
    for key in all_objects(s3, cluster.s3.bucket):
        body = s3.get_object(Bucket=cluster.s3.bucket, Key=key)["Body"].read()
        hits += [f"s3://{key}" for s in secrets if s in body]
    # every table of the MLflow database
    import psycopg2

    pg = cluster.postgres
    with psycopg2.connect(host="127.0.0.1", port=pg.port, user=pg.user, password=pg.password,
                          dbname=pg.database) as conn, conn.cursor() as cur:
        cur.execute("select tablename from pg_tables where schemaname = 'public'")
        for (table,) in cur.fetchall():
            cur.execute(f'select * from "{table}"')
            text = repr(cur.fetchall()).encode()
            hits += [f"db:{table}" for s in secrets if s in text]
    # every file the cluster and the job wrote on the shared disk, and the head's Ray
    # session (logs, job logs, runtime envs)
    roots = [shared, Path(cluster.head.temp_dir)]
    for root in roots:
        hits += files_holding(root, secrets, skip_names=["moto.log"])
    # the worker nodes' own /tmp (Ray session logs of every trial), read while they lived
    for where, text in disturbed.node_logs.items():
        hits += [where for s in secrets if s in text.encode()]
    # moto plays S3 here: its request log may name the access key id (as any S3
    # server's access log does) but never the secret
    moto_log = (cluster.root / "s3" / "moto.log").read_bytes()
    assert cluster.secrets.aws_secret.encode() not in moto_log
    assert hits == [], f"credentials found in: {sorted(set(hits))[:20]}"


def test_load_spread_over_both_workers(disturbed: Timeline, mlflow_client: Any, cluster: LocalCluster) -> None:
    _, children = sweep_runs(mlflow_client)
    names = cluster.node_names()
    per_node: dict[str, int] = {}
    busy = 0.0
    for child in children:
        for node in child.data.tags["rrn.nodes"].split(","):
            per_node[names.get(node, node)] = per_node.get(names.get(node, node), 0) + 1
        busy += (child.info.end_time - child.info.start_time) / 1000
    print(f"\ntrials placed per node (attempts): {per_node}; wall {disturbed.wall_s:.0f}s vs "
          f"sum of trial times {busy:.0f}s; driver RSS max {disturbed.driver_rss_mb:.0f} MB")
    assert set(per_node) <= {"worker-a", "worker-b"}, "a trial ran on the CPU-less head"
    assert per_node.get("worker-a", 0) >= 2 and per_node.get("worker-b", 0) >= 2
    assert sum(per_node.values()) >= TRIALS
    assert 0 < disturbed.driver_rss_mb < 4096
