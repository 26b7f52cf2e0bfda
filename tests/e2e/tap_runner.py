#!/usr/bin/env python3
"""Runs one unittest module (given by file path) and prints TAP on stdout.

    python3 tap_runner.py tests/e2e/test_smoke.py [-k PATTERN]

One TAP line per test method ("ok 3 - test_smoke.Smoke.test_v2"); failures,
errors and subtest failures of a method are "# " comment lines after its
"not ok". Skips are "ok N - name # SKIP reason". Errors outside any test
(import, setUpClass, setUpModule) are their own "not ok" lines. The plan
"1..N" comes last, so a killed run is visibly incomplete. Exit status 0 when
every line is ok, else 1.

Anything the tests print to stdout is redirected to stderr so it cannot
corrupt the TAP stream. Each test has a deadline (E2E_TEST_TIMEOUT seconds,
default 300); when it passes, the test fails with a TimeoutError and a
traceback of where it hung, and its context managers clean up.
"""

from __future__ import annotations

import faulthandler
import importlib.util
import os
import signal
import sys
import time
import traceback
import unittest

TAP = sys.stdout
TEST_TIMEOUT = float(os.environ.get("E2E_TEST_TIMEOUT", "300"))


def _clean(name: str) -> str:
    # '#' starts a TAP directive; keep names on one line
    return " ".join(name.replace("#", "_").split())


class TapResult(unittest.TestResult):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.bad = 0
        self._problems: list[str] = []
        self._skip: str | None = None
        self._xfail = False
        self._started = 0.0

    # -- emit
    def _line(self, ok: bool, name: str, directive: str = "", comments: list[str] = ()) -> None:
        self.n += 1
        if not ok:
            self.bad += 1
        line = f"{'ok' if ok else 'not ok'} {self.n} - {_clean(name)}"
        if directive:
            line += f" # {directive}"
        TAP.write(line + "\n")
        for c in comments:
            for ln in c.rstrip("\n").splitlines():
                TAP.write(f"# {ln}\n")
        TAP.flush()

    @staticmethod
    def _name(test: unittest.TestCase) -> str:
        return test.id()

    # -- per test
    def startTest(self, test):
        super().startTest(test)
        self._problems = []
        self._skip = None
        self._xfail = False
        self._started = time.monotonic()
        print(f"--- start {self._name(test)}", file=sys.stderr, flush=True)
        if TEST_TIMEOUT > 0:
            signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)

    def stopTest(self, test):
        signal.setitimer(signal.ITIMER_REAL, 0)
        super().stopTest(test)
        took = time.monotonic() - self._started
        print(f"--- end {self._name(test)} ({took:.2f}s)", file=sys.stderr, flush=True)
        name = self._name(test)
        if self._problems:
            self._line(False, name, comments=self._problems)
        elif self._skip is not None:
            self._line(True, name, f"SKIP {self._skip}")
        elif self._xfail:
            self._line(True, name + " (expected failure)")
        else:
            self._line(True, name)

    def _is_test(self, test) -> bool:
        return isinstance(test, unittest.TestCase)

    def addError(self, test, err):
        super().addError(test, err)
        if self._is_test(test):
            self._problems.append("ERROR: " + self._exc_info_to_string(err, test))
        else:  # _ErrorHolder: setUpClass/setUpModule/tearDown... failures
            self._line(False, str(test), comments=[self._exc_info_to_string(err, test)])

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._problems.append("FAIL: " + self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "FAIL" if issubclass(err[0], test.failureException) else "ERROR"
            self._problems.append(f"{kind} in subtest {subtest._subDescription()}: "
                                  + self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if self._is_test(test):
            self._skip = reason
        else:
            self._line(True, str(test), f"SKIP {reason}")

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._xfail = True

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._problems.append("unexpected success (test is marked expectedFailure)")


def _on_alarm(signum, frame):
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    raise TimeoutError(f"test exceeded E2E_TEST_TIMEOUT={TEST_TIMEOUT:.0f}s")


def _on_term(signum, frame):
    # meson's timeout sends SIGTERM: unwind so context managers stop servers
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: tap_runner.py TEST_FILE.py [-k PATTERN]...", file=sys.stderr)
        return 2
    path = os.path.abspath(argv[1])
    patterns = [argv[i + 1] for i, a in enumerate(argv) if a == "-k" and i + 1 < len(argv)]
    sys.path.insert(0, os.path.dirname(path))
    sys.stdout = sys.stderr  # tests' prints must not corrupt TAP
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)

    result = TapResult()
    modname = os.path.splitext(os.path.basename(path))[0]
    try:
        spec = importlib.util.spec_from_file_location(modname, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[modname] = mod
        spec.loader.exec_module(mod)
        loader = unittest.TestLoader()
        if patterns:
            loader.testNamePatterns = [p if "*" in p else f"*{p}*" for p in patterns]
        suite = loader.loadTestsFromModule(mod)
    except BaseException:  # noqa: BLE001 - reported as a TAP failure
        result._line(False, f"{modname} (import)", comments=[traceback.format_exc()])
        TAP.write(f"1..{result.n}\n")
        return 1

    try:
        suite.run(result)
    except KeyboardInterrupt as e:
        result._line(False, f"{modname} (interrupted)", comments=[repr(e)])
    if result.n == 0:
        result._line(False, f"{modname} (no tests found)")
    TAP.write(f"1..{result.n}\n")
    TAP.flush()
    return 0 if result.bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
