"""HTTPS listeners (issue #16): a test CA and server certificate made here
with openssl; curl, skopeo and podman verify them (tls-verify on); a wrong
name, an untrusted CA and TLS 1.1 are refused; a plain HTTP request on the
HTTPS port gets a clear 400; a client stuck in its handshake blocks nobody;
SIGHUP swaps the certificate for new connections while a kept-alive one goes
on; a 64 MiB blob streams byte-identical with the server's RSS flat."""

import hashlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (Outpost, free_port, make_oci_layout, random_layer, rss_kb, run_outpost, scaled, sha256_digest,
                     skopeo, to_toml, wait_until)
from registry_helpers import Client


def run(*cmd: str, timeout: float = 60.0, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=scaled(timeout), **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def make_ca(d: str, name: str) -> tuple[str, str]:
    key, crt = os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}.pem")
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    run("openssl", "req", "-x509", "-new", "-key", key, "-subj", f"/CN={name}", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", "-out", crt)
    return crt, key


def make_server_cert(d: str, ca: tuple[str, str], serial: str, name: str) -> tuple[str, str]:
    key, csr, crt = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "pem"))
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    run("openssl", "req", "-new", "-key", key, "-subj", "/CN=localhost", "-out", csr)
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial", serial,
        "-days", "2", "-extfile", ext, "-out", crt)
    return crt, key


def peer_serial(port: int, cafile: str) -> int:
    """Serial of the certificate a new connection sees (openssl s_client, verified)."""
    p = run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
            "-CAfile", cafile, "-verify_return_error", "-brief", input="", check=False)
    assert "Verification: OK" in p.stderr, p.stderr
    x = run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", cafile, input="", check=False)
    pem = x.stdout[x.stdout.index("-----BEGIN CERTIFICATE-----"):x.stdout.index("-----END CERTIFICATE-----") + 25]
    s = run("openssl", "x509", "-noout", "-serial", input=pem).stdout.strip()
    return int(s.split("=", 1)[1], 16)


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="outpost-tls-")
        d = cls.tmp = cls._tmp.name
        cls.ca = make_ca(d, "ca")
        cls.other_ca = make_ca(d, "other-ca")
        crt, key = make_server_cert(d, cls.ca, "0x1001", "server")
        cls.cert, cls.key = os.path.join(d, "live.pem"), os.path.join(d, "live.key")
        shutil.copy(crt, cls.cert)
        shutil.copy(key, cls.key)
        cls.next_cert = make_server_cert(d, cls.ca, "0x2002", "next")
        # skopeo/podman --cert-dir: the CA as *.crt
        cls.cert_dir = os.path.join(d, "certs.d")
        os.mkdir(cls.cert_dir)
        shutil.copy(cls.ca[0], os.path.join(cls.cert_dir, "ca.crt"))
        cls.tls_port = free_port()
        cls.op = Outpost(config={
            "server": {"header_timeout": "3s"},
            "tls": {"listen": [f"127.0.0.1:{cls.tls_port}"], "cert": cls.cert, "key": cls.key},
        })
        cls.op.start()
        cls.base = f"https://localhost:{cls.tls_port}"

    @classmethod
    def tearDownClass(cls):
        cls.op.stop()
        cls._tmp.cleanup()

    def ctx(self) -> ssl.SSLContext:
        c = ssl.create_default_context(cafile=self.ca[0])
        return c

    def curl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run("curl", "-sS", "--cacert", self.ca[0], *args, check=check, timeout=120)

    def test_1_curl_v2_and_blob_with_alpn_http11(self):
        data = os.urandom(300_000)
        digest = Client(self.op.url).push_blob("e2e/tls", data)
        p = self.curl("-v", "-o", "/dev/null", "-w", "%{http_code}", self.base + "/v2/")
        self.assertEqual(p.stdout, "200")
        self.assertIn("ALPN: server accepted http/1.1", p.stderr)
        self.assertIn("TLSv1.2", p.stderr)
        out = os.path.join(self.tmp, "blob.out")
        p = self.curl("-o", out, "-w", "%{http_code}", f"{self.base}/v2/e2e/tls/blobs/{digest}")
        self.assertEqual(p.stdout, "200")
        with open(out, "rb") as f:
            got = f.read()
        self.assertEqual(got, data)
        self.assertEqual(sha256_digest(got), digest)

    def test_2_wrong_name_untrusted_ca_and_tls11_refused(self):
        p = self.curl("--resolve", f"wrong.example:{self.tls_port}:127.0.0.1",
                      f"https://wrong.example:{self.tls_port}/v2/", check=False)
        self.assertEqual(p.returncode, 60, p.stderr)  # peer certificate cannot be authenticated
        p = run("curl", "-sS", "--cacert", self.other_ca[0], self.base + "/v2/", check=False)
        self.assertEqual(p.returncode, 60, p.stderr)
        # TLS 1.1 (OpenSSL 3 allows it only at security level 0): refused.
        p = run("openssl", "s_client", "-connect", f"127.0.0.1:{self.tls_port}", "-tls1_1",
                "-cipher", "DEFAULT@SECLEVEL=0", input="", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Cipher is (NONE)", p.stdout)  # an alert, no session
        # A CBC suite on TLS 1.2: refused (ECDHE + AEAD only).
        p = run("openssl", "s_client", "-connect", f"127.0.0.1:{self.tls_port}", "-tls1_2",
                "-cipher", "ECDHE-ECDSA-AES128-SHA256", input="", check=False)
        self.assertNotEqual(p.returncode, 0)
        # TLS 1.2 with ECDHE-ECDSA-AES128-GCM: accepted.
        p = run("openssl", "s_client", "-connect", f"127.0.0.1:{self.tls_port}", "-tls1_2",
                "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-CAfile", self.ca[0], input="", check=False)
        self.assertIn("ECDHE-ECDSA-AES128-GCM-SHA256", p.stdout)

    def test_3_plain_http_on_the_tls_port_gets_a_clear_400(self):
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", self.tls_port), timeout=5) as s:
                s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
                got = b""
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    got += b
            self.assertTrue(got.startswith(b"HTTP/1.1 400 "), got[:200])
            self.assertIn(b"https://", got)
        lines = [l for l in self.op.log_text().splitlines() if "plain HTTP request on an HTTPS listener" in l]
        self.assertEqual(sum("level=warn" in l for l in lines), 1, lines)

    def test_4_a_stalled_handshake_blocks_nobody_and_times_out(self):
        stalled = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", self.tls_port), timeout=10)
            s.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello that never finishes
            stalled.append(s)
        try:
            t0 = time.monotonic()
            p = self.curl("-o", "/dev/null", "-w", "%{http_code}", self.base + "/v2/")
            self.assertEqual(p.stdout, "200")
            self.assertLess(time.monotonic() - t0, scaled(5))
            # header_timeout (3 s) bounds the handshake: the server closes them.
            for s in stalled:
                s.settimeout(scaled(10))
                self.assertEqual(s.recv(100), b"")
        finally:
            for s in stalled:
                s.close()

    def test_5_sighup_new_cert_for_new_connections_kept_alive_keeps_working(self):
        first = peer_serial(self.tls_port, self.ca[0])
        conn = http.client.HTTPSConnection("localhost", self.tls_port, context=self.ctx(), timeout=10)
        conn.request("GET", "/v2/")
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        old_der = conn.sock.getpeercert(binary_form=True)
        shutil.copy(self.next_cert[0], self.cert + ".tmp")
        shutil.copy(self.next_cert[1], self.key + ".tmp")
        os.replace(self.cert + ".tmp", self.cert)
        os.replace(self.key + ".tmp", self.key)
        self.op.send_signal(signal.SIGHUP)
        wait_until(lambda: "tls certificate reloaded" in self.op.log_text(), timeout=10)
        self.assertEqual(peer_serial(self.tls_port, self.ca[0]), 0x2002)
        self.assertEqual(first, 0x1001)
        conn.request("GET", "/v2/")  # the same TCP and TLS connection
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertEqual(conn.sock.getpeercert(binary_form=True), old_der)
        conn.close()
        # A bad file: the reload fails, the current certificate stays.
        with open(self.cert, "w") as f:
            f.write("garbage\n")
        self.op.send_signal(signal.SIGHUP)
        wait_until(lambda: "tls certificate reload failed" in self.op.log_text(), timeout=10)
        self.assertEqual(peer_serial(self.tls_port, self.ca[0]), 0x2002)
        shutil.copy(self.next_cert[0], self.cert)

    def test_6_skopeo_push_and_pull_over_https_with_verification(self):
        lay = make_oci_layout(os.path.join(self.tmp, "src"), layers=[random_layer(2_000_000, seed=5)], tag="v1")
        dest = f"docker://localhost:{self.tls_port}/e2e/skopeo:v1"
        skopeo("copy", "--dest-cert-dir", self.cert_dir, "--dest-tls-verify=true", lay.ref, dest)
        out = os.path.join(self.tmp, "out")
        skopeo("copy", "--src-cert-dir", self.cert_dir, "--src-tls-verify=true", dest, f"oci:{out}:v1")
        for digest, data in lay.blobs.items():
            p = os.path.join(out, "blobs", "sha256", digest.split(":", 1)[1])
            if os.path.exists(p):
                with open(p, "rb") as f:
                    self.assertEqual(f.read(), data, digest)
        got = skopeo("inspect", "--cert-dir", self.cert_dir, "--tls-verify=true", "--raw", dest).stdout
        self.assertEqual(sha256_digest(got.encode()), lay.top_digest)
        # Without the CA: refused.
        p = skopeo("inspect", "--tls-verify=true", "--raw", dest, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("certificate", p.stderr)

    def test_7_podman_pull_over_https(self):
        if shutil.which("podman") is None:
            self.skipTest("podman not installed")
        lay = make_oci_layout(os.path.join(self.tmp, "psrc"), layers=[random_layer(100_000, seed=6)], tag="v1")
        ref = f"localhost:{self.tls_port}/e2e/podman:v1"
        skopeo("copy", "--dest-cert-dir", self.cert_dir, lay.ref, "docker://" + ref)
        root = os.path.join(self.tmp, "podman")
        cmd = ["podman", "--root", os.path.join(root, "root"), "--runroot", os.path.join(root, "run"),
               "--storage-driver", "vfs", "pull", "--cert-dir", self.cert_dir, "--tls-verify=true", ref]
        p = run(*cmd, check=False, timeout=180)
        if p.returncode != 0 and "certificate" not in p.stderr and "x509" not in p.stderr and \
                "Outpost" not in p.stderr and "registry" not in p.stderr.lower():
            self.skipTest(f"podman cannot run here: {p.stderr.strip()[-300:]}")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.strip(), p.stderr)  # the image id

    def test_8_big_blob_over_https_byte_identical_rss_flat(self):
        size = 64 * 1024 * 1024
        chunk = hashlib.shake_256(b"tls-big").digest(1 << 20)
        data = chunk * 64
        digest = Client(self.op.url).push_blob("e2e/big", data)
        del data
        conn = http.client.HTTPSConnection("localhost", self.tls_port, context=self.ctx(), timeout=60)
        conn.request("GET", "/v2/")  # warm: the connection's buffers exist
        conn.getresponse().read()
        base = rss_kb(self.op.pid)
        peak = base
        conn.request("GET", f"/v2/e2e/big/blobs/{digest}")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        h = hashlib.sha256()
        n = 0
        while True:
            b = r.read(256 * 1024)
            if not b:
                break
            h.update(b)
            n += len(b)
            peak = max(peak, rss_kb(self.op.pid))
        conn.close()
        self.assertEqual(n, size)
        self.assertEqual("sha256:" + h.hexdigest(), digest)
        self.assertLess(peak - base, 8 * 1024, f"RSS grew {peak - base} KiB while streaming")

    def test_9_cold_blob_filled_from_the_parent_streams_byte_identical_over_https(self):
        # A blob not yet cached streams from the fill's session file while it
        # grows: over TLS those file regions are read off the loop (no
        # sendfile). Two clients on the same cold blob, one joining the fill.
        size = 24 * 1024 * 1024
        chunk = hashlib.shake_256(b"tls-fill").digest(1 << 20)
        data = chunk * (size >> 20)
        digest = Client(self.op.url).push_blob("e2e/cold", data)
        del data
        port = free_port()
        child = Outpost(config={"parent": {"url": self.op.url, "connect_timeout": "2s", "timeout": "10s"},
                                "tls": {"listen": [f"127.0.0.1:{port}"], "cert": self.cert, "key": self.key}})
        child.start()
        try:
            results: list[tuple[int, int, str]] = []

            def fetch():
                conn = http.client.HTTPSConnection("localhost", port, context=self.ctx(), timeout=60)
                conn.request("GET", f"/v2/e2e/cold/blobs/{digest}")
                r = conn.getresponse()
                h, n = hashlib.sha256(), 0
                while b := r.read(256 * 1024):
                    h.update(b)
                    n += len(b)
                conn.close()
                results.append((r.status, n, "sha256:" + h.hexdigest()))

            threads = [threading.Thread(target=fetch) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(scaled(120))
            self.assertEqual(sorted(results), [(200, size, digest)] * 2)
            # A range of the now cached blob, across the first MiB's end.
            conn = http.client.HTTPSConnection("localhost", port, context=self.ctx(), timeout=60)
            conn.request("GET", f"/v2/e2e/cold/blobs/{digest}", headers={"Range": "bytes=1048570-1048581"})
            r = conn.getresponse()
            self.assertEqual((r.status, r.read()), (206, (chunk * 2)[1048570:1048582]))
            conn.close()
        finally:
            child.stop()


class TlsConnectionLimit(unittest.TestCase):
    """The connection limit's refusal on the HTTPS port is a TLS alert: the
    plain-HTTP 503 it used to write reached TLS clients as "wrong version
    number", as if the port spoke plain HTTP."""

    def test_full_server_refuses_tls_with_an_alert_not_plain_http(self):
        with tempfile.TemporaryDirectory(prefix="outpost-tls-full-") as d:
            ca = make_ca(d, "ca")
            crt, key = make_server_cert(d, ca, "0x4004", "s")
            tls_port = free_port()
            with Outpost(config={"server": {"max_connections": 1, "idle_timeout": "30s", "header_timeout": "30s"},
                                 "tls": {"listen": [f"127.0.0.1:{tls_port}"], "cert": crt, "key": key}}) as op:
                held: list[socket.socket] = []

                def admit() -> bool:
                    # A plain connection mid-request (never shed) fills the server.
                    c = socket.create_connection(("127.0.0.1", op.port), timeout=5)
                    c.sendall(b"GET /v2/ HTTP/1.1\r\n")
                    c.settimeout(0.3)
                    try:
                        if c.recv(1, socket.MSG_PEEK):
                            c.close()
                            return False
                    except socket.timeout:
                        pass
                    held.append(c)
                    return True
                try:
                    wait_until(admit, timeout=10, message="the one admitted connection")
                    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as s:
                        got = b""
                        while len(got) < 64:
                            b = s.recv(64)
                            if not b:
                                break
                            got += b
                    # One fatal internal_error alert record, then the close.
                    self.assertEqual(got, b"\x15\x03\x03\x00\x02\x02\x50")
                    # A real TLS client reports the alert.
                    ctx = ssl.create_default_context(cafile=ca[0])
                    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
                        with self.assertRaises((ssl.SSLError, ConnectionResetError)) as cm:
                            with ctx.wrap_socket(raw, server_hostname="localhost"):
                                pass
                    if isinstance(cm.exception, ssl.SSLError):
                        self.assertIn("INTERNAL_ERROR", str(cm.exception))
                finally:
                    for c in held:
                        c.close()


class TlsStartChecks(unittest.TestCase):
    """Bad [tls] files stop the start with a message naming the key."""

    def start_fails(self, cert: str, key: str) -> str:
        with tempfile.TemporaryDirectory(prefix="outpost-tls-bad-") as d:
            conf = os.path.join(d, "o.toml")
            with open(conf, "w") as f:
                f.write(to_toml({"server": {"listen": [f"127.0.0.1:{free_port()}"]},
                                 "tls": {"listen": [f"127.0.0.1:{free_port()}"], "cert": cert, "key": key},
                                 "storage": {"root": os.path.join(d, "root")}}))
            p = run_outpost("serve", "--config", conf, cwd=d)
            self.assertNotEqual(p.returncode, 0, p.stderr)
            return p.stderr

    def test_unreadable_mismatched_and_expired(self):
        with tempfile.TemporaryDirectory(prefix="outpost-tls-files-") as d:
            ca = make_ca(d, "ca")
            crt, key = make_server_cert(d, ca, "0x3003", "s")
            _, other_key = make_server_cert(d, ca, "0x3004", "t")
            err = self.start_fails(os.path.join(d, "missing.pem"), key)
            self.assertIn("tls.cert: cannot read", err)
            err = self.start_fails(crt, other_key)
            self.assertIn("tls.key", err)
            self.assertIn("does not match", err)
            err = self.start_fails(crt, crt)
            self.assertIn("tls.key", err)
            # Expired: starts, with a warning naming tls.cert.
            exp = os.path.join(d, "expired.pem")
            shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "net", "data",
                                     "expired.pem"), exp)
            data_key = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "net", "data",
                                    "server.key")
            with Outpost(config={"tls": {"listen": [f"127.0.0.1:{free_port()}"], "cert": exp,
                                         "key": data_key}}) as op:
                wait_until(lambda: "tls certificate loaded" in op.log_text(), timeout=10)
                self.assertIn("expired", op.log_text())


if __name__ == "__main__":
    unittest.main()
