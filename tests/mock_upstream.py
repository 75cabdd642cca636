#!/usr/bin/env python3
"""Mock Anthropic Messages API upstream for the cc-proxy integration tests.

Standard library only. Speaks HTTP/1.1 (keep-alive, chunked streaming) on loopback
and answers like api.anthropic.com does:

  POST /v1/messages               streaming (SSE) and non-streaming Message
  POST /v1/messages/count_tokens  {"input_tokens": N}
  GET  /v1/models[?limit=&after_id=&before_id=]
  GET  /v1/models/{id}

Every API route also works under any prefix (e.g. /api/v1/messages): the route is the
part of the path from the first "/v1/" on.

Misbehaviour is chosen per request by the `x-mock-behavior` request header (which the
proxy forwards like any end-to-end header): a comma list of `name` or `name=value`:

  status=NNN            answer with the real error body for NNN (400 401 403 404 413
                        429 500 529 ...); 429 carries retry-after, 5xx/429 x-should-retry
  retry_after=S         retry-after value for status=429 (default 7)
  retry_after_ms=MS     also send retry-after-ms: MS with an error status
  slow=SECONDS          pause between stream events (non-stream: before the reply)
  deltas=N              number of text deltas in a stream (default 3)
  big=BYTES             stream at least BYTES of body (many content_block_delta events)
  die_after=N           stream: send N events, then close the socket without the
                        terminating chunk (non-stream: send half the body and close)
  hang_after=N          stream: send headers + N events, then silence until the peer
                        closes (or hang_max seconds)
  hang_before_headers   read the request, then silence until the peer closes
  hang_max=SECONDS      bound on any hang or gate wait (default 120)
  gate=NAME             stream: send the first event, then wait until gate NAME has been
                        released once (POST /_mock/release?gate=NAME)
  gate_each=NAME        stream: before event k (k >= 1) wait until gate NAME has been
                        released k times: the test releases events one by one
  sse_error_after=N     stream: after N events send the upstream's own
                        `event: error` (overloaded_error) and end the stream cleanly
  fragment=N            stream: write every event in N-byte pieces, each its own HTTP
                        chunk and its own TCP segment (the relay must carry partial lines)
  drop                  read the request, then close the connection without a response
  close_idle=SECONDS    after a complete response, close the kept-alive connection after
                        SECONDS of idleness without announcing it (no `connection: close`)
  thinking              stream/non-stream: a thinking block (thinking_delta,
                        signature_delta) before the text block
  tool_use              stream/non-stream: a tool_use block (input_json_delta) after
                        the text block, stop_reason tool_use
  lenient               skip the request validation (key, anthropic-version, body)

A request is recorded with the id from its `x-mock-id` header (else "r<seq>"): method,
path, route, prefix, query, headers (in order, as received), body (base64), the peer
address, timestamps, what was sent back (status, headers, body sha256/length and the
first MiB of it) and, for streams and waits, whether and when the peer disconnected
(during silence this is found by select()ing the socket for EOF).

Control endpoints (only at the root of the mock itself, never under a prefix; refused
when the request carries x-api-key, authorization or anthropic-version, i.e. when it
looks like relayed API traffic):

  GET  /_mock/health
  GET  /_mock/requests[?id=ID]             {"requests":[record...]}
  GET  /_mock/aborts                       records whose peer disconnected early
  POST /_mock/reset                        forget records and gates
  POST /_mock/release?gate=NAME[&n=K|&all=1]
  GET  /_mock/wait?id=ID&state=S&timeout=T  wait until the record with ID exists
                        (state=received), is finished (state=finished), or its peer
                        disconnected (state=disconnected); 200 with the record, 408 on
                        timeout (with the record if any)
  GET  /_mock/wait?gate=NAME&waiters=K&timeout=T   wait until K requests wait at NAME

Standalone: python3 tests/mock_upstream.py --port 0 --port-file F
"""

import argparse
import base64
import hashlib
import json
import os
import random
import select
import socket
import string
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

RECORD_BODY_CAP = 1 << 20  # first MiB of every response body is kept verbatim
DEFAULT_HANG_MAX = 120.0

MODELS = [
    {"type": "model", "id": "claude-opus-4-1-20250805", "display_name": "Claude Opus 4.1",
     "created_at": "2025-08-05T00:00:00Z"},
    {"type": "model", "id": "claude-opus-4-20250514", "display_name": "Claude Opus 4",
     "created_at": "2025-05-22T00:00:00Z"},
    {"type": "model", "id": "claude-sonnet-4-20250514", "display_name": "Claude Sonnet 4",
     "created_at": "2025-05-22T00:00:00Z"},
    {"type": "model", "id": "claude-3-7-sonnet-20250219", "display_name": "Claude Sonnet 3.7",
     "created_at": "2025-02-24T00:00:00Z"},
    {"type": "model", "id": "claude-3-5-haiku-20241022", "display_name": "Claude Haiku 3.5",
     "created_at": "2024-10-22T00:00:00Z"},
]

ERRORS = {
    400: ("invalid_request_error", "messages: field required"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error",
          "This request would exceed the rate limit for your organization "
          "(6a5c1f8e-0000-4000-8000-000000000000) of 50,000 input tokens per minute. "
          "For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see "
          "the response headers for current usage. Please reduce the prompt length or the "
          "maximum tokens requested, or try again later. You may also contact sales at "
          "https://www.anthropic.com/contact-sales to discuss your options for a rate limit "
          "increase."),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    504: ("api_error", "Gateway timeout"),
    529: ("overloaded_error", "Overloaded"),
}

REASONS = {529: "Site Overloaded"}

THINKING = ["Let me think about this step by step.", "\n\nThe user greets me; ", "a short, friendly reply fits."]
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds" + "A" * 40 + "=="
TOOL_ID = "toolu_01A09q90qw90lq917835lq9"
TOOL_JSON_PARTS = ['{"location": "San Fra', 'ncisco, CA", "unit"', ': "fahrenheit"}']


def _rand(n, alphabet=string.ascii_letters + string.digits):
    return "".join(random.choice(alphabet) for _ in range(n))


def new_request_id():
    return "req_011C" + _rand(20)


def new_message_id():
    return "msg_01" + _rand(22)


def dumps(obj):
    """Compact JSON, the way the real API serializes (UTF-8, not ASCII-escaped)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def iso_in(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


def ratelimit_headers(remaining_requests=3999):
    return [
        ("anthropic-ratelimit-requests-limit", "4000"),
        ("anthropic-ratelimit-requests-remaining", str(remaining_requests)),
        ("anthropic-ratelimit-requests-reset", iso_in(1)),
        ("anthropic-ratelimit-input-tokens-limit", "2000000"),
        ("anthropic-ratelimit-input-tokens-remaining", "1999000"),
        ("anthropic-ratelimit-input-tokens-reset", iso_in(1)),
        ("anthropic-ratelimit-output-tokens-limit", "400000"),
        ("anthropic-ratelimit-output-tokens-remaining", "400000"),
        ("anthropic-ratelimit-output-tokens-reset", iso_in(1)),
        ("anthropic-ratelimit-tokens-limit", "2400000"),
        ("anthropic-ratelimit-tokens-remaining", "2399000"),
        ("anthropic-ratelimit-tokens-reset", iso_in(1)),
    ]


def infra_headers():
    # What the real edge adds; a relay must not pass these (nor set-cookie) back.
    return [
        ("anthropic-organization-id", "6a5c1f8e-0000-4000-8000-000000000000"),
        ("via", "1.1 google"),
        ("cf-cache-status", "DYNAMIC"),
        ("x-robots-tag", "none"),
        ("set-cookie", "_cfuvid=mock" + _rand(16) + "; path=/; domain=.api.anthropic.com; HttpOnly; Secure; SameSite=None"),
        ("server", "cloudflare"),
        ("cf-ray", _rand(16, "0123456789abcdef") + "-SJC"),
    ]


class PeerGone(Exception):
    pass


class State:
    def __init__(self):
        self.cond = threading.Condition()
        self.records = []
        self.seq = 0
        self.gates = {}  # name -> {"released": int, "waiting": int, "pipes": set()}

    def gate(self, name):
        g = self.gates.get(name)
        if g is None:
            g = {"released": 0, "waiting": 0, "pipes": set()}
            self.gates[name] = g
        return g

    def reset(self):
        with self.cond:
            self.records = []
            for g in self.gates.values():
                g["released"] = 1 << 30
                for w in list(g["pipes"]):
                    try:
                        os.write(w, b"x")
                    except OSError:
                        pass
            self.gates = {}
            self.cond.notify_all()


STATE = State()


def parse_behavior(value):
    out = {}
    for tok in (value or "").split(","):
        tok = tok.strip()
        if not tok:
            continue
        if "=" in tok:
            k, v = tok.split("=", 1)
            out[k.strip().lower()] = v.strip()
        else:
            out[tok.lower()] = True
    return out


def record_view(rec):
    r = dict(rec)
    r.pop("_sha", None)
    r.pop("_resp", None)
    r["response_b64"] = base64.b64encode(bytes(rec["_resp"])).decode()
    r["response_truncated"] = rec["response_len"] > len(rec["_resp"])
    return r


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-anthropic/1.0"
    sys_version = ""
    verbose = False

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.verbose:
            sys.stderr.write("mock: %s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    # ----------------------------------------------------------------- plumbing

    def read_body(self):
        te = (self.headers.get("transfer-encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise PeerGone()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(parts)
        n = int(self.headers.get("content-length") or 0)
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            raise PeerGone()
        return data

    def update(self, **kw):
        with STATE.cond:
            self.rec.update(kw)
            STATE.cond.notify_all()

    def mark_gone(self, where):
        with STATE.cond:
            if not self.rec.get("disconnected"):
                self.rec["disconnected"] = True
                self.rec["disconnected_at"] = time.time()
                self.rec["disconnected_during"] = where
            self.rec["state"] = "disconnected"
            self.rec["finished_at"] = time.time()
            STATE.cond.notify_all()
        self.close_connection = True

    def _write(self, data, where="write"):
        try:
            self.wfile.write(data)
        except OSError:
            self.mark_gone(where)
            raise PeerGone()

    def record_out(self, data):
        rec = self.rec
        rec["_sha"].update(data)
        room = RECORD_BODY_CAP - len(rec["_resp"])
        if room > 0:
            rec["_resp"].extend(data[:room])
        rec["response_len"] += len(data)
        rec["response_sha256"] = rec["_sha"].hexdigest()

    def send_head(self, status, headers):
        reason = REASONS.get(status) or self.responses.get(status, ("Unknown",))[0]
        lines = ["HTTP/1.1 %d %s\r\n" % (status, reason)]
        lines.append("date: %s\r\n" % self.date_time_string())
        for k, v in headers:
            lines.append("%s: %s\r\n" % (k, v))
        lines.append("\r\n")
        self.update(status=status, response_headers=[[k, v] for k, v in headers],
                    state="responding", responded_at=time.time())
        self._write("".join(lines).encode("latin-1"), "headers")

    def send_full(self, status, body, content_type="application/json", extra=()):
        if isinstance(body, (dict, list)):
            body = dumps(body).encode()
        headers = [("content-type", content_type), ("content-length", str(len(body))),
                   ("request-id", self.request_id)]
        headers += list(extra)
        headers += infra_headers()
        if self.close_connection:
            headers.append(("connection", "close"))
        self.send_head(status, headers)
        with STATE.cond:
            self.record_out(body)
        self._write(body, "body")
        self.update(state="done", finished_at=time.time())

    def send_error_body(self, status, message=None, etype=None, extra=()):
        t, m = ERRORS.get(status, ("api_error", "Internal server error"))
        body = {"type": "error", "error": {"type": etype or t, "message": message or m},
                "request_id": self.request_id}
        hdrs = list(extra)
        if status == 429:
            hdrs.append(("retry-after", str(self.beh.get("retry_after", "7"))))
            hdrs += ratelimit_headers(0)
        if "retry_after_ms" in self.beh:
            hdrs.append(("retry-after-ms", str(self.beh["retry_after_ms"])))
        if status == 429 or status >= 500:
            hdrs.append(("x-should-retry", "true"))
        self.send_full(status, body, extra=hdrs)

    def wait_silent(self, seconds, where, gate=None, need=0):
        """Stay silent up to `seconds`, returning early when the gate opens.

        Returns "gate" (gate reached `need` releases), "timeout", or raises PeerGone when
        the peer closed the connection (EOF or reset seen by select()+MSG_PEEK)."""
        deadline = time.monotonic() + seconds
        sock = self.connection
        while True:
            r = w = None
            with STATE.cond:
                if gate is not None:
                    g = STATE.gate(gate)
                    if g["released"] >= need:
                        return "gate"
                    r, w = os.pipe()
                    g["pipes"].add(w)
                    g["waiting"] += 1
                    self.rec["gate_waiting"] = need
                    STATE.cond.notify_all()
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout"
                fds = [sock] + ([r] if r is not None else [])
                readable, _, _ = select.select(fds, [], [], remaining)
            finally:
                if r is not None:
                    with STATE.cond:
                        g = STATE.gate(gate)
                        g["pipes"].discard(w)
                        g["waiting"] -= 1
                        self.rec["gate_waiting"] = None
                        STATE.cond.notify_all()
                    os.close(r)
                    os.close(w)
            if sock in readable:
                try:
                    peek = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    peek = b"?"
                except OSError:
                    peek = b""
                if peek == b"":
                    self.mark_gone(where)
                    raise PeerGone()
                # unexpected bytes from the peer (pipelining): keep waiting, no spin
                time.sleep(0.02)

    # ----------------------------------------------------------------- dispatch

    def dispatch(self):
        url = urlsplit(self.path)
        path = url.path
        if path.startswith("/_mock/"):
            return self.control(path, parse_qs(url.query))
        with STATE.cond:
            STATE.seq += 1
            seq = STATE.seq
        self.request_id = new_request_id()
        self.rec = rec = {
            "id": self.headers.get("x-mock-id") or "r%d" % seq,
            "seq": seq,
            "method": self.command,
            "raw_path": self.path,
            "path": path,
            "query": url.query,
            "request_version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "peer": "%s:%d" % self.client_address[:2],
            "received_at": time.time(),
            "request_id": self.request_id,
            "behavior": self.headers.get("x-mock-behavior") or "",
            "stream": None, "model": None,
            "status": None, "response_headers": None,
            "response_len": 0, "response_sha256": hashlib.sha256(b"").hexdigest(),
            "events_sent": 0, "state": "reading",
            "disconnected": False, "disconnected_at": None, "disconnected_during": None,
            "gate_waiting": None, "finished_at": None,
            "_sha": hashlib.sha256(), "_resp": bytearray(),
        }
        with STATE.cond:
            STATE.records.append(rec)
            STATE.cond.notify_all()
        self.beh = parse_behavior(rec["behavior"])
        try:
            body = self.read_body()
            self.update(body_b64=base64.b64encode(body).decode(), body_len=len(body),
                        state="received")
            self.body = body
            self.handle_api(path, url.query)
            if "close_idle" in self.beh and not self.close_connection and self.rec["state"] == "done":
                try:
                    self.wait_silent(float(self.beh["close_idle"]), "idle")
                except PeerGone:
                    pass
                self.update(idle_closed=True)
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        except PeerGone:
            self.close_connection = True
            self.mark_gone(self.rec.get("state") or "read")
        except (ConnectionError, OSError):
            self.close_connection = True
            self.mark_gone("io")

    def hang_max(self):
        return float(self.beh.get("hang_max", DEFAULT_HANG_MAX))

    def handle_api(self, path, query):
        beh = self.beh
        i = path.find("/v1/")
        route = path[i:] if i >= 0 else path
        self.update(route=route, prefix=path[:i] if i >= 0 else "")

        if "drop" in beh:
            self.update(state="dropped", finished_at=time.time())
            return self.die()

        if "hang_before_headers" in beh:
            self.update(state="hanging")
            self.wait_silent(self.hang_max(), "hang_before_headers")
            self.update(state="hang_timeout", finished_at=time.time())
            self.close_connection = True
            return

        obj = None
        if self.command == "POST":
            try:
                obj = json.loads(self.body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                obj = None
            if isinstance(obj, dict):
                self.update(stream=bool(obj.get("stream")), model=obj.get("model"))

        lenient = "lenient" in beh
        if not lenient:
            if not self.headers.get("x-api-key") and not self.headers.get("authorization"):
                return self.send_error_body(401, "x-api-key header is required")
            if not self.headers.get("anthropic-version"):
                return self.send_error_body(400, "anthropic-version: header is required")

        if "status" in beh:
            if "slow" in beh:
                self.wait_silent(float(beh["slow"]), "slow")
            return self.send_error_body(int(beh["status"]))

        if route == "/v1/messages":
            if self.command != "POST":
                return self.send_error_body(405, "Method Not Allowed", "invalid_request_error")
            if not lenient:
                err = self.validate_messages(obj)
                if err:
                    return self.send_error_body(400, err)
            if obj.get("stream"):
                return self.stream_message(obj)
            return self.full_message(obj)
        if route == "/v1/messages/count_tokens":
            if self.command != "POST":
                return self.send_error_body(405, "Method Not Allowed", "invalid_request_error")
            if not lenient:
                if not isinstance(obj, dict):
                    return self.send_error_body(400, "There was an issue with your request body: invalid JSON")
                if "model" not in obj:
                    return self.send_error_body(400, "model: Field required")
            return self.send_full(200, {"input_tokens": self.count_tokens(obj)},
                                  extra=ratelimit_headers())
        if route == "/v1/models":
            if self.command != "GET":
                return self.send_error_body(405, "Method Not Allowed", "invalid_request_error")
            return self.list_models(parse_qs(query))
        if route.startswith("/v1/models/"):
            if self.command != "GET":
                return self.send_error_body(405, "Method Not Allowed", "invalid_request_error")
            mid = route[len("/v1/models/"):]
            for m in MODELS:
                if m["id"] == mid:
                    return self.send_full(200, m)
            return self.send_error_body(404, "model: %s" % mid)
        return self.send_error_body(404, "Not found")

    def validate_messages(self, obj):
        if not isinstance(obj, dict):
            return "There was an issue with your request body: the body must be a JSON object"
        if "model" not in obj:
            return "model: Field required"
        if "max_tokens" not in obj:
            return "max_tokens: Field required"
        if not isinstance(obj.get("messages"), list):
            return "messages: Input should be a valid list"
        return None

    def count_tokens(self, obj):
        return max(1, len(dumps(obj)) // 4) if obj is not None else 1

    def list_models(self, q):
        limit = int((q.get("limit") or ["20"])[0])
        data = list(MODELS)
        if q.get("after_id"):
            ids = [m["id"] for m in data]
            a = q["after_id"][0]
            data = data[ids.index(a) + 1:] if a in ids else []
        if q.get("before_id"):
            ids = [m["id"] for m in data]
            b = q["before_id"][0]
            data = data[:ids.index(b)] if b in ids else data
        page = data[:max(1, min(limit, 1000))]
        body = {"data": page, "has_more": len(data) > len(page),
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None}
        return self.send_full(200, body)

    # ----------------------------------------------------------------- messages

    def texts(self):
        beh = self.beh
        if "big" in beh:
            target = int(beh["big"])
            piece = ("Lorem ipsum dolor sit amet, \"quoted\" caf\u00e9 \u65e5\u672c\u8a9e\n" * 64)
            n = max(1, target // (len(piece.encode()) + 120) + 1)
            return ["[%d] %s" % (i, piece) for i in range(n)]
        n = int(beh.get("deltas", 3))
        base = ["Hello", "! I'm Claude, \"an AI\"", " assistant \u2014 caf\u00e9 \u65e5\u672c.\n", " How can", " I help?"]
        return [base[i % len(base)] + ("" if i < len(base) else " #%d" % i) for i in range(n)]

    def usage(self, obj, output_tokens):
        return {"input_tokens": self.count_tokens(obj), "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": output_tokens, "service_tier": "standard"}

    def full_message(self, obj):
        beh = self.beh
        if "slow" in beh:
            self.wait_silent(float(beh["slow"]), "slow")
        text = "".join(self.texts())
        content = []
        if "thinking" in beh:
            content.append({"type": "thinking", "thinking": "".join(THINKING), "signature": SIGNATURE})
        content.append({"type": "text", "text": text})
        if "tool_use" in beh:
            content.append({"type": "tool_use", "id": TOOL_ID, "name": "get_weather",
                            "input": json.loads("".join(TOOL_JSON_PARTS))})
        msg = {"id": new_message_id(), "type": "message", "role": "assistant",
               "model": obj.get("model"),
               "content": content,
               "stop_reason": "tool_use" if "tool_use" in beh else "end_turn", "stop_sequence": None,
               "usage": self.usage(obj, max(1, len(text) // 4))}
        body = dumps(msg).encode()
        if "die_after" in beh:
            headers = [("content-type", "application/json"), ("content-length", str(len(body))),
                       ("request-id", self.request_id)] + ratelimit_headers()
            self.send_head(200, headers)
            half = body[:len(body) // 2]
            with STATE.cond:
                self.record_out(half)
            self._write(half)
            return self.die()
        return self.send_full(200, body, extra=ratelimit_headers())

    def events(self, obj):
        mid = new_message_id()
        model = obj.get("model")
        texts = self.texts()
        ev = []

        def add(name, data):
            ev.append(("event: %s\ndata: %s\n\n" % (name, data)).encode())

        start_usage = self.usage(obj, 1)
        add("message_start", dumps({"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "content": [], "model": model,
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}}))
        idx = 0
        if "thinking" in self.beh:
            add("content_block_start", dumps({"type": "content_block_start", "index": idx,
                                              "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
            for t in THINKING:
                add("content_block_delta", dumps({"type": "content_block_delta", "index": idx,
                                                  "delta": {"type": "thinking_delta", "thinking": t}}))
            add("content_block_delta", dumps({"type": "content_block_delta", "index": idx,
                                              "delta": {"type": "signature_delta", "signature": SIGNATURE}}))
            add("content_block_stop", dumps({"type": "content_block_stop", "index": idx}))
            idx += 1
        add("content_block_start", dumps({"type": "content_block_start", "index": idx,
                                          "content_block": {"type": "text", "text": ""}}))
        if idx == 0:
            add("ping", '{"type": "ping"}')
        for t in texts:
            add("content_block_delta", dumps({"type": "content_block_delta", "index": idx,
                                              "delta": {"type": "text_delta", "text": t}}))
        add("content_block_stop", dumps({"type": "content_block_stop", "index": idx}))
        stop = "end_turn"
        if "tool_use" in self.beh:
            idx += 1
            stop = "tool_use"
            add("content_block_start", dumps({"type": "content_block_start", "index": idx, "content_block": {
                "type": "tool_use", "id": TOOL_ID, "name": "get_weather", "input": {}}}))
            for part in TOOL_JSON_PARTS:
                add("content_block_delta", dumps({"type": "content_block_delta", "index": idx,
                                                  "delta": {"type": "input_json_delta", "partial_json": part}}))
            add("content_block_stop", dumps({"type": "content_block_stop", "index": idx}))
        out_tokens = max(1, sum(len(t) for t in texts) // 4)
        add("message_delta", dumps({"type": "message_delta",
                                    "delta": {"stop_reason": stop, "stop_sequence": None},
                                    "usage": {"output_tokens": out_tokens}}))
        add("message_stop", dumps({"type": "message_stop"}))
        return ev

    def send_chunk(self, data):
        with STATE.cond:
            self.record_out(data)
        frag = int(self.beh.get("fragment", 0))
        if frag <= 0:
            return self._write(b"%x\r\n" % len(data) + data + b"\r\n", "event")
        for i in range(0, len(data), frag):
            piece = data[i:i + frag]
            self._write(b"%x\r\n" % len(piece) + piece + b"\r\n", "event")
            time.sleep(0.001)

    def die(self):
        self.update(state="died", finished_at=time.time())
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stream_message(self, obj):
        beh = self.beh
        events = self.events(obj)
        headers = [("content-type", "text/event-stream; charset=utf-8"),
                   ("transfer-encoding", "chunked"),
                   ("cache-control", "no-cache"),
                   ("request-id", self.request_id)] + ratelimit_headers() + infra_headers()
        self.update(events_total=len(events))
        self.send_head(200, headers)
        slow = float(beh.get("slow", 0))
        die_after = int(beh["die_after"]) if "die_after" in beh else None
        hang_after = int(beh["hang_after"]) if "hang_after" in beh else None
        err_after = int(beh["sse_error_after"]) if "sse_error_after" in beh else None
        gate = beh.get("gate")
        gate_each = beh.get("gate_each")
        for i, data in enumerate(events):
            if die_after is not None and i == die_after:
                return self.die()
            if hang_after is not None and i == hang_after:
                self.update(state="hanging")
                self.wait_silent(self.hang_max(), "hang")
                self.update(state="hang_timeout", finished_at=time.time())
                return self.die()
            if err_after is not None and i == err_after:
                self.send_chunk(b'event: error\ndata: {"type": "error", "error": '
                                b'{"type": "overloaded_error", "message": "Overloaded"}}\n\n')
                break
            if i > 0:
                if gate_each:
                    if self.wait_silent(self.hang_max(), "gate", gate_each, i) != "gate":
                        return self.die()
                elif gate and i == 1:
                    if self.wait_silent(self.hang_max(), "gate", gate, 1) != "gate":
                        return self.die()
                if slow:
                    self.wait_silent(slow, "slow")
            self.send_chunk(data)
            self.update(events_sent=i + 1, last_event_at=time.time())
        self._write(b"0\r\n\r\n", "end")
        self.update(state="done", finished_at=time.time())

    # ----------------------------------------------------------------- control

    def control(self, path, q):
        # drain any body
        try:
            self.read_body()
        except PeerGone:
            self.close_connection = True
            return
        for h in ("x-api-key", "authorization", "anthropic-version"):
            if self.headers.get(h):
                return self.control_reply(403, {"error": "control endpoints are not for relayed traffic"})

        def arg(name, default=None):
            v = q.get(name)
            return v[0] if v else default

        if path == "/_mock/health":
            return self.control_reply(200, {"ok": True, "pid": os.getpid()})
        if path == "/_mock/reset":
            STATE.reset()
            return self.control_reply(200, {"ok": True})
        if path == "/_mock/requests":
            rid = arg("id")
            with STATE.cond:
                recs = [record_view(r) for r in STATE.records if rid is None or r["id"] == rid]
            return self.control_reply(200, {"requests": recs})
        if path == "/_mock/aborts":
            with STATE.cond:
                recs = [record_view(r) for r in STATE.records if r["disconnected"]]
            return self.control_reply(200, {"requests": recs})
        if path == "/_mock/release":
            name = arg("gate")
            if not name:
                return self.control_reply(400, {"error": "gate= required"})
            with STATE.cond:
                g = STATE.gate(name)
                if arg("all"):
                    g["released"] = 1 << 30
                else:
                    g["released"] += int(arg("n", "1"))
                for w in list(g["pipes"]):
                    try:
                        os.write(w, b"x")
                    except OSError:
                        pass
                STATE.cond.notify_all()
                released = g["released"]
            return self.control_reply(200, {"ok": True, "released": released})
        if path == "/_mock/wait":
            timeout = float(arg("timeout", "10"))
            deadline = time.monotonic() + timeout
            if arg("gate"):
                name, k = arg("gate"), int(arg("waiters", "1"))
                with STATE.cond:
                    ok = STATE.cond.wait_for(lambda: STATE.gate(name)["waiting"] >= k,
                                             max(0.0, deadline - time.monotonic()))
                    waiting = STATE.gate(name)["waiting"]
                return self.control_reply(200 if ok else 408, {"ok": ok, "waiting": waiting})
            rid, state = arg("id"), arg("state", "received")

            def find():
                for r in reversed(STATE.records):
                    if r["id"] == rid:
                        return r
                return None

            def cond():
                r = find()
                if r is None:
                    return False
                if state == "received":
                    return r["state"] != "reading"
                if state == "disconnected":
                    return r["disconnected"]
                if state == "finished":
                    return r["finished_at"] is not None
                if state == "gate_waiting":
                    return r["gate_waiting"] is not None
                if state == "responding":
                    return r["status"] is not None
                return False

            with STATE.cond:
                ok = STATE.cond.wait_for(cond, max(0.0, deadline - time.monotonic()))
                r = find()
                view = record_view(r) if r else None
            return self.control_reply(200 if ok else 408, {"ok": ok, "request": view})
        return self.control_reply(404, {"error": "unknown control endpoint"})

    def control_reply(self, status, obj):
        body = (json.dumps(obj) + "\n").encode()
        self.send_response_only(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True


def raise_nofile():
    """Many concurrent streams: lift the soft open-files limit to the hard one."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the chosen port here once listening")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    raise_nofile()
    Handler.verbose = args.verbose
    srv = Server((args.host, args.port), Handler)
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    sys.stderr.write("mock upstream listening on http://%s:%d\n" % (args.host, port))
    sys.stderr.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    main()
