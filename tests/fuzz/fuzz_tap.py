#!/usr/bin/env python3
"""One libFuzzer target as a TAP test (meson suite 'fuzz', .ci/run counts it).

    fuzz_tap.py <fuzzer binary> <target> <tests/fuzz source dir> <build dir>

  ok 1 - fuzz <target> regress (N inputs)   every file of regress/<target>/
                                            runs once and must not crash
  ok 2 - fuzz <target> 60s                  fuzzing from corpus/<target>/ for
                                            OUTPOST_FUZZ_SECONDS (default 60)

New corpus entries go to a temporary directory (the repo's seed corpus is
only read); a crash leaves its input under <build dir>/artifacts/<target>/ and
the sanitizer report on stderr. See docs/fuzzing.md for what to do with it.
"""
import os
import shutil
import subprocess
import sys
import tempfile


def tail(text: str, n: int = 80) -> str:
    return "\n".join(text.splitlines()[-n:])


def main() -> int:
    binary, target, src, build = sys.argv[1:5]
    seconds = int(os.environ.get("OUTPOST_FUZZ_SECONDS", "60"))
    env = dict(os.environ)
    # Sanitizer reports end the run with a stack; leaks are checked too.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:print_summary=1")
    env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1:print_summary=1")
    regress = os.path.join(src, "regress", target)
    corpus = os.path.join(src, "corpus", target)
    dictionary = os.path.join(src, "dict", target + ".dict")
    artifacts = os.path.join(build, "artifacts", target) + "/"
    os.makedirs(artifacts, exist_ok=True)
    common = [f"-artifact_prefix={artifacts}", "-timeout=25", "-rss_limit_mb=2048"]
    if os.path.exists(dictionary):
        common.append(f"-dict={dictionary}")
    failed = 0
    print("1..2", flush=True)

    inputs = sorted(os.path.join(regress, f) for f in os.listdir(regress)) if os.path.isdir(regress) else []
    inputs = [f for f in inputs if os.path.isfile(f) and not f.endswith(".md")]
    if inputs:
        p = subprocess.run([binary, *common, *inputs], env=env, capture_output=True, text=True,
                           errors="replace")
        ok = p.returncode == 0
    else:
        ok = True
    print(f"{'ok' if ok else 'not ok'} 1 - fuzz {target} regress ({len(inputs)} inputs)", flush=True)
    if not ok:
        failed += 1
        sys.stderr.write(tail(p.stderr) + "\n")

    work = tempfile.mkdtemp(prefix=f"outpost-fuzz-{target}-")
    try:
        dirs = [work] + ([corpus] if os.path.isdir(corpus) else [])
        p = subprocess.run([binary, *common, f"-max_total_time={seconds}", "-print_final_stats=1", *dirs],
                           env=env, capture_output=True, text=True, errors="replace")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = p.stderr.splitlines()
    progress = [l for l in lines if l[:1] == "#" and l[1:2].isdigit()]
    stats = progress[-1:] + [l for l in lines if l.startswith(("stat::number_of_executed_units",
                                                               "stat::peak_rss_mb"))]
    for line in stats:
        print(f"# {line}")
    ok = p.returncode == 0
    print(f"{'ok' if ok else 'not ok'} 2 - fuzz {target} {seconds}s", flush=True)
    if not ok:
        failed += 1
        sys.stderr.write(tail(p.stderr, 120) + "\n")
        crashes = [f for f in os.listdir(artifacts)] if os.path.isdir(artifacts) else []
        sys.stderr.write(f"fuzz {target}: inputs left in {artifacts}: {crashes}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
