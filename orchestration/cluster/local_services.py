"""The processes of the one-machine cluster (orchestration/cluster/local.py): a
private PostgreSQL, moto's S3 behind a stoppable relay, the MLflow server, Ray
nodes, each started in a process group of its own and ended by signalling it.

Split from cluster/local.py so that each piece can be started, stopped and
restarted on its own: the fault tests take exactly one of them away at a time.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.cluster.processes import (ClusterError, kept_under_tmp, free_port, Proc, wait_until,
                                             http_ok, port_open, _descendants)

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: Faster node-death detection than Ray's default (~30 s): a killed worker node is
#: declared dead after about 3 missed 1 s health checks.
FAST_HEALTH_CHECK = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                     "RAY_health_check_failure_threshold": "3"}
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
#: The MLflow user the cluster's admin account has (its password is a per-cluster secret).
MLFLOW_ADMIN = "rrn-admin"
#: MLflow's basic-auth app: users and permissions in PostgreSQL beside the runs (the
#: same database; its own tables and alembic_version_auth), the password from
#: PGPASSWORD, the admin's from MLFLOW_AUTH_ADMIN_PASSWORD. No secret in this file.
#: The login cache: each password check is a scrypt hash, measured 426 ms per request
#: on this machine without it, 31 ms with it; trials log every step, so without the
#: cache the server's CPU, not training, set the sweep's pace. A changed password
#: reaches a server worker within the TTL.
AUTH_INI = """[mlflow]
default_permission = NO_PERMISSIONS
database_uri = {database_uri}
admin_username = {admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
auth_cache_ttl_seconds = 60
"""


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
        wait_until(lambda: port_open(self.moto_port), 60, "moto S3 server", self.moto)
        self.start_relay()
        import boto3

        boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                     aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=self.bucket)

    def start_relay(self) -> None:
        self.relay = Proc("s3-relay", [sys.executable, "-m", "orchestration.cluster.tcp_relay", str(self.port),
                                       f"127.0.0.1:{self.moto_port}"], self.env,
                          self.root / "relay.log").start()
        wait_until(lambda: port_open(self.port), 30, "S3 relay", self.relay)

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
    """`mlflow server` on PostgreSQL with artifacts proxied to S3, behind MLflow's
    basic-auth app (every request but /health needs a user and password). `env`
    carries the admin's password (MLFLOW_AUTH_ADMIN_PASSWORD) and the Flask secret
    key (MLFLOW_FLASK_SERVER_SECRET_KEY)."""

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
        self.root.mkdir(parents=True, exist_ok=True)
        ini = self.root / "basic_auth.ini"
        ini.write_text(AUTH_INI.format(database_uri=self.backend_uri, admin=MLFLOW_ADMIN))
        cmd = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
               "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", self.backend_uri, "--artifacts-destination", self.artifacts,
               "--workers", "1"]
        self.proc = Proc("mlflow", cmd, {**self.env, "MLFLOW_AUTH_CONFIG_PATH": str(ini)},
                         self.root / "mlflow.log").start()

    def wait(self, timeout: float = 120) -> None:
        wait_until(lambda: http_ok(f"{self.url}/health"), timeout, "MLflow server", self.proc)

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
    index: int = 0                      # worker number: picks its worker-port range
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
            # Worker processes' ports: a range of this node's own, below Linux's
            # ephemeral range (32768+) so that no free_port() can fall into it.
            base = 20000 + ((os.getpid() % 60) * 4 + self.index) * 50
            cmd = [ray, "start", "--address", f"127.0.0.1:{self.head_port}", "--num-cpus", str(self.num_cpus),
                   "--min-worker-port", str(base), "--max-worker-port", str(base + 49), *common]
        if self.isolate:
            # A private, empty /tmp for this node and every process it starts. The
            # Python environment and the code, when they live under /tmp (a clone in
            # /tmp, as CI may make), are bind-mounted aside first, then moved back
            # onto the new /tmp (all inside the node's own mount namespace).
            keep = kept_under_tmp()
            steps = [f"k{i}=$(mktemp -d /var/tmp/rrn-keep-XXXXXX) && mount --bind {shlex.quote(p)} $k{i}"
                     for i, p in enumerate(keep)]
            steps.append("mount -t tmpfs rrn-node-tmp /tmp")
            steps += [f"mkdir -p {shlex.quote(p)} && mount --move $k{i} {shlex.quote(p)} && rmdir $k{i}"
                      for i, p in enumerate(keep)]
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   " && ".join(steps) + ' && exec "$@"', "sh", *cmd]
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


