#!/usr/bin/env python3
"""Run the cc-proxy integration tests.

  python3 tests/integration/run.py [--list] [--keep] [NAME-FILTER ...]

One line per test (PASS/FAIL name, and the reason of a failure; SKIP lines for tests
that do not apply, not counted), then exactly one summary line
`integration: N passed, M failed`. Exit status 1 when any test failed.

The server-dependent modules (PER_SERVER) run once per web server, their test names
suffixed [nginx] / [lighttpd]; the others run once. Filters are substrings of the full
test names (so `[lighttpd]` selects the lighttpd pass) or module names; a test runs when
any matches.
Environment: CCPROXY_BIN_DIR (default build/bin under the repository root),
CCPROXY_WEB_SERVERS (default "nginx lighttpd").
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

MODULES = ["test_mock", "test_relay", "test_headers", "test_errors", "test_nonstream", "test_cancel",
           "test_lifecycle", "test_cgi", "test_concurrency", "test_adapters", "test_codex", "test_deploy",
           "test_scaleout", "test_tls", "test_makerun", "test_scale",
           "test_pool", "test_metrics", "test_limits",
           "test_logs"]  # test_logs last: it stops every stack and scans their stderr
# Run once per web server of CCPROXY_WEB_SERVERS: each test of these modules talks to the
# stack of the suite's current web server (Suite.web), so the same cases prove both.
PER_SERVER = {"test_relay", "test_headers", "test_errors", "test_limits", "test_nonstream", "test_cancel",
              "test_lifecycle", "test_concurrency", "test_adapters", "test_codex", "test_makerun", "test_scale"}
# Tests whose subject is one web server's own behaviour where the other differs in a way
# the spec allows; the other server's counterpart (test_deploy.py) names its expectation.
# A test function may also carry `servers = ("nginx",)` itself.
SERVER_ONLY = {
    "test_502_nginx_responder_down": (
        "nginx", "lighttpd restarts a killed responder itself and answers 503 while it cannot "
                 "(test_lighttpd_responder_down_503_then_restarted)"),
    "test_codex_502_nginx_responder_down": (
        "nginx", "lighttpd restarts a killed responder itself and answers 503 while it cannot "
                 "(test_lighttpd_responder_down_503_then_restarted)"),
    "test_codex_400_nginx_bad_headers": (
        "nginx", "lighttpd's 400 for a request it cannot parse comes before any per-port config, so it "
                 "is the Claude shape on the Codex port too (test_lighttpd_codex_400_unparsable_is_claude_shape)"),
}
_HALF_CLOSE = ("nginx", "lighttpd 1.4 takes a client's FIN while nothing flows for a half-close and notices the "
                        "client only at its next write, so the upstream closes within 1 s of the next byte, not of the "
                        "close (test_lighttpd_client_gone_in_silence_detected_at_next_byte)")
for _n in ("test_disconnect_during_silence_aborts_upstream", "test_disconnect_before_headers_aborts_upstream",
           "test_disconnect_at_gate_nonstream_wait", "test_disconnect_nonstream_during_silence_aborts_upstream",
           "test_codex_disconnect_cancels_upstream"):
    SERVER_ONLY[_n] = _HALF_CLOSE
SERVER_ONLY["test_upstream_not_taken_from_request"] = (
    "nginx", "lighttpd refuses an absolute-form target with its own 400 (test_lighttpd_absolute_form_target_refused)")
DEFAULT_TIMEOUT = 60.0


def collect(webs):
    """[(module, display name, fn, web or None, skip reason or None)]"""
    tests = []
    for modname in MODULES:
        if not os.path.exists(os.path.join(HERE, modname + ".py")):
            continue
        mod = importlib.import_module(modname)
        fns = [(getattr(mod, n).__code__.co_firstlineno, n, getattr(mod, n))
               for n in dir(mod) if n.startswith("test_") and callable(getattr(mod, n))]
        if modname not in PER_SERVER:
            for _, name, fn in sorted(fns):
                tests.append((modname, name, fn, None, None))
            continue
        for web in webs:
            for _, name, fn in sorted(fns):
                only = getattr(fn, "servers", None)
                why = None
                if name in SERVER_ONLY and web != SERVER_ONLY[name][0]:
                    why = SERVER_ONLY[name][1]
                elif only is not None and web not in only:
                    why = "%s only" % "/".join(only)
                tests.append((modname, "%s[%s]" % (name, web), fn, web, why))
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
        except harness.Skip as e:
            box["skip"] = str(e)
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
    if "skip" in box:
        return None, box["skip"]
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
    try:
        webs = harness.web_servers()
    except harness.HarnessError as e:
        print("run.py: %s" % e, file=sys.stderr)
        return 2
    tests = collect(webs)
    if args:
        tests = [t for t in tests if any(f in t[1] or f == t[0] for f in args)]
    if "--list" in opts:
        for mod, name, _, _, why in tests:
            print("%s  (%s)%s" % (name, mod, "  [skipped: %s]" % why if why else ""))
        return 0

    def on_term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)

    raise_nofile()
    suite = harness.Suite()
    passed = failed = skipped = 0
    t_start = time.monotonic()
    interrupted = False
    try:
        for mod, name, fn, web, why in tests:
            if why:
                skipped += 1
                print("SKIP %s: %s" % (name, why), flush=True)
                continue
            suite.web = web or "nginx"
            t0 = time.monotonic()
            ok, why = run_one(fn, suite)
            dt = time.monotonic() - t0
            if ok is None:
                skipped += 1
                print("SKIP %s: %s" % (name, why), flush=True)
            elif ok:
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
        failed += len(tests) - passed - failed - skipped
    sys.stderr.write("integration run took %.1fs (web servers: %s)\n" % (time.monotonic() - t_start, " ".join(webs)))
    sys.stderr.flush()
    print("integration: %d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed or interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
