"""Non-stream answers that fail before they are complete (issue 8, part 3), on both
services: the client never sees a complete 2xx. While nothing of the body went out
(the responder holds a non-stream answer until it is complete, up to 8 MiB), it gets the
dialect's JSON error, 504 for silence, 502 for a broken upstream; an answer too big to
hold goes out as it arrives and, when it fails, is cut off so the client's HTTP library
sees it broken (no final chunk, or fewer bytes than the Content-Length).

Every case is judged by what Python's http.client makes of the answer: its status and
whether read() returns the whole body or raises IncompleteRead. The codex tests' names
contain "codex" (`run.py codex` runs them)."""

import http.client

from harness import *

HOLD_MAX = 8 << 20  # MAX_HOLD_BYTES's default (common/config.c)
BIG = 20000000      # a body whose first half is over HOLD_MAX

CLAUDE = dict(main="main", timeout="timeout", slow_timeout="timeout5", path="/v1/messages",
              headers=lambda mid, beh: api_headers(mock_id=mid, behavior=beh),
              body=lambda: message_body(),
              error=lambda r, status, what: assert_anthropic_error(r, status, "api_error", what))
# The default adapter: the client's stream: false reaches the upstream as it is.
CODEX = dict(main="codex", timeout="codex_timeout", slow_timeout="codex_timeout5", path="/v1/responses",
             headers=lambda mid, beh: oa_headers(mock_id=mid, behavior=beh),
             body=lambda: responses_body(),
             error=lambda r, status, what: assert_openai_error(r, status, "server_error", what=what))


def client_sees(st, path, headers, body, timeout=60.0):
    """(Response, complete): the answer as http.client reads it; complete is False when
    read() raised IncompleteRead or the connection broke mid-body."""
    c = http.client.HTTPConnection("127.0.0.1", st.port, timeout=timeout)
    try:
        c.request("POST", path, body=body, headers=dict(headers))
        r = c.getresponse()
        try:
            data, complete = r.read(), True
        except http.client.IncompleteRead as e:
            data, complete = e.partial, False
        except (ConnectionError, http.client.HTTPException):
            data, complete = b"", False
        return Response(r.status, r.reason, r.getheaders(), data), complete
    finally:
        c.close()


def _ask(s, svc, stack, beh):
    st, mid = s.stack(svc[stack]), new_id()
    r, complete = client_sees(st, svc["path"], svc["headers"](mid, beh), svc["body"]())
    return r, complete, mid


def _fails_as(s, svc, stack, beh, status, what):
    """The upstream fails before the body is complete: a complete JSON error answer."""
    r, complete, mid = _ask(s, svc, stack, beh)
    check(complete, "%s: the %d error answer itself did not arrive whole (%d bytes)", what, r.status, len(r.body))
    svc["error"](r, status, what)
    eq(r.header("content-length"), str(len(r.body)), what + ": Content-Length of the error")
    rec = wait_record(s, mid, "disconnected" if "hang_after" in beh else "finished", 15)
    check(rec["state"] in ("died", "disconnected"), "%s: mock state %s", what, rec["state"])
    return r


def _silence(s, svc):
    for beh, what in (("chunked,hang_after=0", "headers, then silence"),
                      ("chunked,hang_after=1", "headers and half the body, then silence"),
                      ("hang_after=1", "Content-Length, half the body, then silence")):
        _fails_as(s, svc, "timeout", beh, 504, what + " past HTTP_TIMEOUT")


def _broken(s, svc):
    for beh, what in (("chunked,die_after=1,reset", "headers and half the body, then a reset"),
                      ("chunked,die_after=1", "headers and half the body, then a close"),
                      ("chunked,die_after=0", "headers, then a close"),
                      ("die_after=1,reset", "Content-Length, half the body, then a reset")):
        _fails_as(s, svc, "main", beh, 502, what)


def _chunked_complete(s, svc):
    """A complete chunked answer still passes, byte for byte, now with its length."""
    r, complete, mid = _ask(s, svc, "main", "chunked")
    rec = wait_record(s, mid)
    eq(dict(rec["response_headers"]).get("transfer-encoding"), "chunked", "the mock answered chunked")
    check(complete, "a complete chunked answer did not arrive whole (%d bytes)", len(r.body))
    eq(r.status, 200, "status")
    same_bytes(r.body, rec_response(rec), "chunked non-stream answer")
    eq(r.header("content-length"), str(len(r.body)), "Content-Length")
    check((r.header("content-type") or "").startswith("application/json"), "content-type %r", r.header("content-type"))
    check(isinstance(r.json(), dict), "not a JSON object")
    return r, rec


def _over_cap_cut_off(s, svc):
    """Too big to hold: the headers and the first 8 MiB went out, so a failure after
    that must leave the client with a broken response, never a clean end. (No reset
    here: a reset throws away what the responder had not read yet, so whether it got past
    8 MiB first would be a race; a close delivers every byte before the end.)"""
    for stack, beh, what in (("main", "big=%d,chunked,die_after=1" % BIG, "chunked, then a close"),
                             ("main", "big=%d,die_after=1" % BIG, "Content-Length, then a close"),
                             # 8 MiB through a loaded machine can stall for a second on its
                             # own; the silence that must cut it off is the mock's hang
                             ("slow_timeout", "big=%d,chunked,hang_after=1" % BIG, "chunked, then silence")):
        r, complete, mid = _ask(s, svc, stack, beh)
        rec = wait_record(s, mid, "disconnected" if "hang_after" in beh else "finished", 30)
        sent = rec["response_len"]
        check(sent > HOLD_MAX, "%s: the mock sent only %d bytes before failing", what, sent)
        eq(r.status, 200, what + ": status (the answer had started)")
        check(not complete, "%s: an answer cut off after %d bytes reached the client as complete (%d bytes, "
              "Content-Length %s)", what, sent, len(r.body), r.header("content-length"))
        check(len(r.body) <= sent, "%s: the client got %d bytes, more than the upstream sent (%d)",
              what, len(r.body), sent)


def _over_cap_complete(s, svc):
    r, complete, mid = _ask(s, svc, "main", "big=%d,chunked" % BIG)
    rec = wait_record(s, mid, "finished", 30)
    check(complete, "a complete %d-byte chunked answer did not arrive whole (%d bytes)", rec["response_len"],
          len(r.body))
    eq(r.status, 200, "status")
    eq(len(r.body), rec["response_len"], "length of a big chunked answer")
    eq(sha256_hex(r.body), rec["response_sha256"], "sha256 of a big chunked answer")


# --------------------------------------------------------------------------- Claude


def test_nonstream_silence_is_504(s):
    _silence(s, CLAUDE)


def test_nonstream_broken_upstream_is_502(s):
    _broken(s, CLAUDE)


def test_nonstream_chunked_body_complete(s):
    r, rec = _chunked_complete(s, CLAUDE)
    check_passed_headers(r, rec, "chunked non-stream answer")


def test_nonstream_over_hold_cap_cut_off(s):
    _over_cap_cut_off(s, CLAUDE)


test_nonstream_over_hold_cap_cut_off.timeout = 120


def test_nonstream_over_hold_cap_complete(s):
    _over_cap_complete(s, CLAUDE)


test_nonstream_over_hold_cap_complete.timeout = 90


# --------------------------------------------------------------------------- Codex


def test_codex_nonstream_silence_is_504(s):
    _silence(s, CODEX)


def test_codex_nonstream_broken_upstream_is_502(s):
    _broken(s, CODEX)


def test_codex_nonstream_chunked_body_complete(s):
    from test_codex import check_oa_passed_headers
    r, rec = _chunked_complete(s, CODEX)
    check_oa_passed_headers(r, rec, "chunked non-stream answer")


def test_codex_nonstream_over_hold_cap_cut_off(s):
    _over_cap_cut_off(s, CODEX)


test_codex_nonstream_over_hold_cap_cut_off.timeout = 120


def test_codex_nonstream_over_hold_cap_complete(s):
    _over_cap_complete(s, CODEX)


test_codex_nonstream_over_hold_cap_complete.timeout = 90


def test_codex_aggregated_stream_failures_are_errors(s):
    """The cherry_studio adapter forces a stream upstream for a client that asked for one
    JSON answer: a forced stream that goes silent or breaks is that JSON error too."""
    from test_codex import cherry_headers
    for stack, beh, status, what in (("codex_timeout", "hang_after=3", 504, "silent after 3 events"),
                                     ("codex_timeout", "hang_after=0", 504, "silent after the headers"),
                                     ("codex", "die_after=3,reset", 502, "reset after 3 events")):
        st, mid = s.stack(stack), new_id()
        r, complete = client_sees(st, "/v1/responses", cherry_headers(mid, behavior=beh), responses_body(stream=None))
        check(complete, "aggregated, %s: the error answer did not arrive whole", what)
        assert_openai_error(r, status, "server_error", what="aggregated, " + what)
        rec = wait_record(s, mid, "disconnected" if "hang_after" in beh else "finished", 15)
        eq(rec["stream"], True, "aggregated, %s: the upstream was asked for a stream" % what)
