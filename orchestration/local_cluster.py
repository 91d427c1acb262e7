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
* S3: moto's HTTP server behind a `tcp_relay`: faults stop the relay, never moto,
  whose objects live in memory (see orchestration/tcp_relay.py).
* Credentials (AWS keys, the database password) are random per cluster and reach
  processes through their environment only (PGPASSWORD, AWS_*), never through a
  command line, a URI or a file the cluster writes.

Every process is started in a process group of its own and ended by signalling
that group (never `ray stop`, which would end other people's Ray too).

`python -m orchestration.local_cluster up` starts one and prints how to use it
(scripts/local-cluster.sh wraps it); Ctrl-C tears it down.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: Faster node-death detection than Ray's default (~30 s): a killed worker node is
#: declared dead after about 3 missed 1 s health checks.
FAST_HEALTH_CHECK = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                     "RAY_health_check_failure_threshold": "3"}
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
         "RAY_AUTH_MODE": "disabled"}


class ClusterError(RuntimeError):
    """A component that did not come up; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    """The PostgreSQL server binaries (initdb, pg_ctl, postgres), or None."""
    found = sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")))
    for folder in reversed(found):
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def can_isolate_nodes() -> bool:
    """Root and a working `unshare --mount`: worker nodes get a private /tmp."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs none /tmp && test ! -e /proc/self/__nothing"],
                           capture_output=True, timeout=10)
    return probe.returncode == 0


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """One started process (and its process group)."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.popen = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left of it."""
        if self.popen is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole group at once: no process gets to clean up."""
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: Proc | None = None) -> None:
    """Poll `check` (bounded in time); a dead `proc` fails at once with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen is not None and proc.popen.poll() is not None:
            raise ClusterError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.3)
    raise ClusterError(f"{what} not ready after {timeout:g}s" + (f":\n{proc.tail()}" if proc else ""))


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


# --------------------------------------------------------------------------- services


@dataclass
class Postgres:
    """A private PostgreSQL server on 127.0.0.1:port with one password-protected
    superuser; its data dir is owned by `postgres` when we are root (initdb refuses root)."""

    root: Path
    port: int = field(default_factory=free_port)
    user: str = "rrn"
    password: str = field(default_factory=lambda: "pg-" + secrets.token_hex(12))
    database: str = "mlflow"
    proc: Proc | None = None

    def _as_owner(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start(self) -> None:
        pg = postgres_bin()
        if pg is None:
            raise ClusterError("no PostgreSQL server binaries (initdb/pg_ctl); apt-get install postgresql")
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        env = {**os.environ, "LC_ALL": "C"}
        if not self.data.exists():
            pwfile = self.root / "pw"
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            pwfile.chmod(0o600)
            try:
                subprocess.run(self._as_owner([str(pg / "initdb"), "-D", str(self.data), "-U", self.user,
                                               f"--pwfile={pwfile}", "--auth-local=scram-sha-256",
                                               "--auth-host=scram-sha-256", "-E", "UTF8"]),
                               check=True, capture_output=True, env=env, timeout=120)
            finally:
                pwfile.unlink(missing_ok=True)
        log = self.root / "postgres.log"
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(self._as_owner([str(pg / "pg_ctl"), "-D", str(self.data), "-l", str(log),
                                       "-o", options, "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, env=env, timeout=90)
        self.proc = Proc("postgres", [], env, log)
        pw_env = {**env, "PGPASSWORD": self.password}
        made = subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", self.user, self.database], capture_output=True, text=True,
                              env=pw_env, timeout=60)
        if made.returncode != 0 and "already exists" not in made.stderr:
            raise ClusterError(f"createdb failed: {made.stderr}")

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI without the password (libpq reads PGPASSWORD)."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        pg = postgres_bin()
        if pg is None or not self.data.exists():
            return
        subprocess.run(self._as_owner([str(pg / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                       "-w", "-t", "30", "stop"]), capture_output=True, timeout=60)


@dataclass
class S3:
    """moto's S3 server, reached through a relay that faults can take away."""

    root: Path
    env: dict[str, str]
    bucket: str = field(default_factory=lambda: "rrn-" + secrets.token_hex(5))
    moto_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    moto: Proc | None = None
    relay: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.moto = Proc("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                  "-p", str(self.moto_port)], self.env, self.root / "moto.log").start()
        wait_until(lambda: _port_open(self.moto_port), 60, "moto S3 server", self.moto)
        self.start_relay()
        import boto3

        boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                     aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=self.bucket)

    def start_relay(self) -> None:
        self.relay = Proc("s3-relay", [sys.executable, "-m", "orchestration.tcp_relay", str(self.port),
                                       f"127.0.0.1:{self.moto_port}"], self.env,
                          self.root / "relay.log").start()
        wait_until(lambda: _port_open(self.port), 30, "S3 relay", self.relay)

    def stop_relay(self) -> None:
        """The outage: the endpoint refuses connections; moto keeps the objects."""
        if self.relay is not None:
            self.relay.kill()

    def stop(self) -> None:
        for proc in (self.relay, self.moto):
            if proc is not None:
                proc.kill()


@dataclass
class MlflowServer:
    """`mlflow server` on PostgreSQL with artifacts proxied to S3."""

    root: Path
    env: dict[str, str]
    backend_uri: str
    artifacts: str
    port: int = field(default_factory=free_port)
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        """Start the server process; it serves once `wait` returns."""
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", self.backend_uri, "--artifacts-destination", self.artifacts,
               "--workers", "1"]
        self.proc = Proc("mlflow", cmd, self.env, self.root / "mlflow.log").start()

    def wait(self, timeout: float = 120) -> None:
        wait_until(lambda: _http_ok(f"{self.url}/health"), timeout, "MLflow server", self.proc)

    def start(self, timeout: float = 120) -> None:
        self.launch()
        self.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=10)


@dataclass
class RayNode:
    """A head (0 CPUs, dashboard + jobs API) or a worker node joined to it."""

    name: str
    root: Path
    env: dict[str, str]
    head: bool = False
    num_cpus: int = 1
    head_port: int = 0
    isolate: bool = False
    dashboard_port: int = field(default_factory=free_port)
    gcs_port: int = field(default_factory=free_port)
    proc: Proc | None = None
    _temp: str | None = None

    @property
    def resource(self) -> str:
        """The custom resource that names this node (`rrn_node_<name>`)."""
        return f"rrn_node_{self.name.replace('-', '_')}"

    @property
    def temp_dir(self) -> str:
        # Short: Ray puts Unix sockets under it (108-byte limit). An isolated worker's
        # /tmp is its own tmpfs, so the same path never collides with another node's.
        if self.isolate:
            return f"/tmp/ray-{self.name}"
        if self._temp is None:
            self._temp = tempfile.mkdtemp(prefix=f"ray-{self.name[:8]}-")
        return self._temp

    def command(self) -> list[str]:
        ray = str(Path(sys.executable).parent / "ray")
        ports = ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                 "--metrics-export-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
                 "--dashboard-agent-grpc-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]
        common = ["--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
                  "--num-gpus", "0", "--object-store-memory", str(80 * 1024 * 1024),
                  "--temp-dir", self.temp_dir, "--resources", json.dumps({self.resource: 1}), *ports]
        if self.head:
            cmd = [ray, "start", "--head", "--port", str(self.gcs_port), "--num-cpus", "0",
                   "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                   "--dashboard-port", str(self.dashboard_port),
                   "--ray-client-server-port", str(free_port()), *common]
        else:
            base = 20000 + (free_port() % 200) * 100
            cmd = [ray, "start", "--address", f"127.0.0.1:{self.head_port}", "--num-cpus", str(self.num_cpus),
                   "--min-worker-port", str(base), "--max-worker-port", str(base + 99), *common]
        if self.isolate:
            # A private, empty /tmp for this node and every process it starts.
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs rrn-node-tmp /tmp && exec "$@"', "sh", *cmd]
        return cmd

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive

    def start(self) -> None:
        self.proc = Proc(f"ray-{self.name}", self.command(), self.env, self.root / "ray-start.log").start()

    def kill(self) -> None:
        """SIGKILL the node: `ray start`, its raylet and every worker process of it."""
        if self.proc is None or self.proc.popen is None:
            return
        victims = _descendants(self.proc.popen.pid)
        self.proc.signal_group(signal.SIGKILL)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()

    def stop(self) -> None:
        """Teardown needs no grace: nothing of a test cluster is kept."""
        self.kill()


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (Ray starts some in sessions of
    their own, which a process-group signal would miss)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


# --------------------------------------------------------------------------- cluster


@dataclass
class Secrets:
    """Random credentials of one cluster; tests grep every output for them."""

    aws_key_id: str = field(default_factory=lambda: "AKRRN" + secrets.token_hex(8).upper())
    aws_secret: str = field(default_factory=lambda: "rrn-s3-" + secrets.token_hex(16))

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.aws_key_id, "AWS_SECRET_ACCESS_KEY": self.aws_secret,
                "AWS_DEFAULT_REGION": "us-east-1"}


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
        out = [self.secrets.aws_key_id, self.secrets.aws_secret]
        if self.postgres is not None:
            out.append(self.postgres.password)
        return out

    def start(self) -> LocalCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.isolate is None:
            self.isolate = can_isolate_nodes()
        env = self.base_env()
        # The head first: the slowest to come up, it starts while the rest does.
        self.head = RayNode("head", self.root / "head", {**env, **FAST_HEALTH_CHECK}, head=True)
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
                                    # no GenAI job runners: they double the start-up time
                                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                                   self.postgres.uri, f"s3://{self.s3.bucket}/mlartifacts")
        self.mlflow.launch()
        wait_until(lambda: _port_open(self.head.gcs_port), 120, "Ray head GCS", self.head.proc)
        for i in range(self.workers):
            node = RayNode(f"worker-{chr(ord('a') + i)}", self.root / f"worker-{i}", env,
                           num_cpus=self.cpus_per_worker, head_port=self.head.gcs_port, isolate=self.isolate)
            node.start()
            self.nodes.append(node)
        self.mlflow.wait()
        wait_until(lambda: _http_ok(f"{self.dashboard}/api/jobs/"), 120, "Ray head", self.head.proc)
        self.wait_for_nodes()
        return self

    def alive_node_resources(self) -> set[str]:
        """The `rrn_node_*` resources of the nodes Ray counts as alive."""
        return {name for node in self.ray_nodes() if node["state"] == "ALIVE"
                for name in node["resources_total"] if name.startswith("rrn_node_")}

    def ray_nodes(self) -> list[dict]:
        """Ray's node table (state API over HTTP: no `ray.init` in the caller)."""
        with urllib.request.urlopen(f"{self.dashboard}/api/v0/nodes?limit=100&detail=1", timeout=5) as r:
            return json.load(r)["data"]["result"]["result"]

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

    def restart_node(self, node: RayNode) -> None:
        node.kill()
        node.start()
        self.wait_for_nodes()

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
        return {**self.secrets.env(), "RAY_ADDRESS": self.dashboard,
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

    def log_files(self) -> Iterator[Path]:
        """Every log this cluster's processes wrote on the shared disk (isolated
        workers' session logs live in their private /tmp and vanish with it)."""
        for path in self.root.rglob("*"):
            if path.is_file():
                yield path
        if self.postgres is not None:
            yield from (p for p in self.postgres.root.glob("*.log"))


@contextmanager
def running_cluster(root: Path, **kwargs: object) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root, **kwargs)  # type: ignore[arg-type]
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def main(argv: list[str]) -> int:
    """`up [ROOT]`: start a cluster, print its addresses, wait for Ctrl-C, tear down."""
    if not argv or argv[0] != "up":
        print("usage: python -m orchestration.local_cluster up [ROOT]", file=sys.stderr)
        return 2
    root = Path(argv[1] if len(argv) > 1 else tempfile.mkdtemp(prefix="rrn-cluster-", dir="/var/tmp"))
    print(f"starting a cluster under {root} ...", flush=True)
    with running_cluster(root) as cluster:
        print(f"Ray dashboard / jobs API  {cluster.dashboard}")
        print(f"MLflow tracking server    {cluster.mlflow.url}  (PostgreSQL {cluster.postgres.uri})")
        print(f"S3 endpoint               {cluster.s3.url}  bucket {cluster.s3.bucket}")
        print(f"worker nodes              {', '.join(n.name for n in cluster.nodes)}"
              f" ({'private /tmp each' if cluster.isolate else 'shared /tmp: not root or no unshare'})")
        print("in another shell (credentials are printed here only because this is a throwaway cluster):")
        for key, value in cluster.client_env().items():
            print(f"  export {key}={value}")
        print(f"  rrn submit SPACE.yaml --storage {cluster.storage_path} --endpoint-url {cluster.s3.url} "
              f"--tracking-uri {cluster.mlflow.url} --no-forward-credentials --entrypoint-num-cpus 0")
        print("Ctrl-C stops everything.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping ...", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
