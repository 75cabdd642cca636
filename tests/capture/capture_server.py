#!/usr/bin/env python3
"""Capture server: records every HTTP request verbatim and answers plausibly.

Python 3 stdlib only.  HTTP/1.1 with keep-alive, Content-Length and chunked
request bodies, and ``Expect: 100-continue``.  Header lines are parsed by hand
so that the recorded names keep their exact case and order (duplicates kept).

Each request is appended to the JSON-lines file given by ``--out`` as::

    {"seq": N, "ts": <unix time>, "peer": "127.0.0.1:PORT",
     "method": "POST", "path": "/v1/messages?beta=true",
     "http_version": "HTTP/1.1",
     "headers": [["Host", "127.0.0.1:8080"], ...],
     "body": "<raw body decoded as UTF-8>" | null,
     "body_b64": "<base64 of raw body bytes>",         # only if not UTF-8
     "body_transfer": "content-length" | "chunked" | "none",
     "body_decoded": "<body after gzip/deflate decode>"  # only if compressed
    }

Answers:
  POST .../v1/messages               Anthropic Message JSON or SSE stream
  POST .../v1/messages/count_tokens  {"input_tokens": 10}
  GET  .../v1/models                 model list (Anthropic or OpenAI shape)
  POST .../responses  (any prefix)   OpenAI Responses JSON or SSE stream
  anything else                      404 JSON

Usage:  python3 capture_server.py --port 8765 --out /tmp/capture.jsonl
"""

import argparse
import base64
import gzip
import json
import socketserver
import sys
import threading
import time
import uuid
import zlib

LOCK = threading.Lock()
SEQ = [0]
OUT_PATH = None
VERBOSE = False


def _next_seq():
    with LOCK:
        SEQ[0] += 1
        return SEQ[0]


def _record(entry):
    line = json.dumps(entry, ensure_ascii=False)
    with LOCK:
        with open(OUT_PATH, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    if VERBOSE:
        sys.stderr.write("[capture] #%d %s %s (%d body bytes)\n" % (
            entry["seq"], entry["method"], entry["path"],
            entry.get("body_len", 0)))
        sys.stderr.flush()


def _hdr(headers, name):
    lname = name.lower()
    for k, v in headers:
        if k.lower() == lname:
            return v
    return None


def _rand_id(prefix, n=24):
    return prefix + uuid.uuid4().hex[:n]


# --------------------------------------------------------------------------
# Anthropic answers
# --------------------------------------------------------------------------

def anthropic_message(model):
    return {
        "id": _rand_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
            "service_tier": "standard",
        },
    }


def anthropic_stream_events(model):
    msg = {
        "id": _rand_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
            "service_tier": "standard",
        },
    }
    return [
        ("message_start", {"type": "message_start", "message": msg}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "ok"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "end_turn",
                                     "stop_sequence": None},
                           "usage": {"input_tokens": 10,
                                     "cache_creation_input_tokens": 0,
                                     "cache_read_input_tokens": 0,
                                     "output_tokens": 1}}),
        ("message_stop", {"type": "message_stop"}),
    ]


ANTHROPIC_MODELS = [
    ("claude-opus-4-7", "Claude Opus 4.7"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5"),
]

OPENAI_MODELS = ["gpt-5", "gpt-5-codex", "gpt-5.1-codex", "gpt-4.1"]


def anthropic_model_list():
    data = [{"type": "model", "id": mid, "display_name": name,
             "created_at": "2025-09-29T00:00:00Z"}
            for mid, name in ANTHROPIC_MODELS]
    return {"data": data, "has_more": False,
            "first_id": data[0]["id"], "last_id": data[-1]["id"]}


def openai_model_list():
    return {"object": "list",
            "data": [{"id": m, "object": "model", "created": 1754000000,
                      "owned_by": "openai"} for m in OPENAI_MODELS]}


# --------------------------------------------------------------------------
# OpenAI Responses answers
# --------------------------------------------------------------------------

def response_object(req, status, output, usage):
    """A Response object with the field set the real API returns."""
    def g(k, d=None):
        v = req.get(k, d) if isinstance(req, dict) else d
        return d if v is None else v
    reasoning = g("reasoning", {}) or {}
    text = g("text", {}) or {}
    return {
        "id": req.get("_resp_id"),
        "object": "response",
        "created_at": req.get("_created_at"),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": g("instructions"),
        "max_output_tokens": g("max_output_tokens"),
        "max_tool_calls": g("max_tool_calls"),
        "model": g("model", "gpt-5"),
        "output": output,
        "parallel_tool_calls": g("parallel_tool_calls", True),
        "previous_response_id": g("previous_response_id"),
        "prompt_cache_key": g("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"),
                      "summary": reasoning.get("summary")},
        "safety_identifier": g("safety_identifier"),
        "service_tier": "default",
        "store": g("store", True),
        "temperature": g("temperature", 1.0),
        "text": {"format": text.get("format", {"type": "text"}),
                 "verbosity": text.get("verbosity", "medium")},
        "tool_choice": g("tool_choice", "auto"),
        "tools": g("tools", []),
        "top_logprobs": 0,
        "top_p": g("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": g("metadata", {}),
    }


def _usage():
    return {"input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 1,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 11}


def responses_events(req):
    msg_id = _rand_id("msg_", 32)
    part_empty = {"type": "output_text", "annotations": [], "logprobs": [],
                  "text": ""}
    part_done = dict(part_empty, text="ok")
    item_prog = {"id": msg_id, "type": "message", "status": "in_progress",
                 "content": [], "role": "assistant"}
    item_done = {"id": msg_id, "type": "message", "status": "completed",
                 "content": [part_done], "role": "assistant"}
    evs = [
        {"type": "response.created",
         "response": response_object(req, "in_progress", [], None)},
        {"type": "response.in_progress",
         "response": response_object(req, "in_progress", [], None)},
        {"type": "response.output_item.added", "output_index": 0,
         "item": item_prog},
        {"type": "response.content_part.added", "item_id": msg_id,
         "output_index": 0, "content_index": 0, "part": part_empty},
        {"type": "response.output_text.delta", "item_id": msg_id,
         "output_index": 0, "content_index": 0, "delta": "ok",
         "logprobs": []},
        {"type": "response.output_text.done", "item_id": msg_id,
         "output_index": 0, "content_index": 0, "text": "ok",
         "logprobs": []},
        {"type": "response.content_part.done", "item_id": msg_id,
         "output_index": 0, "content_index": 0, "part": part_done},
        {"type": "response.output_item.done", "output_index": 0,
         "item": item_done},
        {"type": "response.completed",
         "response": response_object(req, "completed", [item_done], _usage())},
    ]
    out = []
    for i, ev in enumerate(evs):
        # keep "type" first, then sequence_number, like the real API
        e = {"type": ev["type"], "sequence_number": i}
        e.update({k: v for k, v in ev.items() if k != "type"})
        out.append((ev["type"], e))
    return out


def responses_json(req):
    msg_id = _rand_id("msg_", 32)
    item = {"id": msg_id, "type": "message", "status": "completed",
            "content": [{"type": "output_text", "annotations": [],
                         "logprobs": [], "text": "ok"}],
            "role": "assistant"}
    return response_object(req, "completed", [item], _usage())


# --------------------------------------------------------------------------
# HTTP handling
# --------------------------------------------------------------------------

class BadRequest(Exception):
    pass


class Handler(socketserver.StreamRequestHandler):
    timeout = 120

    def _readline(self):
        line = self.rfile.readline(65537)
        if len(line) > 65536:
            raise BadRequest("line too long")
        return line

    def _read_chunked(self):
        body = bytearray()
        while True:
            size_line = self._readline()
            if not size_line:
                raise BadRequest("eof in chunked body")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # trailers
                while True:
                    t = self._readline()
                    if t in (b"\r\n", b"\n", b""):
                        break
                break
            body += self.rfile.read(size)
            self.rfile.read(2)  # CRLF
        return bytes(body)

    def handle(self):
        while True:
            try:
                keep = self.handle_one()
            except (ConnectionError, BadRequest, OSError, ValueError) as e:
                if VERBOSE:
                    sys.stderr.write("[capture] connection error: %r\n" % (e,))
                return
            if not keep:
                return

    def handle_one(self):
        line = self._readline()
        while line in (b"\r\n", b"\n"):
            line = self._readline()
        if not line:
            return False
        reqline = line.decode("latin-1").rstrip("\r\n")
        parts = reqline.split(" ")
        if len(parts) != 3:
            raise BadRequest("bad request line %r" % reqline)
        method, target, version = parts
        headers = []
        while True:
            h = self._readline()
            if h in (b"\r\n", b"\n", b""):
                break
            s = h.decode("latin-1").rstrip("\r\n")
            if s[:1] in (" ", "\t") and headers:  # obs-fold
                headers[-1][1] += " " + s.strip()
                continue
            name, _, value = s.partition(":")
            headers.append([name, value.strip(" \t")])

        expect = _hdr(headers, "Expect")
        if expect and expect.lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

        te = (_hdr(headers, "Transfer-Encoding") or "").lower()
        cl = _hdr(headers, "Content-Length")
        if "chunked" in te:
            body = self._read_chunked()
            transfer = "chunked"
        elif cl is not None:
            body = self.rfile.read(int(cl))
            transfer = "content-length"
        else:
            body = b""
            transfer = "none"

        entry = {
            "seq": _next_seq(),
            "ts": time.time(),
            "peer": "%s:%s" % self.client_address[:2],
            "method": method,
            "path": target,
            "http_version": version,
            "headers": headers,
            "body_transfer": transfer,
            "body_len": len(body),
        }
        try:
            entry["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            entry["body"] = None
            entry["body_b64"] = base64.b64encode(body).decode("ascii")
        ce = (_hdr(headers, "Content-Encoding") or "").lower().strip()
        if ce and body:
            entry["content_encoding"] = ce
            try:
                if ce == "gzip":
                    dec = gzip.decompress(body)
                elif ce == "deflate":
                    dec = zlib.decompress(body)
                else:
                    dec = None  # e.g. zstd/br: no stdlib decoder
                if dec is not None:
                    entry["body_decoded"] = dec.decode("utf-8", "replace")
            except Exception as e:  # noqa: BLE001
                entry["decode_error"] = repr(e)
        _record(entry)

        conn_hdr = (_hdr(headers, "Connection") or "").lower()
        keep = not (conn_hdr == "close" or
                    (version == "HTTP/1.0" and conn_hdr != "keep-alive"))

        self._method = method
        json_body = None
        text = entry.get("body_decoded", entry.get("body"))
        if text:
            try:
                json_body = json.loads(text)
            except ValueError:
                json_body = None
        self.route(method, target, headers, json_body, keep)
        return keep

    # ---------------- responses ----------------

    def _common_headers(self, keep):
        return [
            ("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())),
            ("Connection", "keep-alive" if keep else "close"),
        ]

    def send_json(self, status, obj, keep, extra=()):
        data = json.dumps(obj).encode("utf-8")
        reason = {200: "OK", 404: "Not Found", 400: "Bad Request"}.get(
            status, "OK")
        hs = [("Content-Type", "application/json"),
              ("Content-Length", str(len(data)))]
        hs += list(extra) + self._common_headers(keep)
        head = "HTTP/1.1 %d %s\r\n" % (status, reason)
        head += "".join("%s: %s\r\n" % kv for kv in hs) + "\r\n"
        if self._method == "HEAD":
            data = b""  # a HEAD answer carries no body
        self.wfile.write(head.encode("latin-1") + data)
        self.wfile.flush()

    def send_sse(self, events, keep, extra=()):
        hs = [("Content-Type", "text/event-stream; charset=utf-8"),
              ("Cache-Control", "no-cache"),
              ("Transfer-Encoding", "chunked")]
        hs += list(extra) + self._common_headers(keep)
        head = "HTTP/1.1 200 OK\r\n"
        head += "".join("%s: %s\r\n" % kv for kv in hs) + "\r\n"
        self.wfile.write(head.encode("latin-1"))
        for name, data in events:
            chunk = ("event: %s\ndata: %s\n\n" % (
                name, json.dumps(data, separators=(",", ":")))).encode("utf-8")
            self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def route(self, method, target, headers, body, keep):
        path = target.split("?", 1)[0].rstrip("/")
        body = body if isinstance(body, dict) else {}
        req_id = [("request-id", _rand_id("req_01"))]

        if method == "POST" and path.endswith("/v1/messages/count_tokens"):
            return self.send_json(200, {"input_tokens": 10}, keep, req_id)
        if method == "POST" and path.endswith("/v1/messages"):
            model = body.get("model") or "claude-sonnet-4-6"
            if body.get("stream") is True:
                return self.send_sse(anthropic_stream_events(model), keep,
                                     req_id)
            return self.send_json(200, anthropic_message(model), keep, req_id)
        if method == "GET" and path.endswith("/v1/models"):
            if _hdr(headers, "anthropic-version") or _hdr(headers, "x-api-key"):
                return self.send_json(200, anthropic_model_list(), keep, req_id)
            return self.send_json(200, openai_model_list(), keep)
        if method == "POST" and path.endswith("/responses"):
            body = dict(body)
            body["_resp_id"] = _rand_id("resp_", 48)
            body["_created_at"] = int(time.time())
            extra = [("x-request-id", _rand_id("req_", 32)),
                     ("openai-processing-ms", "12")]
            if body.get("stream") is True:
                return self.send_sse(responses_events(body), keep, extra)
            return self.send_json(200, responses_json(body), keep, extra)
        return self.send_json(404, {"type": "error", "error": {
            "type": "not_found_error",
            "message": "capture server: no route for %s %s" % (method, target)}},
            keep)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main(argv=None):
    global OUT_PATH, VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--out", required=True, help="JSON-lines output file")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    OUT_PATH = a.out
    VERBOSE = a.verbose
    srv = Server((a.host, a.port), Handler)
    sys.stderr.write("[capture] listening on %s:%d -> %s\n" % (
        a.host, srv.server_address[1], a.out))
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
