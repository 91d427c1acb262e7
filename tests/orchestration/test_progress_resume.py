"""The progress callback Tune pickles reaches the resuming command's SweepProgress."""

from __future__ import annotations

import pickle

from orchestration.sweep.progress import LiveProgressCallback, SweepProgress, watch


def test_a_pickled_callback_drives_the_live_progress_not_a_copy() -> None:
    first = SweepProgress("s", 2, "val/mIoU", "max", live=False)
    restored = pickle.loads(pickle.dumps(watch(first)))   # what tuner.pkl gives back
    assert isinstance(restored, LiveProgressCallback)
    seen: list[str] = []
    second = SweepProgress("s", 2, "val/mIoU", "max", live=False)
    second.on_trial_start = lambda iteration, trials, trial, **info: seen.append(trial)  # type: ignore[method-assign]
    watch(second)                                          # the resuming command's own
    restored.on_trial_start(0, [], "trial-a")
    assert seen == ["trial-a"]
