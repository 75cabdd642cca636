#!/usr/bin/env python3
"""The soak (issue 13): both responders, built with ASan and UBSan, under nginx and
lighttpd, a mixed load for N seconds on loopback, then a verdict.

  python3 tests/soak/soak.py [--seconds N] [--clients C] [--seed S]

CCPROXY_BIN_DIR names the responders (make soak: build/san/bin). Standard library only;
the stacks, the mock upstream and the raw HTTP client are tests/integration/harness.py's.

The load: C clients (a fixed number of threads), each request with its own socket
timeout, drawn from SCENARIOS (first every scenario on every target once, then at
random until N seconds have passed). Beside it, the controller runs its phases one after
the other: stalled readers (clients that stop reading with a huge stream, buffers full)
while the load goes on; a SIGKILL of the claude responder under nginx and one under
lighttpd, with streams running on it.

Every answer is judged against what the mock upstream sent (its record of the same
x-mock-id: status, the bytes, or their length and sha256 beyond the first MiB):
  identical       byte for byte what the upstream sent (any status)
  terminal_error  a prefix of the upstream's stream ending at an event boundary, then
                  exactly one terminal error event of the API (Anthropic `event: error`,
                  Responses `response.failed` numbered after the last event)
  aggregated      a non-stream Responses client answered from a forced stream: the JSON
                  is the upstream's response.completed/incomplete `response` object
  proxy_error     nothing usable came from upstream (or the request never went there):
                  a complete JSON error in the dialect of the service
  cut             a non-stream whose upstream failed after its headers: a strict prefix
                  of the upstream body, and the client sees the body end uncleanly
  left            the client left (or was killed with its responder): what it got is a
                  prefix of the upstream bytes, ending uncleanly unless it left itself
  local           the responder's own answer to a client's probe (HEAD /), never forwarded
  rejected        the web server refused an unparsable request (4xx), nothing forwarded
Anything else is "corrupt". Each scenario names the outcomes it allows.

Checks (one pass/fail line each, then `soak: N passed, M failed`): answers, stalled
readers, each kill, idle fds/threads/upstream connections/RSS per responder, sanitizer
reports, keys in logs.
"""

import argparse
import base64
import collections
import hashlib
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from harness import (ALL_KEYS, CLIENT_KEY, OA_CLIENT_KEY, Conn, api_headers, message_body,  # noqa: E402
                     new_id, oa_headers, parse_events, responses_body, wait_for)

FIXTURES = harness.REPO / "tests" / "fixtures"
READ_TIMEOUT = 90.0      # per socket operation of a client: generous, a liveness bound only
# HTTP_TIMEOUT of the soak stacks: a hung upstream ends within seconds, and so does a
# client that reads nothing at all (upstream.c: a paused transfer that long is a client
# gone), so a stalled reader's stall is bounded by it too (see stalled_readers)
UPSTREAM_TIMEOUT = "20"
MAX_BODY = 1 << 20       # MAX_BODY_BYTES of the soak stacks (the fixtures are below 128 KiB)
STALL_BIG = 16 << 20     # a stalled reader's stream: far more than every buffer on the way
SAN_RE = re.compile(r"ERROR: (Address|Leak|Thread)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer")

NGINX_KEEPALIVE = 256     # conf/nginx/ccproxy-*.conf: the upstream block's keepalive
HTTP_MAX_KEEPALIVE = 256  # the responders' default (common/config.c)
# MAX_SSE_EVENT_BYTES of the soak stacks: above the biggest whole event the load makes
# (Codex's response.completed repeats a "huge" answer of 3 MB), below the runaway one
MAX_SSE_EVENT = 4 << 20
RUNAWAY_EVENT = MAX_SSE_EVENT + (1 << 20)
SOAK_ENV = {"WORKER_THREADS": "2", "HTTP_TIMEOUT": UPSTREAM_TIMEOUT, "MAX_BODY_BYTES": str(MAX_BODY),
            "MAX_SSE_EVENT_BYTES": str(MAX_SSE_EVENT),
            # idle upstream connections expire soon after the load: the idle count is checked
            "HTTP_KEEPALIVE_EXPIRY": "2", "SHUTDOWN_GRACE": "10"}


# --------------------------------------------------------------------------- targets


class Target:
    """One service behind one web server: where to send, which process answers."""

    def __init__(self, web, service, stack):
        self.web, self.service, self.stack = web, service, stack
        self.name = "%s/%s" % (web, service)
        self.paused = threading.Event()   # the controller owns this target for a while
        self.inflight = 0
        self.lock = threading.Lock()
        self.streams_done = 0             # stream answers judged good: the progress counter
        self.baseline = None
        self.replaced = []                # pids killed on purpose

    @property
    def port(self):
        return self.stack.port

    def responder_pid(self):
        if self.web == "lighttpd":
            r = self.stack.current_responder(self.service)
            return r.pid if r is not None else None
        return self.stack.responder.pid


# RSS allowed above the warm-up's idle figure once the load has stopped. glibc's allocator
# gives everything back (the responders fix its mmap threshold; measured +0.2..0.6 MB
# after a 20 s soak, where a runaway 5 MB event had left 4 MB per loop thread resident
# for good before); ASan's allocator settles 4-8 MB above and stays there (measured:
# +4..7.4 MB after 1337 requests, +5.7..7.8 MB after 3763). A leak is LeakSanitizer's to
# report at exit (the sanitizer check); this bound catches growth it cannot see (caches,
# pools, retained arenas).
RSS_SLACK_MB = 3
RSS_SLACK_ASAN_MB = 12


def under_asan(pid):
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def proc_stats(pid, mock_port):
    """A process's figures from /proc: fds (all), files (fds that are not sockets),
    sockets, threads, rss_kb, upstream (TCP connections to the mock, any state)."""
    fds = os.listdir("/proc/%d/fd" % pid)
    inodes = set()
    for fd in fds:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    files = len(fds) - len(inodes)
    threads = rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    up = 0
    for tab in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(tab) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if int(p[2].rsplit(":", 1)[1], 16) == mock_port and p[9] in inodes:
                        up += 1
        except OSError:
            pass
    return {"fds": len(fds), "files": files, "sockets": len(inodes), "threads": threads, "rss_kb": rss,
            "upstream": up}


# --------------------------------------------------------------------------- requests


def fixture(name):
    with open(FIXTURES / name, encoding="utf-8") as f:
        return json.load(f)


def fixture_service(name):
    return "codex" if name.startswith(("codex_", "openai_")) else "claude"


def fixture_request(name, mid, behavior=None):
    """A captured request replayed as sent, with our key and the mock's id header."""
    fx = fixture(name)
    svc = fixture_service(name)
    key = OA_CLIENT_KEY if svc == "codex" else CLIENT_KEY
    headers = []
    for k, v in fx["headers"]:
        lk = k.lower()
        if lk in ("host", "content-length"):
            continue
        if lk == "authorization":
            v = "Bearer " + key
        elif lk == "x-api-key":
            v = key
        headers.append((k, v))
    headers.append(("x-mock-id", mid))
    if behavior:
        headers.append(("x-mock-behavior", behavior))
    body = fx["body"].encode("utf-8")
    stream = b'"stream":true' in body.replace(b" ", b"")
    return fx["method"], fx["path"], headers, (body if body or fx["method"] not in ("GET", "HEAD") else None), stream


class Plan:
    """One request to send: what, how the client behaves, which outcomes it may get."""

    def __init__(self, kind, method, path, headers, body, stream, allowed, client="read", raw=None,
                 forwarded=True, fault=None):
        self.kind, self.method, self.path, self.headers, self.body = kind, method, path, headers, body
        self.stream, self.allowed, self.client, self.raw = stream, allowed, client, raw
        self.forwarded, self.fault = forwarded, fault


def api_request(svc, mid, stream, behavior=None, extra=(), body=None):
    if svc == "codex":
        return ("POST", "/v1/responses", oa_headers(mock_id=mid, behavior=behavior, extra=extra),
                body if body is not None else responses_body(stream=stream))
    return ("POST", "/v1/messages", api_headers(mock_id=mid, behavior=behavior, extra=extra),
            body if body is not None else message_body(stream=stream))


OK = {"identical"}
STREAM_FAIL = {"terminal_error"}
NONSTREAM_FAIL = {"cut", "proxy_error"}

# Faults of tests/mock_upstream.py: (name, behavior, services, allowed for a stream,
# allowed for a non-stream). None: not that way.
FAULTS = [
    ("plain", None, ("claude", "codex"), OK, OK),
    ("slow", "slow=0.3,deltas=6", ("claude", "codex"), OK, OK),
    ("many_deltas", "deltas=200", ("claude", "codex"), OK, OK),
    ("fragmented", "fragment=7", ("claude", "codex"), OK, None),
    ("huge", "big=3000000", ("claude", "codex"), OK, OK),
    ("thinking_tools", "thinking,tool_use", ("claude",), OK, OK),
    ("reasoning_tools", "reasoning,tool_call", ("codex",), OK, OK),
    ("incomplete", "incomplete", ("codex",), OK, OK),
    ("chunked", "chunked", ("claude", "codex"), None, OK),
    ("close_idle", "close_idle=0.5", ("claude", "codex"), OK, OK),
    ("status_429", "status=429", ("claude", "codex"), OK, OK),
    ("status_500", "status=500", ("claude", "codex"), OK, OK),
    ("status_529", "status=529", ("claude",), OK, OK),
    ("status_503", "status=503", ("codex",), OK, OK),
    ("die_mid", "die_after=3", ("claude", "codex"), STREAM_FAIL, NONSTREAM_FAIL),
    ("die_reset", "die_after=2,reset", ("claude", "codex"), STREAM_FAIL, NONSTREAM_FAIL),
    ("die_headers", "die_after=0", ("claude", "codex"), STREAM_FAIL | {"proxy_error"}, NONSTREAM_FAIL),
    ("hang_mid", "hang_after=2,hang_max=30", ("claude", "codex"), STREAM_FAIL, NONSTREAM_FAIL),
    ("silent", "hang_before_headers,hang_max=30", ("claude", "codex"), {"proxy_error"}, {"proxy_error"}),
    ("drop", "drop", ("claude", "codex"), {"proxy_error"}, {"proxy_error"}),
    ("sse_error", "sse_error_after=2", ("claude",), OK, None),
    ("error_event", "error_event_after=2", ("codex",), STREAM_FAIL, OK),
    ("failed_event", "failed_after=2", ("codex",), OK, OK),
    # an upstream event that never ends: the framer's bound (MAX_SSE_EVENT_BYTES) ends the
    # stream with the dialect's terminal error
    ("runaway_event", "unended_event=%d" % RUNAWAY_EVENT, ("claude", "codex"), STREAM_FAIL, None),
    ("cache_usage", "cache=100:20", ("claude", "codex"), OK, OK),
]


def builtin_adapters(svc):
    with open(harness.REPO / "conf" / "adapters.json", encoding="utf-8") as f:
        return [a["name"] for a in json.load(f)[svc]]


def scenarios():
    """[(kind, services, make(svc, mid) -> Plan)]: the table the load draws from."""
    out = []
    for name, beh, svcs, s_ok, n_ok in FAULTS:
        for stream, allowed in ((True, s_ok), (False, n_ok)):
            if allowed is None:
                continue
            kind = "%s/%s" % ("stream" if stream else "nonstream", name)

            def make(svc, mid, beh=beh, stream=stream, allowed=allowed, kind=kind, name=name):
                m, p, h, b = api_request(svc, mid, stream, beh)
                return Plan(kind, m, p, h, b, stream, allowed, fault=name)
            out.append((kind, svcs, make))
    # every built-in adapter of each service, forced by x-client-type, both ways
    for svc in ("claude", "codex"):
        for ad in builtin_adapters(svc):
            for stream in (True, False):
                kind = "adapter/%s/%s" % (ad, "stream" if stream else "nonstream")

                def make(s, mid, ad=ad, stream=stream, kind=kind):
                    m, p, h, b = api_request(s, mid, stream, extra=[("x-client-type", ad)])
                    return Plan(kind, m, p, h, b, stream, {"identical", "aggregated"})
                out.append((kind, (svc,), make))
    # the captured requests of the real clients
    for fn in sorted(os.listdir(FIXTURES)):
        if not fn.endswith(".json"):
            continue
        kind = "fixture/" + fn[:-5]

        def make(svc, mid, fn=fn, kind=kind):
            m, p, h, b, stream = fixture_request(fn, mid)
            return Plan(kind, m, p, h, b, stream, {"identical", "aggregated", "proxy_error", "local"})
        out.append((kind, (fixture_service(fn),), make))
    # clients that leave mid-stream
    for beh in ("slow=0.2,deltas=20", "big=2000000"):
        kind = "client/leave_mid_stream" + ("_big" if "big" in beh else "")

        def make(svc, mid, beh=beh, kind=kind):
            m, p, h, b = api_request(svc, mid, True, beh)
            return Plan(kind, m, p, h, b, True, {"left"}, client="leave", fault="client_leaves")
        out.append((kind, ("claude", "codex"), make))

    # oversized and malformed requests: never forwarded
    def bad(kind, body=None, status=None, **kw):
        def make(svc, mid):
            m, p, h, b = api_request(svc, mid, False, body=body)
            if kw.get("key") is False:
                h = [x for x in h if x[0].lower() not in ("x-api-key", "authorization")]
            h = h + list(kw.get("extra", ()))
            return Plan(kind, m, p, h, b, False, {"proxy_error"}, forwarded=False, fault="malformed")
        out.append((kind, ("claude", "codex"), make))
    bad("malformed/bad_json", body=b'{"model": "x", "messages": [')
    bad("malformed/not_object", body=b'[1, 2, 3]')
    bad("malformed/deep_json", body=b'[' * 5000 + b']' * 5000)
    bad("malformed/no_key", key=False)
    bad("malformed/unknown_adapter", extra=[("x-client-type", "no-such-client")])
    bad("oversized/body", body=b'{"model":"x","pad":"' + b"a" * MAX_BODY + b'"}')

    def raw(kind, data, client="read"):
        def make(svc, mid):
            return Plan(kind, "RAW", "", [], None, False, {"left" if client == "leave" else "rejected"},
                        client=client, raw=data(mid), forwarded=False, fault="malformed")
        out.append((kind, ("claude", "codex"), make))
    raw("malformed/garbage_request_line", lambda mid: b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
    raw("malformed/cr_in_header", lambda mid: (
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-mock-id: %s\r\nx-a: b\rinjected: 1\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}" % mid).encode())
    raw("oversized/header", lambda mid: (
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nx-mock-id: %s\r\nx-big: %s\r\nConnection: close\r\n\r\n"
        % (mid, "b" * 200000)).encode())
    raw("malformed/body_cut_short", lambda mid: (
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-mock-id: %s\r\ncontent-type: application/json\r\n"
        "Content-Length: 5000\r\nConnection: close\r\n\r\n{\"model\":" % mid).encode(), client="leave")
    return out


# --------------------------------------------------------------------------- judging


def dialect_error(svc, status, body, headers_ct):
    """A complete JSON error of the service's dialect (either shape from a web server's
    page for a request it refused before the per-port block: lighttpd's 400)."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    if not isinstance(obj, dict) or not isinstance(obj.get("error"), dict):
        return False
    err = obj["error"]
    if svc == "claude" or obj.get("type") == "error":
        return obj.get("type") == "error" and isinstance(err.get("type"), str) and bool(err.get("message"))
    return isinstance(err.get("message"), str) and bool(err["message"]) and isinstance(err.get("type"), str)


def last_event(body):
    """(prefix, last event) of an SSE body that ends with a blank line."""
    if not body.endswith(b"\n\n"):
        return body, b""
    i = body.rfind(b"\n\n", 0, len(body) - 2)
    return (body[:i + 2], body[i + 2:]) if i >= 0 else (b"", body)


def seqs(body):
    out = []
    for _, data in parse_events(body):
        if isinstance(data, dict) and isinstance(data.get("sequence_number"), int):
            out.append(data["sequence_number"])
    return out


def terminal_error_ok(svc, event, prefix):
    ev = parse_events(event)
    if len(ev) != 1:
        return "the last event is not one event"
    name, data = ev[0]
    if svc == "claude":
        if name != "error" or not isinstance(data, dict) or data.get("type") != "error" \
                or not isinstance(data.get("error"), dict) or not data["error"].get("message"):
            return "the last event is not an Anthropic error event: %r" % event[:200]
        return None
    if name != "response.failed" or not isinstance(data, dict) or data.get("type") != "response.failed":
        return "the last event is not response.failed: %r" % event[:200]
    resp = data.get("response")
    if not isinstance(resp, dict) or resp.get("status") != "failed" or not isinstance(resp.get("error"), dict):
        return "response.failed without a failed response: %r" % event[:300]
    before = seqs(prefix)
    want = before[-1] + 1 if before else 0
    if data.get("sequence_number") != want:
        return "response.failed numbered %r after %r" % (data.get("sequence_number"), before[-1:] or "nothing")
    return None


def judge(svc, plan, status, body, clean, rec):
    """(outcome, problem or None): the classes of the module doc."""
    if plan.raw is not None and plan.client == "read":
        if rec is not None:
            return "corrupt", "a request the web server should refuse reached the upstream"
        # nginx answers a request line it cannot parse with its own 500 page (its
        # error_page cannot redirect such a request), lighttpd with 400
        if status is not None and 400 <= status < 600:
            return "rejected", None
        return "corrupt", "raw malformed request answered %r" % status
    if not plan.forwarded and rec is not None:
        return "corrupt", "forwarded upstream, must not be"
    up = base64.b64decode(rec["response_b64"]) if rec else b""
    up_len = rec["response_len"] if rec else 0
    up_full = not (rec or {}).get("response_truncated")

    def prefix_of_up(b):
        return up.startswith(b) if len(b) <= len(up) else (not up_full and b.startswith(up) and len(b) <= up_len)

    if plan.client == "killed":
        # the responder died mid-stream: whole events of the upstream's, never its last
        # (nginx ends the chunked body as if complete, lighttpd cuts it: framing is the
        # web server's; the stream itself must show it is unfinished)
        if not prefix_of_up(body) or not body.endswith(b"\n\n"):
            return "corrupt", "the killed responder's stream is not whole upstream events"
        if len(body) >= up_len and rec.get("finished_at") and rec.get("state") == "done":
            return "corrupt", "the killed responder's stream was complete"
        names = [n for n, _ in parse_events(body)]
        if names and names[-1] in ("message_stop", "response.completed", "response.failed", "error"):
            return "corrupt", "the killed responder's stream ends with a final event"
        return "left", None
    if plan.client in ("leave", "stall"):
        if status is None or prefix_of_up(body):
            return "left", None
        return "corrupt", "what the leaving client got is not a prefix of the upstream's bytes"
    if status is None:
        return "corrupt", "no answer"
    up_status = rec.get("status") if rec else None
    if clean and rec and up_status is not None and len(body) == up_len and \
            hashlib.sha256(body).hexdigest() == rec["response_sha256"] and status == up_status:
        return "identical", None
    up_ct = ""
    for k, v in (rec or {}).get("response_headers") or []:
        if k.lower() == "content-type":
            up_ct = v
    if rec is None and status < 400 and "local" in plan.allowed:
        return "local", None
    if rec is None or up_status is None:
        if clean and status >= 400 and dialect_error(svc, status, body, None):
            return "proxy_error", None
        return "corrupt", "upstream sent nothing; the answer is not a complete error (status %s, clean %s): %r" % (
            status, clean, body[:200])
    if up_ct.startswith("text/event-stream"):
        if plan.stream:
            if not clean:
                return "corrupt", "stream ended uncleanly without a terminal error (%d of %d bytes)" % (len(body), up_len)
            prefix, ev = last_event(body)
            if not ev:
                return "corrupt", "stream does not end with a whole event: %r" % body[-200:]
            if not prefix_of_up(prefix) or not (prefix == b"" or prefix.endswith(b"\n\n")):
                return "corrupt", "the stream before its last event is not the upstream's bytes"
            why = terminal_error_ok(svc, ev, prefix)
            if why:
                return "corrupt", why
            return "terminal_error", None
        # a non-stream client of a forced stream (Codex aggregation)
        if not clean:
            return "corrupt", "aggregated answer ended uncleanly"
        try:
            got = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return "corrupt", "aggregated answer is not JSON: %r" % body[:200]
        final = None
        for name, data in parse_events(up):
            if name in ("response.completed", "response.incomplete") and isinstance(data, dict):
                final = data.get("response")
        if status == 200:
            if final is None or got != final:
                return "corrupt", "aggregated JSON is not the upstream's final response"
            return "aggregated", None
        if dialect_error(svc, status, body, None) and final is None:
            return "proxy_error", None
        return "corrupt", "aggregated error answer %d: %r" % (status, body[:200])
    # a non-stream upstream answer that is not what the client got
    if not clean and prefix_of_up(body):
        return "cut", None
    if clean and status >= 500 and dialect_error(svc, status, body, None) and rec.get("state") != "done":
        return "proxy_error", None
    return "corrupt", "answer %d (clean %s, %d bytes) differs from the upstream's %s (%d bytes): %r" % (
        status, clean, len(body), up_status, up_len, body[:160])


def judge_self_test():
    """judge() on made-up answers to a made-up record: what it must refuse it
    refuses. Returns the cases it got wrong."""
    ev = [b'event: message_start\ndata: {"type":"message_start"}\n\n',
          b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"hi"}}\n\n',
          b'event: message_stop\ndata: {"type":"message_stop"}\n\n']
    up = b"".join(ev)

    def rec(body, state="done"):
        return {"status": 200, "response_b64": base64.b64encode(body).decode(), "response_len": len(body),
                "response_sha256": hashlib.sha256(body).hexdigest(), "response_truncated": False,
                "response_headers": [["content-type", "text/event-stream"]], "state": state,
                "finished_at": 1.0}
    err = b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"x"}}\n\n'
    stream = Plan("t", "POST", "/", [], b"", True, OK)
    cases = [
        (stream, 200, up, True, rec(up), "identical"),
        (stream, 200, up[:-1] + b"X", True, rec(up), "corrupt"),           # a changed byte
        (stream, 200, ev[0] + ev[1], True, rec(up), "corrupt"),            # silently truncated
        (stream, 200, ev[0] + ev[1], False, rec(ev[0] + ev[1], "died"), "corrupt"),  # cut, no error event
        (stream, 200, ev[0] + ev[1] + err, True, rec(ev[0] + ev[1], "died"), "terminal_error"),
        (stream, 200, ev[0] + ev[1][:10] + err, True, rec(ev[0] + ev[1], "died"), "corrupt"),  # half an event
        (stream, 200, ev[0] + err + err, True, rec(ev[0], "died"), "corrupt"),  # two error events
        (stream, 502, b'{"type":"error","error":{"type":"api_error","message":"x"}}', True, None, "proxy_error"),
        (stream, 502, b'<html>502</html>', True, None, "corrupt"),
        (Plan("t", "POST", "/", [], b"", True, {"left"}, client="killed"), 200, ev[0] + ev[1], True,
         rec(ev[0] + ev[1], "disconnected"), "left"),
        (Plan("t", "POST", "/", [], b"", True, {"left"}, client="killed"), 200, up, True, rec(up), "corrupt"),
    ]
    wrong = []
    for i, (plan, status, body, clean, r, want) in enumerate(cases):
        got, _ = judge("claude", plan, status, body, clean, r)
        if got != want:
            wrong.append("case %d: %s, want %s" % (i, got, want))
    return wrong


# --------------------------------------------------------------------------- the soak


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.suite = harness.Suite()
        self.lock = threading.Lock()
        self.counts = collections.Counter()      # (kind, outcome)
        self.faults = collections.Counter()
        self.problems = []
        self.checks = []                        # (name, ok, detail)
        self.ctl_done = threading.Event()
        self.targets = []
        self.table = scenarios()
        self.sent = 0

    # -- set-up
    def start(self):
        webs = harness.web_servers()
        harness.STACKS["soak"] = dict(env=dict(SOAK_ENV))
        harness.STACKS["soak_codex"] = dict(service="codex", env=dict(harness.CODEX_ENV, **SOAK_ENV))
        # one stack per service and web server (a lighttpd stack also spawns the other
        # service's responder, as shipped; it stays idle)
        for web in webs:
            self.targets.append(Target(web, "claude", self.suite.stack("soak", web)))
            self.targets.append(Target(web, "codex", self.suite.stack("soak_codex", web)))

    def mock_port(self):
        return self.suite.mock.port

    # -- one request
    def send(self, t, plan):
        """Sends plan to t and reads as its client does: (status, body, clean)."""
        c = None
        status, clean = None, False
        try:
            c = Conn(t.port, timeout=READ_TIMEOUT)
            if plan.raw is not None:
                c.send_raw(plan.raw)
                if plan.client == "leave":
                    return None, b"", False
            else:
                c.send_request(plan.method, plan.path, plan.headers, plan.body)
            status, _ = c.read_head()
            if plan.method == "HEAD":
                return status, b"", True
            if plan.client == "leave":
                for _ in range(3):
                    if c.read_event() is None:
                        break
                return status, bytes(c.body_so_far), False
            c.read_all()
            clean = bool(c.clean_end)
        except (EOFError, OSError, ValueError, IndexError):
            clean = False
        finally:
            if c is not None:
                c.close()
        return status, bytes(c.body_so_far) if c else b"", clean

    def run_plan(self, t, plan, mid):
        status, body, clean = self.send(t, plan)
        rec = self.record(mid)
        self.verdict(t, plan, status, body, clean, rec, mid)
        return status, body, clean, rec

    def record(self, mid, wait=True):
        """The mock's record of mid, once finished (wait). The client is done with its
        answer, so a request that went upstream has its record already."""
        m = self.suite.mock
        recs = m.records(mid)
        if not recs or not wait or recs[-1].get("finished_at") is not None:
            return recs[-1] if recs else None
        ok, rec = m.wait(mid, "finished", timeout=READ_TIMEOUT)
        return rec

    def forget(self, mid):
        try:
            self.suite.mock.call("POST", "/_mock/forget?id=" + mid)
        except Exception:
            pass

    def verdict(self, t, plan, status, body, clean, rec, mid):
        outcome, why = judge(t.service, plan, status, body, clean, rec)
        if why is None and outcome not in plan.allowed:
            why = "outcome %s, expected %s (status %s, %d bytes)" % (outcome, "/".join(sorted(plan.allowed)),
                                                                   status, len(body))
        with self.lock:
            self.counts[(plan.kind, outcome if why is None else "corrupt")] += 1
            if plan.fault:
                self.faults[plan.fault] += 1
            if why is not None:
                self.problems.append("%s %s [%s]: %s" % (t.name, plan.kind, mid, why))
            elif plan.stream and outcome in ("identical", "terminal_error"):
                t.streams_done += 1
        self.forget(mid)

    # -- the load
    def worker(self, queue):
        while True:
            with self.lock:
                item = queue.pop() if queue else None
            if item is None:
                # the load lasts its seconds, and as long as the controller's phases
                # need other streams going
                if time.monotonic() >= self.load_end and self.ctl_done.is_set():
                    return
                t = self.rng.choice(self.targets)
                choices = [s for s in self.table if t.service in s[1]]
                kind, svcs, make = self.rng.choice(choices)
            else:
                t, (kind, svcs, make) = item
            if t.paused.is_set():
                if item is not None:
                    with self.lock:
                        queue.insert(0, item)
                time.sleep(0.05)
                continue
            with t.lock:
                t.inflight += 1
            try:
                mid = new_id("soak")
                plan = make(t.service, mid)
                self.run_plan(t, plan, mid)
                with self.lock:
                    self.sent += 1
            except Exception as e:
                with self.lock:
                    self.problems.append("%s %s: the client failed: %s" % (t.name, kind, traceback.format_exc(limit=3)))
            finally:
                with t.lock:
                    t.inflight -= 1

    def pause(self, t):
        t.paused.set()
        wait_for(lambda: t.inflight == 0, READ_TIMEOUT * 2, interval=0.1, what="%s: in-flight requests" % t.name)

    # -- phases of the controller
    def check(self, name, ok, detail=""):
        with self.lock:
            self.checks.append((name, bool(ok), detail))

    def stalled_readers(self, per_target=1, progress=2, rounds=4):
        """Clients that stop reading a huge stream (buffers full); meanwhile every
        target's other streams must keep completing: progress, never timing. A
        responder drops a client that reads nothing for HTTP_TIMEOUT (by design), so
        when that comes first the round is tried again, with new stalled readers."""
        why = []
        for r in range(rounds):
            ok, detail, retry = self.stall_round(per_target, progress)
            why.append("round %d: %s" % (r + 1, "; ".join(detail)))
            if ok or not retry:
                break
        self.check("stalled readers hold up no other stream", ok, " | ".join(why))

    def stall_round(self, per_target, progress):
        stalled = []
        for t in self.targets:
            for _ in range(per_target):
                mid = new_id("stall")
                m, p, h, b = api_request(t.service, mid, True, "big=%d,hang_max=60" % STALL_BIG)
                c = Conn(t.port, timeout=READ_TIMEOUT)
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                c.send_request(m, p, h, b)
                c.read_head()
                c.read_piece()
                stalled.append((t, mid, c))
        # buffers full: the upstream's byte count stops growing while the stream is open
        last, dropped = {}, []

        def all_stuck():
            n_stuck = 0
            for t, mid, c in stalled:
                rec = self.record(mid, wait=False)
                if rec is None or rec.get("finished_at") is not None:
                    dropped.append(mid)
                    return True
                n = rec["response_len"]
                n_stuck += last.get(mid) == n and n < STALL_BIG
                last[mid] = n
            return n_stuck == len(stalled)
        detail = []
        ok, retry = True, False
        try:
            try:
                wait_for(all_stuck, 120, interval=1.0, what="stalled readers' buffers full")
            except harness.HarnessError:
                ok = False
                detail.append("the stalled streams never filled their buffers")
            base = {t.name: t.streams_done for t in self.targets}

            def gone():
                for t, mid, c in stalled:
                    rec = self.record(mid, wait=False)
                    if rec is None or rec.get("finished_at") is not None:
                        dropped.append(mid)
                        return True
                return False
            # the load goes on; every target must complete `progress` more streams
            # while every stalled reader is still there
            try:
                wait_for(lambda: gone() or all(t.streams_done - base[t.name] >= progress for t in self.targets),
                         240, interval=0.5, what="progress beside the stalled readers")
            except harness.HarnessError:
                ok = False
                detail.append("no progress beside stalled readers: %s" % ", ".join(
                    "%s +%d" % (t.name, t.streams_done - base[t.name]) for t in self.targets))
            if dropped or gone():
                ok = False
                retry = True
                detail.append("a stalled reader was dropped (HTTP_TIMEOUT) before the others progressed")
            detail.append("%d stalled readers; meanwhile %s" % (len(stalled), ", ".join(
                "%s +%d streams" % (t.name, t.streams_done - base[t.name]) for t in self.targets)))
        finally:
            for t, mid, c in stalled:
                c.close()
        for t, mid, c in stalled:
            ok_, rec = self.suite.mock.wait(mid, "finished", timeout=60)
            if not ok_ or not (rec or {}).get("disconnected"):
                ok = False
                detail.append("%s: the stalled stream's upstream %s was not cancelled after the close" % (t.name, mid))
            self.forget(mid)
        with self.lock:
            self.faults["client_stops_reading"] += len(stalled)
        return ok, detail, retry

    def kill(self, t, victims=3):
        """SIGKILL t's responder while streams run on it: they fail cleanly, a
        replacement starts and serves the very next request."""
        detail, ok = [], True
        framing = collections.Counter()
        self.pause(t)
        try:
            old = t.responder_pid()
            open_ = []
            for _ in range(victims):
                mid = new_id("victim")
                m, p, h, b = api_request(t.service, mid, True, "slow=0.25,deltas=200")
                c = Conn(t.port, timeout=READ_TIMEOUT)
                c.send_request(m, p, h, b)
                c.read_head()
                c.read_event()
                open_.append((mid, c))
            for mid, _ in open_:
                self.suite.mock.wait(mid, "responding", timeout=30)
            os.kill(old, signal.SIGKILL)
            for mid, c in open_:
                clean = False
                try:
                    c.read_all()
                    clean = bool(c.clean_end)
                except (EOFError, OSError, ValueError):
                    pass
                c.close()
                framing["ended cleanly" if clean else "cut"] += 1
                plan = Plan("kill/victim_stream", "POST", "", [], None, True, {"left"}, client="killed",
                            fault="responder_sigkill")
                rec = self.record(mid)
                before = len(self.problems)
                self.verdict(t, plan, c.status, bytes(c.body_so_far), clean, rec, mid)
                if len(self.problems) > before:
                    ok = False
                    detail.append(self.problems[-1])
                elif rec is None or not rec.get("disconnected"):
                    ok = False
                    detail.append("%s: the upstream of a killed stream was not closed" % mid)
            # the replacement: nginx has no supervisor of its own (systemd's
            # Restart=on-failure does it in a deployment), so the soak restarts spawn-fcgi
            # as that unit would; lighttpd respawns its own backend.
            if t.web == "nginx":
                t.stack.start_responder()
            wait_for(lambda: t.responder_pid() not in (None, old) and os.path.exists("/proc/%d" % t.responder_pid())
                     and harness.can_connect(t.stack.sock), 60, interval=0.1, what="%s: a replacement" % t.name)
            new = t.responder_pid()
            t.replaced.append(old)
            mid = new_id("next")
            m, p, h, b = api_request(t.service, mid, True)
            plan = Plan("kill/next_request", m, p, h, b, True, OK)
            status, body, clean, rec = self.run_plan(t, plan, mid)
            if status != 200 or not clean or rec is None:
                ok = False
                detail.append("the request after the kill: status %s, clean %s" % (status, clean))
            detail.append("pid %d killed with %d streams (HTTP framing at the client: %s), replacement pid %d "
                          "served the next request (%s)" % (old, victims, ", ".join("%s %d" % kv for kv in
                                                                                   sorted(framing.items())),
                                                            new, status))
        except Exception as e:
            ok = False
            detail.append("%s: %s" % (type(e).__name__, e))
        finally:
            t.paused.clear()
        self.check("SIGKILL %s: streams fail cleanly, replacement serves at once" % t.name, ok, "; ".join(detail))

    def controller(self):
        try:
            self.stalled_readers()
            for t in self.targets:
                if t.service == "claude":
                    self.kill(t)
            if self.args.seconds >= 60:
                self.stalled_readers()
        except Exception:
            self.check("controller", False, traceback.format_exc(limit=4))
        finally:
            self.ctl_done.set()

    # -- idle state
    def idle(self, t):
        return proc_stats(t.responder_pid(), self.mock_port())

    def probe(self, t):
        """One plain request: curl prunes its expired idle connections on activity,
        so the figures after it are the pool's, not the load's leftovers."""
        mid = new_id("probe")
        m, p, h, b = api_request(t.service, mid, False)
        self.run_plan(t, Plan("idle_probe", m, p, h, b, False, OK), mid)

    def settle(self, t, want=None, timeout=60):
        """The responder's idle figures once they stop changing (or match `want`),
        each reading after the keep-alive expiry and a probe request."""
        last = [None]
        expiry = float(SOAK_ENV["HTTP_KEEPALIVE_EXPIRY"]) + 1

        def steady():
            time.sleep(expiry)
            for _ in range(4):  # requests spread over the event loops
                self.probe(t)
            s = self.idle(t)
            if want is not None and all(s[k] <= want[k] for k in ("fds", "threads", "upstream")):
                last[0] = s
                return True
            same = last[0] is not None and all(s[k] == last[0][k] for k in ("fds", "threads", "upstream"))
            last[0] = s
            return same
        try:
            wait_for(steady, timeout, interval=0.5, what="%s idle" % t.name)
        except harness.HarnessError:
            pass
        return last[0]

    def warm_up(self):
        """A few requests of each size before the idle figures are taken: the
        allocator's high-water mark (ASan's above all) is not a leak."""
        for t in self.targets:
            for beh in (None, "big=3000000"):
                for stream in (True, False):
                    mid = new_id("warm")
                    m, p, h, b = api_request(t.service, mid, stream, beh)
                    self.run_plan(t, Plan("warm_up", m, p, h, b, stream, OK), mid)
            for ad in builtin_adapters(t.service):
                for stream in (True, False):
                    mid = new_id("warm")
                    m, p, h, b = api_request(t.service, mid, stream, extra=[("x-client-type", ad)])
                    self.run_plan(t, Plan("warm_up", m, p, h, b, stream, {"identical", "aggregated"}), mid)
        for t in self.targets:
            t.baseline = self.settle(t)

    # -- the whole run
    def run(self):
        wrong = judge_self_test()
        self.check("the judge refuses corrupted, truncated and foreign answers", not wrong, "; ".join(wrong))
        self.start()
        self.warm_up()
        queue = [(t, s) for t in self.targets for s in self.table if t.service in s[1]]
        self.rng.shuffle(queue)
        t0 = time.monotonic()
        self.load_end = t0 + self.args.seconds
        workers = [threading.Thread(target=self.worker, args=(queue,), daemon=True) for _ in range(self.args.clients)]
        for w in workers:
            w.start()
        ctl = threading.Thread(target=self.controller, daemon=True)
        ctl.start()
        if os.environ.get("SOAK_PROGRESS"):  # a line every 5 s on stderr
            threading.Thread(target=self.debug, daemon=True).start()
        ctl.join()
        for w in workers:
            w.join()
        self.elapsed = time.monotonic() - t0
        self.check_answers()
        self.check_idle()
        self.stop_and_scan()

    def debug(self):
        while True:
            time.sleep(5)
            with self.lock:
                print("soak progress: %d answers; %s" % (self.sent, ", ".join(
                    "%s done %d inflight %d%s" % (t.name, t.streams_done, t.inflight, " paused" if t.paused.is_set() else "")
                    for t in self.targets)), file=sys.stderr, flush=True)

    def check_answers(self):
        bad = [p for p in self.problems]
        total = sum(self.counts.values())
        self.check("every answer identical, a terminal error, or cut (never corrupt)", not bad,
                   "%d answers; %s" % (total, "; ".join(bad[:12]) + (" ..." if len(bad) > 12 else "")))
        missing = [k for k, svcs, _ in self.table if not any(kk == k for kk, _ in self.counts)]
        self.check("every scenario ran", not missing, ", ".join(missing))

    def check_idle(self):
        # no transfer left open: every request the mock saw has finished
        left = [r["id"] for r in self.suite.mock.records() if r.get("finished_at") is None]
        self.check("no upstream transfer open after the load (the mock's view)", not left, ", ".join(left[:8]))
        self.pools = {}
        self.after = {}
        for t in self.targets:
            b = t.baseline
            a = self.settle(t, want=b)
            self.after[t.name] = a
            why = []
            for k in ("files", "threads"):
                if a[k] > b[k]:
                    why.append("%s %d > idle %d" % (k, a[k], b[k]))
            # sockets beyond the idle count may only be pools: the web server's kept
            # FastCGI connections (nginx keepalive 256; lighttpd keeps none) and curl's
            # idle upstream connections (HTTP_MAX_KEEPALIVE per loop; an expired one
            # is closed at its loop's next transfer, not on a timer)
            web_kept = (a["sockets"] - a["upstream"]) - (b["sockets"] - b["upstream"])
            if web_kept > (NGINX_KEEPALIVE if t.web == "nginx" else 0):
                why.append("%d more sockets to the web server than idle" % web_kept)
            pool = int(SOAK_ENV["WORKER_THREADS"]) * HTTP_MAX_KEEPALIVE
            if a["upstream"] > max(b["upstream"], pool):
                why.append("upstream %d > idle %d and the pool's bound" % (a["upstream"], b["upstream"]))
            self.pools[t.name] = (web_kept, a["upstream"] - b["upstream"])
            slack_mb = self.args.rss_slack_mb
            if slack_mb is None:
                slack_mb = RSS_SLACK_ASAN_MB if under_asan(t.responder_pid()) else RSS_SLACK_MB
            if a["rss_kb"] - b["rss_kb"] > slack_mb * 1024:
                why.append("RSS %d kB > idle %d kB + %d MB" % (a["rss_kb"], b["rss_kb"], slack_mb))
            self.check("%s back to idle (fds, threads, upstream connections, RSS)" % t.name, not why,
                       "; ".join(why) or "pid %d: files %d, threads %d, RSS %+d kB; kept: %d web server "
                       "connection(s), %d idle upstream connection(s) more than idle" % (
                           t.responder_pid(), a["files"], a["threads"], a["rss_kb"] - b["rss_kb"],
                           self.pools[t.name][0], self.pools[t.name][1]))

    def stop_and_scan(self):
        # SIGTERM: each responder drains and exits; ASan's leak check runs at exit
        for st in list(self.suite.stacks.values()):
            st.stop()
        reports, leaks = [], []
        for st in list(self.suite.stacks.values()):
            for path, text in st.all_logs():
                for line in text.splitlines():
                    if SAN_RE.search(line):
                        reports.append("%s: %s" % (os.path.relpath(path, self.suite.tmp), line.strip()[:200]))
                        break
                for k in ALL_KEYS:
                    if k in text:
                        leaks.append("%s: a key (%s...)" % (os.path.relpath(path, self.suite.tmp), k[:12]))
        self.check("no sanitizer report in any responder stderr", not reports, "; ".join(reports[:6]))
        self.check("no key in any log", not leaks, "; ".join(leaks[:6]))

    # -- the summary
    def report(self):
        out = []
        out.append("soak: %.0f s of load, %d clients, seed %d, %d requests, responders %s" % (
            self.elapsed, self.args.clients, self.args.seed, sum(self.counts.values()), harness.bin_dir()))
        outcomes = sorted({o for _, o in self.counts})
        kinds = sorted({k for k, _ in self.counts})
        w = max(len(k) for k in kinds) + 2
        out.append("")
        out.append("requests by kind and outcome")
        out.append("  %-*s" % (w, "kind") + "".join("%15s" % o for o in outcomes))
        for k in kinds:
            out.append("  %-*s" % (w, k) + "".join("%15s" % (self.counts.get((k, o)) or "") for o in outcomes))
        out.append("  %-*s" % (w, "total") + "".join("%15d" % sum(n for (kk, oo), n in self.counts.items() if oo == o)
                                                   for o in outcomes))
        out.append("")
        out.append("faults exercised: " + ", ".join("%s %d" % kv for kv in sorted(self.faults.items())))
        out.append("")
        out.append("responders idle before/after the load (after a warm-up; each figure after the keep-alive "
                   "expiry and a probe)")
        out.append("  %-16s %8s %9s %9s %9s %9s %9s %17s" % ("target", "pid", "fds", "files", "sockets", "threads",
                                                            "upstream", "rss kB"))
        for t in self.targets:
            b, a = t.baseline, self.after.get(t.name) or {}
            out.append("  %-16s %8s" % (t.name, "%s%s" % (t.responder_pid(), "*" if t.replaced else "")) +
                       "".join(" %9s" % ("%s/%s" % (b[k], a.get(k))) for k in ("fds", "files", "sockets", "threads",
                                                                                "upstream")) +
                       " %17s" % ("%s/%s" % (b["rss_kb"], a.get("rss_kb"))))
        if any(t.replaced for t in self.targets):
            out.append("  * a replacement after SIGKILL (killed: %s); its idle figures compared with the first's" %
                       ", ".join(str(p) for t in self.targets for p in t.replaced))
        out.append("")
        passed = failed = 0
        for name, ok, detail in self.checks:
            out.append("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""))
            passed += ok
            failed += not ok
        out.append("soak: %d passed, %d failed" % (passed, failed))
        print("\n".join(out), flush=True)
        return failed == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--rss-slack-mb", type=int, default=None,
                    help="RSS allowed above idle after the load (default %d MB, %d MB under ASan)"
                    % (RSS_SLACK_MB, RSS_SLACK_ASAN_MB))
    ap.add_argument("--keep", action="store_true", help="keep the stacks' directory")
    args = ap.parse_args()
    # a small quarantine: RSS measures the responder's memory, not ASan's cache of
    # freed blocks (256 MB by default); added to what make test exports
    asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
    for opt in ("quarantine_size_mb=4", "allocator_release_to_os_interval_ms=500"):
        if opt.split("=")[0] + "=" not in asan:
            asan += ":" + opt
    os.environ["ASAN_OPTIONS"] = asan
    os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    s = Soak(args)
    ok = False
    try:
        s.run()
        ok = s.report()
    except Exception:
        traceback.print_exc()
        print("soak: 0 passed, 1 failed")
    finally:
        if args.keep or not ok:
            print("soak: logs kept in %s" % s.suite.tmp)
        s.suite.close(keep=args.keep or not ok)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
