"""A real local Ray head with its dashboard (the Jobs API), every port a free one.

`ray.init()` cannot choose the dashboard agent's port: it takes 52365, and when
another Ray on the machine holds it the agent runs without HTTP and every job
submission answers "No available agent to submit job". `ray start --head` can
choose it, so heads for job tests are started this way (`--block`, its own
process group) and ended by signalling that group, never with `ray stop`
(which would end other people's Ray too).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Head:
    dashboard: str        # http://127.0.0.1:<port>, for JobSubmissionClient / --address
    gcs_address: str      # 127.0.0.1:<port>, for ray.init(address=...)
    temp_dir: Path        # Ray's temp dir of this head (sessions, logs, uploaded packages)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, headers: Mapping[str, str],
               timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers=dict(headers))
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"Ray dashboard not up at {url} after {timeout}s:\n{log.read_text()[-3000:]}")


def _end(proc: subprocess.Popen) -> None:
    """`ray start --block` tears its own processes down on SIGTERM; anything left in
    the process group it leads is then killed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@contextmanager
def ray_head(temp_dir: Path, log: Path, num_cpus: int = 2, env: Mapping[str, str] | None = None,
             token: str | None = None) -> Iterator[Head]:
    """A head on 127.0.0.1 with this venv first on PATH (as on a well-started head);
    `token` turns Ray's token auth on with that token (else the environment's settings
    apply: the test session's token). `temp_dir` must be short (Ray puts sockets there)."""
    venv_bin = Path(sys.executable).parent
    run_env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
               "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        run_env.pop(name, None)
    if token:
        run_env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    elif run_env.get("RAY_AUTH_MODE", "").lower() == "token":
        token = run_env.get("RAY_AUTH_TOKEN")   # the session's (tests/conftest.py)
    gcs, dashboard = free_port(), free_port()
    cmd = [str(venv_bin / "ray"), "start", "--head", "--block", "--disable-usage-stats",
           "--node-ip-address", "127.0.0.1", "--port", str(gcs),
           "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
           "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(free_port()),
           "--num-cpus", str(num_cpus), "--num-gpus", "0", "--object-store-memory", str(100 * 1024 * 1024),
           "--temp-dir", str(temp_dir)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=run_env,
                                start_new_session=True)
    head = Head(f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", temp_dir)
    try:
        _wait_http(f"{head.dashboard}/api/jobs/", proc, log,
                   {"Authorization": f"Bearer {token}"} if token else {})
        yield head
    finally:
        _end(proc)
