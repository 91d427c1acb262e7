"""What a running sweep prints: one compact line per change, not Tune's wall of tables.

Tune's reporter redraws a table of every trial and every config key; with dotted
RunConfig keys and dozens of trials it drowns the one thing a user waits for:
how many trials are done, running or failed, and the best metric so far. This
callback prints exactly that, once per change (a trial starting, evaluating,
finishing, failing, retrying). Counts are read from Tune's own trial list at each
event rather than accumulated, so they are right after a `--resume` too (restored
finished trials emit no events). It keeps no console across pickling because Tune
pickles callbacks into the experiment state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from ray.tune import Callback

from orchestration.searcher import FULLY_TRAINED, GRID_KEY, PARAMS_KEY, STEP_KEY, TOTAL_STEPS_KEY


class SweepProgress(Callback):
    """Prints trial events plus a status line: done / failed / running, best metric."""

    def __init__(self, sweep_name: str, total: int, metric: str, mode: str) -> None:
        self.sweep_name = sweep_name
        self.total = total
        self.metric = metric
        self.mode = mode
        self.best: float | None = None
        self.best_trial: str | None = None
        self._trials: Sequence[Any] = ()
        self._ending: dict[str, str] = {}
        self._started = time.monotonic()
        self._console: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_console"] = None
        state["_trials"] = ()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._started = time.monotonic()

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, soft_wrap=True, highlight=False)
        return self._console

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

    def _status(self, trial: Any) -> str:
        # Tune calls on_trial_complete/on_trial_error before it updates trial.status.
        return self._ending.get(trial.trial_id) or str(getattr(trial, "status", ""))

    def status_line(self) -> str:
        states = [self._status(t) for t in self._trials]
        stopped = sum(1 for t in self._trials if self._status(t) == "TERMINATED"
                      and not (getattr(t, "last_result", None) or {}).get(FULLY_TRAINED))
        done, failed = states.count("TERMINATED"), states.count("ERROR")
        best = "-" if self.best is None else f"{self.best:.4f} ({self.best_trial})"
        extra = f", {stopped} stopped early" if stopped else ""
        elapsed = time.monotonic() - self._started
        return (f"{self.sweep_name}: {done + failed}/{self.total} done ({failed} failed{extra}), "
                f"{states.count('RUNNING')} running | best {self.metric} {best} | {elapsed:,.0f}s")

    def _label(self, trial: Any) -> str:
        config = getattr(trial, "config", {}) or {}
        grid = config.get(GRID_KEY) or {}
        point = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in grid.items()) or "all"
        params = config.get(PARAMS_KEY) or {}
        sampled = " ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in params.items())
        return f"{trial.trial_id} [{point}]" + (f" {sampled}" if sampled else "")

    def _print(self, event: str, style: str = "") -> None:
        from rich.markup import escape

        head = f"[{style}]{escape(event)}[/]" if style else escape(event)
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {head}")
        self.console.print(f"         [bold]{escape(self.status_line())}[/]")

    # ------------------------------------------------------------------ Tune events

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._see(trials)
        self._ending.pop(trial.trial_id, None)
        self._print(f"start   {self._label(trial)}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self._see(trials)
        value = result.get(self.metric)
        self._offer(trial.trial_id, value)
        step, total = result.get(STEP_KEY), result.get(TOTAL_STEPS_KEY)
        where = f"step {int(step)}/{int(total)}" if step is not None and total is not None else ""
        shown = "-" if value is None else f"{float(value):.4f}"
        self._print(f"eval    {trial.trial_id} {where} {self.metric} {shown}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._see(trials)
        self._ending[trial.trial_id] = "TERMINATED"
        result = getattr(trial, "last_result", {}) or {}
        value = result.get(self.metric)
        self._offer(trial.trial_id, value)
        how = "done   " if result.get(FULLY_TRAINED) else "stopped"
        shown = "-" if value is None else f"{float(value):.4f}"
        self._print(f"{how} {self._label(trial)} {self.metric} {shown}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._see(trials)
        self._ending[trial.trial_id] = "ERROR"
        where = getattr(trial, "path", None) or ""
        self._print(f"failed  {self._label(trial)} (error.txt in {where})", "red")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._see(trials)
        self._ending.pop(trial.trial_id, None)
        self._print(f"retry   {self._label(trial)} (restarts from its last checkpoint)", "yellow")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
