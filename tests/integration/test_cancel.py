"""A client that goes away aborts the upstream transfer within 1 second, whether the
upstream is sending events, silent mid-stream (long thinking), or silent before its
headers. Measured from the client's close to the moment the mock saw EOF on the
upstream connection (select() on its socket; the mock needs no write to notice)."""

from harness import *

CANCEL_BOUND = 1.0  # the spec's bound


def _measure(s, c, mid, what):
    # control: while the client stays, the upstream connection stays open
    rec = s.mock.record(mid)
    check(not rec["disconnected"], "%s: the upstream connection closed before the client left "
          "(during %s)", what, rec["disconnected_during"])
    t0 = time.time()
    c.close()
    ok, rec = s.mock.wait(mid, "disconnected", 10)
    if rec is None:
        raise AssertionError("%s: the mock has no record" % what)
    if not ok:
        raise AssertionError("%s: the upstream connection was still open 10 s after the client left "
                             "(mock state %s, %d events sent)" % (what, rec["state"], rec["events_sent"]))
    dt = rec["disconnected_at"] - t0
    check(dt > -0.05, "%s: the upstream connection closed %.3fs before the client left", what, -dt)
    check(dt <= CANCEL_BOUND, "%s: upstream closed %.3fs after the client left (bound %.1fs)",
          what, dt, CANCEL_BOUND)
    return rec, dt


def test_disconnect_during_events_aborts_upstream(s):
    st, mid = s.stack("main"), new_id()
    c = st.open("POST", "/v1/messages", api_headers(mock_id=mid, behavior="slow=0.1,deltas=300"),
                message_body(stream=True), timeout=20)
    c.read_head()
    for _ in range(5):
        check(c.read_event() is not None, "stream ended early")
    rec, dt = _measure(s, c, mid, "client left during events")
    check(rec["events_sent"] < rec["events_total"], "the stream ran to its end (%d events)", rec["events_sent"])
    return "upstream closed %.3fs after the client" % dt


def test_disconnect_during_silence_aborts_upstream(s):
    st, mid = s.stack("main"), new_id()  # HTTP_TIMEOUT=30: the proxy itself would wait
    c = st.open("POST", "/v1/messages", api_headers(mock_id=mid, behavior="hang_after=3"),
                message_body(stream=True), timeout=20)
    c.read_head()
    for _ in range(3):
        check(c.read_event() is not None, "stream ended early")
    wait_for(lambda: s.mock.record(mid)["state"] == "hanging", 10, what="mock to go silent")
    time.sleep(0.3)  # the relay is now waiting on a silent upstream
    return "upstream closed %.3fs after the client" % _measure(s, c, mid, "client left while the upstream was silent mid-stream")[1]


def test_disconnect_before_headers_aborts_upstream(s):
    st, mid = s.stack("main"), new_id()
    c = st.open("POST", "/v1/messages", api_headers(mock_id=mid, behavior="hang_before_headers"),
                message_body(stream=True), timeout=20)
    wait_for(lambda: s.mock.records(mid) and s.mock.record(mid)["state"] == "hanging", 10,
             what="the request to reach the mock")
    time.sleep(0.3)
    return "upstream closed %.3fs after the client" % _measure(s, c, mid, "client left before the upstream answered")[1]


def test_disconnect_at_gate_nonstream_wait(s):
    """Silence while the upstream holds a gated stream after its first event."""
    st, mid = s.stack("main"), new_id()
    c = st.open("POST", "/v1/messages", api_headers(mock_id=mid, behavior="gate=" + mid),
                message_body(stream=True), timeout=20)
    c.read_head()
    check(c.read_event() is not None, "first event")
    wait_record(s, mid, "gate_waiting", 10)
    time.sleep(0.3)
    return "upstream closed %.3fs after the client" % _measure(s, c, mid, "client left while the upstream held event 2")[1]


def test_disconnect_nonstream_during_silence_aborts_upstream(s):
    st, mid = s.stack("main"), new_id()
    c = st.open("POST", "/v1/messages", api_headers(mock_id=mid, behavior="slow=60"), message_body(), timeout=20)
    wait_record(s, mid, "received", 10)
    time.sleep(0.3)
    return "upstream closed %.3fs after the client" % _measure(
        s, c, mid, "client left a non-stream request while the upstream was thinking")[1]
