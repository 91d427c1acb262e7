"""What a Ray Job submission carries: the request built from a space, its id, env and secrets checks.

The job id is derived from what is being run (space file, base config, git commit),
so submitting the same sweep twice finds the first job instead of starting a second.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestration.names import ENV_STORAGE_ENDPOINT, ENV_STORAGE_PATH, ENV_TRACKING_URI
from orchestration.space import ResolvedSpace, load_space
from orchestration.storage import filesystems as storage
from orchestration.tracking.gitinfo import git_state


DEFAULT_ADDRESS = "http://127.0.0.1:8265"
#: Never uploaded: environments, VCS data, local results and caches (anchored at the
#: repository root, so rrn_core/data/ is kept). Ray also honours .gitignore.
EXCLUDES = ["/.venv/", "/.git/", "/rrn-home/", "/runs/", "/data/", "/mlruns/", "/mlflow.db",
            "__pycache__/", "*.pyc", "*.egg-info/", ".pytest_cache/"]
#: Forwarded from the submitting shell when set: settings, never secrets (see the top).
FORWARDED_ENV = ("AWS_DEFAULT_REGION", "AWS_REGION")
#: Why a secret is refused, and where it goes instead.
SECRETS_HINT = ("secrets never travel in a Ray runtime env (Ray writes runtime envs in clear into the "
                "cluster's session logs); give the cluster's nodes the credentials instead: export them "
                "before `ray start`, or mount a Kubernetes Secret (deploy/README.md)")
#: RRN_HOME on the cluster unless --env RRN_HOME=... says otherwise (expanded there).
CLUSTER_HOME = "~/rrn-home"
#: Telemetry off on the cluster too: the project never phones home.
QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
#: How `rrn jobs stop` ends the sweep: SIGINT (Tune's graceful stop, which saves the
#: experiment state and the searcher once more) instead of Ray's default SIGTERM,
#: which kills the driver mid-way and loses whatever Tune did since its last
#: periodic snapshot (a trial started since then runs again under a new id on
#: --resume, beside an orphaned MLflow run). Read by Ray's job supervisor from
#: the job's environment; --env overrides either.
GRACEFUL_STOP_ENV = {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "60"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
class JobsError(RuntimeError):
    """A submission or job query that cannot proceed; the message says why."""
@dataclass(frozen=True)
class JobRequest:
    """Everything `JobSubmissionClient.submit_job` receives, built before any I/O."""

    entrypoint: str
    submission_id: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str]
    entrypoint_num_cpus: float = 1
    space: ResolvedSpace | None = field(default=None, compare=False, repr=False)

    def printable_env(self) -> dict[str, str]:
        """The job's environment variables with secrets masked, for display."""
        return storage.redact(self.runtime_env.get("env_vars", {}))
def project_root() -> Path:
    """The repository holding this code: what a job uploads as its working_dir."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").is_file() else Path.cwd().resolve()
def parse_env(pairs: list[str] | None) -> dict[str, str]:
    """`KEY=VAL` strings (from --env) to a dict; a malformed one names itself."""
    env: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise JobsError(f"--env {pair!r}: expected KEY=VALUE with KEY a variable name")
        env[key] = value
    return env
def content_digest(resolved: ResolvedSpace, commit: str | None) -> str:
    """sha256 over the space file, its base config and the git commit."""
    h = hashlib.sha256()
    h.update(resolved.path.read_bytes())
    base = resolved.base_path.read_bytes() if resolved.base_path else yaml.safe_dump(resolved.base).encode()
    h.update(b"\0" + base + b"\0" + (commit or "no-git").encode())
    return h.hexdigest()
def submission_id(resolved: ResolvedSpace, commit: str | None) -> str:
    """rrn-<space name>-<10 hex>: the same space, base config and commit give the same id."""
    return f"rrn-{resolved.space.name}-{content_digest(resolved, commit)[:10]}"
def _inside(path: Path, root: Path, what: str) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        raise JobsError(f"{path}: the {what} must be inside the uploaded working directory {root} "
                        "(or pass --working-dir)") from None
def secret_problems(options: Mapping[str, str | None], env: Mapping[str, str]) -> list[str]:
    """Each option or --env entry that would put a secret into the runtime env."""
    problems = [f"{flag}: holds a password ({storage.redact_text(value)})"
                for flag, value in options.items() if value and storage.redact_text(value) != value]
    for key, value in env.items():
        if storage.is_secret_key(key):
            problems.append(f"--env {key}: names a secret")
        elif storage.redact_text(value) != value:
            problems.append(f"--env {key}: holds a password ({storage.redact_text(value)})")
    return problems
def build_request(
    space_path: str | Path,
    *,
    working_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    storage_path: str | None = None,
    endpoint_url: str | None = None,
    env: Mapping[str, str] | None = None,
    command: str = "sweep",
    entrypoint_num_cpus: float = 1,
    commit: str | None = None,
    dirty: bool | None = None,
    resume: bool = False,
) -> JobRequest:
    """Validate the space locally and describe the job that would run it.

    Raises SpaceError for a bad space and JobsError for a bad request, before any
    network call. `command` is "sweep" (the real job) or "validate" (a quick job
    that proves the plumbing: upload, imports, environment). `resume` runs
    `rrn sweep --resume`: a stopped job's sweep continues from its saved state. `commit`/`dirty`
    default to the working directory's git state.
    """
    if command not in ("sweep", "validate"):
        raise JobsError(f"unknown entrypoint command {command!r}: use sweep or validate")
    secrets = secret_problems({"--tracking-uri": tracking_uri, "--storage": storage_path,
                               "--endpoint-url": endpoint_url}, env or {})
    if secrets:
        raise JobsError(f"{'; '.join(secrets)}: {SECRETS_HINT}")
    root = Path(working_dir).resolve() if working_dir else project_root()
    if not root.is_dir():
        raise JobsError(f"--working-dir {root}: not a directory")
    resolved = load_space(space_path)
    rel = _inside(Path(space_path), root, "space file")
    if resolved.base_path is not None:
        _inside(resolved.base_path, root, "base config")
    if commit is None and dirty is None:
        state = git_state(root)
        commit, dirty = state.commit, state.dirty

    # The uploaded working_dir is a temporary copy: a relative RRN_HOME inside it
    # would vanish with the job, and a resubmitted sweep could not resume.
    env_vars: dict[str, str] = {**QUIET_ENV, **GRACEFUL_STOP_ENV, "RRN_HOME": CLUSTER_HOME}
    if tracking_uri:
        env_vars[ENV_TRACKING_URI] = env_vars["MLFLOW_TRACKING_URI"] = tracking_uri
    if storage_path:
        env_vars[ENV_STORAGE_PATH] = storage_path
    if endpoint_url:
        env_vars[ENV_STORAGE_ENDPOINT] = endpoint_url
    s3_endpoint = endpoint_url or resolved.space.storage.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if s3_endpoint:
        env_vars["AWS_ENDPOINT_URL"] = env_vars["MLFLOW_S3_ENDPOINT_URL"] = s3_endpoint
    env_vars.update({n: os.environ[n] for n in FORWARDED_ENV if os.environ.get(n)})
    env_vars.update(env or {})

    # `python -m rrn`, not the `rrn` script: the job runs with the cluster's Python (the
    # one Ray runs), whose PATH need not hold the venv's scripts (`/bin/sh: rrn: not
    # found`), and the uploaded working_dir puts this very rrn package on its path.
    program = (["python", "-m", "rrn", "sweep", rel, *(["--resume"] if resume else [])]
               if command == "sweep" else ["python", "-m", "rrn", "space", "validate", rel])
    return JobRequest(
        entrypoint=shlex.join(program),
        submission_id=submission_id(resolved, commit),
        runtime_env={"working_dir": str(root), "excludes": list(EXCLUDES), "env_vars": env_vars},
        metadata={"git_commit": commit or "unknown", "git_dirty": str(bool(dirty)).lower(),
                  "space": resolved.space.name, "space_file": rel, "submitted_by": "rrn"},
        entrypoint_num_cpus=entrypoint_num_cpus,
        space=resolved,
    )
