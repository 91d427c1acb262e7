"""Token authentication for the single-process Ray that `rrn sweep` / `make demo` start.

Measured on Ray 2.60 (`ss -ltnp` during `ray.init(include_dashboard=False)`):
the embedded cluster still listens on the machine's own address, not only on
loopback: the GCS, the raylet and every worker's gRPC port on all interfaces, the
dashboard agent's HTTP port (52365, which accepts job-agent requests) and the
runtime-env agent on the node address. `_node_ip_address="127.0.0.1"` moves
none of them. Without authentication anyone who reaches the machine could join
that GCS and run code in the sweep's processes. So the embedded Ray always runs
with Ray's token auth (RAY_AUTH_MODE=token), with a random token drawn for this
process and handed to Ray's child processes through the environment only: no
`~/.ray/auth_token` is written (which Ray 2.60 would otherwise do), and every
port then answers 401 / refuses the gRPC call without it.
"""

from __future__ import annotations

import os
import secrets


def embedded_token_auth() -> None:
    """Switch token auth on for a Ray this process is about to start, with a fresh
    token unless the environment already names one (RAY_AUTH_TOKEN or
    RAY_AUTH_TOKEN_PATH: then Ray uses that). An explicit RAY_AUTH_MODE=disabled is
    overridden: the embedded cluster has no reason to be open."""
    os.environ["RAY_AUTH_MODE"] = "token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    # Ray read RAY_AUTH_MODE (and cached the token) when it was imported: without a
    # refresh this process would start its Ray with auth on and then be refused by
    # it ("InvalidAuthToken ... RAY_AUTH_MODE is currently 'disabled'"). Ray's own
    # default-on switch for ray.init() refreshes the same way.
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
