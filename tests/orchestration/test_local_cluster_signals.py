"""scripts/local-cluster.sh tears down on SIGTERM and a closed terminal too (issue 23 #12).

The script execs `python -m orchestration.cluster.local up`, whose `serve` turns
Ctrl-C, SIGTERM and SIGHUP into the teardown. Starting the whole cluster (PostgreSQL,
MLflow, S3, three Ray nodes: 25-48 s idle, more on a shared machine) only to stop it
again would not fit this check's budget, so `serve` runs here in a real process around
a stand-in cluster: one real process in a process group of its own, started and
stopped exactly as the cluster's nodes and servers are (orchestration/cluster/
processes.Proc). The signal is sent once it is up (and, for SIGHUP, after its
terminal pipe is closed, as a closed terminal does); the process must exit 0 and its
cluster's process must be gone. A signal during start-up is checked too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = r'''
import os, sys, time
from contextlib import contextmanager
from pathlib import Path
from orchestration.cluster.local import serve
from orchestration.cluster.processes import Proc

@contextmanager
def cluster():
    proc = Proc("node", ["sleep", "600"], dict(os.environ), Path(sys.argv[1]) / "node.log").start()
    (Path(sys.argv[1]) / "node.pid").write_text(str(proc.popen.pid))
    try:
        if sys.argv[2] == "slow-start":
            print("starting", flush=True)
            time.sleep(600)           # a signal arrives while the cluster is starting
        yield proc
    finally:
        proc.stop()

sys.exit(serve(cluster, lambda proc: print("ready", flush=True)))
'''


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("sig, phase", [(signal.SIGTERM, "up"), (signal.SIGHUP, "up"),
                                        (signal.SIGINT, "up"), (signal.SIGTERM, "slow-start")])
def test_the_cluster_is_torn_down_on_signals(tmp_path: Path, sig: int, phase: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), phase], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() in ("ready", "starting")
        node = int((tmp_path / "node.pid").read_text())
        assert not gone(node)
        if sig == signal.SIGHUP:
            proc.stdout.close()       # the terminal is gone: printing fails from now on
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while not gone(node) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(node), f"the cluster's process {node} outlived {signal.Signals(sig).name}"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_script_hands_its_signals_to_python() -> None:
    """The shell must not stay between the terminal and Python: it execs."""
    script = (REPO / "scripts" / "local-cluster.sh").read_text()
    assert 'exec "$PY" -m orchestration.cluster.local up' in script
