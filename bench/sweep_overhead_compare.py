"""Two checkouts side by side: `rrn --help` start-up and the sweep-overhead bench, one session.

Timings on a shared machine drift with its load, so a before/after comparison taken
on different days says little. This runs both trees under the same interpreter in
one session: the `--help` starts alternate (old, new, old, new, ...), then each
tree's own `bench/sweep_overhead.py` (the same measurement, written against that
tree's modules) runs `--rounds` times, the order swapped each round (old first in
the first). Each run gets PYTHONPATH set to its tree and
its own Ray temp folder; the load average is printed before and after.

    .venv/bin/python bench/sweep_overhead_compare.py --old ../rrn-before --trials 3 --iters 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def tree_env(tree: Path, ray_tmp: str) -> dict[str, str]:
    """The environment a test run uses (docs: a worktree's environment), for `tree`."""
    return {**os.environ, "PYTHONPATH": str(tree), "RAY_USAGE_STATS_ENABLED": "0",
            "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": ray_tmp,
            "OMP_NUM_THREADS": "1"}


def help_seconds(python: str, tree: Path, ray_tmp: str) -> float:
    """Wall time of one `python -m rrn --help` in `tree` (the `rrn` console script's module)."""
    start = time.perf_counter()
    subprocess.run([python, "-m", "rrn", "--help"], cwd=tree, env=tree_env(tree, ray_tmp), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="checkout of the earlier commit")
    parser.add_argument("--new", type=Path, default=HERE, help="checkout to compare (default: this one)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for both trees")
    parser.add_argument("--help-runs", type=int, default=5, help="`rrn --help` starts per tree")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--modes", default="direct,trainer")
    parser.add_argument("--rounds", type=int, default=1, help="bench runs per tree, order alternating")
    parser.add_argument("--help-runs-only", action="store_true", help="only the `--help` starts")
    args = parser.parse_args()
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}

    with tempfile.TemporaryDirectory(prefix="rrn-compare-") as ray_tmp:
        print(f"python {args.python}; old {trees['old']}; new {trees['new']}", flush=True)
        print(f"start: {load()}", flush=True)
        for tree in trees.values():   # first start of each (file caches warm): not timed
            help_seconds(args.python, tree, ray_tmp)
        times: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.help_runs):
            for name, tree in trees.items():
                times[name].append(help_seconds(args.python, tree, ray_tmp))
        for name, values in times.items():
            print(f"rrn --help {name}: median {statistics.median(values):.2f} s, min {min(values):.2f} s  "
                  f"({', '.join(f'{v:.2f}' for v in values)})", flush=True)
        print(f"after --help: {load()}", flush=True)
        if args.help_runs_only:
            return
        for round_ in range(args.rounds):
            for name in (["old", "new"] if round_ % 2 == 0 else ["new", "old"]):
                bench(args, name, trees[name], ray_tmp)


def bench(args: argparse.Namespace, name: str, tree: Path, ray_tmp: str) -> None:
    """One run of `tree`'s own bench/sweep_overhead.py, its figures printed as it prints them."""
    print(f"--- sweep overhead, {name} ({tree})", flush=True)
    start = time.perf_counter()
    subprocess.run([args.python, str(tree / "bench" / "sweep_overhead.py"), "--trials", str(args.trials),
                    "--iters", str(args.iters), "--modes", args.modes],
                   cwd=tree, env=tree_env(tree, ray_tmp), check=True)
    print(f"({time.perf_counter() - start:.0f} s in all; {load()})", flush=True)


if __name__ == "__main__":
    main()
