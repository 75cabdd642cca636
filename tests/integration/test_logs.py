"""Logs: one JSON line per request with the documented fields, and no key anywhere.
Runs last so that the key-leak scan covers every log the suite produced."""

from harness import *


def _find_line(st, pred, timeout=10):
    found = []

    def look():
        found[:] = [l for l in st.log_lines() if pred(l)]
        return bool(found)
    try:
        wait_for(look, timeout, what="log line")
    except HarnessError:
        raise AssertionError("no matching log line in the responder's stderr; tail: %s" % st.stderr_tail(800))
    return found


def test_log_line_fields(s):
    st = s.stack("main")
    model = "claude-logprobe-" + uuid.uuid4().hex[:8]
    ua = "it-agent/1.0 (log test)"
    r = st.request("POST", "/v1/messages?beta=true", api_headers(extra=[("user-agent", ua)]),
                   message_body(stream=True, model=model))
    eq(r.status, 200, "status")
    lines = _find_line(st, lambda l: l.get("model") == model)
    eq(len(lines), 1, "log lines for one request")
    l = lines[0]
    for f in ("time", "level", "event", "service", "adapter", "method", "path", "model", "stream",
              "message_count", "user_agent", "status", "duration_ms", "key_fp"):
        check(f in l, "log line lacks %s: %r", f, l)
    check(any("ttfb" in k or "first" in k for k in l), "log line lacks the time to first upstream byte: %r", l)
    check(any("bytes" in k for k in l), "log line lacks bytes out: %r", l)
    eq((l["user_agent"], l["message_count"]), (ua, 1), "user_agent, message_count")
    eq((l["adapter"], l["method"], l["stream"], l["status"]), ("default", "POST", True, 200),
       "adapter, method, stream, status")
    check(str(l["path"]).startswith("/v1/messages"), "path %r", l["path"])
    fp = str(l["key_fp"])
    check(fp and fp not in CLIENT_KEY and CLIENT_KEY not in fp, "key_fp %r", fp)
    # the same key always gets the same fingerprint
    st.request("POST", "/v1/messages", api_headers(), message_body(model=model + "-2"))
    l2 = _find_line(st, lambda x: x.get("model") == model + "-2")[0]
    eq(str(l2.get("key_fp")), fp, "fingerprint of the same key")


def test_startup_log_effective_config(s):
    st = s.stack("serverkey")
    lines = _find_line(st, lambda l: l.get("event") == "startup" or "startup" in str(l.get("message", "")))
    text = json.dumps(lines[0])
    check(st.upstream_url in text, "the start-up line does not show the effective ANTHROPIC_BASE_URL: %s", text[:400])
    check(SERVER_KEY not in text and ACCESS_PLAIN not in text, "secrets in the start-up line")


def _leaks(text, key):
    return [p for p in (key, key[8:], key[:-4]) if p in text]


def test_no_key_in_any_log(s):
    main, sk = s.stack("main"), s.stack("serverkey")
    # exercise every key on every path that might log it (also when run alone)
    for hdr in ([("x-api-key", CLIENT_KEY)], [("authorization", "Bearer " + BEARER_KEY)],
                [("authorization", BARE_KEY)]):
        for beh in (None, "status=401", "die_after=2"):
            main.request("POST", "/v1/messages", hdr + api_headers(key=None, behavior=beh), message_body(stream=True))
    main.request("GET", "/v1/nope", [("x-api-key", CLIENT_KEY)])
    for k in (ACCESS_PLAIN, ACCESS_HASHED, ACCESS_WRONG):
        sk.request("POST", "/v1/messages", api_headers(key=k), message_body())
        sk.request("POST", "/v1/messages", [("authorization", "Bearer " + k)] + api_headers(key=None),
                   message_body(stream=True))
    s.cgi("POST", "/v1/messages", api_headers(key=CLIENT_KEY), message_body(),
          env={"ANTHROPIC_API_KEY": SERVER_KEY, "ACCESS_KEYS": ACCESS_PLAIN})
    s.cgi("POST", "/v1/messages", api_headers(key=ACCESS_PLAIN), message_body(),
          env={"ANTHROPIC_API_KEY": SERVER_KEY, "ACCESS_KEYS": ACCESS_PLAIN})
    time.sleep(0.5)
    sources = []
    for st in s.stacks.values():
        sources += [("%s:%s" % (st.name, os.path.relpath(p, s.tmp)), t) for p, t in st.all_logs()]
    sources += [("cgi-run-%d" % i, t) for i, t in enumerate(s.cgi_logs)]
    check(any(t.strip() for name, t in sources if "responder" in name), "no responder log captured at all")
    found = []
    for name, text in sources:
        for k in sorted(ALL_KEYS):
            for line in text.splitlines():
                hit = _leaks(line, k)
                if hit:
                    red = line
                    for h in hit:
                        red = red.replace(h, "<KEY:%s...>" % k[:14])
                    found.append("%s: %s" % (name, red[:240]))
                    break
    check(not found, "keys found in logs (%d lines), e.g. %s", len(found), " | ".join(found[:3]))


test_no_key_in_any_log.timeout = 120


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "AddressSanitizer:DEADLYSIGNAL", "==ABORTING")


def test_responders_exit_clean_no_sanitizer_reports(s):
    """Last: stop every stack (SIGTERM, as in production), then scan every responder's
    stderr and every CGI run for sanitizer reports (SANITIZE=1 builds) and crashes."""
    bad = []
    for name, st in list(s.stacks.items()):
        if st.nginx is not None:
            st.nginx.stop()  # no client connection keeps a stream (and the drain) alive
        if st.responder is not None and st.responder.alive():
            st.responder.send_signal(signal.SIGTERM)
            try:
                st.responder.p.wait(20)
            except subprocess.TimeoutExpired:
                bad.append("%s: the responder did not exit within 20 s of SIGTERM" % name)
            rc = st.responder.p.returncode
            if rc not in (0, None) and name != "killable":
                bad.append("%s: the responder exited with status %s after SIGTERM" % (name, rc))
        st.stop()
        del s.stacks[name]
    for d in sorted(os.listdir(s.tmp)):
        p = os.path.join(s.tmp, d, "responder.stderr")
        if os.path.isfile(p):
            text = Stack.file_tail(p, 1 << 30)
            for m in SANITIZER_MARKS:
                i = text.find(m)
                if i >= 0:
                    bad.append("%s: %s" % (d, " ".join(text[i:i + 300].split())))
                    break
    for i, text in enumerate(s.cgi_logs):
        for m in SANITIZER_MARKS:
            j = text.find(m)
            if j >= 0:
                bad.append("cgi run %d: %s" % (i, " ".join(text[j:j + 300].split())))
                break
    check(not bad, "%d problem(s): %s", len(bad), " | ".join(bad[:3]))


test_responders_exit_clean_no_sanitizer_reports.timeout = 120
