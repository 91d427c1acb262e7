"""The GPU benchmark's CPU smoke setting: it runs end to end (in-process and 2-process
DDP over gloo, FLOP counting, the real input pipeline) and prints every row, so the
script is known to work before anyone spends GPU hours on it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_tiny_setting_prints_every_row() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "bench/gpu_throughput.py", "--tiny", "--device", "cpu", "--threads", "1",
         "--methods", "supervised", "rrn", "--gpus", "1", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"(supervised|rrn)\s+fp32\s+(\d)\s+([\d.]+)\s+([\d.]+)\s+n/a\s+([\d.]+)\s+([\d.]+)$", line)
        if m:
            rows[(m[1], int(m[2]))] = [float(x) for x in m.groups()[2:]]
    assert set(rows) == {("supervised", 1), ("rrn", 1), ("supervised", 2), ("rrn", 2)}, out
    for ms, images_s, gflop, _tflops in rows.values():
        assert ms > 0 and images_s > 0 and gflop > 0
    assert rows[("rrn", 1)][2] > 2 * rows[("supervised", 1)][2]       # two branches + critics
    assert abs(rows[("rrn", 2)][2] - 2 * rows[("rrn", 1)][2]) <= 0.02  # FLOPs summed over ranks
    assert re.search(r"input pipeline: [\d.]+ ms per step", out), out
    assert "rrn        fp32  data/compute" in out
