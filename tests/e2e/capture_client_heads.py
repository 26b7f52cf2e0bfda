#!/usr/bin/env python3
"""Prints the request heads Docker (dockerd, registry-mirrors) and containerd
(ctr, hosts.toml) send to a mirror, as recorded by a tiny server standing in
for Outpost: GET /v2/ answers 200, anything else 404. Run it as root after a
client upgrade and update the literal heads in test_client_wire.py:

    python3 tests/e2e/capture_client_heads.py

Not a test (it is not registered in meson.build)."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client_helpers import containerd_in_netns, dockerd_in_netns, loopback_netns, recipe  # noqa: E402

heads: list[str] = []


def handle(c: socket.socket) -> None:
    buf = b""
    with c:
        while True:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, _, buf = buf.partition(b"\r\n\r\n")
            heads.append(head.decode("latin-1"))
            line = head.split(b"\r\n", 1)[0]
            if line.startswith(b"GET /v2/ "):
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                          b"Docker-Distribution-Api-Version: registry/2.0\r\n\r\n{}")
            else:
                body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"capture"}]}'
                c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + (b"" if line.startswith(b"HEAD") else body))


def serve(s: socket.socket) -> None:
    while True:
        try:
            c, _ = s.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def main() -> int:
    with loopback_netns():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        threading.Thread(target=serve, args=(s,), daemon=True).start()
        host = f"127.0.0.1:{s.getsockname()[1]}"
        with dockerd_in_netns(daemon_json_text=recipe("docker-daemon.json", host)) as dk:
            dk.docker("pull", "e2e-app:v1", check=False)
        print("=== dockerd (registry-mirrors)\n" + "\n---\n".join(heads))
        heads.clear()
        with tempfile.TemporaryDirectory() as d, containerd_in_netns() as cd:
            os.makedirs(os.path.join(d, "docker.io"))
            with open(os.path.join(d, "docker.io", "hosts.toml"), "w") as f:
                f.write(recipe("containerd-hosts.toml", host))
            cd.ctr("images", "pull", "--hosts-dir", d, "docker.io/library/e2e-app:v1", check=False)
        print("=== containerd (hosts.toml)\n" + "\n---\n".join(heads))
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
