"""`outpost config --config F` prints the effective configuration as TOML:
every key, [[upstream]] tables included, so that its output read back as a
config file is the same configuration (issue #13)."""

import os
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


if __name__ == "__main__":
    unittest.main()
