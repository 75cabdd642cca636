"""Every error row: the proxy's own, nginx's own, the upstream's (passed through),
failures mid-stream, timeouts and unreachable upstreams."""

from harness import *


def _post(st, body, mid, headers=None):
    return st.request("POST", "/v1/messages", headers or api_headers(mock_id=mid), body)


def test_400_body_not_json(s):
    st, mid = s.stack("main"), new_id()
    assert_anthropic_error(_post(st, b'{"model": "x", "messages": [', mid), 400, "invalid_request_error")
    assert_not_forwarded(s, mid, "bad JSON")


def test_400_body_not_object(s):
    st, mid = s.stack("main"), new_id()
    assert_anthropic_error(_post(st, b'[{"model": "x"}]', mid), 400, "invalid_request_error")
    assert_not_forwarded(s, mid, "JSON array body")


def test_400_no_model(s):
    st, mid = s.stack("main"), new_id()
    body = b'{"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}'
    obj = assert_anthropic_error(_post(st, body, mid), 400, "invalid_request_error")
    check("model" in obj["error"]["message"], "message should name `model`: %r", obj["error"]["message"])
    assert_not_forwarded(s, mid, "no model")


def test_400_messages_not_array(s):
    st, mid = s.stack("main"), new_id()
    body = b'{"model": "claude-sonnet-4-20250514", "max_tokens": 10, "messages": "hi"}'
    obj = assert_anthropic_error(_post(st, body, mid), 400, "invalid_request_error")
    check("messages" in obj["error"]["message"], "message should name `messages`: %r", obj["error"]["message"])
    assert_not_forwarded(s, mid, "messages not an array")


def test_400_empty_body(s):
    st, mid = s.stack("main"), new_id()
    assert_anthropic_error(_post(st, b"", mid), 400, "invalid_request_error")
    assert_not_forwarded(s, mid, "empty body")


def test_401_no_key(s):
    st, mid = s.stack("main"), new_id()
    r = _post(st, message_body(), mid, api_headers(key=None, mock_id=mid))
    assert_anthropic_error(r, 401, "authentication_error")
    assert_not_forwarded(s, mid, "no key")


def test_401_empty_bearer(s):
    st, mid = s.stack("main"), new_id()
    r = _post(st, message_body(), mid, api_headers(key=None, mock_id=mid, extra=[("authorization", "Bearer ")]))
    assert_anthropic_error(r, 401, "authentication_error")
    assert_not_forwarded(s, mid, "empty bearer")


def test_404_unknown_route(s):
    st = s.stack("main")
    for method, path in (("GET", "/v1/nope"), ("POST", "/v2/messages"), ("POST", "/v1/messages/extra"),
                         ("GET", "/_mock/requests"), ("POST", "/_mock/reset")):
        mid = new_id()
        r = st.request(method, path, api_headers(mock_id=mid), b"{}" if method == "POST" else None)
        assert_anthropic_error(r, 404, "not_found_error", "%s %s" % (method, path))
        assert_not_forwarded(s, mid, path)


def test_405_wrong_method(s):
    st = s.stack("main")
    for method, path, allowed in (("GET", "/v1/messages", "POST"), ("PUT", "/v1/messages/count_tokens", "POST"),
                                  ("DELETE", "/v1/models", "GET"), ("POST", "/health", "GET")):
        mid = new_id()
        r = st.request(method, path, api_headers(mock_id=mid), b"{}" if method in ("PUT", "POST") else None)
        assert_anthropic_error(r, 405, None, "%s %s" % (method, path))
        allow = r.header("allow") or ""
        check(allowed in allow, "%s %s: Allow header %r lacks %s", method, path, allow, allowed)
        assert_not_forwarded(s, mid, path)


# An RFC 6455 opening handshake, as any WebSocket client sends it.
WS_HANDSHAKE = [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]


def test_426_websocket_upgrade(s):
    """A WebSocket handshake on a relay route gets 426 in the Anthropic shape from the
    responder (neither web server answers it first), saying the service speaks HTTPS
    streaming; nothing is forwarded. As on the Codex service, where the Codex CLI needs it
    (test_codex_websocket_upgrade_426): one rule for both services, and a truer answer
    than a 405 that says "use POST"."""
    st = s.stack("main")
    for method, path, body in (("GET", "/v1/messages", None), ("POST", "/v1/messages", message_body(stream=True)),
                               ("GET", "/v1/models", None)):
        mid = new_id()
        r = st.request(method, path, api_headers(mock_id=mid, extra=WS_HANDSHAKE), body)
        obj = assert_anthropic_error(r, 426, "invalid_request_error", "%s %s with a WebSocket handshake" % (method, path))
        msg = obj["error"]["message"]
        check("HTTPS streaming" in msg and "not WebSockets" in msg, "426 message: %r", msg)
        assert_not_forwarded(s, mid, "%s %s with a WebSocket handshake" % (method, path))


def test_413_over_max_body_bytes(s):
    st, mid = s.stack("small"), new_id()  # MAX_BODY_BYTES=4096
    body = message_body(text="y" * 8000)
    r = _post(st, body, mid)
    assert_anthropic_error(r, 413, "request_too_large")
    assert_not_forwarded(s, mid, "oversized body")
    mid = new_id()
    r = _post(st, message_body(text="y" * 3000), mid)
    eq(r.status, 200, "a body under MAX_BODY_BYTES")


def test_413_nginx_limit_content_length(s):
    """A Content-Length far over client_max_body_size: nginx answers before any body."""
    st, mid = s.stack("main"), new_id()
    c = Conn(st.port, timeout=15)
    try:
        c.send_request("POST", "/v1/messages",
                       api_headers(mock_id=mid, extra=[("Content-Length", str(1 << 33))]), b'{"model":')
        c.read_head()
        r = c.response()
    finally:
        c.close()
    assert_anthropic_error(r, 413, "request_too_large", "nginx 413")
    assert_not_forwarded(s, mid, "over nginx limit")


def test_400_nginx_cr_in_header(s):
    st, mid = s.stack("main"), new_id()
    c = Conn(st.port, timeout=15)
    try:
        body = message_body()
        c.send_raw(("POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: %s\r\n"
                    "anthropic-version: 2023-06-01\r\nx-mock-id: %s\r\nx-app: cli\rinjected: 1\r\n"
                    "Content-Length: %d\r\nConnection: close\r\n\r\n" % (CLIENT_KEY, mid, len(body))).encode() + body)
        c.read_head()
        r = c.response()
    finally:
        c.close()
    assert_anthropic_error(r, 400, "invalid_request_error", "CR in a header value")
    assert_not_forwarded(s, mid, "CR header")


def test_400_nginx_malformed_header_line(s):
    st = s.stack("main")
    c = Conn(st.port, timeout=15)
    try:
        c.send_raw(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nthis line has no colon\r\n"
                   b"Connection: close\r\n\r\n")
        c.read_head()
        r = c.response()
    finally:
        c.close()
    assert_anthropic_error(r, 400, "invalid_request_error", "malformed header line")


def _passthrough(s, status, stream, etype):
    st, mid = s.stack("main"), new_id()
    r = _post(st, message_body(stream=stream), mid, api_headers(mock_id=mid, behavior="status=%d" % status))
    rec = wait_record(s, mid)
    what = "upstream %d (%s)" % (status, "stream" if stream else "non-stream")
    eq(r.status, status, what + " status")
    same_bytes(r.body, rec_response(rec), what + " error body")
    eq(r.json()["error"]["type"], etype, what + " error type")
    check((r.header("content-type") or "").startswith("application/json"), "%s content-type %r",
          what, r.header("content-type"))
    check_passed_headers(r, rec, what)
    return r


def test_upstream_429_passthrough(s):
    for stream in (False, True):
        r = _passthrough(s, 429, stream, "rate_limit_error")
        eq(r.header("retry-after"), "7", "retry-after")
        eq(r.header("x-should-retry"), "true", "x-should-retry")
        check(r.header("anthropic-ratelimit-requests-remaining") == "0", "rate-limit headers on 429")


def test_upstream_529_passthrough(s):
    for stream in (False, True):
        _passthrough(s, 529, stream, "overloaded_error")


def test_upstream_500_passthrough(s):
    for stream in (False, True):
        _passthrough(s, 500, stream, "api_error")


def test_upstream_4xx_passthrough(s):
    _passthrough(s, 400, False, "invalid_request_error")
    _passthrough(s, 401, True, "authentication_error")
    _passthrough(s, 403, False, "permission_error")


def test_upstream_sse_error_event_passthrough(s):
    st, mid = s.stack("main"), new_id()
    r = _post(st, message_body(stream=True), mid, api_headers(mock_id=mid, behavior="sse_error_after=4"))
    rec = wait_record(s, mid)
    eq(r.status, 200, "status")
    same_bytes(r.body, rec_response(rec), "stream ending in the upstream's own error event")


def _assert_stream_error_tail(r, sent_prefix, what):
    eq(r.status, 200, what + ": status (the stream had started)")
    check(r.body.startswith(sent_prefix), "%s: the events sent before the failure were not relayed intact: "
          "got %r, upstream sent %r", what, r.body[:400], sent_prefix[:400])
    tail = r.body[len(sent_prefix):]
    ev = parse_events(tail)
    check(len(ev) == 1 and ev[0][0] == "error", "%s: expected exactly one `event: error` after the relayed "
          "events, got %r", what, tail[:500])
    data = ev[0][1]
    check(isinstance(data, dict) and data.get("type") == "error" and isinstance(data.get("error"), dict),
          "%s: error event data shape: %r", what, data)
    eq(data["error"].get("type"), "api_error", what + ": error.type")
    check(isinstance(data["error"].get("message"), str) and data["error"]["message"],
          "%s: error.message missing", what)
    check(tail.startswith(b"event: error\n") and tail.endswith(b"\n\n"),
          "%s: not a well-formed SSE event: %r", what, tail)
    check(r.clean_end, "%s: the client's response did not end cleanly after the error event", what)


def test_mid_stream_death_gives_error_event(s):
    st, mid = s.stack("main"), new_id()
    r = _post(st, message_body(stream=True), mid, api_headers(mock_id=mid, behavior="die_after=4"))
    rec = wait_record(s, mid)
    eq(rec["state"], "died", "mock state")
    _assert_stream_error_tail(r, rec_response(rec), "upstream died after 4 events")


def test_504_hang_before_headers(s):
    st, mid = s.stack("timeout"), new_id()  # HTTP_TIMEOUT=1
    t0 = time.monotonic()
    r = _post(st, message_body(stream=True), mid, api_headers(mock_id=mid, behavior="hang_before_headers"))
    dt = time.monotonic() - t0
    assert_anthropic_error(r, 504, "api_error", "upstream silent before headers")
    check(dt < 15, "504 took %.1fs with HTTP_TIMEOUT=1", dt)
    rec = wait_record(s, mid, "disconnected", 10)
    check(rec["disconnected"], "the upstream connection was not closed after the timeout")


def test_504_hang_before_headers_nonstream(s):
    st, mid = s.stack("timeout"), new_id()
    r = _post(st, message_body(), mid, api_headers(mock_id=mid, behavior="hang_before_headers"))
    assert_anthropic_error(r, 504, "api_error", "non-stream upstream silent")


def test_idle_timeout_mid_stream_gives_error_event(s):
    st, mid = s.stack("timeout"), new_id()
    r = _post(st, message_body(stream=True), mid, api_headers(mock_id=mid, behavior="hang_after=3"))
    rec = wait_record(s, mid, "disconnected", 15)
    _assert_stream_error_tail(r, rec_response(rec), "upstream silent > HTTP_TIMEOUT after 3 events")


def test_slow_stream_longer_than_timeout_completes(s):
    """HTTP_TIMEOUT bounds the silence between bytes, not the stream's length."""
    st, mid = s.stack("timeout"), new_id()
    r = _post(st, message_body(stream=True), mid, api_headers(mock_id=mid, behavior="slow=0.2,deltas=12"))
    rec = wait_record(s, mid)
    dur = rec["finished_at"] - rec["responded_at"]
    check(dur > 1.5, "stream lasted only %.2fs", dur)
    eq(r.status, 200, "status")
    same_bytes(r.body, rec_response(rec), "slow stream (%.1fs, 0.2 s gaps, HTTP_TIMEOUT=1)" % dur)


def test_502_upstream_unreachable(s):
    st, mid = s.stack("down"), new_id()
    for stream in (False, True):
        r = _post(st, message_body(stream=stream), mid)
        obj = assert_anthropic_error(r, 502, "api_error", "upstream down")
        hostport = "127.0.0.1:%d" % st.upstream_port
        check(hostport in obj["error"]["message"], "502 message should name the upstream %s: %r",
              hostport, obj["error"]["message"])


def test_502_nginx_responder_down(s):
    st = s.stack("killable")
    eq(st.request("GET", "/health").status, 200, "health before the kill")
    st.kill_responder()
    r = st.request("GET", "/health", timeout=20)
    assert_anthropic_error(r, 502, "api_error", "responder down")
    r = st.request("POST", "/v1/messages", api_headers(), message_body(), timeout=20)
    assert_anthropic_error(r, 502, "api_error", "responder down (POST)")


def test_upstream_retry_after_ms_passthrough(s):
    st, mid = s.stack("main"), new_id()
    r = _post(st, message_body(stream=True), mid,
              api_headers(mock_id=mid, behavior="status=529,retry_after_ms=1500"))
    eq((r.status, r.header("retry-after-ms"), r.header("x-should-retry")), (529, "1500", "true"),
       "529 status, retry-after-ms, x-should-retry")


def test_nonstream_truncated_reply_is_not_clean(s):
    """The upstream dies halfway through a non-stream JSON reply: the client must be able
    to tell (an error status, or a response that does not end cleanly), never a clean 200
    carrying half a JSON document."""
    st, mid = s.stack("main"), new_id()
    c = st.open("POST", "/v1/messages", api_headers(mock_id=mid, behavior="die_after=1"), message_body(),
                timeout=20)
    try:
        c.read_head()
        try:
            body = c.read_all()
            clean = c.clean_end
        except EOFError:
            body, clean = bytes(c.body_so_far), False
    finally:
        c.close()
    rec = wait_record(s, mid)
    eq(rec["state"], "died", "mock state")
    if c.status == 200:
        check(not clean, "a truncated upstream reply (%d of %s bytes) reached the client as a clean "
              "200: %r", len(body), dict(rec["response_headers"]).get("content-length"), body[-80:])


def test_502_upstream_drops_connection(s):
    """The upstream accepts, reads the request and closes without a response."""
    st = s.stack("main")
    for stream in (False, True):
        mid = new_id()
        r = _post(st, message_body(stream=stream), mid, api_headers(mock_id=mid, behavior="drop"))
        assert_anthropic_error(r, 502, "api_error", "upstream closed before answering (stream=%s)" % stream)


def test_413_default_max_body_bytes(s):
    """Default MAX_BODY_BYTES is 32 MiB: a body just over it is refused by the responder
    (nginx's own limit sits a little above), one just under passes."""
    st, mid = s.stack("main"), new_id()
    over = message_body(text="z" * (32 * 1024 * 1024 + 1000))
    r = _post(st, over, mid)
    assert_anthropic_error(r, 413, "request_too_large", "body of %d bytes" % len(over))
    assert_not_forwarded(s, mid, "body over 32 MiB")


test_413_default_max_body_bytes.timeout = 90


def test_413_chunked_body_over_limit(s):
    st, mid = s.stack("small"), new_id()  # MAX_BODY_BYTES=4096
    body = message_body(text="c" * 9000)
    enc = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                   for i in range(0, len(body), 1000)) + b"0\r\n\r\n"
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, extra=[("Transfer-Encoding", "chunked")]), enc)
    assert_anthropic_error(r, 413, "request_too_large", "chunked body over MAX_BODY_BYTES")
    assert_not_forwarded(s, mid, "chunked oversized body")
