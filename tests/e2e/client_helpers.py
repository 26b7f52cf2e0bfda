"""Real container clients for the e2e tests (issue #17): dockerd, containerd
(ctr), podman and skopeo, run as root inside a network namespace that has
only loopback, so nothing they do can reach the internet or collide with
another test's ports, and pointed at an Outpost through the recipes shipped
in conf/clients/.

    with loopback_netns():                       # this process and its children
        with DockerRegistry() as parent, Outpost(cfg) as op:
            with dockerd_in_netns(tmp, mirrors=[op.url]) as dk:
                dk.docker("pull", "library/app:v1")

    with containerd_in_netns(tmp) as cd:
        cd.ctr("images", "pull", "--hosts-dir", hosts_dir, "docker.io/library/app:v1")

loopback_netns() moves the calling thread (the test's main thread) into a new
network namespace with `lo` up and moves it back on exit; everything started
inside the block (Outpost, docker-registry, dockerd, ...) lives there and
127.0.0.1 is private to it. dockerd_in_netns()/containerd_in_netns() enter
one themselves when the caller has not. Each daemon runs in its own mount
namespace too (`unshare -m`), with a temp dir bound over /etc/docker for
dockerd (daemon.json, certs.d/<host:port>/ca.crt, key.json), so nothing on
the host is touched and every mount the daemon makes vanishes with it.

skip_reason() says why these tests cannot run here (not root, no
unshare); the tests then skip with that reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest
from typing import Any, Iterator, Mapping

from harness import (KEEP_TMP, REPO, DockerRegistry, Layout, Outpost, ProcessFailed, http, make_oci_layout,
                     push_layout, scaled, tail, wait_until)

CLONE_NEWNET = 0x40000000
CONF_CLIENTS = os.path.join(REPO, "conf", "clients")
RECIPE_HOST = "outpost.lan:5000"   # the placeholder address in conf/clients/*
# Debian's docker.io CLI (the one .ci/install-deps installs), not whatever
# `docker` comes first on PATH
DOCKER_CLI = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else (shutil.which("docker") or "docker")

# the platform the clients pick from a multi-platform image on this machine
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
HOST_PLATFORM = f"linux/{HOST_ARCH}"

_netns_depth = [0]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def skip_reason() -> str | None:
    """Why the client tests cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "needs root: dockerd, containerd and network namespaces (unshare -n)"
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "unshare(1) or ip(8) missing (util-linux, iproute2)"
    missing = [b for b in ("dockerd", "containerd", "ctr", "podman", "skopeo") if not shutil.which(b)]
    if missing:
        # .ci/install-deps installs them: a CI machine without them is broken
        raise FileNotFoundError(f"{', '.join(missing)} missing: run .ci/install-deps")
    try:
        p = subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare -n -m failed: {e}"
    if p.returncode != 0:
        return f"unshare -n -m is not possible here: {p.stderr.strip()}"
    return None


def recipe(name: str, host: str) -> str:
    """The text of conf/clients/<name> with the placeholder Outpost address
    (outpost.lan:5000) replaced by `host`: tests use the shipped recipes."""
    with open(os.path.join(CONF_CLIENTS, name)) as f:
        return f.read().replace(RECIPE_HOST, host)


@contextlib.contextmanager
def loopback_netns() -> Iterator[None]:
    """The calling thread (and every process it starts) in a fresh network
    namespace with only `lo`, up. Nested uses share the outer namespace."""
    if _netns_depth[0]:
        _netns_depth[0] += 1
        try:
            yield
        finally:
            _netns_depth[0] -= 1
        return
    libc = _libc()
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"unshare(CLONE_NEWNET): {os.strerror(e)}")
        _netns_depth[0] = 1
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
            yield
        finally:
            _netns_depth[0] = 0
            if libc.setns(orig, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, f"setns back to the original network namespace: {os.strerror(e)}")
    finally:
        os.close(orig)


def add_loopback_address(addr: str) -> None:
    """Adds addr (e.g. "10.99.0.1") to `lo` in the current loopback_netns().
    Docker treats 127.0.0.0/8 as an insecure registry (HTTPS without
    verification, then HTTP), so a test of TLS verification with a CA
    (Dockerd(ca_files=...)) must serve on an address like this one."""
    if not _netns_depth[0]:
        raise AssertionError("add_loopback_address() outside loopback_netns() would change the host")
    subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", "lo"], check=True, timeout=10)


def _kill_group(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM to proc's process group, then SIGKILL when it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # what the daemon started in other sessions (containerd under dockerd has
    # Pdeathsig, but be sure): anything left in the group goes too
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _kill_pidfile(path: str) -> None:
    try:
        with open(path) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Daemon:
    """A root daemon in its own session and mount namespace (`unshare -m`),
    stderr to log_path; `setup` is a shell snippet run in that namespace
    before the daemon is exec'ed (bind mounts)."""

    def __init__(self, tmp: str, name: str):
        os.makedirs(tmp, exist_ok=True)
        self.tmp = tmp
        self.name = name
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.proc: subprocess.Popen | None = None
        self._log = None

    def _spawn(self, argv: list[str], setup: str = "") -> None:
        script = (setup + "\n" if setup else "") + 'exec "$@"'
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-ec", script, self.name, *argv],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True, cwd=self.tmp)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise ProcessFailed(f"{self.name} exited with status {self.proc.returncode if self.proc else None}:\n"
                                f"{self.log_tail()}")

    def log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None


class Dockerd(Daemon):
    """Debian's dockerd with vfs storage and everything (data root, exec
    root, pid file, API socket, /etc/docker) in a temp dir.

    mirrors : daemon.json "registry-mirrors" (e.g. ["http://127.0.0.1:5000"])
    insecure: daemon.json "insecure-registries"
    ca_files: {"host:port": "/path/ca.pem"} installed as
              /etc/docker/certs.d/<host:port>/ca.crt (as an operator would)
    daemon_json: extra daemon.json keys (merged last)
    daemon_json_text: the daemon.json text verbatim (a shipped recipe);
              the other daemon.json arguments are then ignored
    """

    def __init__(self, tmp: str, *, mirrors: list[str] = (), insecure: list[str] = (),
                 ca_files: Mapping[str, str] | None = None, daemon_json: Mapping[str, Any] | None = None,
                 daemon_json_text: str | None = None, startup_timeout: float = 60.0):
        super().__init__(tmp, "dockerd")
        self.etc = os.path.join(tmp, "etc-docker")
        self.data_root = os.path.join(tmp, "data")
        self.exec_root = os.path.join(tmp, "exec")
        self.sock = os.path.join(tmp, "docker.sock")
        self.cli_config = os.path.join(tmp, "cli")
        for d in (self.etc, self.data_root, self.exec_root, self.cli_config):
            os.makedirs(d, exist_ok=True)
        if daemon_json_text is None:
            cfg: dict[str, Any] = {}
            if mirrors:
                cfg["registry-mirrors"] = list(mirrors)
            if insecure:
                cfg["insecure-registries"] = list(insecure)
            cfg.update(daemon_json or {})
            daemon_json_text = json.dumps(cfg, indent=2)
        self.daemon_json_path = os.path.join(self.etc, "daemon.json")
        with open(self.daemon_json_path, "w") as f:
            f.write(daemon_json_text)
        for hostport, ca in (ca_files or {}).items():
            d = os.path.join(self.etc, "certs.d", hostport)
            os.makedirs(d, exist_ok=True)
            shutil.copyfile(ca, os.path.join(d, "ca.crt"))
        self.startup_timeout = startup_timeout

    def start(self) -> "Dockerd":
        argv = ["dockerd", "--config-file", self.daemon_json_path,
                "--data-root", self.data_root, "--exec-root", self.exec_root,
                "--pidfile", os.path.join(self.tmp, "dockerd.pid"),
                "-H", "unix://" + self.sock,
                "--storage-driver", "vfs", "--bridge", "none",
                "--iptables=false", "--ip-masq=false", "--userland-proxy=false"]
        # /etc/docker/certs.d is where dockerd looks for registry CAs; a bind
        # mount in dockerd's own mount namespace keeps the host's untouched
        self._spawn(argv, setup=f"mount --bind '{self.etc}' /etc/docker")

        def up() -> bool:
            self.check_alive()
            return os.path.exists(self.sock) and self.docker("version", "--format", "{{.Server.Version}}",
                                                             check=False, timeout=10).returncode == 0

        wait_until(up, self.startup_timeout, interval=0.1,
                   message=lambda: f"dockerd to answer on {self.sock}; log:\n{self.log_tail()}")
        return self

    def docker(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Runs the docker CLI against this daemon (its own client config)."""
        env = {**os.environ, "DOCKER_HOST": "unix://" + self.sock, "DOCKER_CONFIG": self.cli_config}
        cmd = [DOCKER_CLI, *args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=scaled(timeout), env=env)
        except subprocess.TimeoutExpired as ex:
            raise AssertionError(f"{' '.join(cmd)} timed out; dockerd log:\n{self.log_tail()}") from ex
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}\n"
                                 f"dockerd log:\n{self.log_tail()}")
        return p

    def inspect(self, ref: str) -> dict:
        return json.loads(self.docker("image", "inspect", ref).stdout)[0]

    def stop(self) -> None:
        super().stop()
        _kill_pidfile(os.path.join(self.exec_root, "containerd", "containerd.pid"))


class Containerd(Daemon):
    """containerd with a temp root, state and config, its socket in the temp
    dir; only the plugins `ctr images pull` needs (no CRI, so no CNI)."""

    def __init__(self, tmp: str, startup_timeout: float = 30.0):
        super().__init__(tmp, "containerd")
        self.root = os.path.join(tmp, "root")
        self.state = os.path.join(tmp, "state")
        self.sock = os.path.join(tmp, "containerd.sock")
        self.config_path = os.path.join(tmp, "config.toml")
        self.startup_timeout = startup_timeout
        with open(self.config_path, "w") as f:
            f.write(f'''version = 2
root = "{self.root}"
state = "{self.state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
''')

    def start(self) -> "Containerd":
        self._spawn(["containerd", "--config", self.config_path])

        def up() -> bool:
            self.check_alive()
            return os.path.exists(self.sock) and self.ctr("version", check=False, timeout=10).returncode == 0

        wait_until(up, self.startup_timeout, interval=0.1,
                   message=lambda: f"containerd to answer on {self.sock}; log:\n{self.log_tail()}")
        return self

    def ctr(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
        cmd = ["ctr", "--address", self.sock, *args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=scaled(timeout))
        except subprocess.TimeoutExpired as ex:
            raise AssertionError(f"{' '.join(cmd)} timed out; containerd log:\n{self.log_tail()}") from ex
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
        return p

    def content(self, digest: str) -> bytes:
        """The bytes containerd's content store holds under digest."""
        return subprocess.run(["ctr", "--address", self.sock, "content", "get", digest],
                              capture_output=True, timeout=scaled(60), check=True).stdout


@contextlib.contextmanager
def _daemon_in_netns(d: Daemon, keep: bool) -> Iterator[Daemon]:
    with loopback_netns():
        try:
            d.start()
            yield d
        except BaseException:
            print(f"# {d.name} log (tail):\n{d.log_tail()}", file=sys.stderr)
            raise
        finally:
            d.stop()
            if not keep:
                shutil.rmtree(d.tmp, ignore_errors=True)


def _tmpdir(tmp: str | None, prefix: str) -> tuple[str, bool]:
    if tmp is not None:
        return tmp, True
    d = tempfile.mkdtemp(prefix=prefix)
    if KEEP_TMP:
        print(f"# keeping {d}", file=sys.stderr)
    return d, KEEP_TMP


@contextlib.contextmanager
def dockerd_in_netns(tmp: str | None = None, **kw) -> Iterator[Dockerd]:
    """A running Dockerd (keyword arguments as Dockerd) inside
    loopback_netns(); stopped (process group killed) and its temp dir removed
    on exit. A given `tmp` is used and left in place."""
    d, keep = _tmpdir(tmp, "dockerd-e2e-")
    with _daemon_in_netns(Dockerd(d, **kw), keep) as dk:
        yield dk


@contextlib.contextmanager
def containerd_in_netns(tmp: str | None = None, **kw) -> Iterator[Containerd]:
    d, keep = _tmpdir(tmp, "containerd-e2e-")
    with _daemon_in_netns(Containerd(d, **kw), keep) as cd:
        yield cd


# --------------------------------------------------------------------------
# podman (no daemon)

def podman(tmp: str, *args: str, registries_conf: str | None = None, check: bool = True,
           timeout: float = 120.0) -> subprocess.CompletedProcess:
    """`podman` as root with vfs storage, its root/runroot/tmpdir under tmp,
    no systemd (cgroupfs, file events) and, when given, CONTAINERS_REGISTRIES_CONF."""
    base = ["podman", "--root", os.path.join(tmp, "root"), "--runroot", os.path.join(tmp, "rr"),
            "--tmpdir", os.path.join(tmp, "libpod"), "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    os.makedirs(tmp, exist_ok=True)
    env = {**os.environ, "CONTAINERS_CONF": os.path.join(tmp, "containers.conf")}
    if not os.path.exists(env["CONTAINERS_CONF"]):
        with open(env["CONTAINERS_CONF"], "w") as f:
            f.write("")
    if registries_conf is not None:
        env["CONTAINERS_REGISTRIES_CONF"] = registries_conf
    cmd = [*base, *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=scaled(timeout), env=env)
    except subprocess.TimeoutExpired as ex:
        raise AssertionError(f"{' '.join(cmd)} timed out: {ex.stderr}") from ex
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p


# --------------------------------------------------------------------------
# what the parent and Outpost saw

def blob_gets(requests: list[tuple[str, str, int]]) -> dict[str, int]:
    """{digest: number of GETs} of blobs in a docker-registry access log."""
    out: dict[str, int] = {}
    for m, p, _s in requests:
        if m == "GET" and "/blobs/sha256:" in p:
            d = p.split("/blobs/", 1)[1].split("?", 1)[0]
            out[d] = out.get(d, 0) + 1
    return out


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as {"name{labels}": value} (comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, val = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[key.strip()] = float(val)
    return out


# --------------------------------------------------------------------------
# the scenario every client test shares

def parent_and_mirror_config(parent_url: str) -> dict:
    """Outpost with the local parent both as [parent] (what Docker's
    registry-mirrors and images named after Outpost reach) and as the
    [[upstream]] named docker.io (what containerd's ?ns=docker.io and the
    docker.io/ path prefix reach), as a site whose parent chain ends at
    Docker Hub would configure it."""
    return {
        "parent": {"url": parent_url, "connect_timeout": "2s", "timeout": "10s"},
        "upstream": [{"name": "docker.io", "url": parent_url, "library_prefix": True,
                      "connect_timeout": "2s", "timeout": "10s"}],
        "cache": {"tag_ttl": "0s", "revalidate_wait": "1s"},
    }


class ClientCase(unittest.TestCase):
    """One loopback-only network namespace per test class, holding a parent
    (docker-registry) seeded with a two-platform, three-layer image as
    `library/<HUB_NAME>:v1` and `<DIRECT_REPO>:v1`, and an Outpost
    (cls.op) in front of it. cls.lay is the image (harness.Layout);
    cls.native its manifest for this machine's platform (what the clients
    here pick)."""

    HUB_NAME = "e2e-app"
    DIRECT_REPO = "e2e/app"
    TAG = "v1"

    @classmethod
    def setUpClass(cls):
        reason = skip_reason()
        if reason:
            raise unittest.SkipTest(reason)
        cls._stack = contextlib.ExitStack()
        cls.addClassCleanup(cls._stack.close)
        cls.tmp = cls._stack.enter_context(tempfile.TemporaryDirectory(prefix="client-e2e-"))
        cls._stack.enter_context(loopback_netns())
        files_a = {"etc/outpost-e2e.txt": b"pulled through outpost by a real client\n"}
        files_b = {"usr/share/e2e/data.bin": os.urandom(200 * 1024)}
        cls.lay: Layout = make_oci_layout(os.path.join(cls.tmp, "src"), layers=[files_a, files_b],
                                          tag=cls.TAG, platforms=[("linux", "amd64"), ("linux", "arm64", "v8")])
        natives = [im for im in cls.lay.images if im.platform["architecture"] == HOST_ARCH]
        if not natives:
            raise unittest.SkipTest(f"the test image has no {HOST_PLATFORM} variant for the clients to pick")
        cls.native = natives[0]
        cls.parent = cls._stack.enter_context(DockerRegistry())
        push_layout(cls.lay, cls.parent.hostport, "library/" + cls.HUB_NAME)
        push_layout(cls.lay, cls.parent.hostport, cls.DIRECT_REPO)
        cls.op = cls._stack.enter_context(Outpost(parent_and_mirror_config(cls.parent.url)))

    # -- what the image is
    def diff_ids(self) -> list[str]:
        cfg = json.loads(self.lay.blobs[self.native.config_digest])
        return cfg["rootfs"]["diff_ids"]

    def native_blobs(self) -> list[str]:
        return [self.native.config_digest, *self.native.layer_digests]

    # -- what the parent and Outpost saw
    def assert_parent_sent_each_blob_once(self) -> None:
        gets = blob_gets(self.parent.requests())
        self.assertTrue(gets, "the parent sent no blob at all")
        for d in self.lay.blobs:
            self.assertLessEqual(gets.get(d, 0), 1, f"the parent sent {d} {gets.get(d, 0)} times: {gets}")

    def metrics(self) -> dict[str, float]:
        r = http("GET", self.op.url + "/metrics")
        self.assertEqual(r.status, 200)
        return parse_metrics(r.body.decode())

    def op_requests(self, since: int = 0) -> list[dict[str, str]]:
        """Outpost's msg=request log records (method, path, status, ...)."""
        return [r for r in self.op.log_records() if r.get("msg") == "request"][since:]

    def served_by_outpost(self, records: list[dict[str, str]], digest: str) -> bool:
        return any(r.get("status") == "200" and r.get("method") == "GET" and r.get("path", "").endswith(digest)
                   for r in records)

    def say(self, what: str, text: str) -> None:
        """Prints what a client showed (quoted in docs/operations.md)."""
        print(f"# {what}: {text.strip()}", file=sys.stderr, flush=True)
