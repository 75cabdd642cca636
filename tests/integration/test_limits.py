"""Issue 13, the limits that protect the service: header count and size, JSON depth, the
SSE event size from the upstream, the aggregated answer, the adapter steps' outputs. Each
is met through the web server (nginx and lighttpd), answered in the client's dialect,
named in the answer and in a `limit_reached` log line, and nothing is forwarded."""

from harness import *

CHERRY_UA = "Mozilla/5.0 (X11; Linux x86_64) CherryStudio/1.6.3 Electron/37.2.3"


def _post(st, body, mid, headers):
    return st.request("POST", "/v1/messages", headers, body)


def _limit_logged(st, limit, what):
    lines = [l for l in st.log_lines() if l.get("event") == "limit_reached" and limit in l.get("message", "")]
    check(lines, "%s: no limit_reached log line naming %s; log tail %s", what, limit, st.stderr_tail(600))




def test_431_header_count(s):
    st, mid = s.stack("limits"), new_id()  # MAX_HEADER_COUNT=40
    extra = [("x-extra-%02d" % i, "v") for i in range(45)]
    r = _post(st, message_body(), mid, api_headers(mock_id=mid, extra=extra))
    obj = assert_anthropic_error(r, 431, "invalid_request_error", "45 extra headers")
    check("MAX_HEADER_COUNT" in obj["error"]["message"], "message should name the limit: %r", obj["error"]["message"])
    assert_not_forwarded(s, mid, "too many headers")
    _limit_logged(st, "MAX_HEADER_COUNT", "header count")
    # Under the limit the same kind of request passes.
    mid = new_id()
    r = _post(st, message_body(), mid, api_headers(mock_id=mid, extra=extra[:20]))
    eq(r.status, 200, "20 extra headers")


def test_431_one_header_too_large(s):
    st, mid = s.stack("limits"), new_id()  # MAX_HEADER_BYTES=2048
    r = _post(st, message_body(), mid, api_headers(mock_id=mid, extra=[("x-long", "l" * 3000)]))
    obj = assert_anthropic_error(r, 431, "invalid_request_error", "a 3000-byte header")
    msg = obj["error"]["message"]
    check("MAX_HEADER_BYTES" in msg and "x-long" in msg, "message should name the header and the limit: %r", msg)
    assert_not_forwarded(s, mid, "a header over MAX_HEADER_BYTES")


def test_431_headers_total(s):
    st, mid = s.stack("limits"), new_id()  # MAX_HEADER_TOTAL_BYTES=8192
    extra = [("x-part-%d" % i, "p" * 1800) for i in range(6)]
    r = _post(st, message_body(), mid, api_headers(mock_id=mid, extra=extra))
    obj = assert_anthropic_error(r, 431, "invalid_request_error", "6 headers of 1800 bytes")
    check("MAX_HEADER_TOTAL_BYTES" in obj["error"]["message"], "message: %r", obj["error"]["message"])
    assert_not_forwarded(s, mid, "headers over MAX_HEADER_TOTAL_BYTES")


def test_headers_over_64k_meet_the_web_servers_limit(s):
    """Past 64 KiB of headers the web server answers before the responder: lighttpd's own
    431 (server.max-request-field-size, 65535 at most) from its JSON error file; nginx
    fails to build the FastCGI request (its parameters go in one record of at most 64 KiB,
    "fastcgi request record is too big" in its error log) and answers its JSON 500. So the
    responder's own MAX_HEADER_TOTAL_BYTES default (48 KiB) stays below both, and its
    FastCGI parameter cap (fcgi_conn, unit-tested) is a bound no such web server reaches."""
    st, mid = s.stack("main"), new_id()
    extra = [("x-huge-%d" % i, "h" * 20000) for i in range(4)]  # 80 KB
    r = _post(st, message_body(), mid, api_headers(mock_id=mid, extra=extra))
    if s.web == "nginx":
        assert_anthropic_error(r, 500, "api_error", "80 KB of headers behind nginx")
    else:
        assert_anthropic_error(r, 431, "invalid_request_error", "80 KB of headers behind lighttpd")
    assert_not_forwarded(s, mid, "80 KB of headers")
    mid = new_id()
    eq(_post(st, message_body(), mid, api_headers(mock_id=mid)).status, 200, "the next request")


def test_431_default_header_limits_are_the_responders(s):
    """With the shipped configurations and the default limits, a header over MAX_HEADER_BYTES
    (32 KiB) and headers over MAX_HEADER_TOTAL_BYTES (48 KiB) meet the responder's limits, in
    the dialect (both web servers let 64 KiB through); a 24 KiB header passes."""
    st = s.stack("main")
    mid = new_id()
    r = _post(st, message_body(), mid, api_headers(mock_id=mid, extra=[("x-big", "b" * (40 * 1024))]))
    obj = assert_anthropic_error(r, 431, "invalid_request_error", "a 40 KiB header at the defaults")
    check("MAX_HEADER_BYTES" in obj["error"]["message"], "message: %r", obj["error"]["message"])
    mid = new_id()
    extra = [("x-big-%d" % i, "b" * (26 * 1024)) for i in range(2)]
    r = _post(st, message_body(), mid, api_headers(mock_id=mid, extra=extra))
    obj = assert_anthropic_error(r, 431, "invalid_request_error", "52 KiB of headers at the defaults")
    check("MAX_HEADER_TOTAL_BYTES" in obj["error"]["message"], "message: %r", obj["error"]["message"])
    mid = new_id()
    r = _post(st, message_body(), mid, api_headers(mock_id=mid, extra=[("x-big", "b" * (24 * 1024))]))
    eq(r.status, 200, "a 24 KiB header at the defaults")


def test_400_json_depth(s):
    st, mid = s.stack("limits"), new_id()  # MAX_JSON_DEPTH=16
    deep = "[" * 20 + "]" * 20
    body = ('{"model":"claude-sonnet-4-20250514","max_tokens":10,"messages":[{"role":"user","content":"hi"}],'
            '"metadata":{"x":%s}}' % deep).encode()
    obj = assert_anthropic_error(_post(st, body, mid, api_headers(mock_id=mid)), 400, "invalid_request_error",
                                 "a body 23 levels deep")
    check("MAX_JSON_DEPTH" in obj["error"]["message"], "message: %r", obj["error"]["message"])
    assert_not_forwarded(s, mid, "a body over MAX_JSON_DEPTH")
    _limit_logged(st, "MAX_JSON_DEPTH", "JSON depth")
    deep = "[" * 10 + "]" * 10
    body = ('{"model":"claude-sonnet-4-20250514","max_tokens":10,"messages":[{"role":"user","content":"hi"}],'
            '"metadata":{"x":%s}}' % deep).encode()
    mid = new_id()
    r = _post(st, body, mid, api_headers(mock_id=mid, behavior="lenient"))
    eq(r.status, 200, "a body 13 levels deep")


def test_sse_event_over_the_limit_ends_the_stream(s):
    """An upstream event that never ends: the events before it, then the dialect's error
    event naming MAX_SSE_EVENT_BYTES, a clean end; none of the runaway event."""
    st, mid = s.stack("limits"), new_id()  # MAX_SSE_EVENT_BYTES=65536
    r = _post(st, message_body(stream=True), mid, api_headers(mock_id=mid, behavior="unended_event=300000"))
    eq(r.status, 200, "status (the stream had started)")
    check(r.clean_end, "the stream must end cleanly after its error event")
    ev = parse_events(r.body)
    eq([e[0] for e in ev], ["message_start", "error"], "the events the client got")
    err = ev[-1][1]
    check(isinstance(err, dict) and err["error"]["type"] == "api_error" and
          "MAX_SSE_EVENT_BYTES" in err["error"]["message"], "error event: %r", err)
    check(b"xxxx" not in r.body, "part of the runaway event reached the client")
    _limit_logged(st, "MAX_SSE_EVENT_BYTES", "SSE event")


def test_codex_sse_event_over_the_limit_is_response_failed(s):
    st, mid = s.stack("codex_limits"), new_id()  # MAX_SSE_EVENT_BYTES=65536
    r = st.request("POST", "/v1/responses", oa_headers(mock_id=mid, behavior="unended_event=300000"),
                   responses_body(stream=True))
    eq(r.status, 200, "status")
    ev = parse_events(r.body)
    eq([e[0] for e in ev], ["response.created", "response.failed"], "the events Codex got")
    failed = ev[-1][1]
    check("MAX_SSE_EVENT_BYTES" in failed["response"]["error"]["message"], "response.failed: %r", failed)
    eq(failed["sequence_number"], 1, "the replacement's sequence number")


def test_codex_aggregate_over_the_limit_is_502(s):
    """CherryStudio asks for no stream; the forced stream is longer than MAX_AGGREGATE_BYTES:
    the dialect's JSON 502 naming the limit, never half a Response."""
    st, mid = s.stack("codex_limits"), new_id()  # MAX_AGGREGATE_BYTES=65536
    r = st.request("POST", "/v1/responses", oa_headers(mock_id=mid, behavior="big=200000", user_agent=CHERRY_UA),
                   responses_body(stream=False))
    obj = assert_openai_error(r, 502, "server_error", "upstream_unreachable", "a 200 KB forced stream")
    check("MAX_AGGREGATE_BYTES" in obj["error"]["message"], "message: %r", obj["error"]["message"])
    _limit_logged(st, "MAX_AGGREGATE_BYTES", "aggregate")
    mid = new_id()
    r = st.request("POST", "/v1/responses", oa_headers(mock_id=mid, user_agent=CHERRY_UA), responses_body(stream=False))
    eq(r.status, 200, "a short forced stream")
    check(r.json().get("object") == "response", "one Response object: %r", r.body[:200])


def test_codex_step_outputs_over_the_limit_is_413(s):
    st, mid = s.stack("codex_limits"), new_id()  # MAX_STEP_OUTPUTS=100
    many = [{"role": "user", "content": "m%d" % i} for i in range(60)]  # a message and a part each
    body = json.dumps({"model": "gpt-5-codex", "input": many, "stream": True}).encode()
    r = st.request("POST", "/v1/responses", oa_headers(mock_id=mid, user_agent=CHERRY_UA), body)
    obj = assert_openai_error(r, 413, "invalid_request_error", "request_too_large", "60 input messages")
    check("MAX_STEP_OUTPUTS" in obj["error"]["message"], "message: %r", obj["error"]["message"])
    assert_not_forwarded(s, mid, "over MAX_STEP_OUTPUTS")
    _limit_logged(st, "MAX_STEP_OUTPUTS", "step outputs")
    # The Codex CLI's own adapter runs no steps: the same body passes.
    mid = new_id()
    r = st.request("POST", "/v1/responses", oa_headers(mock_id=mid, user_agent="codex_cli_rs/0.50.0"), body)
    eq(r.status, 200, "the same body from the Codex CLI")


def test_codex_431_is_the_openai_shape(s):
    st, mid = s.stack("codex_limits"), new_id()  # MAX_HEADER_COUNT=40
    extra = [("x-extra-%02d" % i, "v") for i in range(45)]
    r = st.request("POST", "/v1/responses", oa_headers(mock_id=mid, extra=extra), responses_body())
    assert_openai_error(r, 431, "invalid_request_error", "request_headers_too_large", "45 extra headers")
    assert_not_forwarded(s, mid, "too many headers (codex)")
