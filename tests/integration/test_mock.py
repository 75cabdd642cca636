"""Self-tests of the mock upstream (no responder needed): it must be faithful and its
misbehaviours must work, or the relay tests prove nothing."""

from harness import *

EXPECTED_ORDER = ["message_start", "content_block_start", "ping", "content_block_delta",
                  "content_block_delta", "content_block_delta", "content_block_stop",
                  "message_delta", "message_stop"]


def test_mock_stream_shapes(s):
    mid = new_id()
    r = request(s.mock.port, "POST", "/api/v1/messages?beta=true", api_headers(mock_id=mid),
                message_body(stream=True))
    eq(r.status, 200, "status")
    check(r.header("content-type").startswith("text/event-stream"), "content-type")
    check(r.header("request-id").startswith("req_"), "request-id")
    check(r.header("transfer-encoding") == "chunked" and r.clean_end, "chunked, cleanly ended")
    ev = parse_events(r.body)
    eq([n for n, _ in ev], EXPECTED_ORDER, "event order")
    for name, data in ev:
        eq(data["type"], name, "data.type of %s" % name)
    msg = ev[0][1]["message"]
    eq((msg["type"], msg["role"], msg["content"], msg["stop_reason"]),
       ("message", "assistant", [], None), "message_start.message")
    check(msg["id"].startswith("msg_"), "message id")
    eq(ev[-2][1]["delta"]["stop_reason"], "end_turn", "message_delta stop_reason")
    rec = s.mock.record(mid)
    eq((rec["route"], rec["prefix"], rec["query"]), ("/v1/messages", "/api", "beta=true"), "route")
    same_bytes(r.body, rec_response(rec), "mock's own record")


def test_mock_nonstream_and_models(s):
    r = request(s.mock.port, "POST", "/v1/messages", api_headers(), message_body())
    m = r.json()
    eq((r.status, m["type"], m["role"], m["content"][0]["type"]), (200, "message", "assistant", "text"), "message")
    check("input_tokens" in m["usage"] and "output_tokens" in m["usage"], "usage")
    r = request(s.mock.port, "GET", "/v1/models?limit=2", api_headers(content_type=False))
    obj = r.json()
    eq((len(obj["data"]), obj["has_more"]), (2, True), "models page")
    r = request(s.mock.port, "GET", "/v1/models/claude-nope", api_headers(content_type=False))
    eq(r.json()["error"]["type"], "not_found_error", "unknown model")
    r = request(s.mock.port, "POST", "/v1/messages/count_tokens", api_headers(), message_body())
    check(r.json()["input_tokens"] > 0, "count_tokens")
    r = request(s.mock.port, "POST", "/v1/messages", api_headers(key=None), message_body())
    eq((r.status, r.json()["error"]["type"]), (401, "authentication_error"), "no key")


def test_mock_errors_and_death(s):
    r = request(s.mock.port, "POST", "/v1/messages", api_headers(behavior="status=429"), message_body())
    eq((r.status, r.json()["error"]["type"], r.header("retry-after"), r.header("x-should-retry")),
       (429, "rate_limit_error", "7", "true"), "429")
    r = request(s.mock.port, "POST", "/v1/messages", api_headers(behavior="status=529"), message_body(stream=True))
    eq((r.status, r.json()["error"]["type"]), (529, "overloaded_error"), "529")
    c = Conn(s.mock.port, timeout=10)
    c.send_request("POST", "/v1/messages", api_headers(behavior="die_after=2"), message_body(stream=True))
    c.read_head()
    c.read_event(), c.read_event()
    try:
        c.read_event()
        raise AssertionError("die_after=2: the stream did not break")
    except EOFError:
        pass
    finally:
        c.close()


def test_mock_gate_and_disconnect(s):
    mid = new_id()
    c = Conn(s.mock.port, timeout=10)
    c.send_request("POST", "/v1/messages", api_headers(mock_id=mid, behavior="gate_each=" + mid),
                   message_body(stream=True))
    c.read_head()
    check(c.read_event().startswith(b"event: message_start"), "first event")
    rec = wait_record(s, mid, "gate_waiting", 5)
    eq((rec["events_sent"], rec["gate_waiting"]), (1, 1), "mock holds event 2")
    s.mock.release(mid)
    check(c.read_event().startswith(b"event: content_block_start"), "second event")
    wait_record(s, mid, "gate_waiting", 5)
    t0 = time.time()
    c.close()
    rec = wait_record(s, mid, "disconnected", 5)
    dt = rec["disconnected_at"] - t0
    check(dt < 0.5, "mock saw the close after %.3fs", dt)
    eq(rec["disconnected_during"], "gate", "where")


def test_mock_thinking_and_tool_use(s):
    r = request(s.mock.port, "POST", "/v1/messages", api_headers(behavior="thinking,tool_use,deltas=1"),
                message_body(stream=True))
    ev = parse_events(r.body)
    blocks = [(d["index"], d["content_block"]["type"]) for n, d in ev if n == "content_block_start"]
    eq(blocks, [(0, "thinking"), (1, "text"), (2, "tool_use")], "content blocks")
    deltas = [d["delta"]["type"] for n, d in ev if n == "content_block_delta"]
    eq(deltas[:4], ["thinking_delta"] * 3 + ["signature_delta"], "thinking deltas")
    eq(json.loads("".join(d["delta"]["partial_json"] for n, d in ev
                          if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")),
       {"location": "San Francisco, CA", "unit": "fahrenheit"}, "tool input")
    eq(ev[-2][1]["delta"]["stop_reason"], "tool_use", "stop_reason")
    m = request(s.mock.port, "POST", "/v1/messages", api_headers(behavior="thinking,tool_use"), message_body()).json()
    eq([c["type"] for c in m["content"]], ["thinking", "text", "tool_use"], "non-stream content")
