"""The placement watchdog's hooks survive Tune's pickle: after `Tuner.restore` (which
brings back the RunConfig a first run saved in tuner.pkl) they act on the watchdog
of the command that resumed, not on a detached copy of the first run's."""

from __future__ import annotations

from types import SimpleNamespace

from orchestration.sweep.checks import PlacementWatchdog


def pending(n: int = 1) -> list[SimpleNamespace]:
    return [SimpleNamespace(status="PENDING") for _ in range(n)]


def test_restored_hooks_act_on_the_resuming_commands_watchdog() -> None:
    from ray import cloudpickle  # what Tune writes tuner.pkl with

    first = PlacementWatchdog(timeout_s=3600)
    saved = cloudpickle.dumps((first.callback, first.stopper))
    resumed = PlacementWatchdog(timeout_s=0)          # `rrn sweep --resume --placement-timeout 0`
    callback, stopper = cloudpickle.loads(saved)
    assert not stopper.stop_all()
    callback.on_step_begin(0, pending())
    callback.on_step_begin(1, pending(2))
    assert resumed.fired and stopper.stop_all() and not first.fired
    assert not stopper("trial", {})                   # never stops a single trial


def test_running_trials_reset_the_clock() -> None:
    dog = PlacementWatchdog(timeout_s=10)
    dog.observe(["PENDING"], now=0)
    dog.observe(["PENDING", "RUNNING"], now=9)
    dog.observe(["PENDING"], now=15)
    assert not dog.fired
    dog.observe(["PENDING"], now=25)
    assert dog.fired
