#!/usr/bin/env python3
"""The bench's silent upstream: accepts many connections and holds them.

Every request (any method, any path but /_stats) gets the headers of an SSE
answer and its first event (message_start), then nothing more, until the
other side closes. It does not measure anything itself; it counts:

  GET /_stats  ->  {"open": N, "held": total ever held, "closed": N,
                    "last_close": CLOCK_MONOTONIC of the latest close}

so the bench can see that its streams really are open here, and when the
last one was cancelled. Standard library only (asyncio); meant for 5,000+
connections at once, so it raises its open-files limit to the hard limit.

  python3 silent_upstream.py --port 0 --port-file FILE
"""
import argparse
import asyncio
import json
import os
import resource
import time

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n")
FIRST = (b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench_silent\","
         b"\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-bench\",\"content\":[],"
         b"\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n")
FIRST_CHUNK = b"%x\r\n%s\r\n" % (len(FIRST), FIRST)

stats = {"open": 0, "held": 0, "closed": 0, "last_close": 0.0}


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target = lines[0].split(" ")[:2]
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    if length:
        await reader.readexactly(length)
    return method, target


async def handle(reader, writer):
    try:
        method, target = await read_request(reader)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        writer.close()
        return
    if target.startswith("/_stats"):
        body = json.dumps(stats).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                     b"connection: close\r\n\r\n%s" % (len(body), body))
        try:
            await writer.drain()
        finally:
            writer.close()
        return
    stats["open"] += 1
    stats["held"] += 1
    try:
        writer.write(HEAD + FIRST_CHUNK)
        await writer.drain()
        while await reader.read(65536):  # anything more is ignored; EOF ends the hold
            pass
    except ConnectionError:
        pass
    finally:
        stats["open"] -= 1
        stats["closed"] += 1
        stats["last_close"] = time.monotonic()
        writer.close()


async def main(a):
    server = await asyncio.start_server(handle, "127.0.0.1", a.port, backlog=4096, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, a.port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(main(ap.parse_args()))
    except KeyboardInterrupt:
        pass
