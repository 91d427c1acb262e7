"""A TCP relay that can be taken down and brought back on the same port.

The S3 fault of the multi-node test: "the object store is unreachable for 30 s".
moto's server keeps its objects in memory, so stopping moto itself would lose
every checkpoint, which is not what an S3 outage does. Instead clients talk to
this relay, and the relay (not moto) is killed and restarted: during the gap a
connection is refused, exactly as an endpoint that went away, while the data
behind it survives as it would on a real object store.

Run: `python -m orchestration.cluster.tcp_relay LISTEN_PORT TARGET_HOST:TARGET_PORT`.
It only ever listens on 127.0.0.1.
"""

from __future__ import annotations

import socket
import sys
import threading


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy bytes one way until either side closes, then close both."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def serve(listen_port: int, target: tuple[str, int]) -> None:
    """Accept on 127.0.0.1:listen_port forever; one pair of threads per connection."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(128)
    print(f"relay 127.0.0.1:{listen_port} -> {target[0]}:{target[1]}", flush=True)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(target, timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()


def main(argv: list[str]) -> None:
    port, target = int(argv[0]), argv[1]
    host, _, tport = target.rpartition(":")
    serve(port, (host, int(tport)))


if __name__ == "__main__":  # pragma: no cover - a process of its own
    main(sys.argv[1:])
