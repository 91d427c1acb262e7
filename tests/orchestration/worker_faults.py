"""Fault injection for tests/orchestration/test_faults.py, installed into Ray's workers
from here, so the product carries no test branch.

The test's `ray.init` names `kill_once_at_step` as the job's `worker_process_setup_hook`
(Ray imports this module in every worker process of that job only, before any task
runs; the test puts this folder on the workers' PYTHONPATH). The hook wraps the trial's
`ReportHooks.on_log` in that process: when the loop logs step `RRN_TEST_KILL_AT_STEP`,
the process SIGKILLs itself like an OOM-killed worker, once (the marker file
`RRN_TEST_KILL_MARKER` is written just before the kill, and a restarted trial sees it).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV_KILL_AT_STEP = "RRN_TEST_KILL_AT_STEP"
ENV_KILL_MARKER = "RRN_TEST_KILL_MARKER"


def kill_once_at_step() -> None:
    """The worker setup hook: make this process die once at the chosen step."""
    from orchestration.sweep.trial_reporting import ReportHooks

    on_log = ReportHooks.on_log

    def on_log_then_maybe_die(self: ReportHooks, step: int, scalars: dict[str, float]) -> None:
        on_log(self, step, scalars)
        _die_once_at(step)

    ReportHooks.on_log = on_log_then_maybe_die


def _die_once_at(step: int) -> None:
    target = os.environ.get(ENV_KILL_AT_STEP)
    marker = os.environ.get(ENV_KILL_MARKER)
    if not target or not marker or int(target) != step or Path(marker).exists():
        return
    Path(marker).write_text(f"pid {os.getpid()} killed at step {step}\n")
    time.sleep(2.0)  # let the driver register the last reported checkpoint
    os.kill(os.getpid(), signal.SIGKILL)
