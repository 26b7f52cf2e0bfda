"""`outpost config --config F` prints the effective configuration as TOML:
every key, [[upstream]] tables included, so that its output read back as a
config file is the same configuration (issue #13)."""

import os
import subprocess
import tempfile
import tomllib
import unittest

from harness import run_outpost

CONFIG = """
[server]
listen = ["127.0.0.1:5999"]
[parent]
url = "https://parent.example:5000"
[[upstream]]
name = "docker.io"
url = "https://registry-1.docker.io"
library_prefix = true
timeout = "2m"
[[upstream]]
name = "quay.io"
url = "https://quay.io"
insecure = true
"""

UPSTREAM_KEYS = {"name", "url", "token_file", "ca_file", "insecure", "library_prefix",
                 "offline", "connect_timeout", "timeout"}


class ConfigCommand(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="outpost-config-")
        self.addCleanup(self.tmp.cleanup)

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def config(self, path: str) -> str:
        p = run_outpost("config", "--config", path)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def test_upstream_tables_are_printed_with_every_key(self):
        out = tomllib.loads(self.config(self.write("in.toml", CONFIG)))
        ups = out.get("upstream")
        self.assertIsInstance(ups, list, "no [[upstream]] tables in `outpost config` output")
        self.assertEqual([u["name"] for u in ups], ["docker.io", "quay.io"])
        for u in ups:
            self.assertEqual(set(u), UPSTREAM_KEYS)
        self.assertEqual(ups[0]["url"], "https://registry-1.docker.io")
        self.assertIs(ups[0]["library_prefix"], True)
        self.assertEqual(ups[0]["timeout"], "2m")
        self.assertEqual(ups[0]["connect_timeout"], "10s")  # the default, spelled out
        self.assertIs(ups[1]["insecure"], True)
        self.assertIs(ups[1]["library_prefix"], False)
        self.assertEqual(out["parent"]["url"], "https://parent.example:5000")

    def test_output_reparses_to_the_same_effective_config(self):
        first = self.config(self.write("in.toml", CONFIG))
        # Fed back as a config file, it gives the same dump (the comment line
        # naming the source file aside) and the same TOML values.
        second = self.config(self.write("in.toml", first))
        self.assertEqual(first, second)
        self.assertEqual(tomllib.loads(first), tomllib.loads(second))
        self.assertEqual(len(tomllib.loads(second)["upstream"]), 2)


# Issue #15: each bad [sync] value is refused when `outpost serve` starts:
# non-zero exit, and stderr names the file, the line and the key.
# (key, value as TOML source, words the reason must contain)
BAD_SYNC = [
    ("schedule", '"0 2 * *"', "has 4 fields"),
    ("schedule", '"0 0 2 * * *"', "has 6 fields"),
    ("schedule", '"60 2 * * *"', "minute: 60 is out of range (0 .. 59)"),
    ("schedule", '"0 24 * * *"', "hour: 24 is out of range (0 .. 23)"),
    ("schedule", '"0 2 0 * *"', "day-of-month: 0 is out of range (1 .. 31)"),
    ("schedule", '"0 2 32 * *"', "day-of-month: 32 is out of range (1 .. 31)"),
    ("schedule", '"0 2 * 13 *"', "month: 13 is out of range (1 .. 12)"),
    ("schedule", '"0 2 * * 8"', "day-of-week: 8 is out of range (0 .. 7)"),
    ("schedule", '"*/0 2 * * *"', "minute: step 0 is out of range"),
    ("schedule", '"0 5-3 * * *"', 'hour: range "5-3" is reversed'),
    ("schedule", '"0 0 31 2 *"', "never matches"),
    ("window", '"30m"', '"30m" is out of range (1h .. 7d)'),
    ("window", '"8d"', '"8d" is out of range (1h .. 7d)'),
    ("message_ttl", '"0d"', '"0d" is out of range (1d .. 90d)'),
    ("message_ttl", "0", "is not a duration"),
    ("message_ttl", '"91d"', '"91d" is out of range (1d .. 90d)'),
    ("timezone", '"Europe/Berlin"', 'is not one of "utc", "local"'),
    ("pull_through", '"sometimes"', 'is not one of "always", "in_window", "never"'),
    ("keep", '["factory/*:v*", "Factory/app"]', 'repository part "Factory" is not a valid name component'),
    ("keep", '["factory/*:"]', "the tag part"),
    ("keep", '["factory//app"]', "empty path component"),
]


class BadSyncConfigRefusedAtStart(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="outpost-badsync-")
        self.addCleanup(self.tmp.cleanup)

    def serve(self, text: str) -> tuple[subprocess.CompletedProcess, str]:
        path = os.path.join(self.tmp.name, "bad.toml")
        with open(path, "w") as f:
            f.write(text)
        # Refused while loading the config: it exits long before the
        # timeout (which would raise, failing the case, if it served).
        return run_outpost("serve", "--config", path, timeout=20.0, cwd=self.tmp.name), path

    def test_each_bad_value_exits_non_zero_naming_file_line_and_key(self):
        for key, value, reason in BAD_SYNC:
            with self.subTest(key=key, value=value):
                # The key sits on line 4, below [server] and the [sync] header.
                p, path = self.serve(f'[server]\nlisten = ["127.0.0.1:1"]\n[sync]\n{key} = {value}\n')
                self.assertNotEqual(p.returncode, 0, p.stderr)
                self.assertIn(f"{path}:4: sync.{key}: ", p.stderr)
                self.assertIn(reason, p.stderr)
                self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "var")),
                                 "storage was created before the config was refused")

    def test_good_sync_values_are_printed_by_outpost_config(self):
        path = os.path.join(self.tmp.name, "good.toml")
        with open(path, "w") as f:
            f.write('[sync]\nschedule = "30 22 * * fri"\nwindow = "2d"\ntimezone = "local"\n'
                    'pull_through = "in_window"\nmessage_ttl = "30d"\nreplay_deletes = true\n'
                    'keep = ["factory/*:v*", "base/alpine:3.*"]\n')
        p = run_outpost("config", "--config", path)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = tomllib.loads(p.stdout)["sync"]
        self.assertEqual(out, {"schedule": "30 22 * * fri", "window": "2d", "timezone": "local",
                               "pull_through": "in_window", "message_ttl": "30d",
                               "replay_deletes": True, "keep": ["factory/*:v*", "base/alpine:3.*"]})

    def test_defaults_are_continuous_sync(self):
        p = run_outpost("config")
        self.assertEqual(p.returncode, 0, p.stderr)
        out = tomllib.loads(p.stdout)["sync"]
        self.assertEqual(out["schedule"], "")
        self.assertEqual(out["window"], "1h")
        self.assertEqual(out["message_ttl"], "7d")
        self.assertEqual(out["pull_through"], "always")
        self.assertEqual(out["keep"], [])

    def test_hidden_ttl_knob_is_applied_and_warned_about(self):
        # OUTPOST_TEST_MESSAGE_TTL: a test-only override of sync.message_ttl
        # (below its 1d minimum) so replay tests can watch an entry expire.
        p = run_outpost("config", env={"OUTPOST_TEST_MESSAGE_TTL": "2s"})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(tomllib.loads(p.stdout)["sync"]["message_ttl"], "2s")
        self.assertIn("OUTPOST_TEST_MESSAGE_TTL", p.stderr)
        self.assertIn("level=warn", p.stderr)


if __name__ == "__main__":
    unittest.main()
