"""200 concurrent streams, all open at the same time (proved by a gate: the mock holds
every one of them after its first event until all 200 are waiting), all complete intact."""

import threading

from harness import *

N = 200


def test_200_concurrent_streams(s):
    st = s.stack("main")  # WORKER_THREADS=256
    gate = new_id("gate")
    ids = [new_id("c%03d" % i) for i in range(N)]
    results = {}

    def worker(mid):
        c = None
        try:
            c = Conn(st.port, timeout=90)
            c.send_request("POST", "/v1/messages", api_headers(mock_id=mid, behavior="gate=%s,deltas=20" % gate),
                           message_body(stream=True))
            c.read_head()
            results[mid] = c.response()
        except Exception as e:  # reported below
            results[mid] = e
        finally:
            if c:
                c.close()

    threads = [threading.Thread(target=worker, args=(mid,), daemon=True) for mid in ids]
    for t in threads:
        t.start()
    try:
        ok, waiting = s.mock.wait_gate(gate, N, timeout=60)
        check(ok, "only %s of %d streams were open at the upstream at once (60 s)", waiting, N)
    finally:
        s.mock.release(gate, all=True)
    deadline = time.monotonic() + 90
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    missing = [m for m in ids if m not in results]
    check(not missing, "%d streams did not finish within 90 s after release", len(missing))
    bad = []
    for mid in ids:
        r = results[mid]
        if isinstance(r, Exception):
            bad.append("%s: %r" % (mid, r))
            continue
        rec = s.mock.record(mid)
        if r.status != 200 or not r.clean_end or r.body != rec_response(rec):
            bad.append("%s: status %d, clean %s, %d bytes vs %d sent" % (mid, r.status, r.clean_end,
                                                                         len(r.body), rec["response_len"]))
    check(not bad, "%d of %d streams broken, e.g. %s", len(bad), N, "; ".join(bad[:3]))


test_200_concurrent_streams.timeout = 200
