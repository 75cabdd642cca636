#!/usr/bin/env python3
"""Run the cc-proxy integration tests.

  python3 tests/integration/run.py [--list] [--keep] [NAME-FILTER ...]

One line per test (PASS/FAIL name, and the reason of a failure), then exactly one
summary line `integration: N passed, M failed`. Exit status 1 when any test failed.
Filters are substrings of test names (or module names); a test runs when any matches.
Environment: CCPROXY_BIN_DIR (default build/bin under the repository root).
"""

import importlib
import os
import signal
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True  # keep the work tree clean
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

MODULES = ["test_mock", "test_relay", "test_headers", "test_errors", "test_cancel", "test_lifecycle",
           "test_cgi", "test_concurrency", "test_adapters", "test_codex", "test_logs"]
DEFAULT_TIMEOUT = 60.0


def collect():
    tests = []
    for modname in MODULES:
        if not os.path.exists(os.path.join(HERE, modname + ".py")):
            continue
        mod = importlib.import_module(modname)
        fns = [(getattr(mod, n).__code__.co_firstlineno, n, getattr(mod, n))
               for n in dir(mod) if n.startswith("test_") and callable(getattr(mod, n))]
        for _, name, fn in sorted(fns):
            tests.append((modname, name, fn))
    return tests


def reason_of(exc):
    if isinstance(exc, AssertionError):
        return str(exc) or "assertion failed"
    tb = traceback.extract_tb(exc.__traceback__)
    where = ""
    for fr in reversed(tb):
        if os.path.dirname(os.path.abspath(fr.filename)) == HERE:
            where = " (%s:%d)" % (os.path.basename(fr.filename), fr.lineno)
            break
    return "%s: %s%s" % (type(exc).__name__, exc, where)


def run_one(fn, suite):
    box = {}

    def target():
        try:
            box["note"] = fn(suite)
            box["ok"] = True
        except BaseException as e:  # noqa: B902 - report everything
            box["exc"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    limit = getattr(fn, "timeout", DEFAULT_TIMEOUT)
    deadline = time.monotonic() + limit
    while t.is_alive() and time.monotonic() < deadline:
        t.join(0.2)
    if t.is_alive():
        return False, "timed out after %.0fs" % limit
    if box.get("ok"):
        note = box.get("note")
        return True, note if isinstance(note, str) else ""
    return False, reason_of(box["exc"])


def raise_nofile():
    """Many concurrent streams: lift the soft open-files limit to the hard one."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    opts = {a for a in argv if a.startswith("--")}
    if "--help" in opts or "-h" in args:
        print(__doc__)
        return 0
    tests = collect()
    if args:
        tests = [t for t in tests if any(f in t[1] or f == t[0] for f in args)]
    if "--list" in opts:
        for mod, name, _ in tests:
            print("%s  (%s)" % (name, mod))
        return 0

    def on_term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)

    raise_nofile()
    suite = harness.Suite()
    passed = failed = 0
    t_start = time.monotonic()
    interrupted = False
    try:
        for mod, name, fn in tests:
            t0 = time.monotonic()
            ok, why = run_one(fn, suite)
            dt = time.monotonic() - t0
            if ok:
                passed += 1
                print("PASS %s (%.1fs)%s" % (name, dt, " " + why if why else ""), flush=True)
            else:
                failed += 1
                print("FAIL %s (%.1fs): %s" % (name, dt, " ".join(why.split())[:1500]), flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted", flush=True)
    finally:
        keep = "--keep" in opts
        suite.close(keep=keep)
        if keep:
            print("kept %s" % suite.tmp, file=sys.stderr)
    if interrupted:
        failed += len(tests) - passed - failed
    sys.stderr.write("integration run took %.1fs\n" % (time.monotonic() - t_start))
    sys.stderr.flush()
    print("integration: %d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed or interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
