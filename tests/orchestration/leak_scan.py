"""Which files under a folder hold any of the test's secret strings (for the
credential scans of the sweep, the job submission and the cluster tests; the
cluster's include its Ray token and MLflow admin password: LocalCluster.all_secrets)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def files_holding(folder: Path, needles: Iterable[bytes], skip_names: Iterable[str] = ()) -> list[str]:
    """`path: needle` for every regular file that contains a needle (unreadable
    files and links are passed over; `skip_names` are file names left out)."""
    needles, skip = list(needles), set(skip_names)
    hits = []
    for path in folder.rglob("*"):
        if path.name in skip:
            continue
        try:
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                hits += [f"{path}: {n.decode()}" for n in needles if n in data]
        except OSError:
            continue
    return hits
