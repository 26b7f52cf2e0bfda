"""Servers for bench/run: start on 127.0.0.1, wait until ready, read peak RSS,
stop. Every process started here is registered and stopped by stop_all(),
which bench/run calls on every way out (normal end, error, Ctrl-C, SIGTERM).
"""
import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

_started: list[subprocess.Popen] = []


def spawn(argv: list[str], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw) -> subprocess.Popen:
    """Start a process in its own process group (so Ctrl-C on the terminal reaches
    only this script, which then stops it in order) and register it."""
    p = subprocess.Popen(argv, stdout=stdout, stderr=stderr, start_new_session=True, **kw)
    _started.append(p)
    return p


def stop(p: subprocess.Popen | None, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Stop one process we started (and its process group, e.g. nginx workers)."""
    if p is None:
        return
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
    if p in _started:
        _started.remove(p)


def stop_all() -> None:
    for p in list(reversed(_started)):
        try:
            stop(p, grace=5.0)
        except Exception:  # noqa: BLE001 - keep stopping the others
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int, path: str = "/v2/") -> int:
    """Status of one GET on 127.0.0.1:port, or 0 if nothing answers."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", path)
        status = c.getresponse().status
        c.close()
        return status
    except OSError:
        return 0


def wait_ready(p: subprocess.Popen, port: int, t0: float, deadline_s: float,
               path: str = "/v2/", ok=(200,)) -> float:
    """Poll every millisecond until GET path answers with one of `ok`; returns the
    seconds since t0 (taken just before the process was spawned)."""
    end = t0 + deadline_s
    while time.monotonic() < end:
        if answers(port, path) in ok:
            return time.monotonic() - t0
        if p.poll() is not None:
            raise RuntimeError(f"{p.args[0]} exited with status {p.returncode} before answering")
        time.sleep(0.001)
    raise RuntimeError(f"{p.args[0]} did not answer {path} on port {port} within {deadline_s}s")


@dataclass
class Server:
    name: str
    port: int
    dir: str
    proc: subprocess.Popen
    ready_s: float                      # process start until ready
    argv: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def pids(self) -> list[int]:
        """The server's process and its children (nginx's workers)."""
        pids = [self.proc.pid]
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                pids += [int(x) for x in f.read().split()]
        except OSError:
            pass
        return pids

    def reset_peak(self) -> None:
        """Reset the kernel's peak RSS (VmHWM) so the next reading covers one figure."""
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass

    def peak_kib(self) -> int:
        """VmHWM of the process, summed over its children (nginx master + workers)."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total


def _start(name: str, argv: list[str], port: int, dir: str, log_prefix: str,
           path: str = "/v2/", ok=(200,), deadline_s: float = 30.0) -> Server:
    out = open(os.path.join(dir, f"{log_prefix}.stdout.log"), "ab")
    err = open(os.path.join(dir, f"{log_prefix}.stderr.log"), "ab")
    t0 = time.monotonic()
    p = spawn(argv, stdout=out, stderr=err)
    out.close()
    err.close()
    try:
        ready = wait_ready(p, port, t0, deadline_s, path, ok)
    except RuntimeError:
        stop(p)
        with open(os.path.join(dir, f"{log_prefix}.stderr.log"), errors="replace") as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"{name} did not start:\n{tail}") from None
    return Server(name, port, dir, p, ready, argv)


def restart(s: Server) -> Server:
    """Stop a server and start the same command again (same port, same storage)."""
    stop(s.proc)
    return _start(s.name, s.argv, s.port, s.dir, "server")


def start_outpost(bin_path: str, dir: str, name: str, parent: str = "", log_level: str = "info",
                  extra: str = "", ok=(200,)) -> Server:
    """`outpost serve` with its config in dir/outpost.toml; `extra` is TOML
    appended to it (more tables, e.g. [sync]). `ok`: the statuses of GET /v2/
    that mean ready (with [auth] on it is 401, the login challenge)."""
    os.makedirs(dir, exist_ok=True)
    port = free_port()
    conf = os.path.join(dir, "outpost.toml")
    with open(conf, "w") as f:
        f.write(f'[server]\nlisten = ["127.0.0.1:{port}"]\nmax_connections = 4096\n'
                f'[storage]\nroot = "{dir}/storage"\n[registry]\nname = "{name}"\n'
                f'[parent]\nurl = "{parent}"\n[log]\nlevel = "{log_level}"\n{extra}')
    return _start(name, [bin_path, "serve", "--config", conf], port, dir, "server", ok=ok)


def start_distribution(dir: str, name: str, proxy_remote: str = "", access_log: bool = False) -> Server:
    """Debian's CNCF distribution (docker-registry): filesystem storage in dir;
    with proxy_remote a pull-through cache of it. Its access log (stdout) is
    kept only where it is counted (the parent)."""
    os.makedirs(os.path.join(dir, "storage"), exist_ok=True)
    port = free_port()
    lines = [
        "version: 0.1",
        "log:", "  level: warn", "  formatter: text",
        "  accesslog:", f"    disabled: {'false' if access_log else 'true'}",
        "storage:", "  filesystem:", f"    rootdirectory: {dir}/storage",
        "  maintenance:", "    uploadpurging:", "      enabled: false",
        "http:", f"  addr: 127.0.0.1:{port}", "  secret: outpost-bench-secret",
    ]
    if proxy_remote:
        lines += ["proxy:", f"  remoteurl: {proxy_remote}"]
    conf = os.path.join(dir, "config.yml")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    return _start(name, ["/usr/bin/docker-registry", "serve", conf], port, dir, "server")


def start_nginx(dir: str, name: str, root: str, workers: str, tls: tuple[str, str, int] | None = None) -> Server:
    """nginx serving `root` statically: sendfile, access log off, keep-alive
    without a request limit, the Docker-Distribution-API-Version header Outpost
    sends too. workers: "1" or "auto" (one per CPU). tls = (cert, key, port):
    also HTTPS on that port, TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256 (the suite
    Outpost picks for an EC certificate)."""
    os.makedirs(dir, exist_ok=True)
    port = free_port()
    ssl = ""
    if tls:
        ssl = (f"  server {{\n    listen 127.0.0.1:{tls[2]} ssl;\n    root {root};\n"
               f"    ssl_certificate {tls[0]};\n    ssl_certificate_key {tls[1]};\n"
               f"    ssl_protocols TLSv1.2;\n    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;\n  }}\n")
    conf = os.path.join(dir, "nginx.conf")
    temp = "".join(f"  {k}_temp_path {dir}/{k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(conf, "w") as f:
        f.write(f"""worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000000;
{temp}  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    add_header Docker-Distribution-API-Version registry/2.0;
  }}
{ssl}}}
""")
    # Any answer from / means it is up (the root has no index: 403/404).
    return _start(name, ["nginx", "-p", dir, "-c", conf, "-g", "daemon off;"], port, dir, "server",
                  path="/", ok=(200, 403, 404))
