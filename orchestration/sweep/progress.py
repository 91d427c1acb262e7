"""What a running sweep prints: one line per trial event, and one live status line.

Tune's reporter redraws a table of every trial and every config key; with dotted
RunConfig keys and dozens of trials it drowns the one thing a user waits for:
how many trials are done, running or failed, and the best metric so far. The
first version of this callback printed that status after every event (129 lines
for the 12-trial demo). Now:

- on a terminal, the status is one live line at the bottom (rich `Live`, redrawn in
  place, elapsed time ticking), with the trial events scrolling above it;
- elsewhere (a log file, CI, a Ray Job's log), each event is one plain line that
  ends with the counts, so the log still reads top to bottom.

Trials are called by their run names (`rrn r=1/8 s=0 lr=0.0106`, as in MLflow) and
a collapsed evaluation (rrn_core's verdict, reported as `rrn/collapsed`) is flagged
in red. Counts are read from Tune's own trial list at each event rather than
accumulated, so they are right after a `--resume` too (restored finished trials
emit no events). It keeps no console or live display across pickling because Tune
pickles callbacks into the experiment state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from orchestration.names import (METHOD_NAME_KEY, FULLY_TRAINED, GRID_KEY, PARAMS_KEY, RESULT_COLLAPSED, STEP_KEY,
                                 TOTAL_STEPS_KEY)
from orchestration.display_names import run_name


class _StatusLine:
    """A renderable that re-reads the status on each redraw (so elapsed time ticks)."""

    def __init__(self, progress: SweepProgress) -> None:
        self._progress = progress

    def __rich__(self) -> Any:
        return Text(self._progress.status_line(), style="bold")


class SweepProgress(Callback):
    """Trial events plus a status (done / failed / running / collapsed, best metric)."""

    def __init__(self, sweep_name: str, total: int, metric: str, mode: str,
                 live: bool | None = None) -> None:
        self.sweep_name = sweep_name
        self.total = total
        self.metric = metric
        self.mode = mode
        self.best: float | None = None
        self.best_trial: str | None = None
        self.live = live                   # None: live exactly when stderr is a terminal
        self._trials: Sequence[Any] = ()
        self._ending: dict[str, str] = {}
        self._collapsed: set[str] = set()
        self._started = time.monotonic()
        self._console: Any = None
        self._live: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_console"] = None
        state["_live"] = None
        state["_trials"] = ()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._started = time.monotonic()

    @property
    def console(self) -> Any:
        if self._console is None:
            self._console = Console(stderr=True, soft_wrap=True, highlight=False)
        return self._console

    def _is_live(self) -> bool:
        return self.console.is_terminal if self.live is None else self.live

    # ------------------------------------------------------------------ state

    def _offer(self, trial_id: str, value: Any) -> None:
        """Update best-so-far with one reported value."""
        try:
            value = float(value)
        except (TypeError, ValueError):
            return
        if not math.isfinite(value):
            return
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best, self.best_trial = value, trial_id

    def _see(self, trials: Sequence[Any]) -> None:
        self._trials = trials
        if self.best is None:  # after a resume: finished trials report nothing again
            for t in trials:
                self._offer(t.trial_id, (getattr(t, "last_result", None) or {}).get(self.metric))

    def _note_collapse(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Track whether the trial's latest evaluation collapsed; True if it did."""
        collapsed = bool(result.get(RESULT_COLLAPSED))
        if collapsed:
            self._collapsed.add(trial_id)
        else:
            self._collapsed.discard(trial_id)
        return collapsed

    def _status(self, trial: Any) -> str:
        # Tune calls on_trial_complete/on_trial_error before it updates trial.status.
        return self._ending.get(trial.trial_id) or str(getattr(trial, "status", ""))

    def counts(self) -> str:
        """`2/12 done (0 failed), 2 running`, plus early stops and collapses when any."""
        states = [self._status(t) for t in self._trials]
        stopped = sum(1 for t in self._trials if self._status(t) == "TERMINATED"
                      and not (getattr(t, "last_result", None) or {}).get(FULLY_TRAINED))
        done, failed = states.count("TERMINATED"), states.count("ERROR")
        extra = f", {stopped} stopped early" if stopped else ""
        collapsed = f", {len(self._collapsed)} collapsed" if self._collapsed else ""
        return (f"{done + failed}/{self.total} done ({failed} failed{extra}), "
                f"{states.count('RUNNING')} running{collapsed}")

    def status_line(self) -> str:
        best = "-" if self.best is None else f"{self.best:.4f} ({self.best_trial})"
        elapsed = time.monotonic() - self._started
        return (f"{self.sweep_name}: {self.counts()} | best {self.metric} {best} | "
                f"{elapsed:,.0f}s")

    def _label(self, trial: Any) -> str:
        """`rrn r=1/8 s=0 lr=0.0106 (ab12c_00003)`: the MLflow run name and the trial id."""
        config = getattr(trial, "config", {}) or {}
        grid = config.get(GRID_KEY) or {}
        params = config.get(PARAMS_KEY) or {}
        name = run_name(str(grid.get(METHOD_NAME_KEY, "")), grid, params).strip()
        return f"{name} ({trial.trial_id})" if name else str(trial.trial_id)

    # ------------------------------------------------------------------ output

    def _start_live(self) -> None:
        self._live = Live(_StatusLine(self), console=self.console, transient=True,
                          refresh_per_second=1, redirect_stdout=False, redirect_stderr=False)
        self._live.start()

    def _print(self, event: str, style: str = "") -> None:
        head = f"[{style}]{escape(event)}[/]" if style else escape(event)
        stamp = f"[dim]{time.strftime('%H:%M:%S')}[/]"
        if self._is_live():
            if self._live is None:
                self._start_live()
            self.console.print(f"{stamp} {head}")
            self._live.refresh()
        else:
            self.console.print(f"{stamp} {head} [dim]| {escape(self.counts())}[/]")

    def close(self) -> None:
        """Stop the live line and leave the final status as a plain line (idempotent)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
            self.console.print(self.status_line(), style="bold")

    # ------------------------------------------------------------------ Tune events

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._see(trials)
        self._ending.pop(trial.trial_id, None)
        self._print(f"start   {self._label(trial)}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self._see(trials)
        shown, collapsed = self._record_value(trial, result)
        step, total = result.get(STEP_KEY), result.get(TOTAL_STEPS_KEY)
        where = f"step {int(step)}/{int(total)}" if step is not None and total is not None else ""
        self._print(f"eval    {self._label(trial)} {where} {self.metric} {shown}",
                    "red" if collapsed else "")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._see(trials)
        self._ending[trial.trial_id] = "TERMINATED"
        result = getattr(trial, "last_result", {}) or {}
        shown, collapsed = self._record_value(trial, result)
        how = "done   " if result.get(FULLY_TRAINED) else "stopped"
        self._print(f"{how} {self._label(trial)} {self.metric} {shown}",
                    "red" if collapsed else "green")

    def _record_value(self, trial: Any, result: dict) -> tuple[str, bool]:
        """Note a trial's objective and collapse verdict; its text for a console line."""
        value = result.get(self.metric)
        self._offer(trial.trial_id, value)
        collapsed = self._note_collapse(trial.trial_id, result)
        shown = "-" if value is None else f"{float(value):.4f}"
        return shown + (" COLLAPSED (predicts one class)" if collapsed else ""), collapsed

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._see(trials)
        self._ending[trial.trial_id] = "ERROR"
        where = getattr(trial, "path", None) or ""
        self._print(f"failed  {self._label(trial)} (error.txt in {where})", "red")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._see(trials)
        self._ending.pop(trial.trial_id, None)
        self._print(f"retry   {self._label(trial)} (restarts from its last checkpoint)", "yellow")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._see(trials)
        self.close()


#: The SweepProgress of the sweep this process runs (one sweep per driver).
_live: SweepProgress | None = None


class LiveProgressCallback(Callback):
    """The callback Tune holds: stateless, it hands each event to this process's
    live `SweepProgress`.

    Tune pickles its callbacks into the experiment state, and `Tuner.restore` (Ray
    2.60) takes no callbacks: a resumed sweep runs the unpickled ones. A pickled
    SweepProgress came back as a detached copy (its live line out of reach of the
    command's Ctrl-C handling and of `close`); this class pickles by reference and
    reaches whatever SweepProgress the resuming command made. Its event methods
    (FORWARDED_EVENTS) are set below.
    """


def _forwarder(name: str) -> Any:
    def forward(self: LiveProgressCallback, *args: Any, **kwargs: Any) -> None:
        if _live is not None:
            getattr(_live, name)(*args, **kwargs)
    forward.__name__ = name
    return forward


#: The Tune events SweepProgress handles, forwarded one to one.
FORWARDED_EVENTS = ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error",
                    "on_trial_recover", "on_experiment_end")
for _event in FORWARDED_EVENTS:
    setattr(LiveProgressCallback, _event, _forwarder(_event))


def watch(progress: SweepProgress) -> LiveProgressCallback:
    """Make `progress` the live one and return the callback to hand Tune."""
    global _live
    _live = progress
    return LiveProgressCallback()

