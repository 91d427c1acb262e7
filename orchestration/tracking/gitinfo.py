"""The code version a job runs, read from git without changing anything.

A submitted sweep records its commit so a result can be traced to the code that
produced it, and the commit is part of the deterministic job id. Outside a git
checkout (a wheel install, a container without .git) everything degrades to
"unknown" instead of failing: provenance is useful, not required.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitState:
    commit: str | None      # full sha of HEAD, None outside a repository
    dirty: bool             # tracked files differ from HEAD (uploaded, but not in the commit)

    @property
    def label(self) -> str:
        if self.commit is None:
            return "unknown"
        return self.commit + ("-dirty" if self.dirty else "")


def _git(path: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                              timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_commit(path: str | Path = ".") -> str | None:
    """HEAD's sha for the repository containing `path`, or None."""
    out = _git(Path(path), "rev-parse", "HEAD")
    return out.strip() if out else None


def git_state(path: str | Path = ".") -> GitState:
    """HEAD plus whether tracked files carry uncommitted changes."""
    commit = git_commit(path)
    if commit is None:
        return GitState(None, False)
    status = _git(Path(path), "status", "--porcelain", "--untracked-files=no")
    return GitState(commit, bool(status and status.strip()))
