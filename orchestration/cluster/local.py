"""A multi-node cluster on one machine: Ray head + 2 worker nodes, MLflow on
PostgreSQL, S3 (moto) - the production shape, for tests and for trying it by hand.

Why each piece is what it is:

* Ray: a head with **0 CPUs** (it runs job drivers, never trials) and worker nodes
  started with `ray start --address`, each with its own temp dir, ports and a
  custom resource naming it. As root, each worker runs in its own mount namespace
  with a private, empty /tmp (`unshare --mount`): a node cannot read the head's
  or another node's local files, so anything that only works through a shared
  local disk fails here as it would on a real cluster.
* MLflow: `mlflow server` on a PostgreSQL database (Debian's server binaries,
  `initdb` into a temp dir, run as the `postgres` user when we are root),
  artifacts proxied to S3 (`--artifacts-destination s3://...`), as deploy/ does.
  Its S3 client makes one attempt per request (AWS_MAX_ATTEMPTS=1): with
  botocore's default retries an upload through the proxy hangs ~22 s before the
  client hears of an S3 outage, one that began late may go through with no
  error at all, and the fault test could not tell the outage met a trial. With
  one attempt the trial learns within ~3 s and its tracking client retries
  (orchestration/tracking/retry.py), which is what the test checks.
* S3: moto's HTTP server behind a `tcp_relay`: faults stop the relay, never moto,
  whose objects live in memory (see orchestration/cluster/tcp_relay.py).
* Nothing answers without credentials: Ray runs with token auth (RAY_AUTH_MODE=token,
  the token in RAY_AUTH_TOKEN on every node, so jobs and trials join with it), and
  the MLflow server is MLflow's basic-auth app (its users in the same PostgreSQL
  database; trials log in with MLFLOW_TRACKING_USERNAME/PASSWORD from their node's
  environment).
* Credentials (AWS keys, the database password, the Ray token, the MLflow admin
  password, Flask's secret key) are random per cluster and reach processes through
  their environment only (PGPASSWORD, AWS_*, RAY_AUTH_TOKEN, MLFLOW_*), never through
  a command line, a URI or a file the cluster writes.

Every process is started in a process group of its own and ended by signalling
that group (never `ray stop`, which would end other people's Ray too).

`python -m orchestration.cluster.local up` starts one and prints how to use it
(scripts/local-cluster.sh wraps it); Ctrl-C, SIGTERM and SIGHUP (a closed terminal)
tear it down, also during start-up (`serve`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from orchestration.cluster.local_services import (FAST_HEALTH_CHECK, MLFLOW_ADMIN, QUIET, S3, MlflowServer, Postgres,
                                                  RayNode, can_isolate_nodes)
from orchestration.cluster.processes import port_open, wait_until

T = TypeVar("T")

# --------------------------------------------------------------------------- cluster


@dataclass
class Secrets:
    """Random credentials of one cluster; tests grep every output for them."""

    aws_key_id: str = field(default_factory=lambda: "AKRRN" + secrets.token_hex(8).upper())
    aws_secret: str = field(default_factory=lambda: "rrn-s3-" + secrets.token_hex(16))
    ray_token: str = field(default_factory=lambda: secrets.token_hex(32))
    mlflow_password: str = field(default_factory=lambda: "rrn-mlflow-" + secrets.token_hex(16))
    flask_key: str = field(default_factory=lambda: "rrn-flask-" + secrets.token_hex(16))

    def env(self) -> dict[str, str]:
        """What every node and service holds: the object store's keys."""
        return {"AWS_ACCESS_KEY_ID": self.aws_key_id, "AWS_SECRET_ACCESS_KEY": self.aws_secret,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def ray_env(self) -> dict[str, str]:
        """What a Ray node (and so every job and trial) holds on top: Ray's token
        auth, and the tracking server's login (MLflow's client reads it)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.ray_token,
                "MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN, "MLFLOW_TRACKING_PASSWORD": self.mlflow_password}

    def values(self) -> list[str]:
        return [self.aws_key_id, self.aws_secret, self.ray_token, self.mlflow_password, self.flask_key]


@dataclass
class LocalCluster:
    """Everything, started in dependency order by `start` and ended by `stop`."""

    root: Path
    workers: int = 2
    cpus_per_worker: int = 1
    isolate: bool | None = None         # None: when the machine allows it
    extra_env: Mapping[str, str] = field(default_factory=dict)
    secrets: Secrets = field(default_factory=Secrets)
    postgres: Postgres | None = None
    s3: S3 | None = None
    mlflow: MlflowServer | None = None
    head: RayNode | None = None
    nodes: list[RayNode] = field(default_factory=list)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "RAY_", "MLFLOW_", "RRN_", "PG"))}
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
        # The nodes must import this very checkout (not another editable install).
        repo = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])
        env.update(QUIET)
        env.update(self.secrets.env())
        env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        env.update(self.extra_env)
        return env

    @property
    def storage_path(self) -> str:
        assert self.s3 is not None
        return f"s3://{self.s3.bucket}/results"

    @property
    def dashboard(self) -> str:
        assert self.head is not None
        return f"http://127.0.0.1:{self.head.dashboard_port}"

    def all_secrets(self) -> list[str]:
        out = self.secrets.values()
        if self.postgres is not None:
            out.append(self.postgres.password)
        return out

    def start(self) -> LocalCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.isolate is None:
            self.isolate = can_isolate_nodes()
        env = self.base_env()
        # The head first: the slowest to come up, it starts while the rest does.
        ray_env = {**env, **self.secrets.ray_env()}
        self.head = RayNode("head", self.root / "head", {**ray_env, **FAST_HEALTH_CHECK}, head=True)
        self.head.start()
        # PostgreSQL's own files must be reachable by the postgres user: a fresh
        # world-traversable temp dir, not the (0700) test folder.
        self.postgres = Postgres(Path(tempfile.mkdtemp(prefix="rrn-pg-")))
        self.postgres.start()
        self.s3 = S3(self.root / "s3", env)
        self.s3.start()
        self.mlflow = MlflowServer(self.root / "mlflow",
                                   {**env, "PGPASSWORD": self.postgres.password,
                                    "MLFLOW_S3_ENDPOINT_URL": self.s3.url,
                                    "AWS_MAX_ATTEMPTS": "1",   # see the module docstring
                                    "MLFLOW_AUTH_ADMIN_PASSWORD": self.secrets.mlflow_password,
                                    "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secrets.flask_key,
                                    # no GenAI job runners: they double the start-up time
                                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                                   self.postgres.uri, f"s3://{self.s3.bucket}/mlartifacts")
        self.mlflow.launch()
        wait_until(lambda: port_open(self.head.gcs_port), 120, "Ray head GCS", self.head.proc)
        for i in range(self.workers):
            node = RayNode(f"worker-{chr(ord('a') + i)}", self.root / f"worker-{i}", ray_env,
                           num_cpus=self.cpus_per_worker, head_port=self.head.gcs_port, index=i,
                           isolate=self.isolate)
            node.start()
            self.nodes.append(node)
        self.mlflow.wait()
        wait_until(lambda: self.ray_get("/api/jobs/") is not None, 120, "Ray head", self.head.proc)
        self.wait_for_nodes()
        return self

    def alive_node_resources(self) -> set[str]:
        """The `rrn_node_*` resources of the nodes Ray counts as alive."""
        return {name for node in self.ray_nodes() if node["state"] == "ALIVE"
                for name in node["resources_total"] if name.startswith("rrn_node_")}

    def ray_get(self, path: str) -> Any:
        """GET a dashboard API path with the cluster's token; its JSON."""
        request = urllib.request.Request(f"{self.dashboard}{path}",
                                         headers={"Authorization": f"Bearer {self.secrets.ray_token}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.load(r)

    def ray_nodes(self) -> list[dict]:
        """Ray's node table (state API over HTTP: no `ray.init` in the caller)."""
        return self.ray_get("/api/v0/nodes?limit=100&detail=1")["data"]["result"]["result"]

    def alive_node_ids(self) -> set[str]:
        return {node["node_id"] for node in self.ray_nodes() if node["state"] == "ALIVE"}

    def node_names(self) -> dict[str, str]:
        """Ray node id -> our node name (head, worker-a, ...), alive or dead."""
        out = {}
        for node in self.ray_nodes():
            for name in node["resources_total"]:
                if name.startswith("rrn_node_"):
                    out[node["node_id"]] = name.removeprefix("rrn_node_").replace("_", "-")
        return out

    def wait_for_nodes(self, timeout: float = 120) -> None:
        wanted = {n.resource for n in self.nodes if n.alive} | {self.head.resource}  # type: ignore[union-attr]
        wait_until(lambda: wanted <= self.alive_node_resources(), timeout, f"Ray nodes {sorted(wanted)}")

    def stop(self) -> None:
        for step in [*(n.stop for n in self.nodes), *([self.head.stop] if self.head else []),
                     *([self.mlflow.stop] if self.mlflow else []), *([self.s3.stop] if self.s3 else []),
                     *([self.postgres.stop] if self.postgres else [])]:
            try:
                step()
            except Exception as err:  # noqa: BLE001 - tear down the rest regardless
                print(f"local cluster: teardown step failed: {err!r}", file=sys.stderr)
        if self.postgres is not None:
            shutil.rmtree(self.postgres.root, ignore_errors=True)
        for node in [*self.nodes, *([self.head] if self.head else [])]:
            if not node.isolate and node._temp:
                shutil.rmtree(node._temp, ignore_errors=True)

    def client_env(self) -> dict[str, str]:
        """What a user's shell needs to submit to and read from this cluster."""
        return {**self.secrets.env(), **self.secrets.ray_env(), "RAY_ADDRESS": self.dashboard,
                "MLFLOW_TRACKING_URI": self.mlflow.url if self.mlflow else "",
                "AWS_ENDPOINT_URL": self.s3.url if self.s3 else ""}

    def node_logs(self) -> dict[str, str]:
        """Text of every file in the live worker nodes' Ray temp dirs, read through
        /proc/PID/root (an isolated node's /tmp is visible only from inside it)."""
        out: dict[str, str] = {}
        for node in self.nodes:
            if not node.alive:
                continue
            root = Path(f"/proc/{node.proc.popen.pid}/root{node.temp_dir}") if node.isolate \
                else Path(node.temp_dir)
            for path in root.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    try:
                        out[f"{node.name}:{path}"] = path.read_text(errors="replace")
                    except OSError:
                        continue
        return out


@contextmanager
def running_cluster(root: Path, **kwargs: object) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root, **kwargs)  # type: ignore[arg-type]
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class StopRequested(Exception):
    """SIGTERM or SIGHUP (a closed terminal) asked the cluster to stop."""


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Turn Ctrl-C, SIGTERM and SIGHUP into an exception, so the `finally` that tears the
    cluster down runs whichever ends us (the default actions of SIGTERM and SIGHUP end
    Python without running it, leaving every node and server behind). After the first
    signal the others are ignored, so a second one cannot cut the teardown short."""
    def handler(signum: int, frame: object) -> None:
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
        raise StopRequested(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, action in previous.items():
            signal.signal(sig, action)


def _tell(text: str) -> None:
    """Print, unless the terminal is gone (SIGHUP): the teardown must go on regardless."""
    try:
        print(text, flush=True)
    except OSError:
        pass


def serve(open_cluster: Callable[[], AbstractContextManager[T]], ready: Callable[[T], None]) -> int:
    """Start (`open_cluster`), announce (`ready`), wait; tear down on Ctrl-C, SIGTERM or
    SIGHUP, also when one arrives during start-up (what has started is stopped)."""
    with stop_on_signals():
        try:
            with open_cluster() as cluster:
                ready(cluster)
                while True:
                    time.sleep(3600)
        except (KeyboardInterrupt, StopRequested) as why:
            _tell(f"stopped ({why or 'SIGINT'}): cluster torn down")
    return 0


def _announce(cluster: LocalCluster) -> None:
    print(f"Ray dashboard / jobs API  {cluster.dashboard}")
    print(f"MLflow tracking server    {cluster.mlflow.url}  (PostgreSQL {cluster.postgres.uri}; "
          f"login {MLFLOW_ADMIN} with MLFLOW_TRACKING_PASSWORD below)")
    print(f"S3 endpoint               {cluster.s3.url}  bucket {cluster.s3.bucket}")
    print(f"worker nodes              {', '.join(n.name for n in cluster.nodes)}"
          f" ({'private /tmp each' if cluster.isolate else 'shared /tmp: not root or no unshare'})")
    print("in another shell (credentials are printed here only because this is a throwaway cluster):")
    for key, value in cluster.client_env().items():
        print(f"  export {key}={value}")
    print(f"  rrn submit SPACE.yaml --storage {cluster.storage_path} --endpoint-url {cluster.s3.url} "
          f"--tracking-uri {cluster.mlflow.url} --no-forward-credentials --entrypoint-num-cpus 0")
    if cluster.isolate:
        print("note: the workers' /tmp is private: keep data sets (data.root) outside /tmp, "
              "as on a shared file system; submit with --working-dir DIR holding the space file")
    print("Ctrl-C (or SIGTERM, or closing the terminal) stops everything.", flush=True)


def main(argv: list[str]) -> int:
    """`up [ROOT]`: start a cluster, print its addresses, wait for a signal, tear down."""
    if not argv or argv[0] != "up":
        print("usage: python -m orchestration.cluster.local up [ROOT]", file=sys.stderr)
        return 2
    root = Path(argv[1] if len(argv) > 1 else tempfile.mkdtemp(prefix="rrn-cluster-", dir="/var/tmp"))
    print(f"starting a cluster under {root} ...", flush=True)
    return serve(lambda: running_cluster(root), _announce)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
