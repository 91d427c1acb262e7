"""One driver per sweep name (orchestration/sweep/lease.py), issue 23 #1.

The lease itself is checked in-process (a live holder refuses, a holder proven dead by
its process or its heartbeat is taken over, a released lease is free); then two real
`rrn sweep` processes of the same name are started at the same moment: one runs the
sweep, the other exits 2 naming the sweep, and exactly one parent run and one trial
are left (nothing of the winner's discarded, no second parent run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sweep import make_synth, mlflow_runs, write_space

from orchestration.sweep import lease as lease_module
from orchestration.sweep.lease import SweepLease, SweepRunning, proven_dead

REPO = Path(__file__).resolve().parents[2]


def test_a_live_lease_refuses_a_second_driver_and_is_free_once_released(tmp_path: Path) -> None:
    first = SweepLease(str(tmp_path), None, "s")
    first.acquire()
    try:
        with pytest.raises(SweepRunning, match=f"sweep 's' is already running \\(driver pid {os.getpid()}"):
            SweepLease(str(tmp_path), None, "s").acquire()
        assert SweepLease(str(tmp_path), None, "other").live_holder() is None
    finally:
        first.release()
    assert not (tmp_path / "s.lease.json").exists()
    second = SweepLease(str(tmp_path), None, "s")
    second.acquire()
    second.release()


def test_a_dead_holder_is_taken_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = tmp_path / "s.lease.json"
    record = {"owner": "x", "host": os.uname().nodename, "pid": gone.pid, "started": time.time(),
              "heartbeat": time.time()}
    path.write_text(json.dumps(record))
    assert proven_dead(record)                      # its process is gone (same machine)
    lease = SweepLease(str(tmp_path), None, "s")
    lease.acquire()
    assert json.loads(path.read_text())["owner"] == lease.owner
    lease.release()

    # a holder on another machine: alive while it beats, dead once its heartbeat is stale
    record = {**record, "host": "elsewhere", "pid": 1}
    path.write_text(json.dumps(record))
    with pytest.raises(SweepRunning, match="on elsewhere"):
        SweepLease(str(tmp_path), None, "s").acquire()
    monkeypatch.setattr(lease_module, "STALE_S", 0.5)
    time.sleep(0.6)
    taker = SweepLease(str(tmp_path), None, "s")
    taker.acquire()
    assert json.loads(path.read_text())["owner"] == taker.owner
    taker.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []   # nothing set aside is left


@pytest.mark.slow
def test_two_sweeps_of_one_name_started_together_one_runs_one_is_refused(tmp_path: Path) -> None:
    synth = make_synth(tmp_path / "synth")
    space = write_space(tmp_path, "twins", synth, grid={"method.name": ["supervised"]},
                        scaling={"num_workers": 1, "resources_per_worker": {"CPU": 1}})
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RRN_", "MLFLOW_TRACKING", "RAY_ADDRESS"))}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", RRN_HOME=str(tmp_path / "home"))
    procs = []
    for i in range(2):
        temp = Path(env.get("RAY_TMPDIR", "/tmp")) / f"twin{i}-{os.getpid()}"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "rrn", "sweep", str(space)], cwd=tmp_path, text=True,
            env={**env, "RAY_TMPDIR": str(temp)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = [p.communicate(timeout=420)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], "\n---\n".join(outputs)
    loser = outputs[[p.returncode for p in procs].index(2)]
    assert "Traceback" not in loser, loser
    assert "sweep 'twins'" in loser and ("already running" in loser or "while this one was being prepared"
                                         in loser), loser
    parent, children = mlflow_runs(tmp_path, "twins")   # exactly one parent run
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED"]
    assert not (tmp_path / "results" / "twins.lease.json").exists()   # released at the end
