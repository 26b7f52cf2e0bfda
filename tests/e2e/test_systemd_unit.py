"""Packaging (issue #17): `meson install` with DESTDIR places the binary, the
systemd unit, the sysusers.d entry and the example configuration; the unit
passes `systemd-analyze verify` and `systemd-analyze security --offline=yes`
rates it 2.0 or lower (it runs as a dedicated user)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import scaled

BUILD = os.environ.get("OUTPOST_BUILD_ROOT", "")
ANALYZE = shutil.which("systemd-analyze")


def find(root: str, suffix: str) -> str:
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if p.endswith(suffix):
                return p
    raise AssertionError(f"nothing installed ending in {suffix} under {root}")


@unittest.skipUnless(BUILD and os.path.isdir(BUILD), "OUTPOST_BUILD_ROOT (the meson build dir) is not set")
class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dest = tempfile.mkdtemp(prefix="outpost-destdir-")
        cls.addClassCleanup(shutil.rmtree, cls.dest, True)
        r = subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild", "--quiet", "--destdir", cls.dest],
                           capture_output=True, text=True, timeout=scaled(300))
        if r.returncode != 0:
            raise AssertionError(f"meson install failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        cls.unit = find(cls.dest, "/systemd/system/outpost.service")
        with open(cls.unit) as f:
            cls.unit_text = f.read()
        m = re.search(r"^ExecStart=(\S+) serve --config (\S+)$", cls.unit_text, re.M)
        assert m, cls.unit_text
        cls.exec_path, cls.config_path = m.group(1), m.group(2)

    def test_files_are_where_the_unit_says(self):
        binary = self.dest + self.exec_path
        self.assertTrue(os.access(binary, os.X_OK), f"{binary} (ExecStart) not installed")
        r = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("outpost "))
        example = find(self.dest, "/share/doc/outpost/outpost.toml.example")
        r = subprocess.run([binary, "config", "--config", example], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        sysusers = find(self.dest, "/sysusers.d/outpost.conf")
        with open(sysusers) as f:
            self.assertRegex(f.read(), r"(?m)^u outpost ", "the user the unit runs as")
        self.assertIn("User=outpost", self.unit_text)
        self.assertIn("WatchdogSec=30s", self.unit_text)
        self.assertIn("Type=notify", self.unit_text)
        self.assertNotRegex(self.unit_text, r"@[a-z]+@", "an unsubstituted @var@")

    @unittest.skipUnless(ANALYZE, "systemd-analyze is not installed")
    def test_systemd_analyze_verify(self):
        # verify checks that ExecStart's binary exists, on this host (with
        # --root it would look for every unit, sysinit.target too, in the
        # DESTDIR tree): a copy of the unit names the installed binary by
        # its DESTDIR path, the rest unchanged.
        with tempfile.TemporaryDirectory(prefix="outpost-verify-") as tmp:
            unit = os.path.join(tmp, "outpost.service")
            with open(unit, "w") as f:
                f.write(self.unit_text.replace(f"ExecStart={self.exec_path} ",
                                               f"ExecStart={self.dest}{self.exec_path} "))
            r = subprocess.run([ANALYZE, "verify", unit], capture_output=True, text=True, timeout=scaled(120))
            out = (r.stdout + r.stderr).strip()
            print("# systemd-analyze verify: " + (out.replace("\n", "\n#   ") or "(no complaint)"))
            self.assertEqual(r.returncode, 0, out)
            self.assertNotIn("outpost.service:", out, "a complaint about the unit file")

    @unittest.skipUnless(ANALYZE, "systemd-analyze is not installed")
    def test_systemd_analyze_security_exposure_at_most_2(self):
        h = subprocess.run([ANALYZE, "--help"], capture_output=True, text=True, timeout=30)
        if "--offline" not in h.stdout:
            self.skipTest("this systemd-analyze has no --offline (systemd < 250)")
        r = subprocess.run([ANALYZE, "security", "--offline=yes", f"--root={self.dest}", "--no-pager", self.unit],
                           capture_output=True, text=True, timeout=scaled(120))
        out = r.stdout + r.stderr
        m = re.search(r"Overall exposure level for outpost\.service: ([0-9.]+)", out)
        self.assertIsNotNone(m, out[-3000:])
        score = float(m.group(1))
        print(f"# systemd-analyze security: exposure {score}")
        self.assertLessEqual(score, 2.0, out[-4000:])


if __name__ == "__main__":
    unittest.main()
