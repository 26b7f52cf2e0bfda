"""Smoke: outpost serve starts from a config, answers GET /v2/, and exits 0
on SIGTERM (and on SIGINT)."""

import signal
import unittest

from harness import Outpost, http, run_outpost


class Smoke(unittest.TestCase):
    def test_v2_base_answers_200_with_api_version_header(self):
        with Outpost() as op:
            r = http("GET", op.url + "/v2/")
            self.assertEqual(r.status, 200, r.body[:500])
            self.assertEqual(r.header("Docker-Distribution-API-Version"), "registry/2.0")

    def test_sigterm_exits_0(self):
        op = Outpost(expect_exit=0)
        with op:
            self.assertIsNone(op.proc.poll())
        # __exit__ sent SIGTERM and asserted the exit status
        self.assertEqual(op.returncode, 0)

    def test_sigint_exits_0(self):
        with Outpost() as op:
            code = op.stop(signal.SIGINT)
            self.assertEqual(code, 0)

    def test_version_command(self):
        p = run_outpost("version")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.strip(), "outpost version printed nothing")


if __name__ == "__main__":
    unittest.main()
