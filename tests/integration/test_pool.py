"""The upstream pool (UPSTREAMS_FILE) with two and three mock upstreams on loopback: every
failure before the first byte moves to the next upstream and the client sees one clean
answer; a failure after it, and a 4xx, do not; the cool-down skips a failed upstream and a
success ends it; the same client goes to the same upstream from two responder processes;
model mapping; env: keys never shown; a broken file stops start-up.

The upstreams' order is made deterministic with priorities (the higher group first); the
mocks misbehave each their own way through their default behaviour (POST /_mock/behavior),
since the client's request (and its x-mock-behavior) reaches every upstream alike. Each
test that relies on the cool-down state starts its own responder (the state is per
process)."""

import subprocess

from harness import *

SERVER_A = "sk-ant-pool-a-" + "1" * 24
SERVER_B = "sk-ant-pool-b-" + "2" * 24
ACCESS = "pool-client-key-" + "3" * 20


def _mocks(s, *names):
    ms = [s.more_mock("pool-" + n) for n in names]
    for m in ms:
        m.call("POST", "/_mock/reset")
    return ms


def _write_pool(s, name, sections):
    path = os.path.join(s.tmp, "%s.upstreams.json" % name)
    with open(path, "w") as f:
        json.dump(sections, f)
    return path


def _up(name, base, **kw):
    d = {"name": name, "base_url": base}
    d.update(kw)
    return d


def _stack(s, name, ups, service="claude", env=None):
    e = {"UPSTREAMS_FILE": _write_pool(s, name, {service: ups})}
    e.update(env or {})
    return s.custom_stack(name, env=e, service=service)


def _log_for(st, mid, timeout=10):
    """The request log line of the request the mocks knew as mid (by its request body)."""
    box = {}

    def found():
        for l in st.log_lines():
            if l.get("event") == "request" and mid in (l.get("request_body") or ""):
                box["l"] = l
                return True
        return False
    wait_for(found, timeout, what="the log line of %s" % mid)
    return box["l"]


def _body(mid, stream):
    # the mock id also in the body, so the log line (which logs bodies in test mode) names it
    return message_body(stream=stream, text="pool " + mid)


def _check_stream_clean(r, what):
    eq(r.status, 200, "%s: status" % what)
    evs = parse_events(r.body)
    names = [n for n, _ in evs]
    check(names and names[0] == "message_start" and names[-1] == "message_stop" and "error" not in names,
          "%s: not one clean stream: %r", what, names)


FAILURES = [
    # (name, behaviour of the first upstream (None: its port is closed), stream, failover text,
    #  the kind of a's ccproxy_upstream_errors_total it adds one to)
    ("unreachable", None, True, "a: unreachable", "unreachable"),
    ("timeout", "hang_before_headers,hang_max=20", False, "a: timeout", "timeout"),
    ("500", "status=500", False, "a: 500", "status_5xx"),
    ("529", "status=529", True, "a: 529", "status_5xx"),
    ("429", "status=429,retry_after=1", True, "a: 429", "status_429"),
    ("first event error", "sse_error_after=0", True, "a: error_event", "error_event"),
    ("headers then close", "die_after=0", True, "a: broken", "broken"),
    ("half a held body", "die_after=1", False, "a: broken", "broken"),
]


def _check_failover_metrics(st, what, kind):
    """The failed attempt counts once against a, under its kind; the answer once as a 200
    from b; nothing against b."""
    from test_metrics import scrape, total
    m = scrape(st)
    errs = {(dict(l)["upstream"], dict(l)["kind"]): v for (n, l), v in m.items()
            if n == "ccproxy_upstream_errors_total" and v}
    eq(errs, {("a", kind): 1.0}, "%s: upstream errors counted" % what)
    eq(total(m, "ccproxy_requests_total", route="/v1/messages", status="200"), 1.0, "%s: requests counted" % what)
    eq(total(m, "ccproxy_upstream_ttfb_seconds_count", upstream="b"), 1.0, "%s: b's time to first byte" % what)


def test_pool_each_failure_fails_over(s):
    a, b = _mocks(s, "a", "b")
    notes = []
    for i, (what, beh, stream, failover, kind) in enumerate(FAILURES):
        a.behave(beh or "")
        base_a = "http://127.0.0.1:%d" % closed_port() if beh is None else a.base
        st = _stack(s, "pool-fail-%d" % i, [_up("a", base_a, priority=1), _up("b", b.base)],
                    env={"HTTP_TIMEOUT": "1"} if what == "timeout" else None)
        mid = new_id("fo")
        r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, stream), timeout=30)
        if stream:
            _check_stream_clean(r, what)
        else:
            eq(r.status, 200, "%s: status (%r)" % (what, r.body[:200]))
            eq(r.json().get("type"), "message", "%s: the answer" % what)
        check(b.records(mid), "%s: the second upstream got no request", what)
        if beh is not None:
            check(a.records(mid), "%s: the first upstream got no request", what)
        l = _log_for(st, mid)
        eq(l.get("upstream"), "b", "%s: logged upstream" % what)
        eq(l.get("attempts"), 2, "%s: logged attempts" % what)
        eq(l.get("failover"), failover, "%s: logged failover" % what)
        eq(l.get("status"), 200, "%s: logged status" % what)
        _check_failover_metrics(st, what, kind)
        st.stop()
        notes.append(what)
    return "failed over on: " + ", ".join(notes)


test_pool_each_failure_fails_over.timeout = 180


def test_pool_three_upstreams(s):
    b, c = _mocks(s, "b", "c")
    b.behave("status=529")
    st = _stack(s, "pool-three", [_up("a", "http://127.0.0.1:%d" % closed_port(), priority=2),
                                  _up("b", b.base, priority=1), _up("c", c.base)])
    mid = new_id("three")
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, True))
    _check_stream_clean(r, "three upstreams")
    check(b.records(mid) and c.records(mid), "b and c must both have been tried")
    l = _log_for(st, mid)
    eq((l.get("upstream"), l.get("attempts"), l.get("failover")), ("c", 3, "a: unreachable, b: 529"), "the log line")
    # UPSTREAM_MAX_ATTEMPTS=2: the third is never tried; the client gets b's 529 as it was sent
    st2 = _stack(s, "pool-three-max2", [_up("a", "http://127.0.0.1:%d" % closed_port(), priority=2),
                                        _up("b", b.base, priority=1), _up("c", c.base)],
                 env={"UPSTREAM_MAX_ATTEMPTS": "2"})
    mid = new_id("max2")
    r = st2.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, True))
    assert_anthropic_error(r, 529, "overloaded_error")
    check(not c.records(mid), "UPSTREAM_MAX_ATTEMPTS=2: the third upstream was tried")


def test_pool_no_retry_after_first_byte(s):
    a, b = _mocks(s, "a", "b")
    a.behave("die_after=2")
    st = _stack(s, "pool-late", [_up("a", a.base, priority=1), _up("b", b.base)])
    mid = new_id("late")
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, True))
    eq(r.status, 200, "status")
    names = [n for n, _ in parse_events(r.body)]
    eq(names[:2], ["message_start", "content_block_start"], "the first events")
    eq(names[-1], "error", "the stream ends with the error event")
    check(not b.records(mid), "a failure after the first byte was retried on b")
    l = _log_for(st, mid)
    eq((l.get("upstream"), l.get("attempts")), ("a", 1), "the log line")
    check("failover" not in l, "failover logged: %r" % l.get("failover"))


def test_pool_4xx_passes_through_untried(s):
    a, b = _mocks(s, "a", "b")
    a.behave("status=400")
    st = _stack(s, "pool-4xx", [_up("a", a.base, priority=1), _up("b", b.base)])
    mid = new_id("4xx")
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, True))
    assert_anthropic_error(r, 400, "invalid_request_error")
    same_bytes(r.body, rec_response(a.record(mid)), "the 400 body")
    check(not b.records(mid), "a 400 was retried on b")


def test_pool_all_fail_last_error_as_sent(s):
    a, b = _mocks(s, "a", "b")
    a.behave("status=500")
    b.behave("status=429,retry_after=9")
    st = _stack(s, "pool-allfail", [_up("a", a.base, priority=1), _up("b", b.base)])
    mid = new_id("allfail")
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, False))
    assert_anthropic_error(r, 429, "rate_limit_error")
    eq(r.header("retry-after"), "9", "retry-after of the last upstream")
    same_bytes(r.body, rec_response(b.record(mid)), "the last upstream's body")
    l = _log_for(st, mid)
    eq((l.get("attempts"), l.get("failover")), (2, "a: 500, b: 429"), "the log line")
    # every upstream unreachable: the dialect's 502
    st2 = _stack(s, "pool-alldown", [_up("a", "http://127.0.0.1:%d" % closed_port()),
                                     _up("b", "http://127.0.0.1:%d" % closed_port())])
    r = st2.request("POST", "/v1/messages", api_headers(), message_body(stream=True))
    assert_anthropic_error(r, 502, "api_error")


def _upstreams(st):
    r = st.request("GET", "/upstreams")
    eq(r.status, 200, "GET /upstreams")
    return {u["name"]: u for u in r.json()["upstreams"]}


def test_pool_cool_down_skips_and_success_resets(s):
    a, b = _mocks(s, "a", "b")
    st = _stack(s, "pool-cool", [_up("a", a.base, priority=1), _up("b", b.base)])
    eq(_upstreams(st)["a"]["state"], "ready", "a at start")
    # a answers 429 with retry-after 30: b answers, a cools down for 30 s
    a.behave("status=429,retry_after=30")
    mid = new_id("cool1")
    eq(st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, False)).status, 200, "first")
    ua = _upstreams(st)["a"]
    eq((ua["state"], ua["failures"]), ("cooling", 1), "a after its 429")
    check(20 < ua["cool_down_s"] <= 30, "a's cool-down %r is not retry-after's 30 s", ua["cool_down_s"])
    # a is healthy again but cooling: skipped
    a.behave("")
    mid = new_id("cool2")
    eq(st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, False)).status, 200, "second")
    check(not a.records(mid), "a cooling upstream was tried while another was usable")
    eq(_log_for(st, mid).get("attempts"), 1, "attempts of the second")
    # b fails too (a skipped: nothing else to try); then both cool down
    b.behave("status=429,retry_after=60")
    mid = new_id("cool3")
    eq(st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, False)).status, 429, "third")
    check(not a.records(mid), "a was tried while cooling")
    # every one cooling: the least recently failed (a) is tried, and its success ends its cool-down
    b.behave("")
    mid = new_id("cool4")
    eq(st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, False)).status, 200, "fourth")
    check(a.records(mid) and not b.records(mid), "the least recently failed upstream was not the one tried")
    ups = _upstreams(st)
    eq((ups["a"]["state"], ups["a"]["failures"], ups["a"]["cool_down_s"]), ("ready", 0, 0), "a after a success")
    eq(ups["b"]["state"], "cooling", "b still cooling")
    # the backoff without retry-after: 1 s, then it is used again (liveness bound only)
    a.behave("status=503")
    mid = new_id("cool5")
    st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, False))
    ua = _upstreams(st)["a"]
    check(ua["state"] == "cooling" and ua["cool_down_s"] <= 1.0, "a after a 503: %r", ua)
    a.behave("")
    wait_for(lambda: _upstreams(st)["a"]["state"] == "ready", 10, what="a's 1 s cool-down to end")


test_pool_cool_down_skips_and_success_resets.timeout = 90


def test_pool_same_client_same_upstream_two_processes(s):
    ms = _mocks(s, "a", "b", "c")
    ups = [_up(n, m.base) for n, m in zip("abc", ms)]
    st1 = _stack(s, "pool-sticky-1", ups)
    st2 = _stack(s, "pool-sticky-2", ups)
    chosen = {}
    for k in range(12):
        key = "sticky-client-%d-%s" % (k, "x" * 20)
        got = []
        for st in (st1, st2, st1):
            mid = new_id("sticky")
            r = st.request("POST", "/v1/messages", api_headers(key=key, mock_id=mid), _body(mid, True))
            _check_stream_clean(r, "sticky %d" % k)
            got.append([n for n, m in zip("abc", ms) if m.records(mid)])
        check(all(g == got[0] and len(g) == 1 for g in got), "client %d went to %r", k, got)
        chosen[k] = got[0][0]
    check(len(set(chosen.values())) > 1, "12 clients all went to one upstream: %r", chosen)
    return "clients per upstream: %s" % {n: list(chosen.values()).count(n) for n in "abc"}


def test_pool_session_id_is_the_key(s):
    """With an adapter that derives a session id, the session id picks the upstream: the
    choice matches the log line's upstream across two processes."""
    ms = _mocks(s, "a", "b")
    ups = [_up("a", ms[0].base), _up("b", ms[1].base)]
    sts = [_stack(s, "pool-session-%d" % i, ups) for i in (1, 2)]
    for k in range(6):
        key = "session-client-%d-%s" % (k, "y" * 20)
        names = []
        for st in sts:
            mid = new_id("sess")
            r = st.request("POST", "/v1/messages",
                           api_headers(key=key, mock_id=mid, extra=[("x-client-type", "claude_code")]),
                           _body(mid, False))
            eq(r.status, 200, "status")
            names.append(_log_for(st, mid).get("upstream"))
        eq(names[0], names[1], "client %d's upstream in the two processes" % k)


def test_pool_model_mapping(s):
    a, b = _mocks(s, "a", "b")
    st = _stack(s, "pool-models", [_up("a", a.base, priority=1, models={"claude-pool-x": "upstream-x"}),
                                   _up("b", b.base, models={"*": "*"})])
    mid = new_id("map")
    body = json.loads(message_body(model="claude-pool-x", text="pool " + mid))
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), json.dumps(body).encode())
    eq(r.status, 200, "mapped model")
    eq(json.loads(rec_body(a.record(mid)))["model"], "upstream-x", "the model a received")
    check(not b.records(mid), "b got the mapped request")
    # a takes only its model: another goes to b, unchanged
    mid = new_id("map")
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, False))
    eq(r.status, 200, "other model")
    check(not a.records(mid), "a took a model it does not list")
    eq(json.loads(rec_body(b.record(mid)))["model"], "claude-sonnet-4-20250514", "the model b received")
    # failover renames per upstream: a fails, b gets the client's name ("*": "*")
    a.behave("status=529")
    mid = new_id("map")
    body = json.loads(message_body(model="claude-pool-x", text="pool " + mid))
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), json.dumps(body).encode())
    eq(r.status, 200, "mapped model after failover")
    eq(json.loads(rec_body(b.record(mid)))["model"], "claude-pool-x", "the model b received after failover")
    # no upstream takes the model: the dialect's 404, nothing forwarded
    st2 = _stack(s, "pool-models-only", [_up("a", a.base, models={"claude-pool-x": "upstream-x"})])
    mid = new_id("map")
    r = st2.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, False))
    assert_anthropic_error(r, 404, "not_found_error")
    check("claude-sonnet-4-20250514" in r.json()["error"]["message"], "the message names the model")
    check(not a.records(mid), "forwarded a model nobody takes")


def _check_config(service, env):
    e = minimal_env()
    e.update(BASE_ENV)
    e.update(env)
    r = subprocess.run([service_bin(service), "--check-config"], env=e, capture_output=True, timeout=30)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def test_pool_env_keys_and_masking(s):
    a, b = _mocks(s, "a", "b")
    ups = [_up("a", a.base, priority=1, api_key="env:CCP_POOL_KEY_A"),
           _up("b", b.base.replace("http://", "http://user:pw-secret@"), api_key=SERVER_B,
               headers={"x-pool-tenant": "tenant-secret"})]
    env = {"ACCESS_KEYS": ACCESS, "CCP_POOL_KEY_A": SERVER_A}
    st = _stack(s, "pool-keys", ups, env=env)
    mid = new_id("keys")
    r = st.request("POST", "/v1/messages", api_headers(key=ACCESS, mock_id=mid), _body(mid, False))
    eq(r.status, 200, "status")
    eq(rec_headers(a.record(mid)).get("x-api-key"), [SERVER_A], "the key a received (from env:)")
    # a client key not in ACCESS_KEYS: refused before any upstream
    r = st.request("POST", "/v1/messages", api_headers(key="sk-not-listed", mock_id=mid), _body(mid, False))
    assert_anthropic_error(r, 401, "authentication_error")
    # b gets its own key and extra header, the client's auth style (x-api-key)
    a.behave("status=529")
    mid = new_id("keys")
    eq(st.request("POST", "/v1/messages", api_headers(key=ACCESS, mock_id=mid), _body(mid, False)).status, 200, "b")
    h = rec_headers(b.record(mid))
    eq((h.get("x-api-key"), h.get("x-pool-tenant")), ([SERVER_B], ["tenant-secret"]), "b's key and header")
    # nothing shows a key, a URL password or a header value
    rc, out, err = _check_config("claude", dict(env, UPSTREAMS_FILE=st.env["UPSTREAMS_FILE"]))
    eq(rc, 0, "--check-config (%s)" % err[-300:])
    desc = json.loads(out.splitlines()[0])
    got = {u["name"]: u for u in desc["upstreams"]}
    eq(got["a"]["api_key"], "env:CCP_POOL_KEY_A (***)", "a's key in --check-config")
    eq(got["b"]["api_key"], "***", "b's key in --check-config")
    shown = out + err + json.dumps(_upstreams(st)) + st.log_text()
    for secret in (SERVER_A, SERVER_B, "pw-secret", "tenant-secret"):
        check(secret not in shown, "%s... shown by --check-config, GET /upstreams or the log", secret[:12])
    # an env: variable that is not set stops start-up, named
    rc, out, err = _check_config("claude", {"ACCESS_KEYS": ACCESS, "UPSTREAMS_FILE": st.env["UPSTREAMS_FILE"]})
    check(rc == 2 and "CCP_POOL_KEY_A" in err and "upstream \"a\"" in err, "unset env: key: rc %s, %r", rc, err[-300:])
    # a server-held key without ACCESS_KEYS stops start-up
    rc, out, err = _check_config("claude", {"CCP_POOL_KEY_A": SERVER_A, "UPSTREAMS_FILE": st.env["UPSTREAMS_FILE"]})
    check(rc == 2 and "ACCESS_KEYS" in err, "a server key without ACCESS_KEYS: rc %s, %r", rc, err[-300:])
    check(SERVER_A not in err and SERVER_B not in err, "a key in the error message")


def test_pool_broken_file_stops_startup(s):
    cases = [
        ('{"claude": [ {"name": "x",} ]', "not valid JSON"),
        ('{"claude": [{"name": "a", "base_url": "ftp://x"}]}', 'claude upstream "a": field "base_url"'),
        ('{"claude": [{"name": "a", "base_url": "http://x", "weight": -1}]}', 'upstream "a": field "weight"'),
        ('{"claude": [{"name": "a", "base_url": "http://x"}, {"name": "a", "base_url": "http://y"}]}',
         'upstream #2: the name "a" is taken'),
        ('{"claude": [{"base_url": "http://x"}]}', 'claude upstream #1: field "name" is required'),
    ]
    for i, (text, want) in enumerate(cases):
        path = os.path.join(s.tmp, "broken-%d.upstreams.json" % i)
        with open(path, "w") as f:
            f.write(text)
        rc, out, err = _check_config("claude", {"UPSTREAMS_FILE": path})
        check(rc == 2, "broken file %d: exit %s", i, rc)
        check(path in err and want in err, "broken file %d: the message %r lacks %r or the path", i, err[-300:], want)
    rc, out, err = _check_config("codex", {"UPSTREAMS_FILE": os.path.join(s.tmp, "missing.json")})
    check(rc == 2 and "UPSTREAMS_FILE=" in err, "a missing file: rc %s, %r", rc, err[-200:])
    # and a real start (spawn-fcgi -n, as deployments run it) stops too, with the same line
    import adapters_support as sup
    path = os.path.join(s.tmp, "broken-0.upstreams.json")
    rc, out = sup.spawn_fcgi_start({"UPSTREAMS_FILE": path}, os.path.join(s.tmp, "pool-broken.sock"))
    check(rc not in (0, None), "spawn-fcgi -n with a broken UPSTREAMS_FILE: exit status %s", rc)
    check(path in out and "not valid JSON" in out, "the start-up failure does not say why: %r", out[-300:])


def test_pool_codex_failover_and_upstreams_route(s):
    a, b = _mocks(s, "a", "b")
    a.behave("error_event_after=0")
    st = _stack(s, "pool-codex", [_up("a", a.base + "/v1", priority=1), _up("b", b.base + "/v1", weight=2)],
                service="codex")
    mid = new_id("cx")
    r = st.request("POST", "/v1/responses", oa_headers(mock_id=mid),
                   responses_body(stream=True, text="pool " + mid))
    eq(r.status, 200, "status")
    types = [n for n, _ in parse_events(r.body)]
    check(types and types[0] == "response.created" and types[-1] == "response.completed",
          "not one clean Responses stream: %r", types)
    check(a.records(mid) and b.records(mid), "both upstreams should have been asked")
    eq(_log_for(st, mid).get("failover"), "a: error_event", "the log line's failover")
    ups = _upstreams(st)
    eq(sorted(ups), ["a", "b"], "the upstreams listed")
    eq((ups["b"]["weight"], ups["b"]["priority"], ups["b"]["models"], ups["b"]["key"]), (2, 0, None, "client"),
       "b's entry")
    check(ups["b"]["base_url"].endswith("/v1"), "b's base_url %r", ups["b"]["base_url"])


def test_pool_client_leaving_during_retry_cancels(s):
    a, b = _mocks(s, "a", "b")
    a.behave("status=500")
    b.behave("hang_before_headers,hang_max=30")
    st = _stack(s, "pool-leave", [_up("a", a.base, priority=1), _up("b", b.base)])
    mid = new_id("leave")
    c = st.open("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, True), timeout=20)
    wait_for(lambda: b.records(mid) and b.record(mid)["state"] == "hanging", 15, what="the retry to reach b")
    c.close()
    ok, rec = b.wait(mid, "disconnected", 10)
    check(ok, "the second attempt was still open 10 s after the client left")


def test_pool_default_is_a_pool_of_one(s):
    st = s.stack("main")
    ups = _upstreams(st)
    eq(list(ups), ["default"], "the upstreams without UPSTREAMS_FILE")
    eq(ups["default"]["base_url"], st.upstream_url, "the default upstream's URL")
    mid = new_id("one")
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid), _body(mid, False))
    eq(r.status, 200, "status")
    l = _log_for(st, mid)
    eq((l.get("upstream"), l.get("attempts")), ("default", 1), "the log line")
    # a 529 from the only upstream passes as it was sent: nothing to fail over to
    mid = new_id("one")
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, behavior="status=529"), _body(mid, False))
    assert_anthropic_error(r, 529, "overloaded_error")
    same_bytes(r.body, rec_response(s.mock.record(mid)), "the 529 body")
