"""[sync] bad input (issue #15, "What must be shown", last point): cron
strings with 4 or 6 fields, out-of-range values, a window of 30 min or 8
days, a TTL of 0 or 91 days, a sync.keep pattern with an invalid name:
`outpost serve` refuses each at start, exit status non-zero, with one line
"<file>:<line>: sync.<key>: <reason>" (the format of every config error).
A config using every [sync] key with good values is accepted and printed
back by `outpost config`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import tomllib
import unittest

from harness import free_port, run_outpost
from sync_helpers import requires_sync

HEAD = '[server]\nlisten = ["127.0.0.1:{port}"]\n[storage]\nroot = "{root}"\n[sync]\n'
BAD_LINE = 6   # the line after HEAD

BAD = [
    ("schedule", '"0 3 * *"'),            # 4 fields
    ("schedule", '"0 3 * * * 2026"'),     # 6 fields
    ("schedule", '"60 3 * * *"'),         # minute 0..59
    ("schedule", '"0 24 * * *"'),         # hour 0..23
    ("schedule", '"0 3 32 * *"'),         # day of month 1..31
    ("schedule", '"0 3 * 13 *"'),         # month 1..12
    ("schedule", '"0 3 * * 8"'),          # day of week 0..7
    ("window", '"30m"'),
    ("window", '"8d"'),
    ("message_ttl", '"0s"'),
    ("message_ttl", '"91d"'),
    ("pull_through", '"sometimes"'),
    ("keep", '["Factory/App:v*"]'),       # upper case is not a repository name
    ("keep", '["factory//app:v*"]'),      # empty path component
]

GOOD = ('schedule = "*/15 1-5,22 * * 1-5"\nwindow = "2h"\npull_through = "in_window"\nmessage_ttl = "30d"\n'
        'replay_deletes = true\nkeep = ["factory/*:v*", "base/alpine:3.*"]\n')


@requires_sync
class SyncConfigBadInput(unittest.TestCase):
    def setUp(self):
        t = tempfile.TemporaryDirectory(prefix="sync-config-e2e-")
        self.addCleanup(t.cleanup)
        self.tmp = t.name

    def write(self, body: str) -> str:
        path = os.path.join(self.tmp, "outpost.toml")
        with open(path, "w") as f:
            f.write(HEAD.format(port=free_port(), root=os.path.join(self.tmp, "storage")) + body)
        return path

    def test_each_bad_value_is_refused_at_start_naming_the_key(self):
        for key, value in BAD:
            with self.subTest(key=key, value=value):
                path = self.write(f"{key} = {value}\n")
                try:
                    p = run_outpost("serve", "--config", path, timeout=20)
                except subprocess.TimeoutExpired:
                    self.fail(f"outpost serve started with sync.{key} = {value}")
                self.assertNotEqual(p.returncode, 0, p.stderr)
                self.assertIn(f"{path}:{BAD_LINE}: sync.{key}", p.stderr)
                self.assertEqual(len([l for l in p.stderr.splitlines() if "sync." in l]), 1, p.stderr)

    def test_good_values_are_accepted_and_printed_back(self):
        p = run_outpost("config", "--config", self.write(GOOD))
        self.assertEqual(p.returncode, 0, p.stderr)
        sync = tomllib.loads(p.stdout)["sync"]
        self.assertEqual(sync["schedule"], "*/15 1-5,22 * * 1-5")
        self.assertEqual(sync["window"], "2h")
        self.assertEqual(sync["pull_through"], "in_window")
        self.assertEqual(sync["message_ttl"], "30d")
        self.assertIs(sync["replay_deletes"], True)
        self.assertEqual(sync["keep"], ["factory/*:v*", "base/alpine:3.*"])


if __name__ == "__main__":
    unittest.main()
