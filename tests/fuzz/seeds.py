#!/usr/bin/env python3
"""Regenerates the seed corpora of fuzz_request, fuzz_adapters_pipeline and
fuzz_exchange from tests/fixtures/ (the captured requests of Claude Code,
Codex CLI and the SDKs) plus hand-made streams of both APIs. Run from the
repository root: python3 tests/fuzz/seeds.py. The input formats are those
the targets' header comments describe."""
import glob
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def fixtures():
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "*.json"))):
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        body = d.get("body")
        if body is None:
            body = ""
        elif not isinstance(body, str):
            body = json.dumps(body)
        yield os.path.basename(path)[:-5], d["method"], d["path"], d["headers"], body.encode()


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def cgi_name(header):
    return "HTTP_" + header.upper().replace("-", "_")


# ---- fuzz_request: limit, read size, BASE_PATH, parameters, body -------------

def request_seed(limit8, piece, base, params, body):
    out = bytes([limit8, piece]) + base.encode() + b"\0"
    out += b"".join(p.encode() + b"\0" for p in params) + b"\0" + body
    return out


def request_seeds():
    for name, method, path, headers, body in fixtures():
        body = body[:256]  # the view never looks inside; its length is what counts
        uri = path
        q = path.split("?", 1)[1] if "?" in path else ""
        params = ["REQUEST_METHOD=" + method, "REQUEST_URI=" + uri, "QUERY_STRING=" + q]
        for k, v in headers:
            if k.lower() == "content-type":
                params.append("CONTENT_TYPE=" + v)
            elif k.lower() == "content-length":
                params.append("CONTENT_LENGTH=%d" % len(body))
            else:
                params.append(cgi_name(k) + "=" + v)
        write("request", name, request_seed(0xFF, 0x0F, "", params, body))
    # hand-made: a base path, PATH_INFO, line breaks, odd lengths, no length
    small = b'{"model":"m"}'
    write("request", "base_path", request_seed(0x10, 3, "/api", [
        "REQUEST_METHOD=POST", "REQUEST_URI=/api/v1/messages?x=1#f", "CONTENT_LENGTH=13"], small))
    write("request", "path_info", request_seed(0x10, 1, "", [
        "REQUEST_METHOD=POST", "REQUEST_URI=/cgi-bin/x/v1/messages", "PATH_INFO=/v1/messages",
        "HTTP_CONTENT_TYPE=application/json"], small))
    write("request", "line_breaks", request_seed(0x10, 2, "", [
        "REQUEST_METHOD=PO\nST", "REQUEST_URI=/v1/messages?bet\na=true", "CONTENT_TYPE=application/json\r\nx: y",
        "HTTP_X_EVIL=a\r\nb", "HTTP_X\nNAME=v", "HTTP_PROXY=http://evil"], small))
    write("request", "no_length", request_seed(0x01, 0x14, "", [
        "REQUEST_METHOD=POST", "REQUEST_URI=/v1/responses"], small))
    write("request", "bad_length", request_seed(0x02, 0, "", [
        "REQUEST_METHOD=POST", "REQUEST_URI=/v1/responses", "CONTENT_LENGTH=99999999999999999999"], small))
    # the header limits (bits 5-7 of the read-size byte, k: 2k headers, 16k bytes each,
    # 40k in all): over the count, one header over its size, and over the total
    write("request", "limit_header_count", request_seed(0x10, 0x20 | 3, "", [
        "REQUEST_METHOD=POST", "REQUEST_URI=/v1/messages", "HTTP_A=1", "HTTP_B=2", "HTTP_C=3"], small))
    write("request", "limit_header_size", request_seed(0x10, 0xE0 | 3, "", [
        "REQUEST_METHOD=POST", "REQUEST_URI=/v1/messages", "HTTP_X_API_KEY=k", "HTTP_X_LONG=" + "l" * 120], small))
    write("request", "limit_header_total", request_seed(0x10, 0x60 | 3, "", [
        "REQUEST_METHOD=POST", "REQUEST_URI=/v1/messages"] + ["HTTP_X_%d=%s" % (i, "v" * 40) for i in range(4)],
        small))
    write("request", "short_body", request_seed(0x40, 5, "", [
        "REQUEST_METHOD=POST", "REQUEST_URI=/v1/messages", "CONTENT_LENGTH=100"], small))
    write("request", "websocket", request_seed(0x00, 0, "", [
        "REQUEST_METHOD=GET", "REQUEST_URI=/v1/responses", "HTTP_UPGRADE=websocket/13",
        "HTTP_SEC_WEBSOCKET_KEY=dGhlIHNhbXBsZSBub25jZQ=="], b""))


# ---- fuzz_adapters_pipeline: service and pick, header lines, body ------------

def pipeline_seeds():
    for name, method, path, headers, body in fixtures():
        if method != "POST" or not body:
            continue
        codex = path.startswith("/v1/responses")
        lines = "".join("%s: %s\n" % (k, v) for k, v in headers)
        write("adapters_pipeline", name, bytes([1 if codex else 0]) + lines.encode() + b"\n" + body)
    claude = b'{"model":"claude-sonnet-4","max_tokens":8,"system":"s","stream":false,' \
             b'"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}'
    codex = b'{"model":"gpt-5","stream":false,"instructions":"x","input":"hi","tools":[]}'
    for i, n in enumerate(["claude_code", "cherry_studio", "default", "unknown"]):
        write("adapters_pipeline", "claude_pick_" + n, bytes([(i + 1) << 1]) + b"\n" + claude)
    for i, n in enumerate(["codex_cli", "cherry_studio", "custom", "default", "unknown"]):
        write("adapters_pipeline", "codex_pick_" + n, bytes([((i + 1) << 1) | 1]) + b"\n" + codex)
    write("adapters_pipeline", "cherry_ua", b"\x00user-agent: CherryStudio/1.5.0\n\n" + claude)
    write("adapters_pipeline", "codex_cherry_ua", b"\x01User_Agent: CherryStudio/1.5.0\n\n" + codex)


# ---- fuzz_exchange: flags, fail write, piece, status; request; headers; body --

def sse(events):
    return "".join("event: %s\ndata: %s\n\n" % (e, json.dumps(d)) for e, d in events).encode()


ANTHROPIC_STREAM = sse([
    ("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                       "model": "claude-sonnet-4", "content": [], "stop_reason": None,
                       "usage": {"input_tokens": 3, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
    ("message_stop", {"type": "message_stop"}),
])
ANTHROPIC_ERROR_STREAM = sse([("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                       "message": "Overloaded"}})])
ANTHROPIC_JSON = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
                             "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn",
                             "usage": {"input_tokens": 3, "output_tokens": 2}}).encode()
ANTHROPIC_429 = json.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}).encode()

RESP = {"id": "resp_1", "object": "response", "status": "in_progress", "model": "gpt-5", "output": []}
DONE = dict(RESP, status="completed", output=[{"type": "message", "id": "msg_1", "role": "assistant",
             "content": [{"type": "output_text", "text": "Hi"}]}], usage={"input_tokens": 3, "output_tokens": 2})
OPENAI_STREAM = sse([
    ("response.created", {"type": "response.created", "sequence_number": 0, "response": RESP}),
    ("response.in_progress", {"type": "response.in_progress", "sequence_number": 1, "response": RESP}),
    ("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
                                    "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}}),
    ("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 3, "output_index": 0,
                                    "content_index": 0, "item_id": "msg_1", "delta": "Hi"}),
    ("response.output_item.done", {"type": "response.output_item.done", "sequence_number": 4, "output_index": 0,
                                   "item": DONE["output"][0]}),
    ("response.completed", {"type": "response.completed", "sequence_number": 5, "response": DONE}),
])
OPENAI_FAILED_STREAM = sse([
    ("response.created", {"type": "response.created", "sequence_number": 9007199254740991, "response": RESP}),
    ("response.failed", {"type": "response.failed", "sequence_number": 1,
                         "response": dict(RESP, status="failed", error={"code": "server_error", "message": "x"})}),
])
OPENAI_JSON = json.dumps(DONE).encode()

SSE_HEADERS = b"content-type: text/event-stream\ncache-control: no-cache\nrequest-id: req_1\r\n"
JSON_HEADERS = b"content-type: application/json\ncontent-length: 10\nx-request-id: r\n"


def exchange_seed(codex, ending, agent, fail_write, piece, status, req, headers, body):
    flags = (1 if codex else 0) | (ending << 1) | (agent << 4)
    return bytes([flags, fail_write, piece]) + struct.pack(">H", status - 100) + req + b"\0" + headers + b"\0" + body


def exchange_seeds():
    reqs = {0: [], 1: []}
    for name, method, path, headers, body in fixtures():
        if method != "POST" or not body:
            continue
        codex = path.startswith("/v1/responses")
        if path.split("?")[0] not in ("/v1/messages", "/v1/responses"):
            continue
        reqs[1 if codex else 0].append((name, body))
    for name, body in reqs[0]:
        stream = b'"stream":true' in body or b'"stream": true' in body
        write("exchange", name, exchange_seed(False, 0, 0, 0, 7, 200, body, SSE_HEADERS if stream else JSON_HEADERS,
                                              ANTHROPIC_STREAM if stream else ANTHROPIC_JSON))
    for name, body in reqs[1]:
        write("exchange", name, exchange_seed(True, 0, 1, 0, 11, 200, body, SSE_HEADERS, OPENAI_STREAM))
    claude = b'{"model":"claude-sonnet-4","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
    claude_plain = claude.replace(b'"stream":true', b'"stream":false')
    codex = b'{"model":"gpt-5","stream":true,"input":"hi"}'
    codex_plain = b'{"model":"gpt-5","input":"hi"}'
    seeds = {
        "claude_stream_broken": (False, 3, 0, 0, 5, 200, claude, SSE_HEADERS, ANTHROPIC_STREAM[:200]),
        "claude_stream_timeout": (False, 2, 0, 0, 0, 200, claude, SSE_HEADERS, ANTHROPIC_STREAM[:90]),
        "claude_stream_error_event": (False, 0, 3, 0, 0, 200, claude, SSE_HEADERS, ANTHROPIC_ERROR_STREAM),
        "claude_stream_client_fails": (False, 0, 0, 3, 1, 200, claude, SSE_HEADERS, ANTHROPIC_STREAM),
        "claude_json_429": (False, 0, 3, 0, 0, 429, claude_plain, JSON_HEADERS + b"retry-after: 3\n", ANTHROPIC_429),
        "claude_unreachable": (False, 1, 2, 0, 0, 200, claude, b"", b""),
        "claude_loop_stopping": (False, 5, 0, 0, 0, 200, claude, b"", b""),
        "claude_client_gone": (False, 4, 0, 0, 3, 200, claude, SSE_HEADERS, ANTHROPIC_STREAM[:300]),
        "claude_cherry_forced": (False, 0, 2, 0, 9, 200, claude_plain, SSE_HEADERS, ANTHROPIC_STREAM),
        "claude_json_broken": (False, 3, 3, 0, 4, 200, claude_plain, JSON_HEADERS, ANTHROPIC_JSON[:40]),
        "claude_bad_request": (False, 0, 0, 0, 0, 200, b'{"model":"","messages":3}', b"", b""),
        "claude_500_html": (False, 0, 3, 0, 0, 500, claude, b"content-type: text/html\n", b"<html>oops</html>"),
        "codex_stream_broken": (True, 3, 1, 0, 6, 200, codex, SSE_HEADERS, OPENAI_STREAM[:400]),
        "codex_stream_failed_seq": (True, 0, 1, 0, 0, 200, codex, SSE_HEADERS, OPENAI_FAILED_STREAM),
        "codex_stream_client_fails": (True, 0, 1, 4, 2, 200, codex, SSE_HEADERS, OPENAI_STREAM),
        "codex_aggregate": (True, 0, 1, 0, 13, 200, codex_plain, SSE_HEADERS, OPENAI_STREAM),
        "codex_aggregate_broken": (True, 3, 1, 0, 13, 200, codex_plain, SSE_HEADERS, OPENAI_STREAM[:500]),
        "codex_json": (True, 0, 2, 0, 0, 200, codex_plain, JSON_HEADERS, OPENAI_JSON),
        "codex_unreachable": (True, 1, 1, 0, 0, 200, codex, b"", b""),
        "codex_401": (True, 0, 3, 0, 0, 401, codex, JSON_HEADERS,
                      b'{"error":{"message":"bad key","type":"invalid_request_error"}}'),
        "codex_timeout_first_write": (True, 2, 1, 1, 0, 200, codex, SSE_HEADERS, OPENAI_STREAM[:50]),
    }
    for name, args in seeds.items():
        write("exchange", name, exchange_seed(*args))


if __name__ == "__main__":
    request_seeds()
    pipeline_seeds()
    exchange_seeds()
