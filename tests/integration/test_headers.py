"""Request headers forwarded and dropped, key styles, server-held key, CORS."""

from harness import *

FORWARDED = [
    ("anthropic-beta", "prompt-caching-2024-07-31,claude-code-20250219,oauth-2025-04-20"),
    ("x-app", "cli"),
    ("user-agent", "claude-cli/1.0.83 (external, cli)"),
    ("x-stainless-lang", "js"),
    ("x-stainless-package-version", "0.55.1"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "node"),
    ("x-stainless-runtime-version", "v22.11.0"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-timeout", "600"),
    ("x-claude-code-session-id", "3f0e8a9c-6a51-4b6e-9d1e-2c7f5b8a1d00"),
    ("anthropic-dangerous-direct-browser-access", "true"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
]

DROPPED = [
    ("cookie", "session=s3cr3t; other=1"),
    ("x-forwarded-for", "10.1.2.3"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("accept-encoding", "gzip, deflate, br"),
    ("x-client-type", "default"),
    ("keep-alive", "timeout=5"),
]


def test_forwarded_and_dropped_headers(s):
    st, mid = s.stack("main"), new_id()
    headers = [("x-api-key", CLIENT_KEY), ("x-mock-id", mid)] + FORWARDED + DROPPED
    body = message_body(stream=True)
    r = st.request("POST", "/v1/messages?beta=true", headers, body)
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    h = rec_headers(rec)
    for k, v in FORWARDED:
        eq(h.get(k), [v], "upstream header %s" % k)
    for k, v in DROPPED:
        vals = h.get(k, [])
        if k == "accept-encoding":
            check(all("gzip" not in x and "br" not in x for x in vals),
                  "the client's accept-encoding reached the upstream: %r", vals)
        else:
            check(not vals, "header %s must be dropped, upstream got %r", k, vals)
    check(not any(v == "session=s3cr3t; other=1" for vs in h.values() for v in vs), "cookie value leaked")
    eq(h.get("anthropic-version"), ["2023-06-01"], "anthropic-version default")
    eq(h.get("host"), ["127.0.0.1:%d" % s.mock.port], "upstream host")
    eq(h.get("x-api-key"), [CLIENT_KEY], "x-api-key")
    eq(h.get("content-length"), [str(len(body))], "content-length recomputed")


def test_anthropic_version_kept(s):
    st, mid = s.stack("main"), new_id()
    hdrs = api_headers(mock_id=mid, version=False, extra=[("anthropic-version", "2024-10-22")])
    r = st.request("POST", "/v1/messages", hdrs, message_body())
    eq(r.status, 200, "status")
    eq(rec_headers(wait_record(s, mid)).get("anthropic-version"), ["2024-10-22"], "client's anthropic-version")


def test_arbitrary_header_forwarded(s):
    st, mid = s.stack("main"), new_id()
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, extra=[("x-custom-thing", "v1")]),
                   message_body())
    eq(r.status, 200, "status")
    eq(rec_headers(wait_record(s, mid)).get("x-custom-thing"), ["v1"], "an arbitrary end-to-end header")


def _key_case(s, hdrs, what):
    st, mid = s.stack("main"), new_id()
    r = st.request("POST", "/v1/messages", hdrs + [("x-mock-id", mid), ("anthropic-version", "2023-06-01"),
                                                 ("content-type", "application/json")], message_body())
    eq(r.status, 200, what + " status")
    return rec_headers(wait_record(s, mid))


def test_key_x_api_key(s):
    h = _key_case(s, [("x-api-key", CLIENT_KEY)], "x-api-key")
    eq(h.get("x-api-key"), [CLIENT_KEY], "upstream x-api-key")
    check("authorization" not in h, "unexpected authorization upstream: %r", h.get("authorization"))


def test_key_bearer(s):
    h = _key_case(s, [("authorization", "Bearer " + BEARER_KEY)], "Bearer")
    eq(h.get("authorization"), ["Bearer " + BEARER_KEY], "upstream authorization")
    check("x-api-key" not in h, "unexpected x-api-key upstream: %r", h.get("x-api-key"))


def test_key_bare_authorization(s):
    h = _key_case(s, [("authorization", BARE_KEY)], "bare Authorization")
    eq(h.get("x-api-key"), [BARE_KEY], "bare key goes upstream as x-api-key")
    check("authorization" not in h, "unexpected authorization upstream: %r", h.get("authorization"))


def _server_key_case(s, hdrs, what):
    st, mid = s.stack("serverkey"), new_id()
    r = st.request("POST", "/v1/messages", hdrs + api_headers(key=None, mock_id=mid), message_body(stream=True))
    return r, mid


def _assert_server_key_used(s, mid, client_key, what):
    rec = wait_record(s, mid)
    h = rec_headers(rec)
    upstream_keys = h.get("x-api-key", []) + [a[7:] for a in h.get("authorization", []) if a.startswith("Bearer ")]
    eq(upstream_keys, [SERVER_KEY], what + ": key(s) sent upstream")
    flat = json.dumps(rec["headers"])
    check(client_key not in flat, "%s: the access key reached the upstream", what)


def test_server_key_access_plain(s):
    r, mid = _server_key_case(s, [("x-api-key", ACCESS_PLAIN)], "plain access key")
    eq(r.status, 200, "plain access key status")
    _assert_server_key_used(s, mid, ACCESS_PLAIN, "plain access key")


def test_server_key_access_sha256(s):
    r, mid = _server_key_case(s, [("authorization", "Bearer " + ACCESS_HASHED)], "sha256 access key")
    eq(r.status, 200, "sha256-listed access key status")
    _assert_server_key_used(s, mid, ACCESS_HASHED, "sha256-listed access key")


def test_server_key_refuses_others(s):
    cases = [([("x-api-key", ACCESS_WRONG)], "unlisted key"),
             ([], "no key"),
             ([("x-api-key", sha256_hex(ACCESS_HASHED))], "the listed hash itself"),
             ([("x-api-key", "sha256:" + sha256_hex(ACCESS_HASHED))], "the ACCESS_KEYS entry itself"),
             ([("x-api-key", SERVER_KEY)], "the server key"),
             ([("x-api-key", ACCESS_PLAIN + "x")], "a listed key plus a char"),
             ([("x-api-key", ACCESS_PLAIN[:-1])], "a listed key minus a char")]
    for hdrs, what in cases:
        r, mid = _server_key_case(s, hdrs, what)
        assert_anthropic_error(r, 401, "authentication_error", what)
        assert_not_forwarded(s, mid, what)


def _preflight(st, origin, mid):
    return st.request("OPTIONS", "/v1/messages", [
        ("origin", origin), ("access-control-request-method", "POST"),
        ("access-control-request-headers", "x-api-key,anthropic-version,content-type"),
        ("x-mock-id", mid)])


def test_cors_preflight_allowed(s):
    st, mid = s.stack("main"), new_id()
    r = _preflight(st, ALLOWED_ORIGIN, mid)
    check(r.status in (200, 204), "preflight status %d: %r", r.status, r.body[:200])
    check(r.header("access-control-allow-origin") in (ALLOWED_ORIGIN, "*"),
          "access-control-allow-origin %r", r.header("access-control-allow-origin"))
    methods = (r.header("access-control-allow-methods") or "").upper()
    check("POST" in methods or methods == "*", "access-control-allow-methods %r", methods)
    allow_h = (r.header("access-control-allow-headers") or "").lower()
    check(allow_h == "*" or all(x in allow_h for x in ("x-api-key", "anthropic-version", "content-type")),
          "access-control-allow-headers %r", allow_h)
    assert_not_forwarded(s, mid, "preflight")


def test_cors_preflight_denied(s):
    st, mid = s.stack("main"), new_id()
    r = _preflight(st, "https://evil.example", mid)
    check(r.status < 500, "preflight from a foreign origin: status %d", r.status)
    check(r.header("access-control-allow-origin") is None,
          "foreign origin got access-control-allow-origin %r", r.header("access-control-allow-origin"))
    assert_not_forwarded(s, mid, "denied preflight")
    # CORS_ALLOW_ORIGINS unset (default none): no origin is allowed
    r = _preflight(s.stack("serverkey"), ALLOWED_ORIGIN, new_id())
    check(r.status < 500 and r.header("access-control-allow-origin") is None,
          "CORS_ALLOW_ORIGINS unset: status %d, allow-origin %r", r.status, r.header("access-control-allow-origin"))


def test_cors_headers_on_response(s):
    st = s.stack("main")
    r = st.request("POST", "/v1/messages", api_headers(extra=[("origin", ALLOWED_ORIGIN)]), message_body(stream=True))
    eq(r.status, 200, "status")
    check(r.header("access-control-allow-origin") in (ALLOWED_ORIGIN, "*"),
          "allowed origin: access-control-allow-origin %r", r.header("access-control-allow-origin"))
    r = st.request("POST", "/v1/messages", api_headers(extra=[("origin", "https://evil.example")]), message_body())
    eq(r.status, 200, "status")
    check(r.header("access-control-allow-origin") is None,
          "foreign origin got access-control-allow-origin %r", r.header("access-control-allow-origin"))


def test_cors_headers_on_error_responses(s):
    st = s.stack("main")
    r = st.request("POST", "/v1/messages", api_headers(key=None, extra=[("origin", ALLOWED_ORIGIN)]), message_body())
    eq(r.status, 401, "status")
    check(r.header("access-control-allow-origin") in (ALLOWED_ORIGIN, "*"),
          "allowed origin on a 401: access-control-allow-origin %r", r.header("access-control-allow-origin"))
    r = st.request("POST", "/v1/messages", api_headers(behavior="status=429", extra=[("origin", ALLOWED_ORIGIN)]),
                   message_body())
    eq(r.status, 429, "status")
    check(r.header("access-control-allow-origin") in (ALLOWED_ORIGIN, "*"),
          "allowed origin on an upstream 429: access-control-allow-origin %r", r.header("access-control-allow-origin"))


def test_cors_preflight_other_routes(s):
    st = s.stack("main")
    for path in ("/v1/messages/count_tokens", "/v1/models", "/v1/models/claude-sonnet-4-20250514"):
        r = st.request("OPTIONS", path, [("origin", ALLOWED_ORIGIN), ("access-control-request-method", "POST"
                                         if "count" in path else "GET")])
        check(r.status in (200, 204) and r.header("access-control-allow-origin") in (ALLOWED_ORIGIN, "*"),
              "preflight %s: status %d, allow-origin %r", path, r.status, r.header("access-control-allow-origin"))


def test_httpoxy_proxy_header_ignored(s):
    """A client `Proxy:` header must not become the responder's HTTP proxy (httpoxy)."""
    st, mid = s.stack("main"), new_id()
    trap = "http://127.0.0.1:%d" % closed_port()
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, extra=[("Proxy", trap)]), message_body())
    eq(r.status, 200, "status with a Proxy header (nginx)")
    wait_record(s, mid)
    mid = new_id()
    r = s.cgi("POST", "/v1/messages", api_headers(mock_id=mid, extra=[("Proxy", trap)]), message_body())
    eq(r.status, 200, "status with a Proxy header (CGI, HTTP_PROXY in the environment)")
    wait_record(s, mid)
