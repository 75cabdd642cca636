"""Client adapters through nginx + ccproxy-claude, checked on the mock upstream's record.

The expected upstream requests are computed here from the spec (issue 3) and from the
values in conf/adapters.json (profiles, step parameters), never read back from the
responder: the session ids are derived independently (adapters_support.derive).
"""

import json
import os
import re

from harness import *
import adapters_support as sup

CHERRY_UA = "CherryStudio/1.5.3"
CLIENT_BETAS = "output-128k-2025-02-19,interleaved-thinking-2025-05-14"


def _cherry_headers(mid, key=CLIENT_KEY, ua=CHERRY_UA, extra=()):
    h = [("x-api-key", key), ("anthropic-version", "2023-06-01"), ("content-type", "application/json"),
         ("anthropic-beta", CLIENT_BETAS), ("x-mock-id", mid)]
    if ua:
        h.append(("user-agent", ua))
    h.extend(extra)
    return h


def _cherry_body(**extra):
    obj = {"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": "You are a helpful assistant.",
           "messages": [{"role": "user", "content": "Hello"}], "stream": False}
    obj.update(extra)
    return obj


def _expected_pipeline_body(sent, key, clock, adapter="cherry_studio", source=None, secret=None):
    """What the Claude Code pipeline (prepend_system with cache_control, session in
    metadata.user_id, cache_last_message) makes of a body with a string system and a
    string last message, by the spec. Returns a list of candidates (one per window
    around the request)."""
    spec = sup.adapter_spec(adapter, source=source)
    prep = sup.step_params(spec, "prepend_system")
    sess = sup.step_params(spec, "session")
    check(sess.get("field") == "metadata.user_id", "test assumes the session goes to metadata.user_id")
    out = []
    for uid in clock.user_ids(key, sess, secret=secret, default_purpose=adapter):
        want = json.loads(json.dumps(sent))
        block = {"type": "text", "text": prep["text"]}
        if prep.get("cache_control"):
            block["cache_control"] = sup.EPHEMERAL
        system = [block]
        if isinstance(sent.get("system"), str) and sent["system"] and sent["system"] != prep["text"]:
            system.append({"type": "text", "text": sent["system"]})
        want["system"] = system
        want.setdefault("metadata", {})
        want["metadata"]["user_id"] = uid
        last = want["messages"][-1]
        last["content"] = [{"type": "text", "text": last["content"], "cache_control": sup.EPHEMERAL}]
        out.append(want)
    return out


def _check_body_is_one_of(got, candidates, what):
    diffs = [sup.diff_json(got, c) for c in candidates]
    if all(diffs):
        raise AssertionError("%s: upstream body differs from the spec: %s; got %s"
                             % (what, diffs[0], json.dumps(got)[:1500]))


def _expected_identity_headers(client_betas, adapter="cherry_studio", source=None):
    """(user-agent, x-app, anthropic-beta) after merge_beta + identity."""
    spec = sup.adapter_spec(adapter, source=source)
    prof = sup.profile(sup.step_params(spec, "identity")["profile"], source=source)
    beta = sup.merged_list(client_betas, sup.step_params(spec, "merge_beta")["values"],
                           *prof.get("merge", {}).values())
    return prof["headers"]["user-agent"], prof["headers"]["x-app"], beta


def _check_pipeline_headers(rec, what, client_betas=CLIENT_BETAS, key=CLIENT_KEY, adapter="cherry_studio",
                            source=None):
    ua, app, beta = _expected_identity_headers(client_betas, adapter, source)
    eq(sup.one_header(rec, "user-agent", what), ua, what + ": upstream user-agent")
    eq(sup.one_header(rec, "x-app", what), app, what + ": upstream x-app")
    eq(sup.one_header(rec, "anthropic-beta", what), beta, what + ": upstream anthropic-beta")
    vals = beta.split(",")
    eq(len(vals), len(set(vals)), what + ": anthropic-beta values are unique")
    eq(sup.one_header(rec, "x-api-key", what), key, what + ": upstream x-api-key")
    eq(sup.one_header(rec, "anthropic-version", what), "2023-06-01", what + ": anthropic-version")
    eq(sup.one_header(rec, "content-length", what), str(len(rec_body(rec))), what + ": content-length")
    check("x-client-type" not in sup.upstream_headers(rec), "%s: x-client-type reached the upstream", what)


# --------------------------------------------------------------------------- CherryStudio


def test_adapter_cherry_studio_transformed_exactly(s):
    st, mid = s.stack("main"), new_id("cherry")
    sent = _cherry_body()
    clock = sup.Clock()
    r = st.request("POST", "/v1/messages", _cherry_headers(mid), json.dumps(sent).encode())
    clock.stop()
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    eq((rec["method"], rec["path"]), ("POST", "/v1/messages"), "upstream request line")
    got = sup.upstream_json(rec, "cherry_studio")
    _check_body_is_one_of(got, _expected_pipeline_body(sent, CLIENT_KEY, clock), "cherry_studio")
    # the Claude Code block first, with its marker; the client's system after it
    eq(got["system"][0], {"type": "text", "text": sup.CLAUDE_CODE_PROMPT, "cache_control": sup.EPHEMERAL},
       "system[0]")
    eq(got["system"][1], {"type": "text", "text": "You are a helpful assistant."}, "system[1]")
    uid = got["metadata"]["user_id"]
    check(re.fullmatch(r"user_[0-9a-f]{64}_account__session_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}"
                       r"-[0-9a-f]{12}", uid), "metadata.user_id %r is not in the classic shape", uid)
    _check_pipeline_headers(rec, "cherry_studio")
    line = sup.request_log_line(st, lambda l: l.get("user_agent") == CHERRY_UA and l.get("adapter") == "cherry_studio")
    eq(line.get("status"), 200, "log line status")


def test_adapter_cherry_studio_list_system_and_blocks(s):
    """A list system and block content: the block goes first, the last block is marked,
    the client's own marker count is respected (2 existing + 2 added = 4)."""
    st, mid = s.stack("main"), new_id("cherry")
    sent = {"model": "claude-sonnet-4-5", "max_tokens": 64,
            "system": [{"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "t", "description": "d", "input_schema": {"type": "object"},
                       "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
    r = st.request("POST", "/v1/messages", _cherry_headers(mid), json.dumps(sent).encode())
    eq(r.status, 200, "status")
    got = sup.upstream_json(wait_record(s, mid), "list system")
    eq(got["system"], [{"type": "text", "text": sup.CLAUDE_CODE_PROMPT, "cache_control": sup.EPHEMERAL},
                       sent["system"][0]], "system")
    eq(got["messages"][0]["content"], [{"type": "text", "text": "a"},
                                       {"type": "text", "text": "b", "cache_control": sup.EPHEMERAL}], "last message")
    eq(got["tools"], sent["tools"], "tools")
    n = json.dumps(got).count('"cache_control"')
    eq(n, 4, "cache_control breakpoints in the upstream request")


def test_adapter_cherry_studio_four_breakpoints_not_exceeded(s):
    st, mid = s.stack("main"), new_id("cherry")
    mark = {"type": "ephemeral"}
    sent = {"model": "claude-sonnet-4-5", "max_tokens": 64,
            "system": [{"type": "text", "text": "A", "cache_control": mark},
                       {"type": "text", "text": "B", "cache_control": mark}],
            "tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": mark}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": mark}]},
                         {"role": "assistant", "content": "ok"},
                         {"role": "user", "content": "again"}]}
    r = st.request("POST", "/v1/messages", _cherry_headers(mid), json.dumps(sent).encode())
    eq(r.status, 200, "status")
    got = sup.upstream_json(wait_record(s, mid), "4 breakpoints")
    eq(got["system"][0], {"type": "text", "text": sup.CLAUDE_CODE_PROMPT}, "prepended block without a marker")
    eq(got["messages"][-1]["content"], "again", "last message left as sent (no room for a marker)")
    eq(json.dumps(got).count('"cache_control"'), 4, "breakpoints")


def test_adapter_thinking_body_picks_cherry_studio(s):
    st, mid = s.stack("main"), new_id("think")
    ua = "python-httpx/0.27.0 (%s)" % mid
    thinking = {"type": "enabled", "budget_tokens": 2048}
    sent = _cherry_body(thinking=thinking, max_tokens=4096)
    clock = sup.Clock()
    r = st.request("POST", "/v1/messages", _cherry_headers(mid, ua=ua), json.dumps(sent).encode())
    clock.stop()
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    got = sup.upstream_json(rec, "thinking body")
    eq(got.get("thinking"), thinking, "thinking kept as sent")
    _check_body_is_one_of(got, _expected_pipeline_body(sent, CLIENT_KEY, clock), "thinking body")
    _check_pipeline_headers(rec, "thinking body")
    line = sup.request_log_line(st, lambda l: l.get("user_agent") == ua)
    eq(line.get("adapter"), "cherry_studio", "adapter in the log line")


# --------------------------------------------------------------------------- Claude Code


def _fixture(name):
    return sup.load_json(sup.FIXTURES / name)


def test_adapter_claude_code_fixture_untouched(s):
    st, mid = s.stack("main"), new_id("cc")
    fx = _fixture("claude_code_messages.json")
    body = fx["body"].encode("utf-8")
    declared = [v for k, v in fx["headers"] if k.lower() == "content-length"]
    eq(declared, [str(len(body))], "fixture Content-Length vs its body")
    sent_headers = []
    for k, v in fx["headers"]:
        lk = k.lower()
        if lk in ("host", "content-length", "connection"):
            continue
        if lk == "x-api-key":
            v = CLIENT_KEY  # the suite's key (the log test greps logs for it)
        sent_headers.append((k, v))
    sent_headers.append(("x-mock-id", mid))
    r = st.request("POST", fx["path"], sent_headers, body, timeout=60)
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    eq((rec["method"], rec["path"], rec["query"]), ("POST", "/v1/messages", "beta=true"), "upstream request line")
    same_bytes(rec_body(rec), body, "Claude Code request body at the upstream")
    up = sup.upstream_headers(rec)
    for k, v in sent_headers:
        lk = k.lower()
        if lk in sup.DROPPED:
            continue
        eq(up.get(lk), [v], "upstream header %s" % k)
    for lk in ("x-api-key", "anthropic-beta", "x-app", "user-agent", "x-claude-code-session-id"):
        check(lk in up, "upstream header %s missing", lk)
    stainless = [k for k, _ in sent_headers if k.lower().startswith("x-stainless-")]
    check(len(stainless) == 8, "fixture has %d x-stainless headers", len(stainless))
    eq(up.get("content-length"), [str(len(body))], "upstream content-length")
    # nothing added that the official client did not send (besides our mock id)
    sent_names = {k.lower() for k, _ in sent_headers}
    extra = [k for k in up if k not in sent_names and k not in ("host", "content-length", "accept-encoding")]
    eq(extra, [], "headers the relay added to a Claude Code request")
    line = sup.request_log_line(st, lambda l: l.get("user_agent") == "claude-cli/2.1.197 (external, sdk-cli)"
                                and l.get("path", "").startswith("/v1/messages"))
    eq(line.get("adapter"), "claude_code", "adapter in the log line")


def test_adapter_claude_code_interactive_fixtures_untouched(s):
    """The other captured Claude Code requests (interactive, title, second turn, bearer)."""
    st = s.stack("main")
    for name in ("claude_code_interactive_messages.json", "claude_code_interactive_title.json",
                 "claude_code_interactive_second_turn.json", "claude_code_bearer.json"):
        fx = _fixture(name)
        mid = new_id("cc")
        body = fx["body"].encode("utf-8")
        hdrs = []
        for k, v in fx["headers"]:
            lk = k.lower()
            if lk in ("host", "content-length", "connection"):
                continue
            if lk == "x-api-key":
                v = CLIENT_KEY
            if lk == "authorization":
                v = "Bearer " + BEARER_KEY
            hdrs.append((k, v))
        hdrs.append(("x-mock-id", mid))
        r = st.request("POST", fx["path"], hdrs, body, timeout=60)
        eq(r.status, 200, "%s: status" % name)
        rec = wait_record(s, mid)
        same_bytes(rec_body(rec), body, "%s: body at the upstream" % name)
        up = sup.upstream_headers(rec)
        for k, v in hdrs:
            if k.lower() not in sup.DROPPED:
                eq(up.get(k.lower()), [v], "%s: upstream header %s" % (name, k))


# --------------------------------------------------------------------------- x-client-type


def test_adapter_x_client_type_forces_pipeline(s):
    st, mid = s.stack("main"), new_id("xct")
    ua = "curl/8.5.0 (%s)" % mid
    sent = _cherry_body()
    hdrs = [("x-api-key", CLIENT_KEY), ("anthropic-version", "2023-06-01"), ("content-type", "application/json"),
            ("user-agent", ua), ("accept", "*/*"), ("x-client-type", "cherry_studio"), ("x-mock-id", mid)]
    clock = sup.Clock()
    r = st.request("POST", "/v1/messages", hdrs, json.dumps(sent).encode())
    clock.stop()
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    _check_body_is_one_of(sup.upstream_json(rec, "x-client-type"), _expected_pipeline_body(sent, CLIENT_KEY, clock),
                          "x-client-type: cherry_studio")
    _check_pipeline_headers(rec, "x-client-type: cherry_studio", client_betas="")
    eq(sup.one_header(rec, "accept", "x-client-type"), "*/*", "accept kept")
    line = sup.request_log_line(st, lambda l: l.get("user_agent") == ua)
    eq(line.get("adapter"), "cherry_studio", "adapter in the log line")


def test_adapter_x_client_type_unknown_is_400(s):
    st, mid = s.stack("main"), new_id("xct")
    names = [a["name"] for a in sorted(sup.builtin()["claude"],
                                       key=lambda a: (a["name"] == "default", -a.get("priority", 0)))]
    for value in ("nope", "cherry-studio"):
        r = st.request("POST", "/v1/messages",
                       _cherry_headers(mid, extra=[("x-client-type", value)]), json.dumps(_cherry_body()).encode())
        obj = assert_anthropic_error(r, 400, "invalid_request_error", "x-client-type: %s" % value)
        msg = obj["error"]["message"]
        check("x-client-type" in msg, "message does not name x-client-type: %r", msg)
        check(", ".join(names) in msg, "message %r does not list the valid names %s", msg, ", ".join(names))
    assert_not_forwarded(s, mid, "unknown x-client-type")


def test_adapter_x_client_type_never_forwarded(s):
    st = s.stack("main")
    fx = _fixture("claude_code_messages.json")
    cases = [
        ("x-client-type", "claude_code", "claude_code"),
        ("X-Client-Type", "DEFAULT", "default"),
        ("x-client-type", "Cherry_Studio", "cherry_studio"),
    ]
    for hname, value, want in cases:
        mid = new_id("xct")
        ua = "it-client/1.0 (%s)" % mid
        hdrs = [("x-api-key", CLIENT_KEY), ("anthropic-version", "2023-06-01"), ("content-type", "application/json"),
                ("user-agent", ua), (hname, value), ("x-mock-id", mid)]
        body = fx["body"].encode("utf-8") if want != "cherry_studio" else json.dumps(_cherry_body()).encode()
        r = st.request("POST", "/v1/messages", hdrs, body, timeout=60)
        eq(r.status, 200, "%s: %s status" % (hname, value))
        rec = wait_record(s, mid)
        up = sup.upstream_headers(rec)
        check("x-client-type" not in up and "x_client_type" not in up,
              "%s: %s reached the upstream: %r", hname, value, up.get("x-client-type"))
        if want != "cherry_studio":
            same_bytes(rec_body(rec), body, "%s: %s body" % (hname, value))
            eq(up.get("user-agent"), [ua], "user-agent untouched")
        line = sup.request_log_line(st, lambda l, ua=ua: l.get("user_agent") == ua)
        eq(line.get("adapter"), want, "%s: %s adapter in the log line" % (hname, value))


# --------------------------------------------------------------------------- sessions across processes


def _user_id_via(s, st, key, ua=CHERRY_UA):
    mid = new_id("sess")
    r = st.request("POST", "/v1/messages", _cherry_headers(mid, key=key, ua=ua), json.dumps(_cherry_body()).encode())
    eq(r.status, 200, "status")
    return sup.upstream_json(wait_record(s, mid), "session")["metadata"]["user_id"]


def test_adapter_session_same_across_processes(s):
    a = s.stack("main")
    b = sup.stack(s, "adapters_twin", {})
    check(a.responder.pid != b.responder.pid, "the two stacks share a responder")
    clock = sup.Clock()
    ids_a = [_user_id_via(s, a, CLIENT_KEY) for _ in range(2)]
    ids_b = [_user_id_via(s, b, CLIENT_KEY) for _ in range(2)]
    other = _user_id_via(s, b, BARE_KEY)
    clock.stop()
    sess = sup.step_params(sup.adapter_spec("cherry_studio"), "session")
    want = clock.user_ids(CLIENT_KEY, sess)
    if len(want) == 1:  # no window boundary during the test: all four equal
        eq(set(ids_a + ids_b), set(want), "metadata.user_id from two responder processes, same key")
    for uid in ids_a + ids_b:
        check(uid in want, "user_id %r is not the spec's id for this key (%r)", uid, want)
    check(other not in want and other not in ids_a + ids_b, "a different key got the same id: %r", other)
    check(other in clock.user_ids(BARE_KEY, sess), "the other key's id %r is not the spec's", other)
    # the device part is stable per key; the session part differs between keys
    eq(len({u[:69] for u in ids_a + ids_b}), 1, "device part for one key")
    check(other[:69] != ids_a[0][:69], "device part shared between keys")


def test_adapter_session_secret_changes_ids(s):
    secret = "it-session-secret-" + "5a" * 8
    plain = s.stack("main")
    salted = sup.stack(s, "adapters_secret", {"SESSION_SECRET": secret})
    clock = sup.Clock()
    id_plain = _user_id_via(s, plain, CLIENT_KEY)
    id_salted = _user_id_via(s, salted, CLIENT_KEY)
    clock.stop()
    sess = sup.step_params(sup.adapter_spec("cherry_studio"), "session")
    check(id_salted != id_plain, "SESSION_SECRET did not change the id")
    check(id_salted in clock.user_ids(CLIENT_KEY, sess, secret=secret),
          "id with SESSION_SECRET %r is not the spec's", id_salted)


# --------------------------------------------------------------------------- GET /adapters


def _adapter_names(resp, what):
    eq(resp.status, 200, what + ": status")
    check((resp.header("content-type") or "").startswith("application/json"), "%s: content-type", what)
    obj = resp.json()
    check(isinstance(obj.get("adapters"), list), "%s: no adapters list: %r", what, obj)
    for a in obj["adapters"]:
        for k in ("name", "version", "priority", "description", "match", "steps"):
            check(k in a, "%s: adapter %r lacks %s", what, a.get("name"), k)
    return [a["name"] for a in obj["adapters"]], obj


def test_adapter_get_adapters_builtin(s):
    st = s.stack("main")
    names, obj = _adapter_names(st.request("GET", "/adapters"), "GET /adapters")
    eq(names, ["claude_code", "cherry_studio", "default"], "adapters in selection order")
    spec = {a["name"]: a for a in sup.builtin()["claude"]}
    for a in obj["adapters"]:
        eq(a["priority"], spec[a["name"]].get("priority", 0), "%s priority" % a["name"])
        eq(a["version"], spec[a["name"]]["version"], "%s version" % a["name"])
        eq(a["description"], spec[a["name"]]["description"], "%s description" % a["name"])
        eq(a["match"], spec[a["name"]].get("match"), "%s match" % a["name"])
        eq(a["steps"], [x["step"] for x in spec[a["name"]].get("steps", [])], "%s steps" % a["name"])


# --------------------------------------------------------------------------- a user adapters file


def test_adapter_user_file_adds_client(s):
    path = str(sup.ADAPTERS_D / "opencat.json")
    st = sup.stack(s, "adapters_opencat", {"ADAPTERS_FILE": path})
    user = sup.load_json(path)
    names, _ = _adapter_names(st.request("GET", "/adapters"), "GET /adapters with opencat.json")
    eq(names, ["claude_code", "cherry_studio", "opencat", "default"], "adapters in selection order")

    mid = new_id("opencat")
    ua = "OpenCat/2.3.1 (iPhone; iOS 18.0; %s)" % mid
    sent = _cherry_body()
    clock = sup.Clock()
    r = st.request("POST", "/v1/messages", _cherry_headers(mid, ua=ua), json.dumps(sent).encode())
    clock.stop()
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    merged = {"profiles": sup.builtin()["profiles"], "claude": user["claude"]}
    _check_body_is_one_of(sup.upstream_json(rec, "opencat"),
                          _expected_pipeline_body(sent, CLIENT_KEY, clock, adapter="opencat", source=merged),
                          "opencat")
    _check_pipeline_headers(rec, "opencat", adapter="opencat", source=merged)
    line = sup.request_log_line(st, lambda l: l.get("user_agent") == ua)
    eq(line.get("adapter"), "opencat", "adapter in the log line")

    # the built-ins are still there (the file extends them)
    mid = new_id("opencat")
    r = st.request("POST", "/v1/messages", _cherry_headers(mid, ua="CherryStudio/1.6.0 (%s)" % mid),
                   json.dumps(sent).encode())
    eq(r.status, 200, "status")
    wait_record(s, mid)
    line = sup.request_log_line(st, lambda l: l.get("user_agent") == "CherryStudio/1.6.0 (%s)" % mid)
    eq(line.get("adapter"), "cherry_studio", "built-in adapter with a user file")


def test_adapter_user_file_json_session_shape(s):
    """conf/adapters.d/lobe-chat.json: picked by x-client-type, the newer JSON shape of
    metadata.user_id (a JSON string with device_id, account_uuid, session_id)."""
    path = str(sup.ADAPTERS_D / "lobe-chat.json")
    st = sup.stack(s, "adapters_lobe", {"ADAPTERS_FILE": path})
    user = sup.load_json(path)
    merged = {"profiles": sup.builtin()["profiles"], "claude": user["claude"]}
    mid = new_id("lobe")
    ua = "Anthropic/JS 0.40.0 (%s)" % mid
    sent = _cherry_body()
    clock = sup.Clock()
    r = st.request("POST", "/v1/messages", _cherry_headers(mid, ua=ua, extra=[("x-client-type", "lobe_chat")]),
                   json.dumps(sent).encode())
    clock.stop()
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    got = sup.upstream_json(rec, "lobe_chat")
    _check_body_is_one_of(got, _expected_pipeline_body(sent, CLIENT_KEY, clock, adapter="lobe_chat", source=merged),
                          "lobe_chat")
    uid = json.loads(got["metadata"]["user_id"])
    eq(list(uid), ["device_id", "account_uuid", "session_id"], "JSON-shape keys in order")
    eq(uid["account_uuid"], "", "account_uuid")
    check(re.fullmatch(r"[0-9a-f]{64}", uid["device_id"]), "device_id %r", uid["device_id"])
    check(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", uid["session_id"]),
          "session_id %r", uid["session_id"])
    _check_pipeline_headers(rec, "lobe_chat", adapter="lobe_chat", source=merged)
    line = sup.request_log_line(st, lambda l: l.get("user_agent") == ua)
    eq(line.get("adapter"), "lobe_chat", "adapter in the log line")


def test_adapter_check_config_accepts_examples(s):
    for f in sorted(os.listdir(str(sup.ADAPTERS_D))):
        if not f.endswith(".json"):
            continue
        rc, out, err = sup.check_config({"ADAPTERS_FILE": str(sup.ADAPTERS_D / f)})
        eq(rc, 0, "--check-config with %s (stderr %s)" % (f, err[-500:]))
        check("configuration OK" in out, "--check-config with %s: %r", f, out[-300:])


# --------------------------------------------------------------------------- broken files stop start-up


BROKEN = [
    # (file name, content, what the message must name besides the file)
    ("syntax.json", '{\n  "claude": [\n    {"name": "a",}\n  ]\n}\n', ["not valid JSON", "line 3"]),
    ("unknown-step.json", '{"claude":[{"name":"my_client","steps":[{"step":"prepend_sytem","text":"x"}]}]}',
     ["adapter \"my_client\"", "unknown step \"prepend_sytem\""]),
    ("bad-param.json",
     '{"claude":[{"name":"my_client","steps":[{"step":"session","window_hours":0,"field":"metadata.user_id"}]}]}',
     ["adapter \"my_client\"", "session", "window_hours"]),
    ("missing-name.json", '{"claude":[{"priority":5}]}', ["adapter #1", "field \"name\" is required"]),
    ("missing-profile.json", '{"claude":[{"name":"my_client","steps":[{"step":"identity","profile":"claude_code"}]}]}',
     ["adapter \"my_client\"", "profile \"claude_code\" is not defined"]),
    ("bad-rule.json", '{"extends":"builtin","claude":[{"name":"my_client","match":{"header":"user-agent"}}]}',
     ["adapter \"my_client\"", "header rule \"user-agent\""]),
]


def test_adapter_broken_file_stops_startup(s):
    d = os.path.join(s.tmp, "adapters-broken")
    os.makedirs(d, exist_ok=True)
    for fname, text, want in BROKEN:
        path = os.path.join(d, fname)
        with open(path, "w") as f:
            f.write(text)
        env = {"ADAPTERS_FILE": path}
        rc, out, err = sup.check_config(env)
        check(rc not in (0, None), "--check-config with %s exited %s", fname, rc)
        for w in [path] + want:
            check(w in err, "--check-config with %s: message %r does not name %r", fname, err[-600:], w)
        check("configuration OK" not in out, "--check-config with %s printed OK", fname)
        for fg in (True, False):
            sock = os.path.join(d, fname + (".fg" if fg else ".bg") + ".sock")
            rc, out = sup.spawn_fcgi_start(env, sock, foreground=fg)
            check(rc not in (0, None), "spawn-fcgi%s with %s: exit status %s (output %r)",
                  " -n" if fg else "", fname, rc, out[-400:])
            if fg:  # the responder's own message reaches the foreground start's output
                for w in [path] + want:
                    check(w in out, "spawn-fcgi -n with %s: output %r does not name %r", fname, out[-600:], w)
            check(not sup.can_connect_unix(sock), "spawn-fcgi with %s: something listens on %s", fname, sock)
