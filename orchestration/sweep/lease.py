"""One driver per sweep name: a lease file beside the sweep's results, kept alive by a heartbeat.

Two `rrn sweep` commands of the same name would share one Tune experiment folder
and open two parent runs; worse, the second took a running first attempt that had
not finished a trial yet for a failed one and deleted it. So a driver holds
`{storage}/{name}.lease.json` from before its first write until it ends, and
rewrites it every `HEARTBEAT_S` seconds. Another driver of that name is refused
while the lease is alive, and takes it over only once its holder is proven dead:
its heartbeat is older than `STALE_S` seconds, or it ran on this machine and its
process is gone. Only a driver holding the lease may discard an earlier attempt.

Taking the lease is atomic on a local (or shared POSIX) folder: the file is created
with O_EXCL, and a dead holder's file is renamed away and checked to be the one
judged dead before a new one is created. On an object store, which has no
create-if-absent here, the driver writes its lease, waits `SETTLE_S` and reads it
back: of two drivers writing at the same moment, only the one whose write stayed
goes on (the store's read-after-write consistency decides).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from orchestration.storage import filesystems as storage

LEASE_SUFFIX = ".lease.json"
HEARTBEAT_S = float(os.environ.get("RRN_LEASE_HEARTBEAT_S", "10"))
STALE_S = float(os.environ.get("RRN_LEASE_STALE_S", "60"))
SETTLE_S = 2.0


class SweepRunning(Exception):
    """Another live driver holds the sweep's lease; the message says who and where."""


class SweepLease:
    def __init__(self, storage_path: str, endpoint_url: str | None, name: str) -> None:
        self.url = f"{storage_path.rstrip('/')}/{name}{LEASE_SUFFIX}"
        self.name = name
        self.local = not storage.is_remote(storage_path)
        self.fs, self.path = storage.open_fs(self.url, endpoint_url)
        self.owner = uuid.uuid4().hex
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ reading
    def holder(self) -> dict[str, Any] | None:
        """The lease as written (None: no lease, or an unreadable one)."""
        try:
            with self.fs.open(self.path, "rb") as f:
                record = json.loads(f.read().decode())
        except (FileNotFoundError, OSError, ValueError, UnicodeDecodeError):
            return None
        return record if isinstance(record, dict) else None

    def live_holder(self) -> dict[str, Any] | None:
        """The holder, unless it is proven dead (or the lease is ours)."""
        record = self.holder()
        if record is None or record.get("owner") == self.owner or proven_dead(record):
            return None
        return record

    def refusal(self, record: dict[str, Any]) -> SweepRunning:
        age = time.time() - float(record.get("heartbeat", 0))
        return SweepRunning(
            f"sweep {self.name!r} is already running (driver pid {record.get('pid')} on "
            f"{record.get('host')}, last heartbeat {age:.0f} s ago; lease {storage.redact_text(self.url)}): "
            f"wait for it to end or stop it, or change `name` to run another sweep. A driver that "
            f"died is taken over once its heartbeat is {STALE_S:g} s old (at once on its own machine)")

    # ------------------------------------------------------------------ holding
    def _record(self) -> bytes:
        return json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "started": self.started, "heartbeat": time.time()}).encode()

    def acquire(self) -> None:
        """Take the lease (SweepRunning if a live driver holds it) and start the heartbeat."""
        if self.local:
            self._acquire_local()
        else:
            self._acquire_remote()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def _acquire_local(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                record = self.holder()
                if record is not None and not proven_dead(record):
                    raise self.refusal(record) from None
                self._remove_dead_local(record)
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(self._record())
            return
        raise SweepRunning(f"sweep {self.name!r}: another driver is taking over the lease "
                           f"{self.url} at the same moment; try again")

    def _remove_dead_local(self, judged: dict[str, Any] | None) -> None:
        """Rename the dead holder's lease away, if it is still the one judged dead."""
        aside = f"{self.path}.dead-{self.owner}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            with open(aside, "rb") as f:
                found = json.loads(f.read().decode())
        except (OSError, ValueError):
            found = None
        if judged is not None and found != judged:   # a live lease was renamed: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        os.unlink(aside)

    def _acquire_remote(self) -> None:
        record = self.holder()
        if record is not None and not proven_dead(record):
            raise self.refusal(record)
        self.fs.pipe_file(self.path, self._record())
        time.sleep(SETTLE_S)
        record = self.holder()
        if record is None or record.get("owner") != self.owner:
            raise self.refusal(record or {})

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            record = self.holder()
            if record is not None and record.get("owner") != self.owner:
                return   # taken over (this driver was judged dead): do not overwrite it
            try:
                if self.local:
                    tmp = f"{self.path}.{self.owner}.tmp"
                    with open(tmp, "wb") as f:
                        f.write(self._record())
                    os.replace(tmp, self.path)
                else:
                    self.fs.pipe_file(self.path, self._record())
            except OSError:
                continue   # a store outage: the next beat retries

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        record = self.holder()
        if record is not None and record.get("owner") == self.owner:
            try:
                self.fs.rm_file(self.path)
            except (FileNotFoundError, OSError):
                pass


def proven_dead(record: dict[str, Any]) -> bool:
    """A holder whose heartbeat is older than STALE_S, or whose process on this machine is gone."""
    try:
        if time.time() - float(record.get("heartbeat", 0)) > STALE_S:
            return True
        if record.get("host") == socket.gethostname():
            os.kill(int(record.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError, OverflowError):
        return False
    return False
