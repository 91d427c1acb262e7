"""Names a person reads and what the console prints, without a Ray cluster: run names,
value digits, per-grid-point seeded proposals, the live status line and the plain
event lines, and the collapse flag on the console."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from orchestration.names import (FULLY_TRAINED, GRID_KEY, PARAMS_KEY, POINT_KEY, RESULT_COLLAPSED, STEP_KEY,
                                 TOTAL_STEPS_KEY)
from orchestration.display_names import config_run_name, distinct_digits, ratio_text, run_name
from orchestration.sweep.progress import SweepProgress
from orchestration.sweep.searcher import point_seed


def test_run_names_read_method_first_then_what_varies():
    grid = {"data.label_ratio": 0.125, "method.name": "rrn", "runtime.seed": 0}
    assert run_name("rrn", grid, {"optim.lr": 0.010623}) == "rrn r=1/8 s=0 lr=0.0106"
    assert run_name("cps", {"data.label_count": 92, "runtime.seed": 2}, {}) == "cps n=92 s=2"
    assert run_name("rrn", {"method.w_select": 0.5}, {"method.tau_region": 0.7}) == \
        "rrn w_select=0.5 tau_region=0.7"
    assert [ratio_text(r) for r in (0.125, 0.5, 1.0, 0.0625, 0.3, 0.375)] == \
        ["1/8", "1/2", "1", "1/16", "3/10", "3/8"]
    cfg = SimpleNamespace(method=SimpleNamespace(name="supervised"),
                          data=SimpleNamespace(label_ratio=None, label_count=None),
                          runtime=SimpleNamespace(seed=3))
    assert config_run_name(cfg) == "supervised s=3"


def test_distinct_digits_never_merges_two_values():
    assert distinct_digits([0.0106, 0.0156]) == 3
    assert distinct_digits([0.010621, 0.010629]) == 4   # 0.01062 vs 0.01063
    values = [0.010621, 0.010629, 0.2]
    shown = {f"{v:.{distinct_digits(values)}g}" for v in values}
    assert len(shown) == 3


def test_each_grid_point_draws_its_own_reproducible_proposals(tmp_path: Path):
    """make_searcher on a real prepared sweep: points differ, a rebuild repeats them."""
    from test_sweep import make_synth, write_space

    from orchestration.sweep.prepare import SweepOptions, prepare_sweep
    from orchestration.sweep.prepare import space_fingerprint
    from orchestration.sweep.searcher import make_searcher

    data = make_synth(tmp_path / "data")
    space = write_space(tmp_path / "s", "seeds", data,
                        grid={"method.name": ["supervised", "cps", "rrn"], "runtime.seed": [0]},
                        search={"optim.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}},
                        num_samples=2)
    prepared = prepare_sweep(space, SweepOptions(), say=lambda m: None)

    def proposals() -> dict[int, list[float]]:
        searcher = make_searcher(prepared.resolved.space, prepared.points, space_fingerprint(prepared))
        out: dict[int, list[float]] = {}
        for i in range(searcher.total_trials):
            config = searcher.suggest(f"t{i}")
            out.setdefault(config[POINT_KEY], []).append(config[PARAMS_KEY]["optim.lr"])
        return out

    first = proposals()
    assert len(first) == 3
    all_values = [v for values in first.values() for v in values]
    assert len(set(all_values)) == len(all_values), first   # no point repeats another's
    assert proposals() == first                              # same seed: same proposals
    assert point_seed(0, {"a": 1}) != point_seed(0, {"a": 2}) != point_seed(1, {"a": 2})
    assert point_seed(None, {"a": 1}) is None


def _trial(tid: str, lr: float) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, status="RUNNING", path="/r", last_result={},
                           config={GRID_KEY: {"data.label_ratio": 0.125, "method.name": "cps"},
                                   PARAMS_KEY: {"optim.lr": lr}})


def test_plain_console_prints_one_line_per_event_with_the_counts():
    progress = SweepProgress("demo", 2, "val/mIoU", "max", live=False)
    buffer = io.StringIO()
    progress._console = Console(file=buffer, width=200)
    trials = [_trial("t0", 0.0106), _trial("t1", 0.0156)]
    for t in trials:
        progress.on_trial_start(0, trials, t)
    progress.on_trial_result(0, trials, trials[0], {"val/mIoU": 0.1266, STEP_KEY: 100,
                                                     TOTAL_STEPS_KEY: 200, RESULT_COLLAPSED: 1.0})
    trials[0].last_result = {"val/mIoU": 0.1266, FULLY_TRAINED: 1.0, RESULT_COLLAPSED: 1.0}
    progress.on_trial_complete(0, trials, trials[0])
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 4                                   # one line per event, no repeats
    assert "start   cps r=1/8 lr=0.0106 (t0)" in lines[0] and "0/2 done" in lines[0]
    assert "COLLAPSED" in lines[2] and "1 collapsed" in lines[2]
    assert "done    cps r=1/8 lr=0.0106 (t0)" in lines[3] and "1/2 done" in lines[3]
    assert "1 collapsed" in progress.status_line()
    progress.close()                                         # nothing live: nothing printed
    assert len(buffer.getvalue().splitlines()) == 4


def test_terminal_console_keeps_one_live_status_line():
    progress = SweepProgress("demo", 2, "val/mIoU", "max")   # live: decided by the console
    buffer = io.StringIO()
    progress._console = Console(file=buffer, width=120, force_terminal=True,
                                color_system=None)
    trials = [_trial("t0", 0.0106), _trial("t1", 0.0156)]
    progress.on_trial_start(0, trials, trials[0])
    assert progress._live is not None and progress._live.is_started
    progress.on_trial_result(0, trials, trials[0], {"val/mIoU": 0.4, STEP_KEY: 100,
                                                     TOTAL_STEPS_KEY: 200})
    state = pickle.loads(pickle.dumps(progress))             # Tune pickles callbacks
    assert state._live is None and state.best == 0.4
    progress.on_experiment_end(trials)
    assert progress._live is None
    out = buffer.getvalue()
    assert "start   cps r=1/8 lr=0.0106 (t0)" in out
    assert "demo: 0/2 done" in out.rstrip().splitlines()[-1]   # the final status stays
    # event lines carry no counts on a terminal: the live line has them
    assert "| 0/2 done" not in out


def test_sweep_outcome_table_flags_collapse(monkeypatch):
    from rrn import sweep_commands
    from orchestration.sweep.results import SweepOutcome, TrialOutcome

    grid = {"method.name": "cps", "data.label_ratio": 0.125}
    trials = [TrialOutcome("t0", 0, grid, {"optim.lr": 0.01}, "TERMINATED", True, 0.1266,
                           [100, 200], last={RESULT_COLLAPSED: 1.0}),
              TrialOutcome("t1", 1, {**grid, "method.name": "rrn"}, {"optim.lr": 0.02},
                           "TERMINATED", True, 0.31, [100, 200], last={RESULT_COLLAPSED: 0.0})]
    monkeypatch.setattr(sweep_commands, "out", Console(file=io.StringIO(), width=80))
    sweep_commands._print_outcome(SweepOutcome("demo", "/r/demo", "pid", trials, [], {}, "FINISHED"))
    text = sweep_commands.out.file.getvalue()
    assert "cps r=1/8 lr=0.01" in text and "rrn r=1/8 lr=0.02" in text
    assert "done, COLLAPSED" in text and "1 trial(s) collapsed" in text
    assert "rrn ui demo" in text
