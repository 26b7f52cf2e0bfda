"""Docker's own login flow against Outpost with [auth] and [tls] (issue #16),
with the real dockerd (Debian's docker.io, vfs storage) as root in a
network namespace with only loopback:

- Outpost serves HTTPS on 10.99.0.1 (Docker never verifies certificates for
  127.0.0.0/8, so a loopback alias is needed for a real check) with a
  certificate from a CA the test makes with openssl, installed the way an
  operator would: /etc/docker/certs.d/<host:port>/ca.crt;
- `docker login` with a client token, then `docker pull` inside the token's
  scope gives the parent's image; a repository outside the scope is refused;
  `docker push` inside it works; after `docker logout` a pull is refused;
- Docker followed the challenge to the https token endpoint (never plain
  http) and Outpost saw Basic only on /token.
"""

import json
import os
import socket
import subprocess
import sys

from client_helpers import ClientCase, add_loopback_address, dockerd_in_netns, parent_and_mirror_config
from harness import Outpost, run_outpost

ALIAS = "10.99.0.1"


def openssl(*args: str) -> None:
    p = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)}: {p.stderr}")


def make_ca_and_cert(d: str) -> tuple[str, str, str]:
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca_key)
    openssl("req", "-x509", "-new", "-key", ca_key, "-subj", "/CN=e2e site CA", "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            "-out", ca_crt)
    key, csr, crt, ext = (os.path.join(d, f"server.{x}") for x in ("key", "csr", "pem", "ext"))
    with open(ext, "w") as f:
        f.write(f"subjectAltName=IP:{ALIAS},DNS:outpost.lan\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/CN=outpost.lan", "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-set_serial", "7", "-days", "2",
            "-extfile", ext, "-out", crt)
    return ca_crt, crt, key


def free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


class DockerLogin(ClientCase):
    def test_docker_login_pull_push_inside_scope_refused_outside(self):
        add_loopback_address(ALIAS)
        d = os.path.join(self.tmp, "tls")
        os.makedirs(d, exist_ok=True)
        ca, crt, key = make_ca_and_cert(d)
        port = free_port(ALIAS)
        host = f"{ALIAS}:{port}"
        cfg = parent_and_mirror_config(self.parent.url)
        cfg["auth"] = {"enabled": True}
        cfg["tls"] = {"listen": [host], "cert": crt, "key": key}
        with Outpost(cfg) as op:
            p = run_outpost("token", "create", "docker-user", "--scope", "e2e/**:pull,push", "--json",
                            "--config", op.config_path)
            self.assertEqual(p.returncode, 0, p.stderr)
            secret = json.loads(p.stdout)["secret"]
            with dockerd_in_netns(os.path.join(self.tmp, "dockerd"), ca_files={host: ca}) as dk:
                # Without credentials: refused, nothing pulled.
                r = dk.docker("pull", f"{host}/{self.DIRECT_REPO}:{self.TAG}", check=False)
                self.assertNotEqual(r.returncode, 0)
                self.say("docker pull without login", r.stderr)
                self.assertRegex(r.stderr.lower(), r"unauthorized|authentication required|no basic auth")

                r = dk.docker("login", host, "-u", "docker-user", "-p", secret)
                self.assertIn("Login Succeeded", r.stdout)
                bad = dk.docker("login", host, "-u", "docker-user", "-p", "wrong", check=False)
                self.assertNotEqual(bad.returncode, 0)
                self.say("docker login with a wrong secret", bad.stderr)

                ref = f"{host}/{self.DIRECT_REPO}:{self.TAG}"
                dk.docker("pull", ref)
                info = dk.inspect(ref)
                self.assertEqual(info["Id"], self.native.config_digest)
                self.assertEqual(info["RootFS"]["Layers"], self.diff_ids())

                # Outside the token's scope: refused, with Docker's words for it.
                out = dk.docker("pull", f"{host}/library/{self.HUB_NAME}:{self.TAG}", check=False)
                self.assertNotEqual(out.returncode, 0)
                self.say("docker pull outside the token's scope", out.stderr)
                self.assertRegex(out.stderr.lower(), r"denied|unauthorized|insufficient_scope|not found")

                # Push inside the scope.
                pushed = f"{host}/e2e/pushed:v1"
                dk.docker("tag", ref, pushed)
                dk.docker("push", pushed)
                tags = subprocess.run(["curl", "-sS", "--cacert", ca, "-u", f"docker-user:{secret}",
                                       f"https://{host}/v2/e2e/pushed/tags/list"],
                                      capture_output=True, text=True, timeout=30)
                self.assertEqual(json.loads(tags.stdout).get("tags"), ["v1"], tags.stdout + tags.stderr)

                # After logout: refused again.
                dk.docker("logout", host)
                dk.docker("rmi", ref, pushed)
                r = dk.docker("pull", ref, check=False)
                self.assertNotEqual(r.returncode, 0)

            # What Outpost saw: Docker took a bearer token from the https
            # realm; Basic went only to /token.
            recs = [r for r in op.log_records() if r.get("msg") == "request"]
            token_gets = [r for r in recs if r.get("path") == "/token"]
            self.assertTrue(any(r.get("status") == "200" for r in token_gets), token_gets)
            print(f"# requests seen: {len(recs)}, /token: {len(token_gets)}", file=sys.stderr)
