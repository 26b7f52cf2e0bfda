"""Access control (issue #16) over plain HTTP (TLS is the TLS listener's test):
client tokens made with `outpost token`, Basic on every request and the
registry token flow (GET /token), scopes per route, and what a caller
outside its scope sees: nothing that tells whether a repository, a tag, a
manifest or a blob exists.

Real clients: skopeo (login, copy --creds) and curl; Docker's own flow
(GET /v2/ -> 401 -> GET /token with Basic -> Bearer on each request) is
imitated step by step with http(), as skopeo does it (dockerd is not
started here).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from harness import Outpost, free_port, http, make_oci_layout, random_layer, run_outpost, sha256_digest, skopeo, \
    skopeo_copy, wait_until
from registry_helpers import Client, curl, oci_error_codes

VOLATILE = {"x-request-id", "date", "location", "docker-upload-uuid", "content-length"}


ATTACK = r"""
import base64, http.client, json, sys, threading, time
url, bad_bearer, me, secs, mode = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
host, port = url.split("//")[1].split(":")
seen, lock, end = {}, threading.Lock(), time.monotonic() + secs
def run(t):
    k = 0
    while time.monotonic() < end:
        k += 1
        if mode == "noise":  # the same load, of ordinary anonymous pulls
            path, hdrs = "/v2/public/base/manifests/1", {}
        elif k % 2:
            path = "/v2/secret/app/manifests/1"
            hdrs = {"Authorization": "Basic " + base64.b64encode(f"line3:guess-{me}-{t}-{k}".encode()).decode()}
        else:
            path, hdrs = "/v2/secret/app/manifests/1", {"Authorization": "Bearer " + bad_bearer}
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        c.request("GET", path, headers=hdrs)
        st = str(c.getresponse().status)
        c.close()
        with lock:
            seen[st] = seen.get(st, 0) + 1
threads = [threading.Thread(target=run, args=(t,)) for t in range(6)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(seen))
"""


def basic(name: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


def bearer(t: str) -> dict:
    return {"Authorization": "Bearer " + t}


def token_cli(op: Outpost, *args: str, check: bool = True):
    p = run_outpost("token", *args, "--config", op.config_path)
    if check and p.returncode != 0:
        raise AssertionError(f"outpost token {args}: {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def create_token(op: Outpost, name: str, *scopes: str, expires: str | None = None) -> str:
    args = ["create", name, "--json"]
    for s in scopes:
        args += ["--scope", s]
    if expires:
        args += ["--expires", expires]
    p = token_cli(op, *args)
    return json.loads(p.stdout)["secret"]


def shape(r) -> tuple:
    """Status, body and headers, without what differs per request."""
    hdrs = sorted((k.lower(), v) for k, v in r.headers.items() if k.lower() not in VOLATILE)
    body = re.sub(rb'"[0-9a-f-]{36}"', b'"UUID"', r.body)
    return r.status, body, hdrs


def challenge_params(h: str) -> dict:
    assert h.startswith("Bearer "), h
    return dict(re.findall(r'(\w+)="([^"]*)"', h))


class AccessControl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="auth-e2e-")
        cls.addClassCleanup(cls._tmp.cleanup)
        cls.tmp = cls._tmp.name
        cls.op = Outpost(config={"auth": {"enabled": True, "anonymous_pull": ["public/**"],
                                          "token_ttl": "1m"}}).__enter__()
        cls.addClassCleanup(cls.op.__exit__, None, None, None)
        cls.other = Outpost(config={"auth": {"enabled": True, "service": "other"}}).__enter__()
        cls.addClassCleanup(cls.other.__exit__, None, None, None)
        op = cls.op
        cls.c = Client(op.url)
        cls.admin = create_token(op, "admin", "**:*")
        cls.line3 = create_token(op, "line3", "factory/line-3/**:pull,push")
        cls.reader = create_token(op, "reader", "factory/**:pull")
        A = basic("admin", cls.admin)
        # Seed, as admin: a secret image, a line-3 image, a public one.
        cls.secret_layer = b"secret layer bytes " * 100
        cls.secret_digest, cls.secret_man = cls._push(A, "secret/app", "1", [cls.secret_layer])
        cls.line3_digest, cls.line3_man = cls._push(A, "factory/line-3/app", "1", [b"line three layer" * 50])
        cls.pub_digest, _ = cls._push(A, "public/base", "1", [b"public layer" * 64])

    @classmethod
    def _push(cls, hdrs, repo, tag, layers):
        def with_auth(method, path, **kw):
            h = dict(kw.pop("headers", {}) or {})
            h.update(hdrs)
            return http(method, cls.op.url + path, headers=h, **kw)
        cfg = json.dumps({"architecture": "amd64", "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        descs = []
        for blob in [cfg] + layers:
            d = sha256_digest(blob)
            r = with_auth("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", body=blob,
                          headers={"Content-Type": "application/octet-stream"})
            assert r.status == 201, (r.status, r.body)
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(blob)})
        man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": dict(descs[0], mediaType="application/vnd.oci.image.config.v1+json"),
               "layers": descs[1:]}
        body = json.dumps(man).encode()
        r = with_auth("PUT", f"/v2/{repo}/manifests/{tag}", body=body,
                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status == 201, (r.status, r.body)
        return sha256_digest(body), body

    def get(self, path, hdrs=None, method="GET"):
        return http(method, self.op.url + path, headers=hdrs or {})

    # -- challenges
    def test_anonymous_challenges_name_the_scope(self):
        r = self.get("/v2/")
        self.assertEqual(r.status, 401)
        p = challenge_params(r.header("WWW-Authenticate"))
        self.assertEqual(p["realm"], f"http://127.0.0.1:{self.op.port}/token")
        self.assertEqual(p["service"], "outpost")
        self.assertEqual(oci_error_codes(r), ["UNAUTHORIZED"])
        cases = [("GET", "/v2/factory/line-3/app/manifests/1", "repository:factory/line-3/app:pull"),
                 ("HEAD", f"/v2/factory/line-3/app/blobs/{self.line3_digest}", "repository:factory/line-3/app:pull"),
                 ("GET", "/v2/factory/line-3/app/tags/list", "repository:factory/line-3/app:pull"),
                 ("POST", "/v2/factory/line-3/app/blobs/uploads/", "repository:factory/line-3/app:pull,push"),
                 ("PUT", "/v2/factory/line-3/app/manifests/2", "repository:factory/line-3/app:pull,push"),
                 ("DELETE", f"/v2/factory/line-3/app/manifests/{self.line3_digest}",
                  "repository:factory/line-3/app:delete")]
        for method, path, scope in cases:
            with self.subTest(method=method, path=path):
                r = self.get(path, method=method)
                self.assertEqual(r.status, 401)
                self.assertEqual(challenge_params(r.header("WWW-Authenticate"))["scope"], scope)
        # Anonymous pull where configured; the catalog shows only that.
        self.assertEqual(self.get("/v2/public/base/manifests/1").status, 200)
        self.assertEqual(self.get("/healthz").status, 200)

    def test_anonymous_catalog_lists_only_public(self):
        # With anonymous_pull patterns, an anonymous catalog lists what they match.
        r = self.get("/v2/_catalog")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["repositories"], ["public/base"])
        # Without any, it is challenged like every other route.
        r = http("GET", self.other.url + "/v2/_catalog")
        self.assertEqual(r.status, 401)
        self.assertEqual(challenge_params(r.header("WWW-Authenticate"))["scope"], "registry:catalog:*")

    # -- skopeo, a real client
    def test_skopeo_login_pull_and_push_inside_scope_refused_outside(self):
        authfile = os.path.join(self.tmp, "auth.json")
        host = f"127.0.0.1:{self.op.port}"
        skopeo("login", "--tls-verify=false", "--authfile", authfile, "-u", "line3", "-p", self.line3, host)
        bad = skopeo("login", "--tls-verify=false", "--authfile", os.path.join(self.tmp, "bad.json"),
                     "-u", "line3", "-p", "wrong", host, check=False)
        self.assertNotEqual(bad.returncode, 0)
        dest = os.path.join(self.tmp, "pulled")
        skopeo_copy(f"docker://{host}/factory/line-3/app:1", f"oci:{dest}:1", "--authfile", authfile)
        lay = make_oci_layout(os.path.join(self.tmp, "new"), tag="v1", layers=[random_layer(4096, seed=161)])
        skopeo_copy(lay.ref, f"docker://{host}/factory/line-3/new:v1", "--dest-creds", f"line3:{self.line3}")
        r = self.get("/v2/factory/line-3/new/manifests/v1", basic("reader", self.reader))
        self.assertEqual(r.status, 200)
        self.assertEqual(sha256_digest(r.body), lay.top_digest)
        out = skopeo_copy(lay.ref, f"docker://{host}/factory/line-4/new:v1", "--dest-creds", f"line3:{self.line3}",
                          check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertEqual(self.get("/v2/factory/line-4/new/tags/list", basic("admin", self.admin)).status, 404)
        out = skopeo_copy(f"docker://{host}/secret/app:1", f"oci:{dest}-secret:1", "--src-creds",
                          f"line3:{self.line3}", check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertRegex(out.stderr.lower(), "denied|unauthorized|403|401")
        # reader may pull, not push
        out = skopeo_copy(lay.ref, f"docker://{host}/factory/line-3/other:v1", "--dest-creds",
                          f"reader:{self.reader}", check=False)
        self.assertNotEqual(out.returncode, 0)

    # -- nothing leaks outside the scope
    def test_nothing_leaks_outside_scope(self):
        H = basic("line3", self.line3)
        missing = "sha256:" + "0" * 64
        secret_blob = sha256_digest(self.secret_layer)
        pairs = [  # (held in secret/, not held anywhere): answers must be identical
            ("/v2/secret/app/manifests/1", "/v2/secret/app/manifests/nope"),
            (f"/v2/secret/app/manifests/{self.secret_digest}", f"/v2/secret/app/manifests/{missing}"),
            (f"/v2/secret/app/blobs/{secret_blob}", f"/v2/secret/app/blobs/{missing}"),
            ("/v2/secret/app/tags/list", "/v2/secret/nothing/tags/list"),
            (f"/v2/secret/app/referrers/{self.secret_digest}", f"/v2/secret/nothing/referrers/{missing}"),
        ]
        for held, absent in pairs:
            for method in ("GET", "HEAD"):
                with self.subTest(path=held, method=method):
                    a, b = self.get(held, H, method), self.get(absent, H, method)
                    self.assertEqual(a.status, 403)
                    self.assertNotIn(b"sha256:", a.body)
                    self.assertEqual(shape(a)[0], shape(b)[0])
                    self.assertEqual(shape(a)[2], shape(b)[2])
                    if method == "GET":
                        self.assertEqual(oci_error_codes(a), ["DENIED"])
                        self.assertEqual(a.body.replace(b"secret/app", b"X"), b.body.replace(b"secret/nothing", b"X")
                                         .replace(b"secret/app", b"X"))
        # A blob of secret/ through a repository the caller may read: unknown there.
        a = self.get(f"/v2/factory/line-3/app/blobs/{secret_blob}", H)
        b = self.get(f"/v2/factory/line-3/app/blobs/{missing}", H)
        self.assertEqual(a.status, 404)
        self.assertEqual(oci_error_codes(a), ["BLOB_UNKNOWN"])
        self.assertEqual(shape(a)[0], shape(b)[0])
        self.assertEqual(shape(a)[2], shape(b)[2])
        # Upload start outside the scope.
        r = http("POST", self.op.url + "/v2/secret/app/blobs/uploads/", headers=H)
        self.assertEqual(r.status, 403)
        self.assertEqual(oci_error_codes(r), ["DENIED"])
        # Mount from a repository the caller cannot read: a plain upload,
        # exactly as for a blob that is nowhere.
        m1 = http("POST", self.op.url + f"/v2/factory/line-3/app/blobs/uploads/?mount={secret_blob}&from=secret/app",
                  headers=H)
        m2 = http("POST", self.op.url + f"/v2/factory/line-3/app/blobs/uploads/?mount={missing}&from=secret/app",
                  headers=H)
        self.assertEqual(m1.status, 202, m1.body)
        self.assertEqual(shape(m1), shape(m2))
        self.assertEqual(self.get(f"/v2/factory/line-3/app/blobs/{secret_blob}", H, "HEAD").status, 404)
        # The catalog lists only what the caller may pull.
        r = self.get("/v2/_catalog", H)
        self.assertEqual(r.status, 200)
        repos = r.json()["repositories"]
        self.assertIn("factory/line-3/app", repos)
        self.assertIn("public/base", repos)
        self.assertNotIn("secret/app", repos)
        r = self.get("/v2/_catalog?n=1", H)
        self.assertEqual(r.json()["repositories"], ["factory/line-3/app"])
        # curl, as an operator would look
        cr = curl("-u", f"line3:{self.line3}", self.op.url + "/v2/secret/app/manifests/1")
        self.assertEqual(cr.status, 403)
        cr = curl("-u", f"line3:{self.line3}", self.op.url + "/v2/factory/line-3/app/manifests/1",
                  "-H", "Accept: application/vnd.oci.image.manifest.v1+json")
        self.assertEqual(cr.status, 200)
        self.assertEqual(cr.body, self.line3_man)

    # -- Docker's flow, step by step
    def test_docker_token_flow(self):
        r = self.get("/v2/")
        p = challenge_params(r.header("WWW-Authenticate"))
        # docker login: the realm with Basic and the service, no scope
        t = http("GET", f"{p['realm']}?service={p['service']}&account=line3", headers=basic("line3", self.line3))
        self.assertEqual(t.status, 200, t.body)
        j = t.json()
        self.assertEqual(j["token"], j["access_token"])
        self.assertEqual(j["expires_in"], 60)
        self.assertRegex(j["issued_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(self.get("/v2/", bearer(j["token"])).status, 200)
        # docker pull: 401 names the scope; a token for it; the bearer works
        r = self.get("/v2/factory/line-3/app/manifests/1")
        scope = challenge_params(r.header("WWW-Authenticate"))["scope"]
        t = http("GET", f"{p['realm']}?service=outpost&scope={scope}", headers=basic("line3", self.line3)).json()
        r = self.get("/v2/factory/line-3/app/manifests/1",
                     dict(bearer(t["token"]), Accept="application/vnd.oci.image.manifest.v1+json"))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, self.line3_man)
        # the pull token does not push: 401 insufficient_scope (its owner may), then a wider token works
        r = http("POST", self.op.url + "/v2/factory/line-3/app/blobs/uploads/", headers=bearer(t["token"]))
        self.assertEqual(r.status, 401)
        self.assertEqual(challenge_params(r.header("WWW-Authenticate"))["error"], "insufficient_scope")
        t2 = http("GET", f"{p['realm']}?service=outpost&scope=repository:factory/line-3/app:pull,push",
                  headers=basic("line3", self.line3)).json()
        r = http("POST", self.op.url + "/v2/factory/line-3/app/blobs/uploads/", headers=bearer(t2["token"]))
        self.assertEqual(r.status, 202)
        # a token asked for secret/ is granted nothing there: 403
        t3 = http("GET", f"{p['realm']}?service=outpost&scope=repository:secret/app:pull",
                  headers=basic("line3", self.line3)).json()
        self.assertEqual(self.get("/v2/secret/app/manifests/1", bearer(t3["token"])).status, 403)
        # anonymous token: public only
        t4 = http("GET", f"{p['realm']}?service=outpost&scope=repository:public/base:pull").json()
        self.assertEqual(self.get("/v2/public/base/manifests/1", bearer(t4["token"])).status, 200)
        self.assertEqual(self.get("/v2/factory/line-3/app/manifests/1", bearer(t4["token"])).status, 401)

    # -- refused credentials, and the others' rate meanwhile
    def test_bad_credentials_are_refused_and_do_not_slow_others(self):
        realm = f"{self.op.url}/token"
        good = http("GET", f"{realm}?service=outpost&scope=repository:factory/line-3/app:pull",
                    headers=basic("line3", self.line3)).json()["token"]
        body, sig = good.split(".")
        tampered_sig = body + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        claims["access"] = ["repository:secret/app:pull,push,delete"]
        wide = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        tampered_scope = wide + "." + sig
        o_secret = create_token(self.other, "line3", "**:*")
        foreign = http("GET", f"{self.other.url}/token?service=other&scope=repository:secret/app:pull",
                       headers=basic("line3", o_secret)).json()["token"]
        short = create_token(self.op, "short", "**:pull", expires="1s")
        wait_until(lambda: self.get("/v2/secret/app/manifests/1", basic("short", short)).status == 401,
                   timeout=10, message="the 1s token expires")
        create_token(self.op, "gone", "**:pull")
        token_cli(self.op, "disable", "gone")
        bad = [basic("line3", "wrong"), basic("nobody", "x"), basic("gone", "x"), {"Authorization": "Basic !!"},
               {"Authorization": "Digest x"}, bearer(tampered_sig), bearer(tampered_scope), bearer(foreign),
               bearer("garbage"), basic("short", short)]
        for h in bad:
            with self.subTest(h=h):
                r = self.get("/v2/secret/app/manifests/1", h)
                self.assertEqual(r.status, 401, r.body)
                self.assertEqual(oci_error_codes(r), ["UNAUTHORIZED"])
                self.assertNotIn(b"sha256", r.body)

        # Anonymous-allowed client's rate before and during a guessing attack.
        def rate(seconds: float) -> int:
            n, end = 0, time.monotonic() + seconds
            while time.monotonic() < end:
                if self.get("/v2/public/base/manifests/1").status == 200:
                    n += 1
            return n
        # The anonymous client's rate next to 18 other connections: first
        # ordinary anonymous pulls, then guessing clients (wrong secrets for
        # a real token name: a key derivation each, or a 429; and tampered
        # bearer tokens), as fast as they can. Each in its own process, so
        # they do not compete with the measuring thread for this
        # interpreter's lock. Guesses must cost no more than pulls do.
        def beside(mode: str) -> tuple[int, dict]:
            procs = [subprocess.Popen([sys.executable, "-c", ATTACK, self.op.url, tampered_sig, str(i), "2.5", mode],
                                      stdout=subprocess.PIPE, text=True) for i in range(3)]
            try:
                n = rate(2.0)
            finally:
                outs = [p.communicate(timeout=60)[0] for p in procs]
            seen = {}
            for o in outs:
                for k, v in json.loads(o).items():
                    seen[k] = seen.get(k, 0) + v
            return n, seen
        alone = rate(2.0)
        loaded, noise = beside("noise")
        during, statuses = beside("attack")
        print(f"# anonymous manifest GETs in 2 s: {alone} alone, {loaded} beside 18 pulling connections {noise},"
              f" {during} beside 18 guessing connections {statuses}", file=sys.stderr)
        self.assertTrue(statuses and set(statuses) <= {"401", "429"}, statuses)
        self.assertGreater(during, loaded * 0.5, f"anonymous pulls in 2 s: {alone} alone, {loaded} beside pulls,"
                                                 f" {during} beside guesses {statuses}")
        self.assertIsNone(self.op.proc.poll())
        # The real secret works again once the guesses the server had already
        # read are answered (by design they may get 429 with Retry-After
        # until then, docs/operations.md "Access control"); bounded.
        wait_until(lambda: self.get("/v2/factory/line-3/app/manifests/1", basic("line3", self.line3)).status == 200,
                   timeout=15, message="the real secret is accepted again after the attack")

    def test_refusal_time_does_not_tell_whether_a_name_exists(self):
        # A wrong secret for a real token costs a key derivation before the
        # 401; an unknown name used to be refused at once, so timing the
        # refusals listed the token names. Both are derived now (the unknown
        # one against a dummy salt, through the same bounded queue).
        def refusal_s(name: str) -> float:
            def once():
                t0 = time.monotonic()
                r = self.get("/v2/secret/app/manifests/1", basic(name, "wrong-secret"))
                if r.status == 429:   # the derivation bucket is empty now (another test's guesses)
                    return None
                self.assertEqual(r.status, 401, r.body)
                return time.monotonic() - t0
            return wait_until(once, timeout=20, message=f"a 401 (not 429) for {name}")
        known, unknown = [], []
        for i in range(7):   # interleaved: a change in the machine's load weighs on both
            known.append(refusal_s("line3"))
            unknown.append(refusal_s(f"no-such-token-{i}"))
        known.sort()
        unknown.sort()
        print(f"# refusal times (s), known name: {known}; unknown name: {unknown}", file=sys.stderr)
        # The fastest of each (other load only ever adds time): before, an
        # unknown name's was a few percent of a known one's (0.7 ms vs 16 ms);
        # now both are a derivation (~9 ms of CPU), whose wall time on a
        # loaded machine still varies by 2x between runs.
        self.assertGreater(unknown[0], 0.3 * known[0], (known, unknown))

    def parallel_statuses(self, path: str, hdrs: dict, n: int) -> list:
        """The statuses of n GETs of path sent at once (one connection each)."""
        start = threading.Barrier(n)
        statuses = [None] * n

        def one(i: int) -> None:
            start.wait(timeout=30)
            statuses[i] = self.get(path, hdrs).status

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        return statuses

    def test_parallel_requests_with_one_uncached_login_all_pass(self):
        # A client's parallel requests (a pull's layers) when its login is not
        # cached (first use, or the 60 s cache entry expired): one key
        # derivation answers them all. Before, each started its own and all
        # but 8 were refused 429 "too many credential checks in progress".
        s = create_token(self.op, "burst", "factory/**:pull")
        path = "/v2/factory/line-3/app/manifests/1"
        self.assertEqual(self.parallel_statuses(path, basic("burst", s), 40), [200] * 40)
        # A wrong secret sent in parallel is refused alike: 401, never 200.
        self.assertEqual(self.parallel_statuses(path, basic("burst", "wrong"), 40), [401] * 40)

    def test_disable_and_rotate_hold_at_once(self):
        s = create_token(self.op, "temp", "factory/**:pull")
        H = basic("temp", s)
        self.assertEqual(self.get("/v2/factory/line-3/app/manifests/1", H).status, 200)  # cached now
        t = http("GET", f"{self.op.url}/token?scope=repository:factory/line-3/app:pull", headers=H).json()["token"]
        token_cli(self.op, "disable", "temp")
        self.assertEqual(self.get("/v2/factory/line-3/app/manifests/1", H).status, 401)
        self.assertEqual(self.get("/v2/factory/line-3/app/manifests/1", bearer(t)).status, 401)
        token_cli(self.op, "enable", "temp")
        self.assertEqual(self.get("/v2/factory/line-3/app/manifests/1", H).status, 200)
        p = token_cli(self.op, "rotate", "temp", "--json")
        s2 = json.loads(p.stdout)["secret"]
        self.assertEqual(self.get("/v2/factory/line-3/app/manifests/1", H).status, 401)
        self.assertEqual(self.get("/v2/factory/line-3/app/manifests/1", bearer(t)).status, 401)
        self.assertEqual(self.get("/v2/factory/line-3/app/manifests/1", basic("temp", s2)).status, 200)
        lst = token_cli(self.op, "list", "--json")
        names = [x["name"] for x in json.loads(lst.stdout)["tokens"]]
        self.assertIn("temp", names)
        self.assertNotIn(s2, lst.stdout)
        self.assertIn("asking it at", lst.stderr)
        token_cli(self.op, "delete", "temp")
        self.assertEqual(self.get("/v2/factory/line-3/app/manifests/1", basic("temp", s2)).status, 401)
        self.assertNotEqual(token_cli(self.op, "show", "temp", check=False).returncode, 0)

    def test_admin_endpoint_is_loopback_only_and_not_under_v2(self):
        # From loopback without a token it works (the CLI's path); its answer holds no secret hash.
        r = http("POST", self.op.url + "/outpost/tokens", body=json.dumps({"op": "list"}))
        self.assertEqual(r.status, 200)
        self.assertNotIn(b"hash", r.body)
        self.assertNotIn(b"salt", r.body)


class OfflineCli(unittest.TestCase):
    def test_token_cli_offline_then_server_accepts_it(self):
        op = Outpost(config={"auth": {"enabled": True}})
        op.port = free_port()
        with open(op.config_path, "w") as f:
            f.write(op.config_text())
        p = token_cli(op, "create", "ci", "--scope", "ci/*:pull,push", "--expires", "30d")
        self.assertIn("changing", p.stderr)
        m = re.search(r"secret:\s+(\S+)", p.stdout)
        self.assertTrue(m, p.stdout)
        secret = m.group(1)
        lst = token_cli(op, "list")
        self.assertIn("ci", lst.stdout)
        self.assertIn("ci/*:pull,push", lst.stdout)
        self.assertNotIn(secret, lst.stdout)
        self.assertEqual(token_cli(op, "create", "ci", check=False).returncode, 1)
        self.assertEqual(token_cli(op, "create", "x", "--scope", "ci/*:pul", check=False).returncode, 2)
        with op:
            r = http("POST", op.url + "/v2/ci/app/blobs/uploads/", headers=basic("ci", secret))
            self.assertEqual(r.status, 202)
            r = http("POST", op.url + "/v2/other/app/blobs/uploads/", headers=basic("ci", secret))
            self.assertEqual(r.status, 403)


class AuthOffByDefault(unittest.TestCase):
    def test_anonymous_by_default(self):
        with Outpost() as op:
            self.assertEqual(http("GET", op.url + "/v2/").status, 200)
            self.assertEqual(Client(op.url).start_upload("any/repo").startswith("/v2/any/repo/blobs/uploads/"), True)


if __name__ == "__main__":
    unittest.main()
