"""The embedded Ray of `rrn sweep` runs with token auth, whatever the environment
said when Ray was imported (orchestration/ray_auth.py), and writes no ~/.ray file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Ray imported first (as `rrn sweep` imports it), auth switched on after, then a task.
PROGRAM = """
import ray
from ray._raylet import AuthenticationMode, get_authentication_mode
assert get_authentication_mode() != AuthenticationMode.TOKEN
from orchestration.sweep.execute import connect_ray
assert connect_ray(None)
print("MODE", get_authentication_mode() == AuthenticationMode.TOKEN)
print("TASK", ray.get(ray.remote(lambda: 41 + 1).options(num_cpus=0).remote()))
ray.shutdown()
"""


def test_embedded_ray_turns_token_auth_on_after_ray_was_imported(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env.update({"HOME": str(tmp_path / "home"), "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])})
    (tmp_path / "home").mkdir()
    run = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "MODE True" in run.stdout and "TASK 42" in run.stdout
    assert not (tmp_path / "home" / ".ray").exists(), "Ray wrote a token file into $HOME"
