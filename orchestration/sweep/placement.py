"""The Tune callback and stopper of `PlacementWatchdog`, as importable, stateless classes.

Tune pickles its RunConfig, callbacks and stopper included, into the experiment's
tuner.pkl, and `Tuner.restore` (Ray 2.60) takes no callbacks, stopper or
RunConfig: a resumed sweep runs the unpickled ones. Hooks that closed over one
watchdog came back from that pickle as a detached copy of the first run's
watchdog (its timeout, and a `fired` flag no one read), so a resumed sweep that
could not be placed was stopped without the clear error. These classes pickle by
reference and hold no state: they act on the process's live watchdog, the one the
resuming command made with its own --placement-timeout.

ray.tune is imported here, not in sweep/checks.py, so the CLI's preflight checks do
not pay for it.
"""

from __future__ import annotations

from typing import Any

from ray import tune

#: The live orchestration.sweep.checks.PlacementWatchdog (not imported: preflight imports us).
_live: Any = None


def set_live(watchdog: Any) -> None:
    """Make `watchdog` the one every hook in this process acts on (one sweep per driver)."""
    global _live
    _live = watchdog


def live() -> Any:
    return _live


class WatchdogCallback(tune.Callback):
    """Feeds each controller step's trial statuses to the live watchdog."""

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if _live is not None:
            _live.observe([str(t.status) for t in trials])


class WatchdogStopper(tune.Stopper):
    """Stops the whole sweep once the live watchdog has fired; never a single trial."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return _live is not None and _live.fired
