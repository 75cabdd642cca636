"""The same binary as plain CGI (fd 0 a pipe): one request from the environment and stdin,
the mock as upstream. Also start-up configuration checks, which CGI makes cheap."""

from harness import *


def _cgi_msg(s, stream, mid, behavior=None, headers=None, env=None, **kw):
    return s.cgi("POST", "/v1/messages", headers or api_headers(mock_id=mid, behavior=behavior),
                 message_body(stream=stream), env=env, **kw)


def test_cgi_nonstream(s):
    mid = new_id()
    r = _cgi_msg(s, False, mid)
    eq(r.status, 200, "CGI status (stderr: %s)" % r.stderr[-300:])
    rec = wait_record(s, mid)
    same_bytes(r.body, rec_response(rec), "CGI non-stream body")
    eq(r.header("request-id"), rec["request_id"], "request-id")


def test_cgi_stream(s):
    mid = new_id()
    r = _cgi_msg(s, True, mid)
    eq(r.status, 200, "CGI status (stderr: %s)" % r.stderr[-300:])
    rec = wait_record(s, mid)
    same_bytes(r.body, rec_response(rec), "CGI stream body")
    check((r.header("content-type") or "").startswith("text/event-stream"), "content-type %r", r.header("content-type"))
    eq((r.header("cache-control"), (r.header("x-accel-buffering") or "").lower()), ("no-cache", "no"),
       "stream headers cache-control, x-accel-buffering")


def test_cgi_error_no_key(s):
    mid = new_id()
    r = _cgi_msg(s, False, mid, headers=api_headers(key=None, mock_id=mid))
    assert_anthropic_error(r, 401, "authentication_error", "CGI no key")
    assert_not_forwarded(s, mid, "CGI no key")


def test_cgi_upstream_429_passthrough(s):
    mid = new_id()
    r = _cgi_msg(s, True, mid, behavior="status=429")
    rec = wait_record(s, mid)
    eq(r.status, 429, "status")
    same_bytes(r.body, rec_response(rec), "CGI 429 body")
    eq((r.header("retry-after"), r.header("x-should-retry")), ("7", "true"), "retry headers")
    eq(r.header("anthropic-ratelimit-requests-remaining"), "0", "rate-limit header")


def test_cgi_mid_stream_death(s):
    mid = new_id()
    r = _cgi_msg(s, True, mid, behavior="die_after=3")
    rec = wait_record(s, mid)
    sent = rec_response(rec)
    check(r.body.startswith(sent), "events before the failure not relayed intact")
    ev = parse_events(r.body[len(sent):])
    check(len(ev) == 1 and ev[0][0] == "error" and ev[0][1]["error"]["type"] == "api_error",
          "expected one event: error (api_error) after the relayed events, got %r", r.body[len(sent):][:300])


def test_cgi_nonstream_broken_or_silent_upstream_is_an_error(s):
    """Plain CGI holds a non-stream answer like FastCGI does: a chunked answer that breaks
    or goes silent halfway is the 502/504 error, a complete one goes out with its length."""
    for beh, env, status in (("chunked,die_after=1,reset", None, 502),
                             ("chunked,hang_after=1", {"HTTP_TIMEOUT": "1"}, 504)):
        mid = new_id()
        r = _cgi_msg(s, False, mid, behavior=beh, env=env)
        assert_anthropic_error(r, status, "api_error", "CGI, " + beh)
    mid = new_id()
    r = _cgi_msg(s, False, mid, behavior="chunked")
    rec = wait_record(s, mid)
    eq(r.status, 200, "CGI chunked answer status")
    same_bytes(r.body, rec_response(rec), "CGI chunked non-stream body")
    eq(r.header("content-length"), str(len(r.body)), "CGI chunked answer Content-Length")


def test_cgi_crlf_header_refused(s):
    for value in ("cli\r\nx-injected: 1", "cli\nx-injected: 1", "cli\rx"):
        mid = new_id()
        r = _cgi_msg(s, False, mid, headers=api_headers(mock_id=mid, extra=[("x-app", value)]))
        assert_anthropic_error(r, 400, "invalid_request_error", "header value %r" % value)
        assert_not_forwarded(s, mid, "CR/LF header %r" % value)


def test_cgi_413_checked_before_reading(s):
    """CONTENT_LENGTH over MAX_BODY_BYTES: 413 at once, without waiting for the body."""
    mid = new_id()
    t0 = time.monotonic()
    r = s.cgi("POST", "/v1/messages", api_headers(mock_id=mid), b'{"model":"x"', env={"MAX_BODY_BYTES": "4096"},
              content_length=100000000, timeout=20)
    assert_anthropic_error(r, 413, "request_too_large", "CGI CONTENT_LENGTH over MAX_BODY_BYTES")
    check(time.monotonic() - t0 < 10, "413 was slow")
    assert_not_forwarded(s, mid, "CGI oversized")


def test_cgi_header_limits_are_431(s):
    """Plain CGI uses the same request view: headers over MAX_HEADER_COUNT or
    MAX_HEADER_BYTES are 431 in the dialect, nothing forwarded."""
    mid = new_id()
    extra = [("x-extra-%02d" % i, "v") for i in range(12)]
    r = s.cgi("POST", "/v1/messages", api_headers(mock_id=mid, extra=extra), message_body(),
              env={"MAX_HEADER_COUNT": "10"})
    obj = assert_anthropic_error(r, 431, "invalid_request_error", "CGI, 16 headers over MAX_HEADER_COUNT=10")
    check("MAX_HEADER_COUNT" in obj["error"]["message"], "message: %r", obj["error"]["message"])
    assert_not_forwarded(s, mid, "CGI, too many headers")
    mid = new_id()
    r = s.cgi("POST", "/v1/responses", oa_headers(mock_id=mid, extra=[("x-long", "l" * 600)]), responses_body(),
              env={"MAX_HEADER_BYTES": "512"}, service="codex")
    assert_openai_error(r, 431, "invalid_request_error", "request_headers_too_large", "CGI, a 600-byte header")
    assert_not_forwarded(s, mid, "CGI, a header over MAX_HEADER_BYTES")


def test_cgi_path_info_and_query(s):
    mid = new_id()
    r = s.cgi("GET", "/v1/models", api_headers(mock_id=mid, content_type=False), body=None, query="limit=1000")
    eq(r.status, 200, "status (stderr: %s)" % r.stderr[-300:])
    rec = wait_record(s, mid)
    eq((rec["path"], rec["query"]), ("/v1/models", "limit=1000"), "upstream path and query")
    same_bytes(r.body, rec_response(rec), "models body")


def test_cgi_health(s):
    r = s.cgi("GET", "/health", body=None)
    eq(r.status, 200, "status")
    eq(r.json().get("status"), "healthy", "health")


def test_config_env_file(s):
    d = tempfile.mkdtemp(dir=s.tmp)
    envf = os.path.join(d, "custom.env")
    with open(envf, "w") as f:
        f.write("# cc-proxy test\nANTHROPIC_BASE_URL=%s\nLOG_FORMAT=json\n" % s.mock.base)
    mid = new_id()
    r = run_cgi({"CCPROXY_ENV_FILE": envf}, "POST", "/v1/messages", api_headers(mock_id=mid), message_body())
    s.cgi_logs.append(r.stderr)
    eq(r.status, 200, "CCPROXY_ENV_FILE status (stderr: %s)" % r.stderr[-300:])
    wait_record(s, mid)
    with open(os.path.join(d, ".env"), "w") as f:
        f.write("ANTHROPIC_BASE_URL=%s\n" % s.mock.base)
    mid = new_id()
    r = run_cgi({}, "POST", "/v1/messages", api_headers(mock_id=mid), message_body(), cwd=d)
    s.cgi_logs.append(r.stderr)
    eq(r.status, 200, "./.env status (stderr: %s)" % r.stderr[-300:])
    wait_record(s, mid)


def test_config_bad_values_refused(s):
    cases = [({"HTTP_TIMEOUT": "abc"}, "HTTP_TIMEOUT"),
             ({"MAX_BODY_BYTES": "-5"}, "MAX_BODY_BYTES"),
             ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
             ({"ENVIRONMENT": "staging"}, "ENVIRONMENT"),
             ({"ANTHROPIC_API_KEY": SERVER_KEY}, "ACCESS_KEYS")]
    for env, var in cases:
        what = ", ".join("%s=%s" % (k, "<server key>" if v == SERVER_KEY else v) for k, v in env.items())
        e = {"ANTHROPIC_BASE_URL": s.mock.base}
        e.update(env)
        mid = new_id()
        r = run_cgi(e, "POST", "/v1/messages", api_headers(mock_id=mid), message_body(), timeout=20)
        s.cgi_logs.append(r.stderr)
        check(r.rc != 0 or (r.status or 0) >= 500, "%s: start-up was not refused (rc %s, status %s)", what, r.rc, r.status)
        check(var in r.stderr, "%s: the refusal does not name %s: %r", what, var, r.stderr[-400:])
        check(SERVER_KEY not in r.stderr and SERVER_KEY not in r.raw.decode("latin-1"),
              "%s: the server key was printed", what)
        assert_not_forwarded(s, mid, "refused config %s" % what)


def test_cgi_events_arrive_one_by_one(s):
    """Plain CGI writes to a pipe (stdio would buffer fully): each event must still
    leave the process before the upstream sends the next one."""
    import select as _select
    mid = new_id()
    body = message_body(stream=True)
    e = cgi_env({"ANTHROPIC_BASE_URL": s.mock.base}, "POST", "/v1/messages",
                api_headers(mock_id=mid, behavior="gate_each=" + mid), len(body))
    errf = open(os.path.join(s.tmp, "cgi-gated-%s.stderr" % mid), "w+b")
    p = subprocess.Popen([str(claude_bin())], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf,
                         env=e, cwd=s.tmp)
    out = bytearray()

    def read_until(pred, what):
        deadline = time.monotonic() + 15
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                rec = s.mock.record(mid)
                raise AssertionError("CGI: %s not written within 15 s although the upstream sent it "
                                     "(upstream sent %d events, holds the next): stdout is buffered"
                                     % (what, rec["events_sent"]))
            r, _, _ = _select.select([p.stdout], [], [], left)
            if r:
                d = os.read(p.stdout.fileno(), 65536)
                if not d:
                    raise AssertionError("CGI stdout closed early: %r" % bytes(out[-300:]))
                out.extend(d)
    try:
        p.stdin.write(body)
        p.stdin.close()
        hdr_end = lambda: out.find(b"\r\n\r\n") if b"\r\n\r\n" in out else out.find(b"\n\n")
        read_until(lambda: hdr_end() >= 0 and out.count(b"\n\n", hdr_end() + 2) >= 1, "event 1")
        for k in (1, 2, 3):
            rec = wait_record(s, mid, "gate_waiting", 10)
            eq((rec["events_sent"], rec["gate_waiting"]), (k, k), "upstream events sent / waiting")
            s.mock.release(mid)
            read_until(lambda: out.count(b"\n\n", hdr_end() + 2) >= k + 1, "event %d" % (k + 1))
        s.mock.release(mid, all=True)
        rc = p.wait(20)
        out.extend(p.stdout.read())
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        errf.seek(0)
        s.cgi_logs.append(errf.read().decode("utf-8", "replace"))
        errf.close()
    eq(rc, 0, "CGI exit status")
    r = CGIResult(rc, bytes(out), b"")
    eq(r.status, 200, "status")
    same_bytes(r.body, rec_response(wait_record(s, mid)), "CGI gated stream")


def test_cgi_bodies_logged_only_in_test_environment(s):
    for envname, expect in (("production", False), ("test", True)):
        marker = "body-marker-" + uuid.uuid4().hex
        mid = new_id()
        r = s.cgi("POST", "/v1/messages", api_headers(mock_id=mid), message_body(text=marker),
                  env={"ENVIRONMENT": envname})
        eq(r.status, 200, "%s status" % envname)
        check((marker in r.stderr) == expect, "ENVIRONMENT=%s: request body %s in the log: %r", envname,
              "absent" if expect else "present", r.stderr[-400:])
        check(r.stderr.strip(), "ENVIRONMENT=%s: no log line at all", envname)


def test_cgi_console_log_format(s):
    mid = new_id()
    r = s.cgi("POST", "/v1/messages", api_headers(mock_id=mid), message_body(), env={"LOG_FORMAT": "console"})
    eq(r.status, 200, "status")
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    check(lines, "no console log line")
    check(not any(l.lstrip().startswith("{") for l in lines), "LOG_FORMAT=console still wrote JSON: %r", lines[-1][:200])
    check(CLIENT_KEY not in r.stderr, "key in console log")


def test_cgi_line_breaks_in_forwarded_parts_refused(s):
    """Issue 13's finds: a line feed in the query string reached the upstream URL, and CGI's
    CONTENT_TYPE the upstream's content-type. Whatever stands in front, each gets a 400 in
    the client's dialect and nothing is forwarded (Claude and Codex)."""
    body = message_body()
    for service, path in (("claude", "/v1/messages"), ("codex", "/v1/responses")):
        for what, kw, headers in (
                ("query", {"query": "bet\na=true"}, ()),
                ("query CR LF", {"query": "a=1\r\nInjected: 1"}, ()),
                ("content type", {}, (("content-type", "application/json\r\nX-Injected: 1"),))):
            mid = new_id()
            h = list(api_headers(mock_id=mid, content_type=not headers)) + list(headers)
            if service == "codex":
                h = [(k, v) for k, v in h if k.lower() != "x-api-key"] + [("authorization", "Bearer sk-test")]
            r = s.cgi("POST", path, h, body, service=service, **kw)
            eq(r.status, 400, "%s %s: status (stderr: %s)" % (service, what, r.stderr[-300:]))
            text = r.body.decode("utf-8", "replace")
            check("line break" in text, "%s %s: the message names the line break: %s", service, what, text)
            if service == "codex":
                check(r.json().get("error", {}).get("type") == "invalid_request_error", "%s %s: OpenAI shape: %s",
                      service, what, text)
            else:
                check(r.json().get("type") == "error", "%s %s: Anthropic shape: %s", service, what, text)
            assert_not_forwarded(s, mid, "%s %s" % (service, what))
