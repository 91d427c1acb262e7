"""deploy/scan.sh (checkov + deploy/policy.py) passes, when checkov is installed.

checkov cannot live in .venv (it pins an older botocore than s3fs/boto3 need), so it
has its own virtualenv, created by `deploy/scan.sh` on first use (~30 s, from PyPI).
This test runs the scan when that virtualenv exists and says so when it does not;
deploy/policy.py itself always runs (test_deploy_policy.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import REPO

SCAN_VENV = Path(os.environ.get("RRN_SCAN_VENV", REPO / ".venv-scan"))


@pytest.mark.skipif(not (SCAN_VENV / "bin" / "checkov").exists(),
                    reason=f"checkov not installed at {SCAN_VENV}: run deploy/scan.sh once "
                           "(or set RRN_SCAN_VENV) to include the checkov scan")
def test_checkov_and_policy_scan_pass() -> None:
    env = {**os.environ, "SCAN_VENV": str(SCAN_VENV), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(REPO / "deploy" / "scan.sh")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout
    assert "0 finding(s)" in result.stderr
