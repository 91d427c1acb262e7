"""Child processes for the one-machine cluster: started in their own process group, waited for, ended.

Each service (orchestration/cluster/local_services.py) is a `Proc`: its log goes to a
file, `stop` ends the whole group (and any grandchild that left it), and
`wait_until` names the process whose log to read when a start times out.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class ClusterError(RuntimeError):
    """A component that did not come up; the message carries the tail of its log."""
_GIVEN_PORTS: set[int] = set()
def kept_under_tmp() -> list[str]:
    """The folders under /tmp an isolated node still needs: the Python environment
    and the project's code (outermost ones only)."""
    import orchestration

    candidates = {Path(sys.prefix).resolve(), Path(orchestration.__file__).resolve().parents[1]}
    under = sorted(str(p) for p in candidates if p.is_relative_to("/tmp") and p != Path("/tmp"))
    return [p for p in under if not any(p != q and Path(p).is_relative_to(q) for q in under)]
def free_port() -> int:
    """A free port on 127.0.0.1, never the same one twice in this process: the OS
    may hand a just-released port out again, and Ray refuses two components on one."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port
    raise ClusterError("no free port found on 127.0.0.1")
@dataclass
class Proc:
    """One started process (and its process group)."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = self.log.open("ab")
        self.popen = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left of it."""
        if self.popen is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole group at once: no process gets to clean up."""
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: Proc | None = None) -> None:
    """Poll `check` (bounded in time); a dead `proc` fails at once with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen is not None and proc.popen.poll() is not None:
            raise ClusterError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.3)
    raise ClusterError(f"{what} not ready after {timeout:g}s" + (f":\n{proc.tail()}" if proc else ""))
def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200
def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (Ray starts some in sessions of
    their own, which a process-group signal would miss)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out
