"""The deployment matrix beyond nginx + spawn-fcgi (issue 5): lighttpd's own behaviour
where it differs from nginx (the counterparts of the nginx-only tests named in run.py's
SERVER_ONLY), plain CGI under a real CGI host (lighttpd mod_cgi), the systemd units,
`make install` / `make uninstall`, and the administration flags. The relay, adapter and
Codex cases themselves run behind lighttpd in the [lighttpd] pass of their own modules."""

import re
import shlex
import struct

from harness import *
import adapters_support as sup


def _need_lighttpd():
    if "lighttpd" not in web_servers():
        raise Skip("lighttpd is not in CCPROXY_WEB_SERVERS")
    if not shutil.which("lighttpd"):
        raise Skip("lighttpd is not installed")


def _raw(st, data, timeout=15):
    c = Conn(st.port, timeout=timeout)
    try:
        c.send_raw(data)
        c.read_head()
        return c.response()
    finally:
        c.close()


# --------------------------------------------------------------------------- lighttpd


def test_lighttpd_rendered_config(s):
    """What the spec asks of conf/lighttpd, in the rendered file lighttpd runs: streaming
    switches set explicitly, a body limit >= MAX_BODY_BYTES, the responders spawned by
    lighttpd with their configuration in bin-environment; and `lighttpd -tt` accepts it."""
    _need_lighttpd()
    st = s.stack("small", web="lighttpd")  # MAX_BODY_BYTES=4096
    conf = open(os.path.join(st.web_dir, "ccproxy.conf")).read()
    check(re.search(r"^server\.stream-response-body\s*=\s*2\s*$", conf, re.M), "stream-response-body = 2 not set")
    check(re.search(r"^server\.stream-request-body\s*=\s*\d\s*$", conf, re.M), "stream-request-body not set")
    kb = int(re.search(r"^server\.max-request-size\s*=\s*(\d+)", conf, re.M).group(1))
    check(kb * 1024 >= 4096, "max-request-size %d KiB < MAX_BODY_BYTES", kb)
    for svc in ("claude", "codex"):
        check('"bin-path" => "%s/ccproxy-%s"' % (st.wrap_dir, svc) in conf, "no bin-path for %s", svc)
    check('"MAX_BODY_BYTES" => "4096"' in conf and '"WORKER_THREADS" => "2"' in conf,
          "the stack's configuration is not in bin-environment")
    r = subprocess.run(["lighttpd", "-tt", "-f", os.path.join(st.web_dir, "lighttpd.conf")],
                       capture_output=True, timeout=30)
    eq(r.returncode, 0, "lighttpd -tt (%s)" % r.stderr.decode()[-300:])
    # the default body limit: a 32 MiB body passes lighttpd (the responder refuses above it)
    dflt = open(os.path.join(s.stack("main", web="lighttpd").web_dir, "ccproxy.conf")).read()
    kb = int(re.search(r"^server\.max-request-size\s*=\s*(\d+)", dflt, re.M).group(1))
    check(kb * 1024 >= 33554432, "default max-request-size %d KiB < 32 MiB", kb)


def test_lighttpd_responder_down_503_then_restarted(s):
    """Counterpart of test_502_nginx_responder_down / test_codex_502_nginx_responder_down.
    lighttpd supervises the responders it spawned: a killed one is restarted at once, and
    while it cannot be started lighttpd answers 503 (or 500) from the service's JSON error page."""
    _need_lighttpd()
    # lighttpd answers 503 while the backend is marked down, or 500 when its own attempt to
    # spawn the responder fails first; either way it is the port's JSON error page.
    def down(check_shape):
        def assert_down(r, what):
            check(r.status in (500, 503), "%s: expected 500 or 503, got %s %r", what, r.status, r.body[:200])
            return check_shape(r, r.status, what)
        return assert_down
    for name, assert_shape in (("killable", down(lambda r, st_, what: assert_anthropic_error(r, st_, "api_error", what))),
                               ("codex_killable", down(lambda r, st_, what: assert_openai_error(r, st_, "server_error",
                                                                                             what=what)))):
        st = s.stack(name, web="lighttpd")
        eq(st.request("GET", "/health").status, 200, "%s: health before the kill" % name)
        # killed, nothing stopping the restart: the next request is served by a new process
        old = st.current_responder().pid
        st.kill_responder(stay_down=False)
        # lighttpd may answer 503 for a moment while it notices the death and respawns
        wait_for(lambda: st.request("GET", "/health", timeout=20).status == 200, 20, interval=0.2,
                 what="%s: a request served after the kill" % name)
        new = st.current_responder()
        check(new is not None and new.pid != old and new.alive(), "%s: no new responder after the kill", name)
        # killed and unable to start again: lighttpd's own 503, in the dialect of the port
        st.kill_responder(stay_down=True)
        assert_shape(st.request("GET", "/health", timeout=20), "%s: responder down" % name)
        body = message_body() if name == "killable" else responses_body()
        hdrs = api_headers() if name == "killable" else oa_headers()
        path = "/v1/messages" if name == "killable" else "/v1/responses"
        assert_shape(st.request("POST", path, hdrs, body, timeout=20), "%s: responder down (POST)" % name)
        st.revive()
        wait_for(lambda: st.request("GET", "/health").status == 200, 20, interval=0.2,
                 what="%s: lighttpd to start the responder again" % name)


def test_lighttpd_codex_400_unparsable_is_claude_shape(s):
    """Counterpart of test_codex_400_nginx_bad_headers. A request lighttpd cannot parse is
    answered before any per-port block applies, so the Codex port's 400 carries the global
    (Claude) error page: a JSON error, but in the Anthropic shape (documented in the README).
    An error lighttpd raises after parsing (413 over max-request-size) has the port's shape."""
    _need_lighttpd()
    st, mid = s.stack("codex", web="lighttpd"), new_id()
    body = responses_body()
    for raw in (("POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nauthorization: Bearer %s\r\nx-mock-id: %s\r\n"
                 "x-app: cli\rinjected: 1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % (OA_CLIENT_KEY, mid, len(body))).encode() + body,
                b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nthis line has no colon\r\nConnection: close\r\n\r\n"):
        assert_anthropic_error(_raw(st, raw), 400, "invalid_request_error", "lighttpd 400 on the Codex port")
    assert_not_forwarded(s, mid, "CR in a header")
    mid = new_id()
    c = Conn(st.port, timeout=15)
    try:
        c.send_request("POST", "/v1/responses", oa_headers(mock_id=mid, extra=[("Content-Length", str(1 << 33))]),
                       b'{"model":')
        c.read_head()
        r = c.response()
    finally:
        c.close()
    assert_openai_error(r, 413, "invalid_request_error", what="lighttpd 413 on the Codex port")
    assert_not_forwarded(s, mid, "over lighttpd's limit")


def test_lighttpd_absolute_form_target_refused(s):
    """Counterpart of test_upstream_not_taken_from_request: lighttpd refuses an absolute-form
    target with its own 400 (JSON, Claude shape); a foreign Host still never picks the upstream."""
    _need_lighttpd()
    st, mid = s.stack("main", web="lighttpd"), new_id()
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), message_body(), host="evil.example:9")
    eq(r.status, 200, "status with a foreign Host")
    eq(rec_headers(wait_record(s, mid)).get("host"), ["127.0.0.1:%d" % s.mock.port], "upstream host")
    mid = new_id()
    r = st.request("POST", "http://evil.example:9/v1/messages?beta=true", api_headers(mock_id=mid), message_body())
    if r.status == 200:  # a lighttpd that accepts it must still not let it choose the upstream
        rec = wait_record(s, mid)
        eq((rec["path"], rec_headers(rec).get("host")), ("/v1/messages", ["127.0.0.1:%d" % s.mock.port]),
           "upstream request")
    else:
        assert_anthropic_error(r, 400, "invalid_request_error", "absolute-form target")
        assert_not_forwarded(s, mid, "absolute-form target")


def _gone_then_next_byte(s, st, path, headers_fn, body, what):
    """The client closes (FIN) while the upstream holds the next event: lighttpd notices at
    its next write, so the upstream must close within 1 s of the byte that follows."""
    mid = new_id()
    c = st.open("POST", path, headers_fn(mid), body, timeout=20)
    c.read_head()
    check(c.read_event() is not None, "%s: first event" % what)
    wait_record(s, mid, "gate_waiting", 10)
    c.close()
    rec = s.mock.record(mid)
    check(not rec["disconnected"] or rec["disconnected_at"] is not None, "record")
    t0 = time.time()
    s.mock.release(mid)  # event 2 goes out: lighttpd's write meets the closed client
    ok, rec = s.mock.wait(mid, "disconnected", 10)
    check(ok, "%s: the upstream connection was still open 10 s after the next byte (state %s, %d of %d events)",
          what, rec and rec["state"], rec and rec["events_sent"], rec and rec["events_total"])
    dt = rec["disconnected_at"] - t0
    check(dt <= 1.0, "%s: upstream closed %.3fs after the next byte (bound 1 s)", what, dt)
    check(rec["events_sent"] < rec["events_total"], "%s: the stream ran to its end", what)
    return dt


def _gone_by_reset(s, st, path, headers_fn, body, what):
    """The client resets the connection (SO_LINGER 0) while the upstream is silent: lighttpd
    sees the error on the socket at once; the upstream closes within 1 s."""
    mid = new_id()
    c = st.open("POST", path, headers_fn(mid), body, timeout=20)
    c.read_head()
    check(c.read_event() is not None, "%s: first event" % what)
    wait_record(s, mid, "gate_waiting", 10)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    t0 = time.time()
    c.sock.close()
    ok, rec = s.mock.wait(mid, "disconnected", 10)
    check(ok, "%s: the upstream connection was still open 10 s after the client's reset", what)
    dt = rec["disconnected_at"] - t0
    check(dt <= 1.0, "%s: upstream closed %.3fs after the reset (bound 1 s)", what, dt)
    s.mock.release(mid, all=True)
    return dt


def test_lighttpd_client_gone_in_silence_detected_at_next_byte(s):
    """Counterpart of the nginx cancel-in-silence tests: lighttpd 1.4 treats a client FIN
    as a half-close (RFC 9112 9.6) and learns that the client is gone at its next write;
    a reset is seen at once. (Client gone while events flow: the [lighttpd] pass of
    test_cancel and test_codex proves the 1 s bound as for nginx.)"""
    _need_lighttpd()
    notes = []
    st = s.stack("main", web="lighttpd")
    notes.append("claude FIN->next byte %.3fs" % _gone_then_next_byte(
        s, st, "/v1/messages", lambda m: api_headers(mock_id=m, behavior="gate_each=" + m),
        message_body(stream=True), "claude stream"))
    notes.append("claude reset %.3fs" % _gone_by_reset(
        s, st, "/v1/messages", lambda m: api_headers(mock_id=m, behavior="gate=" + m),
        message_body(stream=True), "claude stream"))
    cx = s.stack("codex", web="lighttpd")
    notes.append("codex FIN->next byte %.3fs" % _gone_then_next_byte(
        s, cx, "/v1/responses", lambda m: oa_headers(mock_id=m, behavior="gate_each=" + m),
        responses_body(stream=True), "codex stream"))
    return ", ".join(notes)


# --------------------------------------------------------------------------- CGI under a real CGI host


class CGIHost:
    """lighttpd with mod_cgi serving both binaries from /cgi-bin/ (copies of the built
    binaries); the Claude one configured by setenv.add-environment, the Codex one by a
    .env file named in CCPROXY_ENV_FILE (both ways a shared host offers)."""

    def __init__(self, suite):
        self.dir = os.path.join(suite.tmp, "cgi-host")
        os.makedirs(os.path.join(self.dir, "htdocs", "cgi-bin"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        for svc in ("claude", "codex"):
            dst = os.path.join(self.dir, "htdocs", "cgi-bin", "ccproxy-" + svc)
            shutil.copy2(str(service_bin(svc)), dst)
            os.chmod(dst, 0o755)
        self.codex_env = os.path.join(self.dir, "codex.env")
        with open(self.codex_env, "w") as f:
            f.write("# the Codex service's configuration on a shared host\nOPENAI_BASE_URL=%s/v1\n"
                    "CODEX_ENV_CWD=%s\nLOG_FORMAT=json\nENVIRONMENT=test\n" % (suite.mock.base, CODEX_CWD))
        claude_env = dict(BASE_ENV, ANTHROPIC_BASE_URL=suite.mock.base)
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                claude_env[k] = os.environ[k]
        env_items = ",\n".join('        "%s" => "%s"' % (k, v) for k, v in sorted(claude_env.items()))
        self.port = free_port()
        self.conf = os.path.join(self.dir, "lighttpd.conf")
        with open(self.conf, "w") as f:
            f.write('''server.modules = ( "mod_setenv", "mod_cgi" )
server.document-root = "%(d)s/htdocs"
server.bind = "127.0.0.1"
server.port = %(port)d
server.pid-file = "%(d)s/lighttpd.pid"
server.errorlog = "%(d)s/logs/error.log"
server.upload-dirs = ( "%(d)s" )
server.stream-response-body = 2
server.stream-request-body = 0
server.max-request-size = 33792
$HTTP["url"] =~ "^/cgi-bin/ccproxy-claude(/|$)" {
    cgi.assign = ( "/ccproxy-claude" => "" )
    setenv.add-environment = (
%(env)s
    )
}
$HTTP["url"] =~ "^/cgi-bin/ccproxy-codex(/|$)" {
    cgi.assign = ( "/ccproxy-codex" => "" )
    setenv.add-environment = ( "CCPROXY_ENV_FILE" => "%(codex_env)s" )
}
''' % dict(d=self.dir, port=self.port, env=env_items, codex_env=self.codex_env))
        self.out = open(os.path.join(self.dir, "lighttpd.stderr"), "ab")
        self.proc = Proc("cgi-host", ["lighttpd", "-D", "-f", self.conf], env=minimal_env(), cwd=self.dir,
                         stdout=self.out, stderr=self.out)
        try:
            wait_for(lambda: can_connect(("127.0.0.1", self.port)) or not self.proc.alive(), 15,
                     what="the CGI host on port %d" % self.port)
            if not self.proc.alive():
                raise HarnessError("lighttpd (mod_cgi) exited: %s" % Stack.file_tail(
                    os.path.join(self.dir, "logs", "error.log")))
        except Exception:
            self.stop()
            raise

    def request(self, method, path, headers=(), body=None, timeout=30.0):
        return request(self.port, method, path, headers, body, timeout=timeout)

    def open(self, method, path, headers=(), body=None, timeout=30.0):
        c = Conn(self.port, timeout=timeout)
        c.send_request(method, path, headers, body)
        return c

    def stop(self):
        self.proc.stop()
        self.out.close()


def _cgi_host(s):
    _need_lighttpd()
    h = getattr(s, "_cgi_host", None)
    if h is None or not h.proc.alive():
        h = CGIHost(s)
        s._cgi_host = h
        old_close = s.close

        def close(keep=False):
            try:
                h.stop()
            finally:
                old_close(keep)
        s.close = close
    return h


def test_cgi_host_claude_nonstream_and_path_info(s):
    """Non-stream through /cgi-bin/ccproxy-claude/v1/messages?beta=true: PATH_INFO routes,
    the query reaches the upstream, the reply is byte-identical."""
    h, mid = _cgi_host(s), new_id()
    r = h.request("POST", "/cgi-bin/ccproxy-claude/v1/messages?beta=true", api_headers(mock_id=mid), message_body())
    eq(r.status, 200, "status (%r)" % r.body[:300])
    rec = wait_record(s, mid)
    eq((rec["method"], rec["path"], rec["query"]), ("POST", "/v1/messages", "beta=true"), "upstream request line")
    same_bytes(r.body, rec_response(rec), "non-stream reply through mod_cgi")
    eq(r.header("request-id"), rec["request_id"], "request-id")
    r = h.request("GET", "/cgi-bin/ccproxy-claude/health")
    eq((r.status, r.json().get("service")), (200, "claude-service"), "/health through mod_cgi")


def test_cgi_host_claude_stream_incremental(s):
    """gate_each: event k+1 leaves the upstream only after the client read event k, so a
    CGI process or host that buffers shows as a read timeout."""
    h, mid = _cgi_host(s), new_id()
    c = h.open("POST", "/cgi-bin/ccproxy-claude/v1/messages", api_headers(mock_id=mid, behavior="gate_each=" + mid),
               message_body(stream=True), timeout=15)
    got = []
    try:
        try:
            c.read_head()
        except socket.timeout:
            raise AssertionError("headers not delivered while the upstream held event 2")
        eq(c.status, 200, "status")
        check((c.header("content-type") or "").startswith("text/event-stream"), "content-type %r",
              c.header("content-type"))
        while True:
            try:
                ev = c.read_event()
            except socket.timeout:
                raise AssertionError("event %d not delivered within 15 s although the upstream sent it: the "
                                     "CGI path buffers" % (len(got) + 1))
            if ev is None:
                break
            got.append(ev)
            total = s.mock.record(mid).get("events_total") or 0
            if len(got) < total:
                rec = wait_record(s, mid, "gate_waiting", 10)
                eq((rec["events_sent"], rec["gate_waiting"]), (len(got), len(got)),
                   "upstream (events sent, waiting) after the client read event %d" % len(got))
                s.mock.release(mid)
        check(c.clean_end, "the stream did not end cleanly")
    finally:
        c.close()
    rec = wait_record(s, mid)
    eq(len(got), rec["events_total"], "events received one by one")
    same_bytes(b"".join(got), rec_response(rec), "gated stream through mod_cgi")
    return "%d events, one by one" % len(got)


def test_cgi_host_errors(s):
    """The responder's own error (no key), a route error, and an upstream error passed
    through, each in the service's shape; nothing forwarded for the first two."""
    h = _cgi_host(s)
    mid = new_id()
    r = h.request("POST", "/cgi-bin/ccproxy-claude/v1/messages", api_headers(key=None, mock_id=mid), message_body())
    assert_anthropic_error(r, 401, "authentication_error", "no key via mod_cgi")
    assert_not_forwarded(s, mid, "no key")
    mid = new_id()
    r = h.request("GET", "/cgi-bin/ccproxy-claude/v1/nope", api_headers(mock_id=mid))
    assert_anthropic_error(r, 404, "not_found_error", "unknown route via mod_cgi")
    mid = new_id()
    r = h.request("POST", "/cgi-bin/ccproxy-claude/v1/messages", api_headers(mock_id=mid, behavior="status=429"),
                  message_body(stream=True))
    rec = wait_record(s, mid)
    eq((r.status, r.header("retry-after")), (429, "7"), "upstream 429 via mod_cgi (status, retry-after)")
    same_bytes(r.body, rec_response(rec), "429 body")
    r = h.request("POST", "/cgi-bin/ccproxy-codex/v1/responses", oa_headers(key=None), responses_body())
    assert_openai_error(r, 401, "invalid_request_error", what="Codex without a key via mod_cgi")


def test_cgi_host_websocket_upgrade_426(s):
    """The captured Codex CLI WebSocket handshake through mod_cgi: 426 in the OpenAI shape,
    and a handshake on the Claude binary in the Anthropic shape. lighttpd's mod_cgi does not
    pass the Upgrade header to a CGI program (cgi.upgrade is off by default; it passes
    Connection and the Sec-WebSocket-* headers), so this is the Sec-WebSocket-Key case."""
    h = _cgi_host(s)
    mid = new_id()
    fx = json.loads((REPO / "tests" / "fixtures" / "codex_cli_builtin_websocket_upgrade.json").read_text())
    headers = [(k, "Bearer " + OA_CLIENT_KEY if k.lower() == "authorization" else v) for k, v in fx["headers"]
               if k.lower() != "host"] + [("x-mock-id", mid)]
    r = h.request("GET", "/cgi-bin/ccproxy-codex" + fx["path"], headers)
    obj = assert_openai_error(r, 426, "invalid_request_error", "websocket_not_supported", "Codex handshake via mod_cgi")
    check("HTTPS streaming" in obj["error"]["message"], "426 message: %r", obj["error"]["message"])
    assert_not_forwarded(s, mid, "Codex handshake via mod_cgi")
    mid = new_id()
    r = h.request("GET", "/cgi-bin/ccproxy-claude/v1/messages",
                  api_headers(mock_id=mid, extra=[(k, v) for k, v in fx["headers"] if k.lower().startswith(
                      ("connection", "upgrade", "sec-websocket-"))]))
    assert_anthropic_error(r, 426, "invalid_request_error", "Claude handshake via mod_cgi")
    assert_not_forwarded(s, mid, "Claude handshake via mod_cgi")


def test_cgi_host_cherry_studio_adapter(s):
    """The CherryStudio pipeline through mod_cgi: the Claude Code system block first and
    the session id the spec derives from the client key in metadata.user_id."""
    h, mid = _cgi_host(s), new_id("cherry")
    sent = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": "You are a helpful assistant.",
            "messages": [{"role": "user", "content": "Hello"}], "stream": False}
    clock = sup.Clock()
    r = h.request("POST", "/cgi-bin/ccproxy-claude/v1/messages",
                  api_headers(mock_id=mid, extra=[("user-agent", "CherryStudio/1.5.3")]), json.dumps(sent).encode())
    clock.stop()
    eq(r.status, 200, "status (%r)" % r.body[:300])
    rec = wait_record(s, mid)
    got = sup.upstream_json(rec, "cherry_studio via mod_cgi")
    spec = sup.adapter_spec("cherry_studio")
    eq(got["system"][0].get("text"), sup.step_params(spec, "prepend_system")["text"], "system[0]")
    eq(got["system"][1], {"type": "text", "text": "You are a helpful assistant."}, "system[1]")
    want = clock.user_ids(CLIENT_KEY, sup.step_params(spec, "session"), default_purpose="cherry_studio")
    check(got["metadata"]["user_id"] in want, "metadata.user_id %r is not the spec's %r", got["metadata"]["user_id"],
          want)
    prof = sup.profile(sup.step_params(spec, "identity")["profile"])
    eq(sup.one_header(rec, "user-agent", "cherry"), prof["headers"]["user-agent"], "upstream user-agent")


def test_cgi_host_codex_stream_nonstream_and_authorization(s):
    """The Codex binary under mod_cgi, configured only by its .env (CCPROXY_ENV_FILE):
    Authorization reaches it (mod_cgi passes HTTP_AUTHORIZATION), stream and non-stream
    replies are byte-identical, and the CherryStudio transformation applies."""
    h = _cgi_host(s)
    for stream in (True, False):
        mid = new_id()
        r = h.request("POST", "/cgi-bin/ccproxy-codex/v1/responses", oa_headers(mock_id=mid),
                      responses_body(stream=stream))
        eq(r.status, 200, "status (stream=%s, %r)" % (stream, r.body[:300]))
        rec = wait_record(s, mid)
        eq(rec["path"], "/v1/responses", "upstream path")
        eq(rec_headers(rec).get("authorization"), ["Bearer " + OA_CLIENT_KEY], "upstream authorization")
        same_bytes(r.body, rec_response(rec), "Codex reply via mod_cgi (stream=%s)" % stream)
    mid = new_id()
    r = h.request("POST", "/cgi-bin/ccproxy-codex/v1/responses",
                  oa_headers(mock_id=mid, user_agent="CherryStudio/1.5.3"), responses_body(stream=True, text="hi"))
    eq(r.status, 200, "CherryStudio status")
    body = json.loads(rec_body(wait_record(s, mid)))
    eq(body["input"][0], {"type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": "Current directory: %s" % CODEX_CWD}]},
       "CherryStudio: the environment message from the .env's CODEX_ENV_CWD")


# --------------------------------------------------------------------------- systemd


def test_systemd_units_verify(s):
    """`systemd-analyze verify` on conf/systemd/ with ExecStart pointing at the built
    binaries and MANPATH at man/ (as <dir>/man8/, so Documentation=man: resolves): no errors."""
    tool = shutil.which("systemd-analyze")
    if not tool:
        raise Skip("systemd-analyze is not installed; the units were not verified")
    d = os.path.join(s.tmp, "systemd")
    os.makedirs(d, exist_ok=True)
    units = sorted(f for f in os.listdir(str(REPO / "conf" / "systemd")) if f.endswith((".socket", ".service")))
    check(units, "no units in conf/systemd")
    for u in units:
        text = open(str(REPO / "conf" / "systemd" / u)).read()
        for svc in ("claude", "codex"):
            text = text.replace("/usr/local/bin/ccproxy-" + svc, str(service_bin(svc)))
        text = text.replace("/usr/bin/spawn-fcgi", shutil.which("spawn-fcgi") or "/usr/bin/spawn-fcgi")
        with open(os.path.join(d, u), "w") as f:
            f.write(text)
    # man looks for <dir>/man8/<page>.8 under each MANPATH entry: man/ laid out that way
    man8 = os.path.join(d, "man", "man8")
    os.makedirs(man8, exist_ok=True)
    for f in os.listdir(str(REPO / "man")):
        if f.endswith(".8") and not os.path.exists(os.path.join(man8, f)):
            os.symlink(str(REPO / "man" / f), os.path.join(man8, f))
    env = minimal_env()
    env["MANPATH"] = os.path.join(d, "man") + ":"
    env["SYSTEMD_LOG_LEVEL"] = "notice"
    r = subprocess.run([tool, "verify"] + [os.path.join(d, u) for u in units], capture_output=True,
                       env=env, cwd=d, timeout=60)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    # lines about this environment, not the units: no running systemd, users not present here
    noise = re.compile(r"(Failed to (connect|open).*bus|System has not been booted with systemd|"
                       r"ccproxy.*(user|group).*(not|unknown)|Cannot find unit|network-online\.target)", re.I)
    problems = [l for l in out.splitlines() if l.strip() and not noise.search(l)
                and any(u in l for u in units + ["ccproxy"])]
    check(r.returncode == 0 or not problems, "systemd-analyze verify (rc %d): %s", r.returncode,
          " | ".join(problems[:5]) or out[-600:])
    check(not problems, "systemd-analyze verify reported: %s", " | ".join(problems[:5]))
    return "%d units verified" % len(units)


# --------------------------------------------------------------------------- make install


def _make(args, timeout=300):
    bd = bin_dir().parent
    extra = ["BUILD=%s" % bd]
    if bd.name == "san":
        extra.append("SANITIZE=1")
    return subprocess.run(["make", "-s", "--no-print-directory"] + args + extra, cwd=str(REPO),
                          capture_output=True, timeout=timeout, env=dict(os.environ))


def _tree(root):
    out = []
    for dp, dn, fn in os.walk(root):
        for f in fn:
            out.append(os.path.relpath(os.path.join(dp, f), root))
    return sorted(out)


def test_make_install_and_uninstall(s):
    """make install PREFIX=/usr DESTDIR=<tmp>: binaries that run, man pages (section 8)
    that man renders, the adapters file, nginx/lighttpd/systemd examples whose paths
    follow the prefix; make uninstall leaves no file behind."""
    dest = os.path.join(s.tmp, "destdir")
    os.makedirs(dest, exist_ok=True)
    r = _make(["install", "PREFIX=/usr", "DESTDIR=" + dest])
    eq(r.returncode, 0, "make install (%s)" % (r.stdout + r.stderr).decode()[-600:])
    root = os.path.join(dest, "usr")
    files = _tree(dest)
    problems = []
    for svc in ("claude", "codex"):
        b = os.path.join(root, "bin", "ccproxy-" + svc)
        if not os.access(b, os.X_OK):
            problems.append("bin/ccproxy-%s missing or not executable" % svc)
            continue
        v = subprocess.run([b, "--version"], capture_output=True, timeout=20)
        if v.returncode != 0 or not v.stdout.decode().startswith("ccproxy-" + svc):
            problems.append("%s --version: rc %d %r" % (svc, v.returncode, v.stdout[:100]))
        man = os.path.join(root, "share", "man", "man8", "ccproxy-%s.8" % svc)
        if not os.path.isfile(man):
            problems.append("share/man/man8/ccproxy-%s.8 missing" % svc)
        elif shutil.which("man"):
            m = subprocess.run(["man", "-l", man], capture_output=True, timeout=30,
                               env=dict(minimal_env(), MANPAGER="cat", PAGER="cat", MANWIDTH="80"))
            text = m.stdout.decode("utf-8", "replace")
            if m.returncode != 0 or "ccproxy-" + svc not in text or len(text) < 200:
                problems.append("man -l ccproxy-%s.8: rc %d, %d chars %r" % (svc, m.returncode, len(text),
                                                                            m.stderr[-200:]))
            elif "@PREFIX@" in text or "/usr/local/" in text:
                problems.append("man page ccproxy-%s.8 still names @PREFIX@ or /usr/local" % svc)
    adapters = os.path.join(root, "share", "ccproxy", "adapters.json")
    if not os.path.isfile(adapters):
        problems.append("share/ccproxy/adapters.json missing")
    else:
        try:
            json.load(open(adapters))
        except ValueError as e:
            problems.append("installed adapters.json is not JSON: %s" % e)
    ex = os.path.join(root, "share", "ccproxy", "examples")
    for kind in ("nginx", "lighttpd", "systemd"):
        if not os.path.isdir(os.path.join(ex, kind)) or not os.listdir(os.path.join(ex, kind)):
            problems.append("no %s examples under share/ccproxy/examples/%s" % (kind, kind))
    # paths inside the examples follow the prefix
    for rel in files:
        if "/examples/" not in "/" + rel:
            continue
        text = open(os.path.join(dest, rel), errors="replace").read()
        if str(REPO) in text or "/usr/local/" in text:
            problems.append("%s names %s" % (rel, str(REPO) if str(REPO) in text else "/usr/local/"))
        if rel.endswith(".service") and "ExecStart=" in text:
            svc = "claude" if "claude" in os.path.basename(rel) else "codex"
            if "/usr/bin/ccproxy-" + svc not in text:
                problems.append("%s: ExecStart does not run /usr/bin/ccproxy-%s" % (rel, svc))
        if "/lighttpd/" in rel and "bin-path" in text:
            for svc in ("claude", "codex"):
                if '"bin-path" => "/usr/bin/ccproxy-%s"' % svc not in text:
                    problems.append("%s: bin-path of %s is not /usr/bin/ccproxy-%s (%s)" % (
                        rel, svc, svc, re.findall(r'"bin-path" => "[^"]*%s"' % svc, text)))
            m = re.search(r'errorfile-prefix = "([^"]*)/claude-"', text)
            if m and not os.path.isfile(os.path.join(dest, m.group(1).lstrip("/"), "claude-502.html")):
                problems.append("%s: its error pages (%s/claude-*.html) are not installed" % (rel, m.group(1)))
    r = _make(["uninstall", "PREFIX=/usr", "DESTDIR=" + dest])
    eq(r.returncode, 0, "make uninstall (%s)" % (r.stdout + r.stderr).decode()[-600:])
    left = _tree(dest)
    check(not left, "make uninstall left %d files: %s", len(left), left[:8])
    check(not problems, "%d problem(s) in the installed tree (%d files): %s", len(problems), len(files),
          " | ".join(problems[:6]))
    return "%d files installed and removed" % len(files)


test_make_install_and_uninstall.timeout = 300


# --------------------------------------------------------------------------- administration flags


def _admin(svc, args, env=None, timeout=20):
    e = minimal_env()
    e.update(env or {})
    r = subprocess.run([str(service_bin(svc))] + args, env=e, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout, cwd=s_tmp_cwd())
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def s_tmp_cwd():
    return tempfile.gettempdir()  # no ./.env there to be read by accident


def test_admin_help_and_version(s):
    for svc in ("claude", "codex"):
        rc, out, err = _admin(svc, ["--help"])
        eq(rc, 0, "%s --help exit status" % svc)
        for w in ("--help", "--version", "--check-config"):
            check(w in out, "%s --help does not mention %s: %r", svc, w, out[:400])
        rc, out, err = _admin(svc, ["--version"])
        eq(rc, 0, "%s --version exit status" % svc)
        check(re.match(r"ccproxy-%s \d+\.\d+\.\d+" % svc, out), "%s --version: %r", svc, out[:100])
        rc, out, err = _admin(svc, ["--no-such-flag"])
        check(rc != 0, "%s --no-such-flag exited 0", svc)


def test_admin_check_config_masks_secrets(s):
    cases = (("claude", {"ANTHROPIC_API_KEY": SERVER_KEY, "ACCESS_KEYS": "%s,%s" % (ACCESS_PLAIN, ACCESS_HASHED),
                         "SESSION_SECRET": "it-session-secret-" + "ab12" * 6}, "ANTHROPIC_BASE_URL"),
             ("codex", {"OPENAI_API_KEY": OA_SERVER_KEY, "ACCESS_KEYS": ACCESS_PLAIN,
                        "SESSION_SECRET": "it-session-secret-" + "cd34" * 6}, "OPENAI_BASE_URL"))
    for svc, env, shown in cases:
        rc, out, err = _admin(svc, ["--check-config"], env)
        eq(rc, 0, "%s --check-config (stderr %s)" % (svc, err[-300:]))
        check(shown in out, "%s --check-config does not print the effective %s: %r", svc, shown, out[:300])
        both = out + err
        for k, v in env.items():
            for piece in (v, v[6:], v[:-4]):
                check(piece not in both, "%s --check-config printed (part of) %s", svc, k)
            for part in v.split(","):
                check(part not in both, "%s --check-config printed an element of %s", svc, k)


def test_admin_check_config_refuses_bad_values(s):
    for svc in ("claude", "codex"):
        for env, var in (({"HTTP_TIMEOUT": "abc"}, "HTTP_TIMEOUT"), ({"MAX_BODY_BYTES": "-5"}, "MAX_BODY_BYTES"),
                         ({"WORKER_THREADS": "many"}, "WORKER_THREADS"), ({"LOG_FORMAT": "xml"}, "LOG_FORMAT")):
            rc, out, err = _admin(svc, ["--check-config"], env)
            check(rc not in (0, None), "%s --check-config with %s exited 0", svc, env)
            lines = [l for l in (out + err).splitlines() if var in l]
            check(lines, "%s --check-config with %s: no line names %s: %r", svc, env, var, (out + err)[-400:])
        # two problems: a message for each
        rc, out, err = _admin(svc, ["--check-config"], {"HTTP_TIMEOUT": "abc", "MAX_BODY_BYTES": "-5"})
        check(rc != 0 and "HTTP_TIMEOUT" in out + err and "MAX_BODY_BYTES" in out + err,
              "%s --check-config with two bad values: rc %s, %r", svc, rc, (out + err)[-400:])


def test_admin_print_config_env(s):
    """--print-config-env: every variable as NAME='value' that sh reads back exactly, .env
    escapes included (the scripts read this instead of parsing .env); a bad value exits 2
    with the same line as --check-config; render-lighttpd.sh forwards the values as read."""
    d = tempfile.mkdtemp(prefix="ccp-printenv-", dir=s.tmp)
    env_file = os.path.join(d, "test.env")
    with open(env_file, "w") as f:
        f.write('export SESSION_SECRET="it\'s \\"quoted\\" $HOME `x`"\n'
                "CODEX_ENV_CWD='/w s'  # a comment\n"
                "ADAPTERS_FILE=\n"
                "BASE_PATH=/claude/ # trailing comment\n")
    want = {"SESSION_SECRET": 'it\'s "quoted" $HOME `x`', "CODEX_ENV_CWD": "/w s", "BASE_PATH": "/claude/",
            "ADAPTERS_FILE": "", "LOG_LEVEL": "info", "CCPROXY_ENV_FILE": env_file}
    for svc in ("claude", "codex"):
        rc, out, err = _admin(svc, ["--print-config-env"], {"CCPROXY_ENV_FILE": env_file})
        eq(rc, 0, "%s --print-config-env (stderr %s)" % (svc, err[-300:]))
        check(all(re.match(r"^[A-Z][A-Z0-9_]*='", l) for l in out.splitlines() if not l.startswith(" ")),
              "%s --print-config-env: a line is not NAME='...': %r", svc, out[:400])
        got = dict(w.split("=", 1) for w in shlex.split(out))
        for k, v in want.items():
            eq(got.get(k), v, "%s --print-config-env %s" % (svc, k))
        # sh reads it back the same
        r = subprocess.run(["sh", "-c", 'eval "$1"; printf "%s|%s" "$SESSION_SECRET" "$CODEX_ENV_CWD"', "sh", out],
                           capture_output=True, timeout=20, env=minimal_env())
        eq(r.stdout.decode(), want["SESSION_SECRET"] + "|" + want["CODEX_ENV_CWD"], "%s: sh's eval" % svc)
        rc, out, err = _admin(svc, ["--print-config-env"], {"CCPROXY_ENV_FILE": env_file, "HTTP_TIMEOUT": "abc"})
        eq(rc, 2, "%s --print-config-env with HTTP_TIMEOUT=abc" % svc)
        check("HTTP_TIMEOUT=abc is invalid" in err and not out, "%s --print-config-env bad value: %r %r",
              svc, out[:200], err[-300:])
    # render-lighttpd.sh forwards them into bin-environment as the responders read them
    if shutil.which("python3"):
        e = minimal_env()
        e.update(CCPROXY_ENV_FILE=env_file, CCPROXY_BIN_DIR=str(bin_dir()))
        r = subprocess.run(["sh", str(RENDER_LIGHTTPD), os.path.join(d, "lighttpd"), str(bin_dir())], env=e,
                           cwd=d, capture_output=True, timeout=30)
        eq(r.returncode, 0, "render-lighttpd.sh (%s)" % r.stderr.decode()[-400:])
        conf = open(os.path.join(d, "lighttpd", "ccproxy.conf")).read()
        esc = want["SESSION_SECRET"].replace("\\", "\\\\").replace('"', '\\"')
        eq(conf.count('"SESSION_SECRET" => "%s"' % esc), 2, "SESSION_SECRET in both bin-environments")
        check('"CCPROXY_ENV_FILE" => "%s"' % env_file in conf, "CCPROXY_ENV_FILE not forwarded")
        check('"ADAPTERS_FILE"' not in conf, "an unset variable was forwarded")
        eq(os.stat(os.path.join(d, "lighttpd", "ccproxy.conf")).st_mode & 0o077, 0,
           "the rendered ccproxy.conf (it holds secrets) is readable by others")


def test_admin_check_config_broken_adapters_file(s):
    d = os.path.join(s.tmp, "admin")
    os.makedirs(d, exist_ok=True)
    bad = os.path.join(d, "broken-adapters.json")
    with open(bad, "w") as f:
        f.write('{"claude": [ {"name": "x",} ]')
    for svc in ("claude", "codex"):
        rc, out, err = _admin(svc, ["--check-config"], {"ADAPTERS_FILE": bad})
        check(rc not in (0, None), "%s --check-config with a broken ADAPTERS_FILE exited %s", svc, rc)
        check(bad in out + err, "%s: the message does not name the file: %r", svc, (out + err)[-400:])
        rc, out, err = _admin(svc, ["--check-config"], {"ADAPTERS_FILE": os.path.join(d, "missing.json")})
        check(rc not in (0, None), "%s --check-config with a missing ADAPTERS_FILE exited %s", svc, rc)
