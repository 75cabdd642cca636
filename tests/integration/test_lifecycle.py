"""Process life cycle: SIGTERM lets a running stream finish, then the responder exits."""

from harness import *


def test_sigterm_drains_running_stream(s):
    st, mid = s.stack("drain"), new_id()
    c = st.open("POST", "/v1/messages", api_headers(mock_id=mid, behavior="gate=" + mid),
                message_body(stream=True), timeout=30)
    try:
        c.read_head()
        check(c.read_event() is not None, "first event")
        wait_record(s, mid, "gate_waiting", 10)
        st.responder.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        check(st.responder.alive(), "the responder exited at SIGTERM with a stream running (rc %s)",
              st.responder.p.returncode)
        s.mock.release(mid)
        rest = c.read_all()
        check(c.clean_end, "the drained stream did not end cleanly")
    finally:
        c.close()
    rec = wait_record(s, mid)
    eq(c.status, 200, "status")
    same_bytes(bytes(c.body_so_far), rec_response(rec), "stream finished during drain")
    try:
        st.responder.p.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError("the responder did not exit within 15 s after its last stream ended")
    return "responder exited rc %s" % st.responder.p.returncode


test_sigterm_drains_running_stream.timeout = 90
