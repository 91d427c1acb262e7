"""`python -m orchestration.cluster.probe`: can this Python run `rrn sweep`?

`rrn submit` runs this on the cluster, as a short job with the sweep's own runtime
env (uploaded working_dir, environment variables), before it submits the sweep.
A head started with the venv's `ray start` but without the venv on PATH runs
`python` from the system, which lacks torch, ray and mlflow; the sweep would
upload, start and die with `ModuleNotFoundError` (or `/bin/sh: python: not
found`). The probe finds that in a second and the submission is refused instead.

Standard library only, and nothing is imported, only found: it must report a
missing package rather than fail on it, and answer in well under a second.
"""

from __future__ import annotations

import importlib.util
import sys

#: The command itself (from the uploaded working_dir), then the import names of
#: pyproject's runtime dependencies (what `rrn sweep` and its trials load).
REQUIRED = ("rrn.cli", "orchestration.sweep.run", "rrn_core.loop", "torch", "torchmetrics", "numpy", "PIL", "pydantic", "yaml", "typer", "rich", "fsspec",
            "s3fs", "boto3", "pyarrow", "ray", "mlflow", "optuna", "matplotlib")

#: The line a passing probe prints last (what `rrn submit` looks for).
OK_MARK = "rrn cluster probe: OK"


def _found(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent package of a dotted name is missing
        return False


def missing_modules(names: tuple[str, ...] = REQUIRED) -> list[str]:
    """The names this interpreter cannot import (found without importing them: fast)."""
    return [name for name in names if not _found(name)]


def interpreter() -> str:
    """This interpreter's path and version, for the refusal message."""
    return f"{sys.executable} (Python {sys.version.split()[0]})"


def main() -> int:
    missing = missing_modules()
    if missing:
        print(f"rrn cluster probe: {interpreter()} lacks {', '.join(missing)}", flush=True)
        return 1
    print(f"{OK_MARK} {interpreter()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
