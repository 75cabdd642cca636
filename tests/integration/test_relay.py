"""The relay through nginx + ccproxy-claude: bytes, events, routes, queries, prefixes."""

from harness import *


def _check_stream_headers(r, rec, what):
    eq(r.status, 200, what + " status")
    check((r.header("content-type") or "").startswith("text/event-stream"),
          "%s: content-type %r", what, r.header("content-type"))
    eq(r.header("cache-control"), "no-cache", what + ": cache-control")
    check(r.clean_end, "%s: the response did not end cleanly", what)
    eq(r.header("request-id"), rec["request_id"], what + ": request-id")
    check_passed_headers(r, rec, what)


def test_stream_byte_identical(s):
    st, mid = s.stack("main"), new_id()
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), message_body(stream=True))
    rec = wait_record(s, mid)
    _check_stream_headers(r, rec, "stream")
    same_bytes(r.body, rec_response(rec), "stream body")


def test_thinking_tool_use_stream_byte_identical(s):
    st = s.stack("main")
    for stream in (True, False):
        mid = new_id()
        r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, behavior="thinking,tool_use"),
                       message_body(stream=stream, thinking={"type": "enabled", "budget_tokens": 2048}))
        eq(r.status, 200, "status")
        same_bytes(r.body, rec_response(wait_record(s, mid)), "thinking + tool_use (stream=%s)" % stream)


def test_nonstream_byte_identical(s):
    st, mid = s.stack("main"), new_id()
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), message_body())
    rec = wait_record(s, mid)
    eq(r.status, 200, "status")
    check((r.header("content-type") or "").startswith("application/json"), "content-type %r",
          r.header("content-type"))
    eq(r.header("request-id"), rec["request_id"], "request-id")
    check_passed_headers(r, rec, "non-stream")
    same_bytes(r.body, rec_response(rec), "non-stream body")


def test_events_arrive_one_by_one(s):
    """gate_each: the mock sends event k+1 only after the test has read event k and
    released the gate, so any buffering in the relay shows as a read timeout."""
    st, mid = s.stack("main"), new_id()
    c = st.open("POST", "/v1/messages", api_headers(mock_id=mid, behavior="gate_each=" + mid),
                message_body(stream=True), timeout=15)
    try:
        try:
            c.read_head()
        except socket.timeout:
            raise AssertionError("response headers not delivered while the upstream held "
                                 "event 2 (headers or event 1 buffered)")
        k = 0
        got = []
        while True:
            try:
                ev = c.read_event()
            except socket.timeout:
                rec = s.mock.record(mid)
                raise AssertionError("event %d not delivered within 15 s although the upstream sent it "
                                     "(upstream sent %d events and holds the next one): the relay "
                                     "buffers" % (k + 1, rec["events_sent"]))
            if ev is None:
                break
            got.append(ev)
            rec = s.mock.record(mid)
            total = rec.get("events_total") or 0
            if k + 1 < total:
                rec = wait_record(s, mid, "gate_waiting", 10)
                eq((rec["events_sent"], rec["gate_waiting"]), (k + 1, k + 1),
                   "after the client read event %d, the upstream's (events sent, waiting for release)" % (k + 1))
                s.mock.release(mid)
            k += 1
        rec = wait_record(s, mid)
        eq(len(got), rec["events_total"], "events received one by one")
        same_bytes(b"".join(got), rec_response(rec), "gated stream body")
        check(c.clean_end, "gated stream did not end cleanly")
    finally:
        c.close()


def test_big_stream_intact(s):
    st, mid = s.stack("main"), new_id()
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, behavior="big=8000000"),
                   message_body(stream=True), timeout=60)
    rec = wait_record(s, mid)
    eq(r.status, 200, "status")
    check(rec["response_len"] >= 8000000, "mock sent only %d bytes", rec["response_len"])
    eq(len(r.body), rec["response_len"], "bytes received")
    eq(sha256_hex(r.body), rec["response_sha256"], "sha256 of the 8 MB stream")
    check(r.clean_end, "big stream did not end cleanly")


def test_big_nonstream_response(s):
    st, mid = s.stack("main"), new_id()
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, behavior="big=3000000"),
                   message_body(), timeout=60)
    rec = wait_record(s, mid)
    eq(r.status, 200, "status")
    eq((len(r.body), sha256_hex(r.body)), (rec["response_len"], rec["response_sha256"]),
       "3 MB JSON reply (length, sha256)")


def test_request_body_byte_for_byte(s):
    st, mid = s.stack("main"), new_id()
    body = ('\n { "messages" :[ {"content":"caf\\u00e9 \u65e5\u672c \\"q\\"\\n\\t","role":"user"}\t],\r\n'
            '  "temperature": 1.50, "top_k":1e1, "metadata":{"user_id":"u_1"} ,\n'
            '"max_tokens":   1024,"model":"claude-sonnet-4-20250514"}  \n').encode("utf-8")
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), body)
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    same_bytes(rec_body(rec), body, "request body at the upstream")
    eq(rec_headers(rec).get("content-length"), [str(len(body))], "upstream content-length")


def test_large_request_body_byte_for_byte(s):
    st, mid = s.stack("main"), new_id()
    blob = "x" * 2000000
    body = message_body(text=blob)
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), body, timeout=60)
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    eq((rec["body_len"], sha256_hex(rec_body(rec))), (len(body), sha256_hex(body)),
       "2 MB request body at the upstream (length, sha256)")


def test_query_string_kept_messages(s):
    st, mid = s.stack("main"), new_id()
    r = st.request("POST", "/v1/messages?beta=true", api_headers(mock_id=mid), message_body(stream=True))
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    eq((rec["method"], rec["path"], rec["query"]), ("POST", "/v1/messages", "beta=true"), "upstream request line")


def test_models_list_with_query(s):
    st, mid = s.stack("main"), new_id()
    r = st.request("GET", "/v1/models?limit=1000", api_headers(mock_id=mid, content_type=False))
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    eq((rec["method"], rec["path"], rec["query"]), ("GET", "/v1/models", "limit=1000"), "upstream request line")
    same_bytes(r.body, rec_response(rec), "models body")
    check(len(r.json()["data"]) >= 1, "models data")


def test_models_get_one(s):
    st, mid = s.stack("main"), new_id()
    r = st.request("GET", "/v1/models/claude-sonnet-4-20250514", api_headers(mock_id=mid, content_type=False))
    rec = wait_record(s, mid)
    eq((r.status, rec["path"]), (200, "/v1/models/claude-sonnet-4-20250514"), "status, upstream path")
    same_bytes(r.body, rec_response(rec), "model body")
    mid = new_id()
    r = st.request("GET", "/v1/models/claude-nope-1", api_headers(mock_id=mid, content_type=False))
    rec = wait_record(s, mid)
    eq(r.status, 404, "unknown model: upstream's 404 passes")
    same_bytes(r.body, rec_response(rec), "upstream 404 body")


def test_count_tokens(s):
    st, mid = s.stack("main"), new_id()
    body = message_body()
    r = st.request("POST", "/v1/messages/count_tokens?beta=true", api_headers(mock_id=mid), body)
    rec = wait_record(s, mid)
    eq((r.status, rec["path"], rec["query"]), (200, "/v1/messages/count_tokens", "beta=true"), "status, path, query")
    same_bytes(rec_body(rec), body, "count_tokens request body")
    same_bytes(r.body, rec_response(rec), "count_tokens reply")


def test_health(s):
    r = s.stack("main").request("GET", "/health")
    eq(r.status, 200, "status")
    obj = r.json()
    eq((obj.get("status"), obj.get("service")), ("healthy", "claude-service"), "health body")


def test_adapters(s):
    r = s.stack("main").request("GET", "/adapters")
    eq(r.status, 200, "status")
    ads = r.json().get("adapters")
    check(isinstance(ads, list) and ads, "adapters list: %r", r.body[:300])
    d = [a for a in ads if a.get("name") == "default"]
    check(d, "no adapter named default: %r", r.body[:300])
    for f in ("version", "priority", "description"):
        check(f in d[0], "adapter default lacks %s: %r", f, d[0])


def test_base_path_and_upstream_path(s):
    st, mid = s.stack("prefix"), new_id()
    r = st.request("POST", "/claude/v1/messages?beta=true", api_headers(mock_id=mid), message_body(stream=True))
    eq(r.status, 200, "status under /claude")
    rec = wait_record(s, mid)
    eq((rec["path"], rec["query"]), ("/api/v1/messages", "beta=true"),
       "upstream path (ANTHROPIC_BASE_URL has /api) and query")
    same_bytes(r.body, rec_response(rec), "stream under prefix")
    mid = new_id()
    r = st.request("GET", "/claude/v1/models?limit=1000", api_headers(mock_id=mid, content_type=False))
    rec = wait_record(s, mid)
    eq((r.status, rec["path"], rec["query"]), (200, "/api/v1/models", "limit=1000"), "models under prefix")
    r = st.request("GET", "/claude/health")
    eq((r.status, r.json().get("status")), (200, "healthy"), "/claude/health")


def test_base_path_unprefixed_is_404(s):
    st, mid = s.stack("prefix"), new_id()
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), message_body())
    eq(r.status, 404, "route without BASE_PATH")
    assert_not_forwarded(s, mid, "unprefixed route")


def test_upstream_keepalive_reuse(s):
    """WORKER_THREADS=2: ten sequential requests use at most two upstream connections."""
    st = s.stack("small")
    peers = []
    for i in range(10):
        mid = new_id()
        r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), message_body())
        eq(r.status, 200, "request %d" % i)
        peers.append(wait_record(s, mid)["peer"])
    check(len(set(peers)) <= 2, "upstream connections not reused: %d distinct connections for 10 "
          "sequential requests with 2 worker threads: %s", len(set(peers)), sorted(set(peers)))


def test_chunked_client_body_byte_for_byte(s):
    st, mid = s.stack("main"), new_id()
    body = message_body(text="chunked \u00e9 body " * 50)
    parts = [body[i:i + 100] for i in range(0, len(body), 100)]
    enc = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, extra=[("Transfer-Encoding", "chunked")]), enc)
    eq(r.status, 200, "status")
    same_bytes(rec_body(wait_record(s, mid)), body, "chunked request body at the upstream")


def test_query_string_not_reencoded(s):
    st, mid = s.stack("main"), new_id()
    q = "beta=true&x=a%20b%2Fc&y=%E2%9C%93&z="
    r = st.request("POST", "/v1/messages?" + q, api_headers(mock_id=mid), message_body())
    eq(r.status, 200, "status")
    eq(wait_record(s, mid)["query"], q, "upstream query")


def test_upstream_not_taken_from_request(s):
    """Host header and absolute-form request targets never choose the upstream."""
    st = s.stack("main")
    mid = new_id()
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), message_body(), host="evil.example:9")
    eq(r.status, 200, "status with a foreign Host")
    eq(rec_headers(wait_record(s, mid)).get("host"), ["127.0.0.1:%d" % s.mock.port], "upstream host")
    mid = new_id()
    r = st.request("POST", "http://evil.example:9/v1/messages?beta=true", api_headers(mock_id=mid), message_body())
    eq(r.status, 200, "status with an absolute-form target")
    rec = wait_record(s, mid)
    eq((rec["path"], rec["query"], rec_headers(rec).get("host")),
       ("/v1/messages", "beta=true", ["127.0.0.1:%d" % s.mock.port]), "upstream request")


def test_fragmented_events_byte_identical(s):
    """Events cut into 7-byte pieces (each its own TCP segment) arrive intact, including
    an upstream error event split the same way."""
    st = s.stack("main")
    for beh in ("fragment=7,deltas=5", "fragment=5,sse_error_after=4"):
        mid = new_id()
        r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, behavior=beh), message_body(stream=True))
        rec = wait_record(s, mid)
        eq(r.status, 200, beh + " status")
        same_bytes(r.body, rec_response(rec), "stream (%s)" % beh)
        check(r.clean_end, "%s: not ended cleanly", beh)


def test_upstream_idle_close_then_reuse(s):
    """The upstream closes a kept-alive connection while idle (its keep-alive timeout):
    the next request must not fail on the stale connection."""
    st = s.stack("small")
    for i in range(4):
        mid = new_id()
        r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, behavior="close_idle=0"),
                       message_body(stream=(i % 2 == 1)))
        eq(r.status, 200, "request %d after the upstream closed its idle connection" % i)
        wait_record(s, mid)
        wait_for(lambda: s.mock.record(mid).get("idle_closed"), 5, what="mock idle close")
        time.sleep(0.3)


def test_huge_and_many_headers_forwarded(s):
    st, mid = s.stack("main"), new_id()
    beta = ",".join("beta-feature-%04d-2025-01-01" % i for i in range(700))  # ~20 KB
    many = [("x-stainless-extra-%02d" % i, "value-%02d" % i) for i in range(60)]
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, extra=[("anthropic-beta", beta)] + many),
                   message_body())
    eq(r.status, 200, "status")
    h = rec_headers(wait_record(s, mid))
    eq(len((h.get("anthropic-beta") or [""])[0]), len(beta), "length of a 20 KB anthropic-beta")
    eq(h.get("anthropic-beta"), [beta], "20 KB anthropic-beta")
    for k, v in many:
        eq(h.get(k), [v], "upstream header " + k)


def test_more_requests_than_threads(s):
    """WORKER_THREADS=2, 8 concurrent slow requests: all served (queued), none lost."""
    import threading
    st = s.stack("small")
    ids = [new_id() for _ in range(8)]
    res = {}

    def one(mid, i):
        try:
            res[mid] = st.request("POST", "/v1/messages", api_headers(mock_id=mid, behavior="slow=0.3"),
                                  message_body(stream=bool(i % 2)), timeout=60).status
        except Exception as e:
            res[mid] = repr(e)
    ts = [threading.Thread(target=one, args=(m, i), daemon=True) for i, m in enumerate(ids)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    eq([res.get(m) for m in ids], [200] * 8, "statuses")


test_more_requests_than_threads.timeout = 90
