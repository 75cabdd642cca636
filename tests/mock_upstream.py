#!/usr/bin/env python3
"""Mock Anthropic Messages API and OpenAI Responses API upstream for the cc-proxy
integration tests.

Standard library only. Speaks HTTP/1.1 (keep-alive, chunked streaming) on loopback
and answers like api.anthropic.com does:

  POST /v1/messages               streaming (SSE) and non-streaming Message
  POST /v1/messages/count_tokens  {"input_tokens": N}
  GET  /v1/models[?limit=&after_id=&before_id=]
  GET  /v1/models/{id}

and like api.openai.com does:

  POST /v1/responses              streaming (response.created, response.in_progress,
                                  response.output_item.added, response.content_part.added,
                                  response.output_text.delta..., response.output_text.done,
                                  response.content_part.done, response.output_item.done,
                                  response.completed; each with "type" and an increasing
                                  "sequence_number"; no [DONE]) and non-streaming Response
                                  JSON (indented, as the real API sends it); x-request-id,
                                  openai-processing-ms, openai-*, x-ratelimit-* headers;
                                  errors {"error":{"message","type","param","code"}}
  POST /responses                 the same, for a base URL without /v1 (route "/responses")
  GET  /v1/models[/{id}]          the OpenAI list shape ({"object":"list","data":[...]})
                                  when the request looks like an OpenAI client's: neither
                                  anthropic-version nor x-api-key
  GET  /v1/responses/{id}         404 (nothing is stored)

The OpenAI routes want `Authorization: Bearer <key>` (else 401); a Responses body must be a
JSON object with "model" (else 400). The record of an OpenAI request has api "openai",
response_id and (streams) event_types.

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
                        terminating chunk (non-stream: send half the body and close;
                        die_after=0: the headers only)
  hang_after=N          stream: send headers + N events, then silence until the peer
                        closes (or hang_max seconds); non-stream: the headers, then
                        half the body when N >= 1, then the same silence
  chunked               non-stream: the JSON body goes chunked (no content-length), its
                        two halves in two chunks, a moment apart
  reset                 with die_after (stream or not): end with a TCP reset (RST),
                        not an orderly close (FIN)
  hang_before_headers   read the request, then silence until the peer closes
  hang_max=SECONDS      bound on any hang or gate wait (default 120)
  gate=NAME             stream: send the first event, then wait until gate NAME has been
                        released once (POST /_mock/release?gate=NAME)
  gate_each=NAME        stream: before event k (k >= 1) wait until gate NAME has been
                        released k times: the test releases events one by one
  sse_error_after=N     stream: after N events send the upstream's own
                        `event: error` (overloaded_error) and end the stream cleanly
  unended_event=BYTES   stream: after the first event, an event whose data line runs on
                        for BYTES bytes and never ends (no line break, no blank line),
                        then the end of the stream (an upstream past MAX_SSE_EVENT_BYTES)
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
  cache=R:W             usage reports R cache_read_input_tokens and W
                        cache_creation_input_tokens (Responses: R cached_tokens, W unused)

OpenAI Responses routes: status, retry_after, retry_after_ms, slow, deltas, big, die_after,
hang_after, hang_before_headers, chunked, reset, gate, gate_each, fragment, drop,
close_idle and lenient work as above (status=NNN gives the real OpenAI error body for
NNN), plus:

  error_event_after=N   stream: after N events send `event: error` with data
                        {"type":"error","code":"rate_limit_exceeded","message":...,
                        "param":null,"sequence_number":N} and end the stream cleanly
                        (sse_error_after=N is the same); non-stream: a 429 error
  failed_after=N        stream: after N events send response.failed (a Response with
                        status "failed" and error {"code":"server_error","message"}) and
                        end cleanly; non-stream: a 500 error
  error_code=CODE       the code of those two (defaults as above)
  incomplete            response.incomplete (status "incomplete", incomplete_details
                        {"reason":"max_output_tokens"}) instead of response.completed
  reasoning             a reasoning output item (summary deltas; encrypted_content when
                        include asks for reasoning.encrypted_content) before the message
  tool_call             a function_call output item (arguments deltas) after the message

A request is recorded with the id from its `x-mock-id` header (else "r<seq>"): method,
path, route, prefix, query, headers (in order, as received), body (base64), the peer
address, timestamps, what was sent back (status, headers, body sha256/length and the
first MiB of it) and, for streams and waits, whether and when the peer disconnected
(during silence this is found by poll()ing the socket for EOF).

Control endpoints (only at the root of the mock itself, never under a prefix; refused
when the request carries x-api-key, authorization or anthropic-version, i.e. when it
looks like relayed API traffic):

  GET  /_mock/health
  GET  /_mock/requests[?id=ID]             {"requests":[record...]}
  GET  /_mock/aborts                       records whose peer disconnected early
  POST /_mock/reset                        forget records, gates and the default behaviour
  POST /_mock/behavior?set=B               B (URL-encoded, as x-mock-behavior) applies to every
                        request without an x-mock-behavior header, until changed or reset:
                        several mocks behind one proxy (an upstream pool) misbehave each
                        their own way while the client sends the same request
  POST /_mock/forget?id=ID                 forget the records with that id (a long run's
                                           memory: tests/soak/soak.py after each check)
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
import struct
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


# ----------------------------------------------------------------- OpenAI Responses API

OPENAI_MODELS = [
    {"id": "gpt-5-codex", "object": "model", "created": 1757527818, "owned_by": "system"},
    {"id": "gpt-5", "object": "model", "created": 1754425777, "owned_by": "system"},
    {"id": "gpt-5-2025-08-07", "object": "model", "created": 1754425384, "owned_by": "system"},
    {"id": "gpt-5-mini", "object": "model", "created": 1754425928, "owned_by": "system"},
    {"id": "gpt-4.1", "object": "model", "created": 1744316542, "owned_by": "system"},
    {"id": "o4-mini", "object": "model", "created": 1744225351, "owned_by": "system"},
]

# status -> (type, code, param, message), as api.openai.com answers
OPENAI_ERRORS = {
    400: ("invalid_request_error", "invalid_value", "input",
          "Invalid value: 'inpt_text'. Supported values are: 'input_text', 'input_image', 'output_text', "
          "'refusal', 'input_file', 'computer_screenshot', and 'summary_text'."),
    401: ("invalid_request_error", "invalid_api_key", None,
          "Incorrect API key provided: sk-proj-****************************************mock. You can find "
          "your API key at https://platform.openai.com/account/api-keys."),
    403: ("request_forbidden", "unsupported_country_region_territory", None,
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", None,
          "The model `gpt-nope` does not exist or you do not have access to it."),
    405: ("invalid_request_error", None, None, "Method not allowed."),
    413: ("invalid_request_error", "request_too_large", None, "Request too large."),
    429: ("tokens", "rate_limit_exceeded", None,
          "Rate limit reached for gpt-5 in organization org-mockmockmockmockmockmock on tokens per min (TPM): "
          "Limit 30000, Used 29517, Requested 2211. Please try again in 3.456s. Visit "
          "https://platform.openai.com/account/rate-limits to learn more."),
    500: ("server_error", None, None,
          "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, None, "Bad gateway."),
    503: ("server_error", None, None, "The engine is currently overloaded, please try again later"),
    504: ("server_error", None, None, "Gateway timeout."),
}

OA_TEXTS = ["Hello", "! I'm Codex, \"an AI\"", " coding agent \u2014 caf\u00e9 \u65e5\u672c.\n", " How can",
            " I help?"]
OA_SUMMARY = ["**Greeting the user**\n\n", "The user says hello; ", "a short reply fits."]
OA_TOOL_ARGS = ['{"location":"San Fra', 'ncisco, CA","unit"', ':"fahrenheit"}']
OA_STREAM_ERROR_MESSAGE = ("Rate limit reached for gpt-5 in organization org-mockmockmockmockmockmock on tokens "
                           "per min (TPM): Limit 30000, Used 30000, Requested 1200. Please try again in 2.4s.")
OA_FAILED_MESSAGE = ("An error occurred while processing your request. You can retry your request, or contact "
                     "us through our help center at help.openai.com if the error persists.")


def oa_hex(n):
    return _rand(n, "0123456789abcdef")


def new_oa_request_id():
    return "req_" + oa_hex(32)


def oa_ratelimit_headers(remaining=9999):
    return [
        ("x-ratelimit-limit-requests", "10000"),
        ("x-ratelimit-limit-tokens", "30000000"),
        ("x-ratelimit-remaining-requests", str(remaining)),
        ("x-ratelimit-remaining-tokens", "29999000" if remaining else "0"),
        ("x-ratelimit-reset-requests", "6ms"),
        ("x-ratelimit-reset-tokens", "2ms"),
    ]


def oa_infra_headers():
    # What api.openai.com's edge adds; not for the client.
    return [
        ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
        ("cf-cache-status", "DYNAMIC"),
        ("set-cookie", "__cf_bm=mock" + _rand(24) + "; path=/; expires=Thu, 01-Jan-2099 00:00:00 GMT; "
                       "domain=.api.openai.com; HttpOnly; Secure; SameSite=None"),
        ("x-content-type-options", "nosniff"),
        ("server", "cloudflare"),
        ("cf-ray", oa_hex(16) + "-SJC"),
        ("alt-svc", 'h3=":443"; ma=86400'),
    ]


def pretty(obj):
    """api.openai.com's non-stream JSON: indented by two spaces."""
    return json.dumps(obj, indent=2, ensure_ascii=False).encode()


class PeerGone(Exception):
    pass


class State:
    def __init__(self):
        self.cond = threading.Condition()
        self.records = []
        self.seq = 0
        self.gates = {}  # name -> {"released": int, "waiting": int, "pipes": set()}
        self.default_behavior = ""  # for requests without x-mock-behavior (POST /_mock/behavior)

    def gate(self, name):
        g = self.gates.get(name)
        if g is None:
            g = {"released": 0, "waiting": 0, "pipes": set()}
            self.gates[name] = g
        return g

    def reset(self):
        with self.cond:
            self.records = []
            self.default_behavior = ""
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
        the peer closed the connection (EOF or reset seen by poll()+MSG_PEEK)."""
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
                # poll, not select: with hundreds of streams open the descriptors
                # pass FD_SETSIZE (1024), which select() refuses
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                if r is not None:
                    poller.register(r, select.POLLIN)
                ready = poller.poll(remaining * 1000)
                sock_ready = any(fd == sock.fileno() for fd, _ in ready)
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
            if sock_ready:
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
            "behavior": self.headers.get("x-mock-behavior") or STATE.default_behavior,
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

        oa_route = self.openai_route(path)
        if oa_route is not None:
            return self.handle_openai(oa_route, query, obj)

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

    def cache_tokens(self):
        """(read, write) from the cache=R:W behaviour, else (0, 0)."""
        r, _, w = self.beh.get("cache", "0:0").partition(":")
        return int(r or 0), int(w or 0)

    def usage(self, obj, output_tokens):
        cr, cw = self.cache_tokens()
        return {"input_tokens": self.count_tokens(obj), "cache_creation_input_tokens": cw,
                "cache_read_input_tokens": cr,
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
        if self.misbehaves_nonstream():
            return self.send_nonstream(body, [("content-type", "application/json"),
                                              ("request-id", self.request_id)] + ratelimit_headers())
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
            if "reset" in self.beh:
                # SO_LINGER 0: close() sends RST instead of FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def misbehaves_nonstream(self):
        return any(k in self.beh for k in ("die_after", "hang_after", "chunked"))

    def send_nonstream(self, body, headers):
        """A non-stream 200 `body` under chunked / die_after / hang_after (see the module
        docstring): the headers (with content-length, or chunked), the body's two halves,
        and the failure in place of the second half (die_after=0 / hang_after=0: in place
        of the first)."""
        beh = self.beh
        chunked = "chunked" in beh
        framing = [("transfer-encoding", "chunked")] if chunked else [("content-length", str(len(body)))]
        self.send_head(200, headers[:1] + framing + headers[1:])
        fail = "die" if "die_after" in beh else "hang" if "hang_after" in beh else None
        keep = min(int(beh.get("die_after", beh.get("hang_after", 2))), 1) if fail else 2
        halves = [body[:len(body) // 2], body[len(body) // 2:]]
        for i, part in enumerate(halves[:keep]):
            if i > 0 and chunked:
                time.sleep(0.05)  # two reads for the relay, not one
            with STATE.cond:
                self.record_out(part)
            self._write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part, "body")
        if fail == "hang":
            self.update(state="hanging")
            self.wait_silent(self.hang_max(), "hang")
            self.update(state="hang_timeout", finished_at=time.time())
            return self.die()
        if fail == "die":
            return self.die()
        if chunked:
            self._write(b"0\r\n\r\n", "end")
        self.update(state="done", finished_at=time.time())

    def stream_message(self, obj):
        events = self.events(obj)
        headers = [("content-type", "text/event-stream; charset=utf-8"),
                   ("transfer-encoding", "chunked"),
                   ("cache-control", "no-cache"),
                   ("request-id", self.request_id)] + ratelimit_headers() + infra_headers()
        err = (b'event: error\ndata: {"type": "error", "error": '
               b'{"type": "overloaded_error", "message": "Overloaded"}}\n\n')
        err_after = int(self.beh["sse_error_after"]) if "sse_error_after" in self.beh else None
        return self.run_stream(events, headers, err_after, err)

    def run_stream(self, events, headers, err_after=None, err_bytes=None):
        """Send `events` (whole SSE events as bytes) as a chunked stream, obeying the
        stream behaviours (slow, die_after, hang_after, gate, gate_each); at index
        err_after send err_bytes instead and end the stream cleanly."""
        beh = self.beh
        self.update(events_total=len(events))
        self.send_head(200, headers)
        slow = float(beh.get("slow", 0))
        die_after = int(beh["die_after"]) if "die_after" in beh else None
        hang_after = int(beh["hang_after"]) if "hang_after" in beh else None
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
                self.send_chunk(err_bytes)
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
            if i == 0 and "unended_event" in beh:
                left = int(beh["unended_event"])
                self.send_chunk(b"event: content_block_delta\ndata: ")
                while left > 0:
                    n = min(left, 65536)
                    self.send_chunk(b"x" * n)
                    left -= n
                break
        self._write(b"0\r\n\r\n", "end")
        self.update(state="done", finished_at=time.time())

    # ----------------------------------------------------------------- OpenAI Responses

    def openai_route(self, path):
        """The OpenAI route of this request, or None when it is an Anthropic one:
        /v1/responses[/...] (or a bare /responses) under any prefix, and /v1/models[/...]
        when the client looks like an OpenAI one (no anthropic-version, no x-api-key)."""
        i = path.find("/v1/")
        if i >= 0:
            route = path[i:]
            if route == "/v1/responses" or route.startswith("/v1/responses/"):
                return route
            if (route == "/v1/models" or route.startswith("/v1/models/")) and \
                    not self.headers.get("anthropic-version") and not self.headers.get("x-api-key"):
                return route
            return None
        if path == "/responses" or path.endswith("/responses"):
            self.update(route="/responses", prefix=path[:-len("/responses")])
            return "/responses"
        return None

    def oa_headers(self):
        ms = max(1, int((time.time() - self.rec["received_at"]) * 1000))
        return [("x-request-id", self.request_id),
                ("openai-organization", "user-mockmockmockmockmockmock"),
                ("openai-processing-ms", str(ms)),
                ("openai-project", "proj_MockMockMockMockMockMock"),
                ("openai-version", "2020-10-01")]

    def oa_send(self, status, body, extra=()):
        if isinstance(body, (dict, list)):
            body = pretty(body)
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        headers += self.oa_headers() + list(extra) + oa_infra_headers()
        if self.close_connection:
            headers.append(("connection", "close"))
        self.send_head(status, headers)
        with STATE.cond:
            self.record_out(body)
        self._write(body, "body")
        self.update(state="done", finished_at=time.time())

    def oa_error(self, status, message=None, etype=None, code=False, param=False):
        t, c, p, m = OPENAI_ERRORS.get(status, ("server_error", None, None, "Internal server error."))
        body = {"error": {"message": message or m, "type": etype or t,
                          "param": p if param is False else param, "code": c if code is False else code}}
        hdrs = []
        if status == 429:
            hdrs.append(("retry-after", str(self.beh.get("retry_after", "7"))))
            hdrs += oa_ratelimit_headers(0)
        if "retry_after_ms" in self.beh:
            hdrs.append(("retry-after-ms", str(self.beh["retry_after_ms"])))
        self.oa_send(status, body, hdrs)

    def handle_openai(self, route, query, obj):
        beh = self.beh
        self.request_id = new_oa_request_id()
        self.update(request_id=self.request_id, api="openai")
        lenient = "lenient" in beh
        if not lenient:
            auth = self.headers.get("authorization") or ""
            if not auth.startswith("Bearer ") or not auth[7:].strip():
                return self.oa_error(
                    401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                         "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
                         "field (i.e. admin:YOUR_KEY) if you're accessing the API from your browser. You can "
                         "obtain an API key from https://platform.openai.com/account/api-keys.", code=None)
        if "status" in beh:
            if "slow" in beh:
                self.wait_silent(float(beh["slow"]), "slow")
            return self.oa_error(int(beh["status"]))
        if route in ("/v1/responses", "/responses"):
            if self.command != "POST":
                return self.oa_error(405, "Invalid method for URL (%s %s)" % (self.command, self.rec["path"]))
            if not lenient:
                if not isinstance(obj, dict):
                    return self.oa_error(
                        400, "We could not parse the JSON body of your request. (HINT: This likely means you "
                             "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                             "but what was sent was not valid JSON. If you have trouble figuring out how to fix "
                             "this, please contact us through our help center at help.openai.com.)",
                        code=None, param=None)
                if "model" not in obj:
                    return self.oa_error(400, "Missing required parameter: 'model'.",
                                         code="missing_required_parameter", param="model")
                bad = self.oa_check_input(obj.get("input"))
                if bad:
                    return self.oa_error(400, bad[1], code="invalid_value", param=bad[0])
            if obj.get("stream") is True:
                return self.oa_stream(obj)
            return self.oa_full(obj)
        if route.startswith("/v1/responses/"):
            return self.oa_error(404, "Response with id '%s' not found." % route[len("/v1/responses/"):],
                                 code=None, param=None)
        if route == "/v1/models":
            if self.command != "GET":
                return self.oa_error(405, "Invalid method for URL (%s %s)" % (self.command, self.rec["path"]))
            return self.oa_send(200, {"object": "list", "data": OPENAI_MODELS})
        if route.startswith("/v1/models/"):
            mid = route[len("/v1/models/"):]
            for m in OPENAI_MODELS:
                if m["id"] == mid:
                    return self.oa_send(200, m)
            return self.oa_error(404, "The model '%s' does not exist" % mid, code="model_not_found",
                                 param="model")
        return self.oa_error(404, "Invalid URL (%s %s)" % (self.command, self.rec["path"]), code=None)

    @staticmethod
    def oa_check_input(inp):
        """What the real API refuses in input messages: (param, message) or None."""
        if not isinstance(inp, list):
            return None
        for i, item in enumerate(inp):
            if not isinstance(item, dict) or item.get("type", "message") != "message":
                continue
            content = item.get("content")
            if item.get("role") == "assistant" and isinstance(content, list):
                for j, part in enumerate(content):
                    if isinstance(part, dict) and part.get("type") == "input_text":
                        return ("input[%d].content[%d]" % (i, j),
                                "Invalid value: 'input_text'. Supported values are: 'output_text' and 'refusal'.")
        return None

    def oa_texts(self):
        beh = self.beh
        if "big" in beh:
            return self.texts()
        n = int(beh.get("deltas", 3))
        return [OA_TEXTS[i % len(OA_TEXTS)] + ("" if i < len(OA_TEXTS) else " #%d" % i) for i in range(n)]

    def oa_response(self, obj, rid, created, status, output, usage, error=None, incomplete=None):
        reasoning = obj.get("reasoning") if isinstance(obj.get("reasoning"), dict) else {}
        return {
            "id": rid, "object": "response", "created_at": created, "status": status,
            "background": False, "error": error, "incomplete_details": incomplete,
            "instructions": obj.get("instructions"), "max_output_tokens": obj.get("max_output_tokens"),
            "max_tool_calls": None, "model": obj.get("model"), "output": output,
            "parallel_tool_calls": obj.get("parallel_tool_calls", True),
            "previous_response_id": obj.get("previous_response_id"),
            "prompt_cache_key": obj.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort", "medium"), "summary": reasoning.get("summary")},
            "safety_identifier": None, "service_tier": "default", "store": obj.get("store", True),
            "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": obj.get("tool_choice", "auto"), "tools": obj.get("tools") or [],
            "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": None,
            "metadata": obj.get("metadata") or {},
        }

    def oa_build(self, obj):
        """(events, final response object): events as [(type, fields)], in stream order,
        without sequence numbers; the final Response as response.completed carries it."""
        beh = self.beh
        rid = "resp_" + oa_hex(50)
        created = int(time.time())
        ev = []

        def add(t, **kw):
            ev.append((t, kw))

        def obf():
            return _rand(random.randint(3, 14))

        add("response.created", response=self.oa_response(obj, rid, created, "in_progress", [], None))
        add("response.in_progress", response=self.oa_response(obj, rid, created, "in_progress", [], None))
        output = []
        reasoning_tokens = 0
        include = obj.get("include") if isinstance(obj.get("include"), list) else []
        if "reasoning" in beh:
            iid = "rs_" + oa_hex(50)
            item = {"id": iid, "type": "reasoning", "summary": []}
            if "reasoning.encrypted_content" in include:
                item["encrypted_content"] = "gAAAAA" + _rand(120)
            oi = len(output)
            add("response.output_item.added", output_index=oi, item=dict(item))
            add("response.reasoning_summary_part.added", item_id=iid, output_index=oi, summary_index=0,
                part={"type": "summary_text", "text": ""})
            for t in OA_SUMMARY:
                add("response.reasoning_summary_text.delta", item_id=iid, output_index=oi, summary_index=0,
                    delta=t, obfuscation=obf())
            full = "".join(OA_SUMMARY)
            add("response.reasoning_summary_text.done", item_id=iid, output_index=oi, summary_index=0, text=full)
            add("response.reasoning_summary_part.done", item_id=iid, output_index=oi, summary_index=0,
                part={"type": "summary_text", "text": full})
            done = dict(item, summary=[{"type": "summary_text", "text": full}])
            add("response.output_item.done", output_index=oi, item=done)
            output.append(done)
            reasoning_tokens = 64
        texts = self.oa_texts()
        mid = "msg_" + oa_hex(50)
        oi = len(output)
        add("response.output_item.added", output_index=oi,
            item={"id": mid, "type": "message", "status": "in_progress", "content": [], "role": "assistant"})
        add("response.content_part.added", item_id=mid, output_index=oi, content_index=0,
            part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
        for t in texts:
            add("response.output_text.delta", item_id=mid, output_index=oi, content_index=0, delta=t,
                logprobs=[], obfuscation=obf())
        text = "".join(texts)
        add("response.output_text.done", item_id=mid, output_index=oi, content_index=0, text=text, logprobs=[])
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        add("response.content_part.done", item_id=mid, output_index=oi, content_index=0, part=part)
        msg = {"id": mid, "type": "message", "status": "completed", "content": [part], "role": "assistant"}
        add("response.output_item.done", output_index=oi, item=msg)
        output.append(msg)
        if "tool_call" in beh or "tool_use" in beh:
            fid, cid = "fc_" + oa_hex(50), "call_" + _rand(24)
            oi = len(output)
            item = {"id": fid, "type": "function_call", "status": "in_progress", "arguments": "",
                    "call_id": cid, "name": "get_weather"}
            add("response.output_item.added", output_index=oi, item=item)
            for part_args in OA_TOOL_ARGS:
                add("response.function_call_arguments.delta", item_id=fid, output_index=oi, delta=part_args,
                    obfuscation=obf())
            args = "".join(OA_TOOL_ARGS)
            add("response.function_call_arguments.done", item_id=fid, output_index=oi, arguments=args)
            done = dict(item, status="completed", arguments=args)
            add("response.output_item.done", output_index=oi, item=done)
            output.append(done)
        inp = self.count_tokens(obj)
        out_tokens = max(1, len(text) // 4) + reasoning_tokens
        cached = self.cache_tokens()[0]
        inp += cached  # the Responses API's input_tokens counts the cached part
        usage = {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached},
                 "output_tokens": out_tokens, "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                 "total_tokens": inp + out_tokens}
        if "incomplete" in beh:
            final = self.oa_response(obj, rid, created, "incomplete", output, usage,
                                     incomplete={"reason": "max_output_tokens"})
            add("response.incomplete", response=final)
        else:
            final = self.oa_response(obj, rid, created, "completed", output, usage)
            add("response.completed", response=final)
        return ev, final

    @staticmethod
    def oa_event_bytes(seq, t, fields):
        d = {"type": t, "sequence_number": seq}
        d.update(fields)
        return ("event: %s\ndata: %s\n\n" % (t, dumps(d))).encode("utf-8")

    def oa_stream(self, obj):
        beh = self.beh
        ev, final = self.oa_build(obj)
        if "error_event_after" in beh or "sse_error_after" in beh:
            n = min(int(beh.get("error_event_after", beh.get("sse_error_after"))), len(ev))
            ev = ev[:n] + [("error", {"code": beh.get("error_code", "rate_limit_exceeded"),
                                      "message": OA_STREAM_ERROR_MESSAGE, "param": None})]
        elif "failed_after" in beh:
            n = min(int(beh["failed_after"]), len(ev))
            resp = dict(final, status="failed", output=[], usage=None,
                        error={"code": beh.get("error_code", "server_error"), "message": OA_FAILED_MESSAGE})
            ev = ev[:n] + [("response.failed", {"response": resp})]
        events = [self.oa_event_bytes(i, t, f) for i, (t, f) in enumerate(ev)]
        self.update(response_id=final["id"], event_types=[t for t, _ in ev])
        headers = [("content-type", "text/event-stream; charset=utf-8"),
                   ("transfer-encoding", "chunked")] + self.oa_headers() + oa_ratelimit_headers() + \
            oa_infra_headers()
        return self.run_stream(events, headers)

    def oa_full(self, obj):
        beh = self.beh
        if "slow" in beh:
            self.wait_silent(float(beh["slow"]), "slow")
        if "failed_after" in beh:
            return self.oa_error(500, OA_FAILED_MESSAGE, code="server_error")
        if "error_event_after" in beh:
            return self.oa_error(429)
        _, final = self.oa_build(obj)
        self.update(response_id=final["id"])
        body = pretty(final)
        if self.misbehaves_nonstream():
            return self.send_nonstream(body, [("content-type", "application/json")] + self.oa_headers() +
                                       oa_ratelimit_headers())
        return self.oa_send(200, body, oa_ratelimit_headers())

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
        if path == "/_mock/behavior":
            with STATE.cond:
                STATE.default_behavior = arg("set", "")
            return self.control_reply(200, {"ok": True, "behavior": STATE.default_behavior})
        if path == "/_mock/forget":
            rid = arg("id")
            if not rid:
                return self.control_reply(400, {"error": "id= required"})
            with STATE.cond:
                n = len(STATE.records)
                STATE.records = [r for r in STATE.records if r["id"] != rid]
                n -= len(STATE.records)
            return self.control_reply(200, {"ok": True, "forgotten": n})
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
    ap.add_argument("--behavior", default="", help="the default behaviour (as POST /_mock/behavior)")
    args = ap.parse_args(argv)
    STATE.default_behavior = args.behavior
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
