"""Test-wide settings: Ray and MLflow stay out of $HOME and never phone home."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Every Ray a test starts (embedded or `ray start`) runs with token auth, as rrn's
# own do; the token is drawn per session and travels in the environment only, so
# Ray writes no ~/.ray/auth_token.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
_tmp_root = Path(os.environ.get("RRN_TEST_TMP") or tempfile.mkdtemp(prefix="rrn-test-"))
os.environ.setdefault("RAY_TMPDIR", str(_tmp_root / "ray"))
Path(os.environ["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)
# The sweep-state signing key (orchestration/sweep/state_signing.py) is created under
# $XDG_CONFIG_HOME/rrn: a test folder, not the user's ~/.config.
os.environ.setdefault("XDG_CONFIG_HOME", str(_tmp_root / "config"))

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
