"""ccproxy-codex through nginx (issue 4): the OpenAI Responses relay, its adapters
(codex_cli, cherry_studio, custom, default), stream translation and aggregation, the
OpenAI error shapes, cancellation and the OPENAI_BASE_URL joining rule.

Expected upstream bodies are computed here from the spec (and conf/), never echoed from
the responder. Every test name contains "codex": `run.py codex` runs this module."""

import re

from harness import *

FIXTURES = REPO / "tests" / "fixtures"
CONF = REPO / "conf"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
CANCEL_BOUND = 1.0

CHERRY_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) CherryStudio/1.6.3 "
             "Chrome/138.0.7204.100 Electron/37.2.3 Safari/537.36")
# What CherryStudio (the OpenAI JS SDK inside Electron) sends besides the key.
CHERRY_HEADERS = [
    ("accept", "application/json"),
    ("user-agent", CHERRY_UA),
    ("x-stainless-lang", "js"),
    ("x-stainless-package-version", "5.12.2"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "browser:chrome"),
    ("x-stainless-runtime-version", "138.0.7204"),
    ("x-stainless-retry-count", "0"),
    ("http-referer", "https://cherry-ai.com"),
    ("x-title", "Cherry Studio"),
    ("accept-language", "en-US,en;q=0.9"),
]

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Current weather for a city.",
                "strict": False,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "additionalProperties": False}}


def codex_profile():
    return json.loads((CONF / "adapters.json").read_text())["profiles"]["codex"]["headers"]


def builtin_instructions():
    return (CONF / "codex_instructions.md").read_text(encoding="utf-8").rstrip(" \t\r\n")


def builtin_tools():
    return json.loads((CONF / "codex_tools.json").read_text(encoding="utf-8"))


def fixture(name):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def cherry_headers(mock_id=None, behavior=None, key=OA_CLIENT_KEY, extra=()):
    return oa_headers(key=key, mock_id=mock_id, behavior=behavior, extra=list(CHERRY_HEADERS) + list(extra))


def user_msg(text):
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def env_msg(cwd=CODEX_CWD):
    return user_msg("Current directory: %s" % cwd)


def post(st, body, headers, path="/v1/responses", timeout=30.0):
    return st.request("POST", path, headers, body, timeout=timeout)


def adapter_logged(st, pred, timeout=10):
    found = []

    def look():
        found[:] = [l for l in st.log_lines() if pred(l)]
        return bool(found)
    try:
        wait_for(look, timeout, what="log line")
    except HarnessError:
        raise AssertionError("no matching log line; responder stderr tail: %s" % st.stderr_tail(600))
    return found[-1]


def mock_events(rec):
    return parse_events(rec_response(rec))


def completed_response(rec):
    """The Response object of the mock's response.completed (or response.incomplete)."""
    for name, data in mock_events(rec):
        if name in ("response.completed", "response.incomplete"):
            return data["response"]
    raise AssertionError("the mock sent no response.completed: %r" % rec_response(rec)[-300:])


def check_oa_passed_headers(resp, rec, what):
    """x-request-id, openai-* and x-ratelimit-*, retry-after reach the client with the
    upstream's values; the edge's infra headers and set-cookie do not."""
    for k, v in rec["response_headers"] or []:
        lk = k.lower()
        if lk in ("x-request-id", "retry-after", "retry-after-ms") or lk.startswith("x-ratelimit-") or \
                lk.startswith("openai-"):
            eq(resp.header(lk), v, "%s: response header %s" % (what, lk))
    for h in ("set-cookie", "cf-ray", "strict-transport-security", "alt-svc", "cf-cache-status"):
        check(resp.header(h) is None, "%s: upstream header %s must not be passed back (got %r)",
              what, h, resp.header(h))


def fixture_request(name, mock_id, key=OA_CLIENT_KEY, behavior=None):
    """(path, headers, body) of a captured request, replayed with our key; Host and
    Content-Length are the client's business (Conn writes them)."""
    fx = fixture(name)
    headers = []
    for k, v in fx["headers"]:
        lk = k.lower()
        if lk in ("host", "content-length"):
            continue
        if lk == "authorization":
            v = "Bearer " + key
        headers.append((k, v))
    headers.append(("x-mock-id", mock_id))
    if behavior:
        headers.append(("x-mock-behavior", behavior))
    return fx["path"], headers, fx["body"].encode("utf-8")


UPSTREAM_DROPPED = {"host", "content-length", "connection", "keep-alive", "accept-encoding", "transfer-encoding",
                    "te", "trailer", "upgrade", "proxy-connection", "x-client-type"}


def check_headers_intact(sent, rec, what):
    """Every end-to-end header the client sent reaches the upstream with its exact name
    and value, in the client's order (hop-by-hop ones and the client's accept-encoding
    dropped); only content-type, content-length, host, authorization (checked by the
    caller) and accept-encoding: identity may be written anew."""
    got = [(k, v) for k, v in rec["headers"]]
    want = [(k, v) for k, v in sent if k.lower() not in UPSTREAM_DROPPED and k.lower() != "authorization"]
    for k, v in want:
        check((k, v) in got, "%s: header %s: %r did not reach the upstream as sent (upstream has %r)",
              what, k, v[:80], [gv[:80] for gk, gv in got if gk.lower() == k.lower()])
    for k, v in got:
        lk = k.lower()
        check(lk not in ("connection", "x-client-type") and (lk != "accept-encoding" or v == "identity"),
              "%s: header %s: %s must not be forwarded", what, k, v)
    names_got = [k.lower() for k, _ in got]
    names_sent = [k.lower() for k, _ in want]
    for k in set(names_got) - set(names_sent) - {"host", "content-length", "content-type", "authorization",
                                                 "accept-encoding"}:
        raise AssertionError("%s: the upstream got a header the client did not send: %s" % (what, k))
    # order of the client's headers, apart from the ones the relay writes itself
    keep = [n for n in names_sent if n not in ("content-type", "authorization")]
    seen = [n for n in names_got if n in keep]
    eq(seen, keep, what + ": order of the client's headers upstream")


# --------------------------------------------------------------------------- the mock


def test_codex_mock_responses_api_shapes(s):
    """The mock is faithful to the Responses API, or the relay tests prove nothing."""
    port = s.mock.port
    mid = new_id()
    body = responses_body(stream=True, include=["reasoning.encrypted_content"])
    r = request(port, "POST", "/v1/responses", oa_headers(mock_id=mid, behavior="reasoning,tool_call"), body)
    eq(r.status, 200, "stream status")
    check(r.header("content-type").startswith("text/event-stream"), "content-type")
    check(re.match(r"^req_[0-9a-f]{32}$", r.header("x-request-id") or ""), "x-request-id %r", r.header("x-request-id"))
    check(r.header("openai-processing-ms") and r.header("x-ratelimit-remaining-requests"), "openai headers")
    ev = parse_events(r.body)
    names = [n for n, _ in ev]
    eq(names[:2], ["response.created", "response.in_progress"], "first events")
    eq(names[-1], "response.completed", "last event")
    check(b"[DONE]" not in r.body, "no [DONE] in a Responses stream")
    for i, (name, data) in enumerate(ev):
        eq((data["type"], data["sequence_number"]), (name, i), "type and sequence_number of event %d" % i)
    msg = [n for n in names if "output_text" in n or "content_part" in n]
    eq(msg, ["response.content_part.added"] + ["response.output_text.delta"] * 3 +
       ["response.output_text.done", "response.content_part.done"], "message part events")
    resp = ev[-1][1]["response"]
    check(resp["id"].startswith("resp_") and resp["id"] == ev[0][1]["response"]["id"], "response id")
    eq((resp["object"], resp["status"], [o["type"] for o in resp["output"]]),
       ("response", "completed", ["reasoning", "message", "function_call"]), "final Response")
    check(resp["output"][0].get("encrypted_content"), "encrypted reasoning when included")
    for k in ("input_tokens", "output_tokens", "total_tokens"):
        check(isinstance(resp["usage"].get(k), int), "usage.%s", k)
    same_bytes(r.body, rec_response(s.mock.record(mid)), "mock record")

    r = request(port, "POST", "/openai/responses", oa_headers(), responses_body())
    obj = r.json()
    eq((r.status, obj["object"], obj["status"], obj["output"][0]["content"][0]["type"]),
       (200, "response", "completed", "output_text"), "non-stream Response under a bare /responses")

    for beh, last in (("error_event_after=3", "error"), ("failed_after=4", "response.failed"),
                      ("incomplete", "response.incomplete")):
        r = request(port, "POST", "/v1/responses", oa_headers(behavior=beh), responses_body(stream=True))
        ev = parse_events(r.body)
        eq((r.status, ev[-1][0], ev[-1][1]["sequence_number"]), (200, last, len(ev) - 1), beh)
        if last == "error":
            eq((len(ev), ev[-1][1]["code"]), (4, "rate_limit_exceeded"), beh)
        if last == "response.failed":
            eq((ev[-1][1]["response"]["status"], ev[-1][1]["response"]["error"]["code"]), ("failed", "server_error"), beh)

    r = request(port, "POST", "/v1/responses", oa_headers(key=None), responses_body())
    assert_openai_error(r, 401, "invalid_request_error")
    r = request(port, "POST", "/v1/responses", oa_headers(behavior="status=429"), responses_body())
    assert_openai_error(r, 429, None, "rate_limit_exceeded")
    r = request(port, "POST", "/v1/responses", oa_headers(), b'{"input":"x"}')
    assert_openai_error(r, 400, "invalid_request_error", "missing_required_parameter")
    r = request(port, "GET", "/v1/models", oa_headers(content_type=False))
    obj = r.json()
    eq((obj["object"], obj["data"][0]["object"]), ("list", "model"), "OpenAI models list")
    # the Anthropic shape is still there for Anthropic clients
    r = request(port, "GET", "/v1/models?limit=1", api_headers(content_type=False))
    check("has_more" in r.json(), "Anthropic models list")


# --------------------------------------------------------------------------- cherry_studio


def _cherry_client_body():
    return {
        "model": "gpt-5-codex",
        "instructions": "You are CherryStudio's assistant.",
        "input": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "developer", "content": [{"type": "input_text", "text": "Answer briefly."}]},
            {"role": "user", "content": "What's the weather in Paris?", "id": "msg_client_1"},
            {"type": "function_call", "id": "fc_client_1", "call_id": "call_abc", "name": "get_weather",
             "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call_output", "call_id": "call_abc", "output": "{\"temp_c\":21}"},
            {"role": "assistant", "content": "It is 21 \u00b0C in Paris.", "status": "completed"},
            {"role": "critic", "content": ""},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "And tomorrow? \u65e5\u672c"},
                         {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "",
        "parallel_tool_calls": "yes",
        "reasoning": {"effort": "minimal"},
        "include": ["file_search_call.results", "reasoning.encrypted_content", "file_search_call.results", 7],
        "store": "no",
        "temperature": 0.7,
        "metadata": {"app": "cherry"},
        "stream": True,
    }


def _cherry_expected(client, session):
    """The upstream body per issue 4, computed from the client's body."""
    exp = json.loads(json.dumps(client))
    exp["instructions"] = builtin_instructions()
    exp["input"] = [
        env_msg(),
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "You are a helpful assistant."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Answer briefly."}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What's the weather in Paris?"}],
         "id": "msg_client_1"},
        client["input"][3],
        client["input"][4],
        # an assistant's text is output_text: the API refuses input_text there (the mock too)
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "It is 21 \u00b0C in Paris."}], "status": "completed"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": ""}]},
        client["input"][7],
    ]
    exp["tools"] = builtin_tools() + [WEATHER_TOOL]
    exp["tool_choice"] = "auto"
    exp["parallel_tool_calls"] = False
    exp["reasoning"] = {"effort": "high", "summary": "auto"}
    exp["include"] = ["reasoning.encrypted_content", "file_search_call.results"]
    exp["store"] = False
    exp["stream"] = True
    exp["prompt_cache_key"] = session
    return exp


def _diff(got, exp, path="body"):
    if type(got) != type(exp):
        return "%s: %r instead of %r" % (path, got, exp)
    if isinstance(exp, dict):
        for k in exp:
            if k not in got:
                return "%s.%s missing (expected %r)" % (path, k, exp[k])
        for k in got:
            if k not in exp:
                return "%s.%s unexpected: %r" % (path, k, got[k])
        for k in exp:
            d = _diff(got[k], exp[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if isinstance(exp, list):
        if len(got) != len(exp):
            return "%s: %d items instead of %d: %r" % (path, len(got), len(exp), json.dumps(got)[:600])
        for i, (g, e) in enumerate(zip(got, exp)):
            d = _diff(g, e, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    return None if got == exp else "%s: %r instead of %r" % (path, got, exp)


def _check_cherry_upstream(rec, expected_without_session, what, client_extra_names=()):
    h = rec_headers(rec)
    names = [k for k, _ in rec["headers"]]
    sess = h.get("session_id") or []
    check(len(sess) == 1 and UUID_RE.match(sess[0]), "%s: upstream session_id header %r (want one UUID v4)",
          what, sess)
    check("session_id" in names, "%s: the session header must be spelled session_id upstream: %r", what,
          [n for n in names if n.lower().replace("_", "-") == "session-id"])
    check("session-id" not in [n.lower() for n in names], "%s: a session-id (hyphen) header reached the upstream "
          "besides session_id: %r", what, [(k, v) for k, v in rec["headers"] if k.lower() == "session-id"])
    eq(h.get("conversation_id"), sess, what + ": conversation_id header")
    check("conversation_id" in names, "%s: conversation_id spelling", what)
    body = json.loads(rec_body(rec))
    eq(body.get("prompt_cache_key"), sess[0], what + ": prompt_cache_key equals the session_id header")
    exp = dict(expected_without_session, prompt_cache_key=sess[0])
    d = _diff(body, exp)
    check(d is None, "%s: upstream body differs from the spec: %s", what, d)
    prof = codex_profile()
    for k, v in prof.items():
        eq(h.get(k), [v], "%s: identity header %s" % (what, k))
    eq(h.get("authorization"), ["Bearer " + OA_CLIENT_KEY], what + ": authorization")
    eq(h.get("content-type"), ["application/json"], what + ": content-type")
    eq(h.get("content-length"), [str(rec["body_len"])], what + ": content-length")
    check(h.get("accept-encoding") in (None, ["identity"]), "%s: accept-encoding %r (the relay asks for an "
          "uncompressed reply)", what, h.get("accept-encoding"))
    for k, v in CHERRY_HEADERS:
        if k.lower() not in prof and k.lower() not in ("accept",):
            eq(h.get(k), [v], "%s: client header %s kept" % (what, k))
    return sess[0]


def test_codex_cherry_studio_transformed_exactly(s):
    st, mid = s.stack("codex"), new_id()
    client = _cherry_client_body()
    r = post(st, json.dumps(client).encode(), cherry_headers(mid))
    rec = wait_record(s, mid)
    eq(r.status, 200, "status (%r)" % r.body[:300])
    exp = _cherry_expected(client, None)
    session = _check_cherry_upstream(rec, exp, "CherryStudio stream")
    # a streaming client gets the stream as the upstream sent it
    same_bytes(r.body, rec_response(rec), "CherryStudio stream body")
    adapter = adapter_logged(st, lambda l: l.get("model") == "gpt-5-codex" and l.get("adapter") == "cherry_studio")
    check(adapter, "adapter cherry_studio")
    # the same key gets the same session (within its 24-hour window); another key another one
    mid2 = new_id()
    post(st, json.dumps(client).encode(), cherry_headers(mid2))
    again = rec_headers(wait_record(s, mid2)).get("session_id")
    if int(rec["received_at"] // 86400) == int(time.time() // 86400):
        eq(again, [session], "session id of the same key, again")
    mid3 = new_id()
    post(st, json.dumps(client).encode(), cherry_headers(mid3, key=OA_OTHER_KEY))
    other = rec_headers(wait_record(s, mid3)).get("session_id")
    check(other and other[0] != session and UUID_RE.match(other[0]), "another key, another session: %r vs %r",
          other, session)


def test_codex_cherry_studio_string_input_nonstream_aggregated(s):
    """No "stream" from the client: the upstream gets stream true (and the other fields
    resolved), the client gets the Response object of response.completed as one JSON."""
    st = s.stack("codex")
    for stream_field in (None, False):
        mid = new_id()
        client = {"model": "gpt-5", "input": "Say hi \u2014 caf\u00e9",
                  "reasoning": {"effort": "low", "summary": "detailed"}, "tool_choice": "required",
                  "parallel_tool_calls": True, "store": True}
        if stream_field is not None:
            client["stream"] = stream_field
        r = post(st, json.dumps(client).encode(), cherry_headers(mid, behavior="reasoning,tool_call"))
        rec = wait_record(s, mid)
        what = "stream field %r" % stream_field
        exp = dict(client, instructions=builtin_instructions(),
                   input=[env_msg(), user_msg("Say hi \u2014 caf\u00e9")],
                   tools=builtin_tools(), tool_choice="required", parallel_tool_calls=True,
                   reasoning={"effort": "low", "summary": "detailed"},
                   include=["reasoning.encrypted_content"], store=True, stream=True)
        _check_cherry_upstream(rec, exp, what)
        eq(r.status, 200, what + ": status (%r)" % r.body[:300])
        check((r.header("content-type") or "").startswith("application/json"), "%s: content-type %r", what,
              r.header("content-type"))
        check(b"event:" not in r.body, "%s: the client asked for no stream but got SSE: %r", what, r.body[:200])
        eq(r.json(), completed_response(rec), what + ": the aggregated Response")
        eq(r.json()["status"], "completed", what + ": Response status")


def test_codex_cherry_studio_aggregated_incomplete(s):
    st, mid = s.stack("codex"), new_id()
    r = post(st, responses_body(stream=None), cherry_headers(mid, behavior="incomplete"))
    rec = wait_record(s, mid)
    eq(r.status, 200, "status")
    obj = r.json()
    eq(obj, completed_response(rec), "the Response of response.incomplete")
    eq((obj["status"], obj["incomplete_details"]), ("incomplete", {"reason": "max_output_tokens"}), "incomplete")


def test_codex_aggregated_passes_upstream_headers(s):
    """The aggregated answer still carries the upstream's x-request-id, openai-* and
    x-ratelimit-* headers (issue 4: pass back ...)."""
    st, mid = s.stack("codex"), new_id()
    r = post(st, responses_body(stream=None), cherry_headers(mid))
    rec = wait_record(s, mid)
    eq(r.status, 200, "status")
    check_oa_passed_headers(r, rec, "aggregated non-stream answer")


def test_codex_aggregated_failures_are_openai_errors(s):
    st = s.stack("codex")
    cases = [("failed_after=4", 500, "server_error"),
             ("failed_after=4,error_code=context_length_exceeded", 400, "context_length_exceeded"),
             ("error_event_after=3", 429, "rate_limit_exceeded"),
             ("error_event_after=0,error_code=insufficient_quota", 429, "insufficient_quota")]
    for beh, status, code in cases:
        mid = new_id()
        r = post(st, responses_body(stream=None), cherry_headers(mid, behavior=beh))
        rec = wait_record(s, mid)
        obj = assert_openai_error(r, status, None, code, "aggregated " + beh)
        upstream_err = [d for n, d in mock_events(rec) if n in ("error", "response.failed")][0]
        umsg = upstream_err.get("message") or upstream_err["response"]["error"]["message"]
        eq(obj["error"]["message"], umsg, beh + ": the upstream's message")
        eq(obj["error"]["type"], "server_error" if status >= 500 else "invalid_request_error", beh + ": type")
    # an upstream that dies mid-stream: an error, never a 200
    mid = new_id()
    r = post(st, responses_body(stream=None), cherry_headers(mid, behavior="die_after=5"))
    check(r.status >= 500, "aggregated stream that died: status %d (%r)", r.status, r.body[:200])
    assert_openai_error(r, r.status, "server_error", what="aggregated stream that died")
    # an upstream error answer (not a stream) passes through as it is
    for status in (429, 500, 401):
        mid = new_id()
        r = post(st, responses_body(stream=None), cherry_headers(mid, behavior="status=%d" % status))
        rec = wait_record(s, mid)
        eq(r.status, status, "upstream %d status" % status)
        same_bytes(r.body, rec_response(rec), "upstream %d body" % status)
        check_oa_passed_headers(r, rec, "upstream %d" % status)


# --------------------------------------------------------------------------- codex_cli / default / custom


CODEX_FIXTURES = ["codex_cli_responses.json", "codex_cli_responses_model_gpt5codex.json",
                  "codex_cli_responses_resume.json", "codex_tui_responses.json", "codex_tui_title.json",
                  "codex_cli_builtin_responses.json"]


def test_codex_cli_fixtures_pass_untouched(s):
    st = s.stack("codex")
    for name in CODEX_FIXTURES:
        mid = new_id()
        path, headers, body = fixture_request(name, mid)
        r = st.request("POST", path, headers, body)
        rec = wait_record(s, mid)
        eq(r.status, 200, name + ": status (%r)" % r.body[:300])
        eq((rec["method"], rec["path"], rec["query"]), ("POST", "/v1/responses", ""), name + ": upstream request line")
        same_bytes(rec_body(rec), body, name + ": request body at the upstream")
        check_headers_intact(headers, rec, name)
        h = rec_headers(rec)
        eq(h.get("authorization"), ["Bearer " + OA_CLIENT_KEY], name + ": authorization")
        eq(h.get("content-type"), ["application/json"], name + ": content-type")
        eq(h.get("content-length"), [str(len(body))], name + ": content-length")
        for k in ("session_id", "conversation_id", "openai-beta"):
            check(k not in h, "%s: header %s added to a Codex CLI request", name, k)
        same_bytes(r.body, rec_response(rec), name + ": stream back to the Codex CLI")
        check(r.clean_end, "%s: not ended cleanly", name)
    fx = fixture("codex_cli_responses.json")
    model = json.loads(fx["body"])["model"]
    adapter_logged(st, lambda l: l.get("model") == model and l.get("adapter") == "codex_cli")


def test_codex_cli_fixture_headers_spelled_as_sent(s):
    """The real Codex CLI's identifying headers arrive exactly: originator codex_exec,
    session-id (hyphen), thread-id, x-codex-turn-metadata (long JSON), x-codex-window-id."""
    st, mid = s.stack("codex"), new_id()
    path, headers, body = fixture_request("codex_cli_responses.json", mid)
    r = st.request("POST", path, headers, body)
    eq(r.status, 200, "status")
    rec = wait_record(s, mid)
    sent = dict((k, v) for k, v in headers)
    got = [(k, v) for k, v in rec["headers"]]
    for k in ("originator", "session-id", "thread-id", "x-codex-turn-metadata", "x-codex-window-id",
              "x-codex-beta-features", "x-client-request-id", "x-openai-internal-codex-responses-lite",
              "user-agent", "accept"):
        check((k, sent[k]) in got, "header %s not upstream as sent: %r", k,
              [(gk, gv[:60]) for gk, gv in got if gk.lower().replace("_", "-") == k])
    eq(sent["originator"], "codex_exec", "fixture originator")


def test_codex_openai_sdk_default_unchanged(s):
    st = s.stack("codex")
    for name in ("openai_sdk_responses.json", "openai_sdk_responses_stream.json",
                 "openai_sdk_responses_stream_helper.json"):
        mid = new_id()
        path, headers, body = fixture_request(name, mid)
        r = st.request("POST", path, headers, body)
        rec = wait_record(s, mid)
        eq(r.status, 200, name + ": status (%r)" % r.body[:300])
        same_bytes(rec_body(rec), body, name + ": request body at the upstream")
        check_headers_intact(headers, rec, name)
        for k in ("originator", "session_id", "conversation_id", "openai-beta"):
            check(k not in rec_headers(rec), "%s: header %s added by the default adapter", name, k)
        same_bytes(r.body, rec_response(rec), name + ": reply")
        check_oa_passed_headers(r, rec, name)
    adapter_logged(st, lambda l: l.get("model") == "gpt-5" and l.get("adapter") == "default")


def test_codex_custom_client_type_identity_only(s):
    st, mid = s.stack("codex"), new_id()
    body = b'{"model":"gpt-5","input":[{"role":"developer","content":"x"}],"stream":true,"store":"maybe"}'
    headers = oa_headers(mock_id=mid, user_agent="my-tool/2.0",
                         extra=[("x-client-type", "custom"), ("accept", "application/json"),
                                ("session-id", "client-session-1")])
    r = post(st, body, headers)
    rec = wait_record(s, mid)
    eq(r.status, 200, "status")
    same_bytes(rec_body(rec), body, "custom: body untouched")
    h = rec_headers(rec)
    for k, v in codex_profile().items():
        eq(h.get(k), [v], "custom: identity header %s" % k)
    check("x-client-type" not in h, "x-client-type forwarded")
    eq(h.get("session-id"), ["client-session-1"], "custom: the client's own session header kept")
    for k in ("session_id", "conversation_id"):
        check(k not in h, "custom: %s added", k)
    same_bytes(r.body, rec_response(rec), "custom: stream")


def test_codex_cherry_session_header_spelling(s):
    """The CGI interface folds session_id and session-id into one name; the CherryStudio
    pipeline writes session_id (underscore) upstream whichever the client sent, once."""
    st = s.stack("codex")
    for spelled in ("session-id", "session_id", "Session-Id"):
        mid = new_id()
        extra = [(spelled, "client-sent-session"), ("conversation-id", "client-conv")]
        r = post(st, responses_body(stream=True), cherry_headers(mid, extra=extra))
        eq(r.status, 200, spelled + ": status")
        rec = wait_record(s, mid)
        sess = [(k, v) for k, v in rec["headers"] if k.lower().replace("_", "-") == "session-id"]
        conv = [(k, v) for k, v in rec["headers"] if k.lower().replace("_", "-") == "conversation-id"]
        check(len(sess) == 1 and sess[0][0] == "session_id" and UUID_RE.match(sess[0][1]),
              "client sent %s: upstream session headers %r (want one session_id with the derived UUID)",
              spelled, sess)
        check(len(conv) == 1 and conv[0] == ("conversation_id", sess[0][1]),
              "client sent conversation-id: upstream %r", conv)
        eq(json.loads(rec_body(rec))["prompt_cache_key"], sess[0][1], spelled + ": prompt_cache_key")


def test_codex_instructions_and_tools_files(s):
    d = os.path.join(s.tmp, "codex_files_conf")
    os.makedirs(d, exist_ok=True)
    instr = "You are the it-suite's Codex.\nLine two: caf\u00e9 \u65e5\u672c \"quoted\" \\ backslash.\n"
    tools = [{"type": "web_search"},
             {"type": "function", "name": "lookup", "description": "Look a thing up.", "strict": True,
              "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"],
                             "additionalProperties": False}}]
    with open(os.path.join(d, "instructions.md"), "w", encoding="utf-8") as f:
        f.write(instr)
    with open(os.path.join(d, "tools.json"), "w", encoding="utf-8") as f:
        json.dump(tools, f, indent=1)
    st = s.custom_stack("codex_files", service="codex", env={
        "CODEX_ENV_CWD": "/srv/work space", "CODEX_INSTRUCTIONS_FILE": os.path.join(d, "instructions.md"),
        "CODEX_TOOLS_FILE": os.path.join(d, "tools.json")})
    mid = new_id()
    client = {"model": "gpt-5-codex", "stream": True,
              "input": [{"role": "user", "content": "Current directory: /elsewhere"},
                        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
              "tools": [WEATHER_TOOL], "include": ["message.output_text.logprobs"]}
    r = post(st, json.dumps(client).encode(), cherry_headers(mid))
    rec = wait_record(s, mid)
    eq(r.status, 200, "status (%r)" % r.body[:300])
    exp = dict(client, instructions=instr.rstrip("\n"),
               input=[user_msg("Current directory: /elsewhere"), user_msg("hi")],  # already there: no second one
               tools=tools + [WEATHER_TOOL], tool_choice="auto", parallel_tool_calls=False,
               reasoning={"effort": "high", "summary": "auto"},
               include=["reasoning.encrypted_content", "message.output_text.logprobs"], store=False)
    _check_cherry_upstream(rec, exp, "CODEX_INSTRUCTIONS_FILE/CODEX_TOOLS_FILE")
    # and the configured CODEX_ENV_CWD when the input does not start with one
    mid = new_id()
    r = post(st, responses_body(stream=True, text="hello"), cherry_headers(mid))
    body = json.loads(rec_body(wait_record(s, mid)))
    eq(body["input"], [env_msg("/srv/work space"), user_msg("hello")], "input with CODEX_ENV_CWD")


# --------------------------------------------------------------------------- relay


def test_codex_stream_and_nonstream_byte_identical(s):
    st = s.stack("codex")
    for stream in (True, False):
        mid = new_id()
        r = post(st, responses_body(stream=stream, include=["reasoning.encrypted_content"]),
                 oa_headers(mock_id=mid, behavior="reasoning,tool_call"))
        rec = wait_record(s, mid)
        what = "stream" if stream else "non-stream"
        eq(r.status, 200, what + " status")
        same_bytes(r.body, rec_response(rec), what + " body")
        check(r.clean_end, "%s: not ended cleanly", what)
        ct = r.header("content-type") or ""
        check(ct.startswith("text/event-stream" if stream else "application/json"), "%s content-type %r", what, ct)
        check_oa_passed_headers(r, rec, what)
        if stream:
            eq(r.header("cache-control"), "no-cache", "stream cache-control")


def test_codex_fragmented_and_big_streams_intact(s):
    st = s.stack("codex")
    for beh in ("fragment=7,deltas=6", "fragment=61,reasoning,tool_call", "big=3000000"):
        mid = new_id()
        r = post(st, responses_body(stream=True), oa_headers(mock_id=mid, behavior=beh), timeout=60)
        rec = wait_record(s, mid)
        eq(r.status, 200, beh + " status")
        eq((len(r.body), sha256_hex(r.body)), (rec["response_len"], rec["response_sha256"]),
           beh + ": length and sha256 of the stream")
        check(r.clean_end, "%s: not ended cleanly", beh)


def test_codex_events_arrive_one_by_one(s):
    st, mid = s.stack("codex"), new_id()
    c = st.open("POST", "/v1/responses", oa_headers(mock_id=mid, behavior="gate_each=" + mid),
                responses_body(stream=True), timeout=15)
    try:
        try:
            c.read_head()
        except socket.timeout:
            raise AssertionError("response headers not delivered while the upstream held event 2")
        got, k = [], 0
        while True:
            try:
                ev = c.read_event()
            except socket.timeout:
                rec = s.mock.record(mid)
                raise AssertionError("event %d not delivered within 15 s although the upstream sent it "
                                     "(%d sent): the relay buffers" % (k + 1, rec["events_sent"]))
            if ev is None:
                break
            got.append(ev)
            total = s.mock.record(mid).get("events_total") or 0
            if k + 1 < total:
                rec = wait_record(s, mid, "gate_waiting", 10)
                eq((rec["events_sent"], rec["gate_waiting"]), (k + 1, k + 1),
                   "after the client read event %d, the upstream's (sent, waiting)" % (k + 1))
                s.mock.release(mid)
            k += 1
        rec = wait_record(s, mid)
        eq(len(got), rec["events_total"], "events received one by one")
        same_bytes(b"".join(got), rec_response(rec), "gated stream")
        check(c.clean_end, "gated stream did not end cleanly")
    finally:
        c.close()


def _failed_tail(r, prefix, what, code=None, message=None, check_seq=True):
    """The relayed events (intact), then exactly one response.failed, then the end."""
    eq(r.status, 200, what + ": status (the stream had started)")
    check(r.body.startswith(prefix), "%s: the events before the failure were not relayed intact: got %r, "
          "upstream sent %r", what, r.body[-300:], prefix[-300:])
    tail = r.body[len(prefix):]
    ev = parse_events(tail)
    check(len(ev) == 1 and ev[0][0] == "response.failed", "%s: expected exactly one response.failed after the "
          "relayed events, got %r", what, tail[:500])
    check(tail.startswith(b"event: response.failed\n") and tail.endswith(b"\n\n"), "%s: not a well-formed event: %r",
          what, tail[:300])
    data = ev[0][1]
    check(isinstance(data, dict), "%s: data is not JSON: %r", what, tail[:300])
    before = parse_events(prefix)
    last_seq = before[-1][1]["sequence_number"] if before else -1
    eq(data.get("type"), "response.failed", what + ": data.type")
    if check_seq:
        eq(data.get("sequence_number"), last_seq + 1, what + ": sequence_number after the last relayed one")
    else:
        check(isinstance(data.get("sequence_number"), int) and data["sequence_number"] > last_seq,
              "%s: sequence_number %r not after %d", what, data.get("sequence_number"), last_seq)
    resp = data.get("response")
    check(isinstance(resp, dict), "%s: no Response in response.failed: %r", what, data)
    eq((resp.get("object"), resp.get("status")), ("response", "failed"), what + ": Response object/status")
    err = resp.get("error")
    check(isinstance(err, dict) and isinstance(err.get("code"), str) and isinstance(err.get("message"), str)
          and err["message"], "%s: Response.error %r", what, err)
    if before and before[0][0] == "response.created":
        eq(resp.get("id"), before[0][1]["response"]["id"], what + ": the Response id of the stream")
    if code:
        eq(err["code"], code, what + ": error.code")
    if message:
        eq(err["message"], message, what + ": error.message")
    check(b"event: error" not in r.body, "%s: a bare `event: error` reached the client", what)
    check(r.clean_end, "%s: the stream did not end cleanly after response.failed", what)
    return data


def test_codex_mid_stream_death_becomes_response_failed(s):
    st = s.stack("codex")
    for n in (5, 1):
        mid = new_id()
        r = post(st, responses_body(stream=True), oa_headers(mock_id=mid, behavior="die_after=%d" % n))
        rec = wait_record(s, mid)
        eq(rec["state"], "died", "mock state")
        _failed_tail(r, rec_response(rec), "upstream died after %d events" % n)


def test_codex_upstream_error_event_becomes_response_failed(s):
    st = s.stack("codex")
    for n in (4, 0):
        mid = new_id()
        r = post(st, responses_body(stream=True), oa_headers(mock_id=mid, behavior="error_event_after=%d" % n))
        rec = wait_record(s, mid)
        up = rec_response(rec)
        i = up.find(b"event: error\n")
        check(i >= 0, "the mock sent no error event")
        err = parse_events(up[i:])[0][1]
        _failed_tail(r, up[:i], "upstream error event after %d events" % n, err["code"], err["message"])


def test_codex_upstream_error_event_fragmented(s):
    st, mid = s.stack("codex"), new_id()
    r = post(st, responses_body(stream=True), oa_headers(mock_id=mid, behavior="fragment=6,error_event_after=5"))
    up = rec_response(wait_record(s, mid))
    i = up.find(b"event: error\n")
    _failed_tail(r, up[:i], "fragmented error event", "rate_limit_exceeded", check_seq=False)


def test_codex_upstream_response_failed_passes(s):
    st, mid = s.stack("codex"), new_id()
    r = post(st, responses_body(stream=True), oa_headers(mock_id=mid, behavior="failed_after=4"))
    rec = wait_record(s, mid)
    eq(r.status, 200, "status")
    same_bytes(r.body, rec_response(rec), "the upstream's own response.failed")


def test_codex_idle_timeout_mid_stream_becomes_response_failed(s):
    st, mid = s.stack("codex_timeout"), new_id()
    r = post(st, responses_body(stream=True), oa_headers(mock_id=mid, behavior="hang_after=3"))
    rec = wait_record(s, mid, "disconnected", 15)
    _failed_tail(r, rec_response(rec), "upstream silent > HTTP_TIMEOUT after 3 events")


def test_codex_upstream_errors_pass_through(s):
    st = s.stack("codex")
    for status in (429, 500, 503, 400, 401, 403, 404):
        for stream in (False, True):
            mid = new_id()
            r = post(st, responses_body(stream=stream), oa_headers(mock_id=mid, behavior="status=%d" % status))
            rec = wait_record(s, mid)
            what = "upstream %d (stream=%s)" % (status, stream)
            eq(r.status, status, what + " status")
            same_bytes(r.body, rec_response(rec), what + " body")
            check_oa_passed_headers(r, rec, what)
            if status == 429:
                eq((r.header("retry-after"), r.header("x-ratelimit-remaining-requests")), ("7", "0"),
                   what + ": retry-after, x-ratelimit-remaining-requests")


def test_codex_models_relayed(s):
    st = s.stack("codex")
    mid = new_id()
    r = st.request("GET", "/v1/models?limit=5", oa_headers(mock_id=mid, content_type=False))
    rec = wait_record(s, mid)
    eq((r.status, rec["path"], rec["query"]), (200, "/v1/models", "limit=5"), "status, upstream path, query")
    same_bytes(r.body, rec_response(rec), "models list")
    eq(r.json()["object"], "list", "OpenAI list")
    mid = new_id()
    r = st.request("GET", "/v1/models/gpt-5", oa_headers(mock_id=mid, content_type=False))
    eq((r.status, r.json()["id"]), (200, "gpt-5"), "one model")
    mid = new_id()
    r = st.request("GET", "/v1/models/gpt-nope", oa_headers(mock_id=mid, content_type=False))
    eq(r.status, 404, "unknown model: the upstream's 404")
    same_bytes(r.body, rec_response(wait_record(s, mid)), "upstream 404 body")


def test_codex_bare_key_and_server_key(s):
    st, mid = s.stack("codex"), new_id()
    r = post(st, responses_body(), oa_headers(mock_id=mid, bearer=False))
    eq(r.status, 200, "a bare key in Authorization")
    eq(rec_headers(wait_record(s, mid)).get("authorization"), ["Bearer " + OA_CLIENT_KEY], "upstream authorization")
    sk = s.stack("codex_serverkey")
    for k in (ACCESS_PLAIN, ACCESS_HASHED):
        mid = new_id()
        r = post(sk, responses_body(stream=True), oa_headers(key=k, mock_id=mid))
        eq(r.status, 200, "access key accepted")
        eq(rec_headers(wait_record(s, mid)).get("authorization"), ["Bearer " + OA_SERVER_KEY],
           "upstream gets the server's OPENAI_API_KEY")
    for k in (ACCESS_WRONG, None):
        mid = new_id()
        r = post(sk, responses_body(), oa_headers(key=k, mock_id=mid))
        assert_openai_error(r, 401, "invalid_request_error", what="server key, client key %s" % (k and k[:14]))
        assert_not_forwarded(s, mid, "refused key")


# --------------------------------------------------------------------------- URL joining, routes


def test_codex_url_joining_rule(s):
    """OPENAI_BASE_URL ending in /v1 gets /responses; one without gets /v1/responses;
    never a doubled /v1; a trailing slash changes nothing; the query is kept."""
    cases = [("codex", "/v1/responses", "/v1/responses", "/v1/models"),
             ("codex_bare", "/v1/responses", "/v1/responses", "/v1/models"),
             ("codex_prefix", "/codex/v1/responses", "/openai/v1/responses", "/openai/v1/models")]
    for name, client_path, want, want_models in cases:
        st = s.stack(name)
        mid = new_id()
        r = post(st, responses_body(stream=True), oa_headers(mock_id=mid), path=client_path + "?api-version=x&y=%20")
        rec = wait_record(s, mid)
        eq(r.status, 200, "%s: status" % name)
        eq((rec["path"], rec["query"]), (want, "api-version=x&y=%20"),
           "%s (OPENAI_BASE_URL %s): upstream path and query" % (name, st.upstream_url))
        mid = new_id()
        prefix = "/codex" if name == "codex_prefix" else ""
        r = st.request("GET", prefix + "/v1/models", oa_headers(mock_id=mid, content_type=False))
        eq((r.status, wait_record(s, mid)["path"]), (200, want_models), "%s: models path" % name)
    # a base with a path but no /v1
    st = s.custom_stack("codex_openai_path", service="codex", env=dict(CODEX_ENV), upstream_path="/openai")
    mid = new_id()
    post(st, responses_body(), oa_headers(mock_id=mid))
    eq(wait_record(s, mid)["path"], "/openai/v1/responses", "OPENAI_BASE_URL .../openai: upstream path")


def test_codex_local_routes(s):
    st = s.stack("codex")
    r = st.request("GET", "/v1")
    eq((r.status, r.json()), (200, {"api": "responses", "version": "v1", "supported": True}), "GET /v1")
    r = st.request("GET", "/health")
    eq((r.status, r.json()), (200, {"status": "healthy", "service": "codex-service"}), "GET /health")
    r = st.request("GET", "/adapters")
    eq(r.status, 200, "GET /adapters")
    ads = {a.get("name"): a for a in r.json().get("adapters", [])}
    for name in ("codex_cli", "cherry_studio", "custom", "default"):
        check(name in ads, "adapter %s not listed: %r", name, sorted(ads))
    eq(ads["codex_cli"].get("priority"), 100, "codex_cli priority")
    check("messages" not in json.dumps(sorted(ads)), "Claude adapters listed by the Codex service")
    r = s.stack("codex_prefix").request("GET", "/codex/health")
    eq((r.status, r.json().get("service")), (200, "codex-service"), "/codex/health")
    # CORS preflight as for the Claude service
    r = st.request("OPTIONS", "/v1/responses", [("origin", ALLOWED_ORIGIN), ("access-control-request-method", "POST")])
    check(r.status in (200, 204), "preflight status %d", r.status)
    eq(r.header("access-control-allow-origin"), ALLOWED_ORIGIN, "preflight allow-origin")
    r = st.request("OPTIONS", "/v1/responses", [("origin", "https://evil.example"),
                                                ("access-control-request-method", "POST")])
    assert_openai_error(r, 403, what="preflight from a foreign origin")


# --------------------------------------------------------------------------- error rows


def test_codex_400_bad_bodies(s):
    st = s.stack("codex")
    for body, word in ((b'{"model": "gpt-5", "input": [', None), (b'["model"]', None), (b"", None),
                       (b'{"input": "hi", "stream": true}', "model")):
        mid = new_id()
        obj = assert_openai_error(post(st, body, oa_headers(mock_id=mid)), 400, "invalid_request_error",
                                  what="body %r" % body[:30])
        if word:
            check(word in obj["error"]["message"], "the message should name %s: %r", word, obj["error"]["message"])
        assert_not_forwarded(s, mid, "body %r" % body[:30])
    # a CherryStudio body the pipeline cannot normalise: 400, not forwarded
    mid = new_id()
    r = post(st, b'{"model": "gpt-5", "input": 42}', cherry_headers(mid))
    assert_openai_error(r, 400, "invalid_request_error", what="input not a list or string")
    assert_not_forwarded(s, mid, "bad input")


def test_codex_401_no_key_or_x_api_key_only(s):
    st = s.stack("codex")
    cases = [("no key", oa_headers(key=None)), ("x-api-key only", oa_headers(key=None, extra=[("x-api-key", OA_CLIENT_KEY)])),
             ("empty Bearer", oa_headers(key=None, extra=[("authorization", "Bearer ")]))]
    for what, headers in cases:
        mid = new_id()
        r = post(st, responses_body(), headers + [("x-mock-id", mid)])
        assert_openai_error(r, 401, "invalid_request_error", what=what)
        assert_not_forwarded(s, mid, what)


def test_codex_404_and_405(s):
    st = s.stack("codex")
    for method, path in (("GET", "/v1/nope"), ("POST", "/v1/messages"), ("POST", "/v1/responses/extra/x"),
                         ("POST", "/v2/responses"), ("GET", "/_mock/requests")):
        mid = new_id()
        r = st.request(method, path, oa_headers(mock_id=mid), b"{}" if method == "POST" else None)
        assert_openai_error(r, 404, "invalid_request_error", what="%s %s" % (method, path))
        assert_not_forwarded(s, mid, path)
    for method, path, allowed in (("GET", "/v1/responses", "POST"), ("DELETE", "/v1/models", "GET"),
                                  ("POST", "/health", "GET"), ("PUT", "/v1/responses", "POST")):
        mid = new_id()
        r = st.request(method, path, oa_headers(mock_id=mid), b"{}" if method in ("PUT", "POST") else None)
        assert_openai_error(r, 405, "invalid_request_error", what="%s %s" % (method, path))
        check(allowed in (r.header("allow") or ""), "%s %s: Allow %r lacks %s", method, path, r.header("allow"), allowed)
        assert_not_forwarded(s, mid, path)


def test_codex_413_responder_and_nginx(s):
    st, mid = s.stack("codex_small"), new_id()  # MAX_BODY_BYTES=4096
    r = post(st, responses_body(text="y" * 8000), oa_headers(mock_id=mid))
    assert_openai_error(r, 413, "invalid_request_error", "request_too_large", "over MAX_BODY_BYTES")
    assert_not_forwarded(s, mid, "oversized body")
    eq(post(st, responses_body(text="y" * 3000), oa_headers()).status, 200, "a body under MAX_BODY_BYTES")
    st, mid = s.stack("codex"), new_id()
    c = Conn(st.port, timeout=15)
    try:
        c.send_request("POST", "/v1/responses", oa_headers(mock_id=mid, extra=[("Content-Length", str(1 << 33))]),
                       b'{"model":')
        c.read_head()
        r = c.response()
    finally:
        c.close()
    assert_openai_error(r, 413, "invalid_request_error", what="nginx 413")
    assert_not_forwarded(s, mid, "over nginx's limit")


def test_codex_400_nginx_bad_headers(s):
    st, mid = s.stack("codex"), new_id()
    body = responses_body()
    for raw in (("POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nauthorization: Bearer %s\r\nx-mock-id: %s\r\n"
                 "x-app: cli\rinjected: 1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % (OA_CLIENT_KEY, mid, len(body))).encode() + body,
                b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nthis line has no colon\r\nConnection: close\r\n\r\n"):
        c = Conn(st.port, timeout=15)
        try:
            c.send_raw(raw)
            c.read_head()
            r = c.response()
        finally:
            c.close()
        assert_openai_error(r, 400, "invalid_request_error", what="malformed header (%r)" % raw[:40])
    assert_not_forwarded(s, mid, "CR in a header")


def test_codex_502_upstream_down_and_dropped(s):
    st = s.stack("codex_down")
    for stream in (None, True):
        r = post(st, responses_body(stream=stream), oa_headers())
        obj = assert_openai_error(r, 502, "server_error", what="upstream down (stream=%s)" % stream)
        hp = "127.0.0.1:%d" % st.upstream_port
        check(hp in obj["error"]["message"], "the 502 should name the upstream %s: %r", hp, obj["error"]["message"])
    st = s.stack("codex")
    for stream in (None, True):
        mid = new_id()
        r = post(st, responses_body(stream=stream), oa_headers(mock_id=mid, behavior="drop"))
        assert_openai_error(r, 502, "server_error", what="upstream closed without answering (stream=%s)" % stream)


def test_codex_504_upstream_silent(s):
    st = s.stack("codex_timeout")  # HTTP_TIMEOUT=1
    for stream, headers in ((True, None), (None, "cherry")):
        mid = new_id()
        h = cherry_headers(mid, behavior="hang_before_headers") if headers else \
            oa_headers(mock_id=mid, behavior="hang_before_headers")
        t0 = time.monotonic()
        r = post(st, responses_body(stream=stream), h)
        check(time.monotonic() - t0 < 15, "the 504 took too long")
        assert_openai_error(r, 504, "server_error", what="upstream silent before headers (%s, %s)" % (stream, headers))
        rec = wait_record(s, mid, "disconnected", 10)
        check(rec["disconnected"], "the upstream connection stayed open after the timeout")


def test_codex_502_nginx_responder_down(s):
    st = s.stack("codex_killable")
    eq(st.request("GET", "/health").status, 200, "health before the kill")
    st.kill_responder()
    assert_openai_error(st.request("GET", "/health", timeout=20), 502, "server_error", what="responder down")
    assert_openai_error(post(st, responses_body(), oa_headers(), timeout=20), 502, "server_error",
                        what="responder down (POST)")


# --------------------------------------------------------------------------- WebSocket handshake

# The Codex CLI's built-in provider opens every session with a WebSocket handshake on
# /v1/responses. 426 makes it fall back to HTTPS at once; 404/405/501 cost it 7 retries,
# about 6.5 s (issue 8). The responder answers it: neither web server may answer first.
WS_FIXTURE = "codex_cli_builtin_websocket_upgrade.json"
# lighttpd's mod_cgi drops the hop-by-hop Upgrade header (cgi.upgrade is off by default),
# a proxy in front drops Connection too; the handshake's own Sec-WebSocket-* pass.
WS_CGI_DROPPED = ("upgrade",)


def ws_handshake(mid, drop=(), key=OA_CLIENT_KEY):
    """(path, headers) of the captured handshake with our key and mock id; drop: names
    left out, as a web server or CGI host would."""
    path, headers, body = fixture_request(WS_FIXTURE, mid, key=key)
    eq(body, b"", "the captured handshake has no body")
    return path, [(k, v) for k, v in headers if k.lower() not in drop]


def check_ws_refused(s, r, mid, what):
    obj = assert_openai_error(r, 426, "invalid_request_error", "websocket_not_supported", what)
    msg = obj["error"]["message"]
    check("HTTPS streaming" in msg and "not WebSockets" in msg,
          "%s: the message should say the service speaks HTTPS streaming, not WebSockets: %r", what, msg)
    assert_not_forwarded(s, mid, what)
    return msg


def ws_logged(lines, path, what):
    """The responder's log line of the refused handshake: 426, info level (routine for
    Codex, not a problem), saying why; no key in it."""
    found = [l for l in lines if l.get("status") == 426 and l.get("path") == path]
    check(found, "%s: no log line with status 426 for %s", what, path)
    line = found[-1]
    check("WebSocket upgrade refused" in (line.get("error") or "") and "HTTPS streaming" in line["error"],
          "%s: the log line should say the WebSocket upgrade was refused: %r", what, line)
    eq((line.get("method"), line.get("level")), ("GET", "info"), what + ": log method, level")
    check(OA_CLIENT_KEY not in json.dumps(line), "%s: the client key is in the log line", what)
    return line


def test_codex_websocket_upgrade_426(s):
    """The captured handshake, byte for byte as Codex sends it (Connection: Upgrade,
    Upgrade: websocket, Sec-WebSocket-*, openai-beta: responses_websockets=...): 426 with an
    OpenAI error from the responder, through the web server, and its log line."""
    st, mid = s.stack("codex"), new_id()
    path, headers = ws_handshake(mid)
    c = Conn(st.port, timeout=15)
    try:
        c.send_request("GET", path, headers)  # no body and no Content-Length, as captured
        c.read_head()
        r = c.response()
    finally:
        c.close()
    check_ws_refused(s, r, mid, "the captured Codex handshake")
    check(r.header("sec-websocket-accept") is None, "no handshake may be accepted: %r", r.headers)
    line = adapter_logged(st, lambda l: l.get("status") == 426 and l.get("path") == "/v1/responses")
    ws_logged([line], "/v1/responses", "the captured Codex handshake")


def test_codex_websocket_upgrade_426_any_relay_route(s):
    """Any request that opens a WebSocket on a relay route, whatever its method: the
    models routes, a POST, a trailing slash, a handshake whose Upgrade a CGI host or proxy
    dropped (only Sec-WebSocket-Key left). A local route is served as ever; a plain GET
    of /v1/responses is still 405."""
    st = s.stack("codex")
    cases = [("GET", "/v1/models", (), None), ("GET", "/v1/models/gpt-5-codex", (), None),
             ("GET", "/v1/responses/", (), None), ("GET", "/v1/responses", WS_CGI_DROPPED, None),
             ("GET", "/v1/responses", ("upgrade", "connection"), None),
             ("POST", "/v1/responses", (), responses_body(stream=True))]
    for method, path, drop, body in cases:
        mid = new_id()
        _, headers = ws_handshake(mid, drop=drop)
        what = "%s %s with the handshake%s" % (method, path, " without " + "/".join(drop) if drop else "")
        check_ws_refused(s, st.request(method, path, headers, body), mid, what)
    _, headers = ws_handshake(new_id())
    r = st.request("GET", "/health", headers)
    eq((r.status, r.json()), (200, {"status": "healthy", "service": "codex-service"}), "/health with the handshake")
    mid = new_id()
    r = st.request("GET", "/v1/responses", oa_headers(mock_id=mid))
    assert_openai_error(r, 405, "invalid_request_error", "method_not_allowed", "a plain GET /v1/responses")


# --------------------------------------------------------------------------- cancellation


def _measure_cancel(s, c, mid, what):
    rec = s.mock.record(mid)
    check(not rec["disconnected"], "%s: the upstream connection closed before the client left", what)
    t0 = time.time()
    c.close()
    ok, rec = s.mock.wait(mid, "disconnected", 10)
    check(rec is not None and ok, "%s: the upstream connection was still open 10 s after the client left "
          "(state %s)", what, rec and rec["state"])
    dt = rec["disconnected_at"] - t0
    check(-0.05 < dt <= CANCEL_BOUND, "%s: upstream closed %.3fs after the client left (bound %.1fs)",
          what, dt, CANCEL_BOUND)
    return dt


def test_codex_disconnect_cancels_upstream(s):
    st = s.stack("codex")
    notes = []
    # during events
    mid = new_id()
    c = st.open("POST", "/v1/responses", oa_headers(mock_id=mid, behavior="slow=0.1,deltas=300"),
                responses_body(stream=True), timeout=20)
    c.read_head()
    for _ in range(5):
        check(c.read_event() is not None, "stream ended early")
    notes.append("events %.3fs" % _measure_cancel(s, c, mid, "client left during events"))
    # while the upstream holds the next event
    mid = new_id()
    c = st.open("POST", "/v1/responses", oa_headers(mock_id=mid, behavior="gate=" + mid),
                responses_body(stream=True), timeout=20)
    c.read_head()
    check(c.read_event() is not None, "first event")
    wait_record(s, mid, "gate_waiting", 10)
    time.sleep(0.3)
    notes.append("gate %.3fs" % _measure_cancel(s, c, mid, "client left while the upstream held event 2"))
    # before the upstream's headers
    mid = new_id()
    c = st.open("POST", "/v1/responses", oa_headers(mock_id=mid, behavior="hang_before_headers"),
                responses_body(stream=True), timeout=20)
    wait_for(lambda: s.mock.records(mid) and s.mock.record(mid)["state"] == "hanging", 10, what="request at the mock")
    time.sleep(0.3)
    notes.append("before headers %.3fs" % _measure_cancel(s, c, mid, "client left before the upstream answered"))
    # an aggregating (non-stream CherryStudio) request: the client waits for one JSON body
    mid = new_id()
    c = st.open("POST", "/v1/responses", cherry_headers(mid, behavior="gate=" + mid), responses_body(stream=None),
                timeout=20)
    wait_record(s, mid, "gate_waiting", 10)
    time.sleep(0.3)
    notes.append("aggregating %.3fs" % _measure_cancel(s, c, mid, "non-stream client left while the forced "
                                                                   "upstream stream was held"))
    return "upstream closed after the client: " + ", ".join(notes)


# --------------------------------------------------------------------------- CGI


def test_codex_cgi(s):
    r = s.cgi("GET", "/health", service="codex")
    eq((r.status, r.json()), (200, {"status": "healthy", "service": "codex-service"}), "CGI /health")
    mid = new_id()
    body = responses_body()
    r = s.cgi("POST", "/v1/responses", oa_headers(mock_id=mid), body, service="codex")
    eq(r.status, 200, "CGI relay (%r / %s)" % (r.raw[:200], r.stderr[-300:]))
    rec = wait_record(s, mid)
    same_bytes(r.body, rec_response(rec), "CGI non-stream reply")
    same_bytes(rec_body(rec), body, "CGI request body")
    r = s.cgi("POST", "/v1/responses", oa_headers(key=None), body, service="codex")
    assert_openai_error(r, 401, "invalid_request_error", what="CGI without a key")


def test_codex_cgi_websocket_upgrade_426(s):
    """Plain CGI answers the handshake the same way: with HTTP_UPGRADE (what a host that
    passes it gives) and without (lighttpd's mod_cgi drops it); the log line on stderr."""
    for drop in ((), WS_CGI_DROPPED):
        mid = new_id()
        path, headers = ws_handshake(mid, drop=drop)
        what = "CGI handshake%s" % (" without Upgrade" if drop else "")
        r = s.cgi("GET", path, headers, body=None, service="codex")
        check_ws_refused(s, r, mid, what)
        lines = [json.loads(l) for l in r.stderr.splitlines() if l.startswith("{")]
        ws_logged(lines, "/v1/responses", what)
