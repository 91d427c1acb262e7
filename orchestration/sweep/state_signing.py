"""The sweep's own searcher state, signed: a resume never unpickles a file it did not write.

The searcher state (`searcher-state-*.pkl` in the results folder: the grid's
progress and one Optuna study per point, its sampler's random state included) must
be pickled to resume the search exactly. Pickle runs code on load, and the results
folder may be a shared bucket others can write. So the bytes are signed with an
HMAC-SHA256 whose key lives outside the results folder, on the machine that runs the
sweep's driver; a file that does not carry a valid signature is refused before it is
unpickled. A digest written beside the file would only catch corruption: whoever can
replace the file can replace its digest too. The key cannot be read from the store.

The key: `RRN_STATE_KEY` (any string; on a cluster whose head can be replaced, mount
it from a Kubernetes Secret so every driver has the same), else the file
`$XDG_CONFIG_HOME/rrn/sweep-state.key` (default `~/.config/rrn/`), created with mode
0600 at first use. A resume must run where the key is: a job resubmitted to the same
head finds it. Ray Tune's own files in the results folder are not covered (see
docs/operations.md: what a resume trusts).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_ENV = "RRN_STATE_KEY"
MAGIC = b"rrn-signed-state-v1\n"


class UntrustedState(Exception):
    """A state file without this installation's valid signature; never unpickled."""


def key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rrn" / "sweep-state.key"


def state_key() -> bytes:
    """The signing key: RRN_STATE_KEY, else the key file (created on first use)."""
    if value := os.environ.get(KEY_ENV):
        return value.encode()
    path = key_file()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass   # another driver created it meanwhile
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip().encode()


def _mac(payload: bytes) -> bytes:
    return hmac.new(state_key(), payload, hashlib.sha256).hexdigest().encode()


def sign(payload: bytes) -> bytes:
    """`payload` with its signature in front (MAGIC, hex HMAC, newline, payload)."""
    return MAGIC + _mac(payload) + b"\n" + payload


def verified(blob: bytes, what: str) -> bytes:
    """The payload of a signed blob; UntrustedState (naming `what`) when it is unsigned
    or its signature does not match this key."""
    if not blob.startswith(MAGIC):
        raise UntrustedState(f"{what}: not signed by rrn (written by an older rrn, or by someone "
                             "else); it is not loaded, as loading it could run code")
    mac, _, payload = blob[len(MAGIC):].partition(b"\n")
    if not hmac.compare_digest(mac, _mac(payload)):
        raise UntrustedState(
            f"{what}: its signature does not match this machine's key ({KEY_ENV} or {key_file()}); "
            "it was changed after the sweep wrote it, or written with another key. It is not "
            "loaded, as loading it could run code")
    return payload
