#!/usr/bin/env python3
"""cc-proxy benchmark: the stack beside nginx proxy_pass, measured (never asserted).

One run starts, on loopback, each in its own process group:
  - the canned upstream: nginx answering POST /v1/messages with a fixed
    ~3 KB Anthropic SSE stream (message_start ... message_stop), GET /health,
    and passing POST /v1/messages?hold=1 on to
  - the silent upstream (tests/bench/silent_upstream.py): headers and the
    first event, then silence; it counts the streams it holds;
  - the baseline: nginx proxy_pass to the canned upstream (proxy_buffering
    off, HTTP/1.1 keep-alive upstream, the stack nginx's worker count and
    worker_connections);
  - the stack: nginx with the project's configuration (scripts/render-nginx.sh)
    and one ccproxy-claude under spawn-fcgi, as `make run` starts them, with
    the production defaults (ENVIRONMENT=production, LOG_LEVEL=info, JSON log
    lines to a file).
Every request is the CherryStudio one: User-Agent CherryStudio, a ~2 KB JSON
body with stream:true, a system prompt and a few messages, so the responder's
cherry_studio adapter does its full work.

It then prints one table, each figure beside the baseline's and the ratio
stack/baseline: req/s and p50/p99 latency at each wrk connection count, CPU
per request, the added time to the first event, the responder's idle RSS,
RSS per open stream and the probe latency with N streams held open against
the silent upstream, and the time until every held stream was cancelled.

  python3 tests/bench/bench.py [--streams 1000,5000] [--duration 10] [--repeat 1]
         [--connections 50,200] [--ttfb-samples 300] [--probe-samples 200]
Standard library and wrk only; stops everything it started, also on Ctrl-C.
"""
import argparse
import ctypes
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(os.environ.get("CCPROXY_BIN_DIR") or os.path.join(REPO, "build", "bin"))
HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "sk-ant-api03-BENCHKEY-" + "0b0b0b0b0b0b" * 4
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) CherryStudio/1.5.3 Chrome/134.0.6998.205 Electron/35.4.0 Safari/537.36"


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- what is sent


def request_body():
    """The CherryStudio request: ~2 KB of JSON, stream:true, a system prompt, a few messages."""
    system = ("You are a careful senior engineer helping a colleague review changes to a C11 "
              "code base. Answer concisely, quote the lines you refer to, and say when you are "
              "unsure. Prefer small, testable suggestions over rewrites. The project builds with "
              "make and tests with cmocka; it runs behind nginx as FastCGI responders.")
    msgs = [
        {"role": "user", "content": "Here is the function that frames an SSE event for the client. "
                                    "Does it handle a chunk that ends in the middle of a line?"},
        {"role": "assistant", "content": "It does: the tail after the last blank line is kept in the "
                                         "carry buffer and prepended to the next chunk. One thing to "
                                         "check is a CR LF pair split across two chunks."},
        {"role": "user", "content": "Good point. What would a test for the split CR LF look like, "
                                    "table-driven, in the style of the other unit tests?"},
        {"role": "assistant", "content": "A table of (chunks, expected events): split after the CR, "
                                         "split after the LF, split inside the data line, and a chunk "
                                         "holding two events and the start of a third."},
        {"role": "user", "content": [{"type": "text", "text": "Write that table for me, with one row "
                                                              "per case and a short comment on each. "
                                                              "Keep the names consistent with the "
                                                              "existing test_sse.c file, please."}]},
    ]
    body = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 4096, "stream": True,
            "temperature": 0.7, "system": system, "messages": msgs}
    raw = json.dumps(body, separators=(",", ":"))
    pad = 2048 - len(raw)
    if pad > 0:  # bring it to ~2 KB with a realistic longer first message
        msgs[0]["content"] += " " + ("The code is in common/sse.c, around the framer's main loop. " * 40)[:pad - 1]
        raw = json.dumps(body, separators=(",", ":"))
    return raw.encode()


REQUEST_HEADERS = [("content-type", "application/json"), ("x-api-key", KEY),
                   ("anthropic-version", "2023-06-01"), ("user-agent", UA), ("accept", "text/event-stream")]


def raw_request(port, path="/v1/messages", body=None, method="POST", close=True):
    h = "%s %s HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n" % (method, path, port)
    if body is not None:
        h += "".join("%s: %s\r\n" % kv for kv in REQUEST_HEADERS)
        h += "content-length: %d\r\n" % len(body)
    if close:
        h += "connection: close\r\n"
    return (h + "\r\n").encode() + (body or b"")


def canned_sse():
    """A realistic ~3 KB Anthropic Messages stream: 20 text deltas."""
    words = ("Here is the table, one row per case , each with a short comment : the split after "
             "the carriage return , the split after the line feed , a split inside the data line , "
             "and a chunk that holds two whole events and the first bytes of a third one . Every row "
             "names the chunks as they arrive and the events the framer must emit , in order").split(" ")
    ev = []

    def add(name, obj):
        ev.append("event: %s\ndata: %s\n\n" % (name, json.dumps(obj, separators=(",", ":"))))
    add("message_start", {"type": "message_start", "message": {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 612, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1433,
                  "output_tokens": 1}}})
    add("content_block_start", {"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}})
    add("ping", {"type": "ping"})
    per = (len(words) + 19) // 20
    for i in range(20):
        text = " ".join(words[i * per:(i + 1) * per]) + " "
        add("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": text}})
    add("content_block_stop", {"type": "content_block_stop", "index": 0})
    add("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                          "usage": {"output_tokens": 87}})
    add("message_stop", {"type": "message_stop"})
    body = "".join(ev)
    assert not set(body) & set("$'\\"), "the canned body must not need nginx escaping"
    return body


# --------------------------------------------------------------------------- processes

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_us():
    # PR_SET_PDEATHSIG: if the bench is killed outright, its children still go.
    _libc.prctl(1, signal.SIGTERM, 0, 0, 0)


class Procs:
    def __init__(self):
        self.procs = []
        self.holders = []

    def start(self, name, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        p = subprocess.Popen(argv, start_new_session=True, preexec_fn=_die_with_us, **kw)
        p.bench_name = name
        self.procs.append(p)
        return p

    def close_holders(self):
        for s in self.holders:
            try:
                s.close()
            except OSError:
                pass
        self.holders = []

    def stop_all(self):
        self.close_holders()
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + 15
        for p in self.procs:
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # the rest of its group (nginx workers outliving their master)
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def cpu_s(pids):
    tck = os.sysconf("SC_CLK_TCK")
    t = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        t += int(fields[11]) + int(fields[12])
    return t / tck


def machine_busy_s():
    """CPU seconds the whole machine has spent busy (all CPUs, everyone)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s():
    """This process's CPU and that of its reaped children (wrk)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def rss_kb(pids):
    t = 0
    for pid in pids:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Rss:"):
                    t += int(line.split()[1])
    return t


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split()[1]
    return "?"


def rss_floor():
    """What a process that links and initialises the responder's libraries keeps resident
    (tests/bench/rss_floor.c, built by make bench): {VmRSS, RssFile, RssAnon, RssShmem} in KB,
    or None without it."""
    path = os.environ.get("CCPROXY_RSS_FLOOR")
    if not path or not os.access(path, os.X_OK):
        return None
    try:
        out = subprocess.run([path], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    got = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", out, re.M)}
    return got if all(k in got for k in ("VmRSS", "RssFile", "RssAnon", "RssShmem")) else None


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def nginx_cmd(prefix):
    return ["nginx", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf"),
            "-e", os.path.join(prefix, "logs", "error.log"), "-g", "daemon off;"]


# --------------------------------------------------------------------------- HTTP bits


def http_exchange(port, raw, timeout=30):
    """Sends raw on a fresh connection, reads to EOF; (status, headers+body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(raw)
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
    return (int(m.group(1)) if m else 0), buf


def silent_stats(port):
    st, buf = http_exchange(port, b"GET /_stats HTTP/1.1\r\nhost: s\r\nconnection: close\r\n\r\n")
    return json.loads(buf.split(b"\r\n\r\n", 1)[1])


def first_event_ms(port, raw):
    """A fresh connection; from connect to the first bytes of the first SSE event."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), 30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(raw)
    buf = b""
    while b"event:" not in buf:
        d = s.recv(65536)
        if not d:
            raise RuntimeError("port %d closed before the first event: %r" % (port, buf[:300]))
        buf += d
    t = (time.perf_counter() - t0) * 1000
    while s.recv(65536):
        pass
    s.close()
    return t


def probe_ms(port, raw, n):
    """n sequential exchanges on fresh connections: the times in ms of those answered 200, and
    {what went wrong: count} for the others."""
    times, bad = [], {}
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            st, _ = http_exchange(port, raw)
            why = None if st == 200 else "status %d" % st
        except OSError as e:
            why = e.strerror or str(e)
        if why:
            bad[why] = bad.get(why, 0) + 1
        else:
            times.append((time.perf_counter() - t0) * 1000)
    return times, bad


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# --------------------------------------------------------------------------- held streams


def open_streams(port, n, body, window, timeout, procs):
    """Opens n streams (POST ...?hold=1) at port, at most `window` of them waiting for their
    first event at a time. Returns (open count, {failure: count}, first failure bodies, s)."""
    raw = raw_request(port, "/v1/messages?hold=1", body, close=False)
    sel = selectors.DefaultSelector()
    started = inflight = opened = 0
    fails, samples = {}, []
    t0 = time.monotonic()

    def fail(s, why, buf=b""):
        nonlocal inflight
        fails[why] = fails.get(why, 0) + 1
        if len(samples) < 3 and buf:
            samples.append(buf[:600])
        sel.unregister(s)
        s.close()
        inflight -= 1

    while opened + sum(fails.values()) < n and time.monotonic() - t0 < timeout:
        while started < n and inflight < window:
            s = socket.socket()
            s.setblocking(False)
            e = s.connect_ex(("127.0.0.1", port))
            started += 1
            inflight += 1
            if e not in (0, 115):  # EINPROGRESS
                fails["connect errno %d" % e] = fails.get("connect errno %d" % e, 0) + 1
                s.close()
                inflight -= 1
                continue
            sel.register(s, selectors.EVENT_WRITE, [False, b""])
        for key, _ in sel.select(0.2):
            s, st = key.fileobj, key.data
            if not st[0]:
                e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if e:
                    fail(s, "connect errno %d" % e)
                    continue
                s.send(raw)  # a few KB into a fresh loopback socket: never partial
                st[0] = True
                sel.modify(s, selectors.EVENT_READ, st)
                continue
            try:
                d = s.recv(65536)
            except OSError as ex:
                fail(s, "recv: %s" % ex.strerror, st[1])
                continue
            st[1] += d
            m = re.match(rb"HTTP/1\.[01] (\d{3})", st[1])
            if not d:
                fail(s, "closed (status %s)" % (m.group(1).decode() if m else "none"), st[1])
            elif m and m.group(1) != b"200" and b"\r\n\r\n" in st[1]:
                fail(s, "status " + m.group(1).decode(), st[1])
            elif b"message_start" in st[1]:
                sel.unregister(s)
                procs.holders.append(s)
                opened += 1
                inflight -= 1
    pending = inflight
    for key in list(sel.get_map().values()):
        procs.holders.append(key.fileobj)  # still waiting: keep them (closed with the rest)
    sel.close()
    if pending:
        fails["no first event within %.0f s" % timeout] = pending
    return opened, fails, samples, time.monotonic() - t0


def held_phase(name, port, n, a, ctx, mem_pids, probes, procs):
    """n streams held through port: counted at the silent upstream, memory, probes, cancel."""
    sport = ctx["silent_port"]
    left = silent_stats(sport)["open"]  # a previous set not yet all cancelled: not counted here
    base = {k: rss_kb(p) for k, p in mem_pids.items()}
    opened, fails, samples, took = open_streams(port, n, ctx["body"], a.window, a.open_timeout, procs)
    # Every stream the client sees open must also be open at the upstream.
    try:
        wait_for(lambda: silent_stats(sport)["open"] - left >= opened, 10, "the upstream to count the streams")
    except RuntimeError:
        pass
    at_up = silent_stats(sport)["open"] - left
    time.sleep(1.0)  # let allocations settle
    r = {"n": n, "opened": opened, "fails": fails, "samples": samples, "open_s": took, "at_upstream": at_up}
    r["rss"] = {k: (rss_kb(p) - base[k], rss_kb(p)) for k, p in mem_pids.items()}
    if "responder" in ctx and name == "stack":
        rp = ctx["responder"]
        r["threads"] = proc_status(rp, "Threads")
        r["fds"] = fd_count(rp)
    r["probes"] = {}
    for pname, raw in probes:
        times, bad = probe_ms(port, raw, a.probe_samples)
        r["probes"][pname] = ((statistics.median(times), pct(times, 99)) if times else (None, None)) + (bad,)
    at_up2 = silent_stats(sport)["open"] - left
    r["at_upstream_after_probes"] = at_up2
    # Release: every client leaves; the upstream must see every transfer cancelled.
    t_first = time.monotonic()
    procs.close_holders()
    t_last = time.monotonic()
    try:
        wait_for(lambda: silent_stats(sport)["open"] <= left, 30, "the upstream to see every stream cancelled")
        st = silent_stats(sport)
        r["cancel_s"] = max(0.0, st["last_close"] - t_first)
        r["close_s"] = t_last - t_first
    except RuntimeError:
        r["cancel_s"] = None
        r["left_open"] = silent_stats(sport)["open"]
    time.sleep(1.0)
    r["rss_after"] = {k: rss_kb(p) for k, p in mem_pids.items()}
    return r


# --------------------------------------------------------------------------- wrk

WRK_LUA = r"""
wrk.method = "POST"
wrk.path = "/v1/messages"
local f = assert(io.open("%(body)s", "rb"))
wrk.body = f:read("*a")
f:close()
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%%d duration_us=%%d bytes=%%d connect=%%d read=%%d write=%%d status=%%d timeout=%%d p50=%%d p90=%%d p99=%%d max=%%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def run_wrk(port, conns, duration, lua, cpu_groups, watch=None, ours_too=()):
    """One wrk run; its figures, the CPU of each group of pids over it per request, the most
    threads the process `watch` had while it ran, and the share of the machine's CPUs that
    processes not ours (not in the groups, not ours_too, not this one or wrk) used meanwhile."""
    cmd = ["wrk", "-t2", "-c%d" % conns, "-d%ds" % duration, "--latency", "-s", lua,
           "http://127.0.0.1:%d/v1/messages" % port]
    c0 = {k: cpu_s(p) for k, p in cpu_groups.items()}
    m0, o0, t0, u0 = machine_busy_s(), own_cpu_s(), time.monotonic(), cpu_s(ours_too)
    wp = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    threads = 0
    try:
        while wp.poll() is None:
            if watch:
                threads = max(threads, int(proc_status(watch, "Threads")))
            time.sleep(0.25)
    finally:
        if wp.poll() is None:
            wp.kill()
    stdout, stderr = wp.communicate()
    out = subprocess.CompletedProcess(cmd, wp.returncode, stdout, stderr)
    c1 = {k: cpu_s(p) for k, p in cpu_groups.items()}
    m1, o1, t1, u1 = machine_busy_s(), own_cpu_s(), time.monotonic(), cpu_s(ours_too)
    ours = sum(c1[k] - c0[k] for k in cpu_groups) + (o1 - o0) + (u1 - u0)
    others = max(0.0, (m1 - m0) - ours) / (len(os.sched_getaffinity(0)) * (t1 - t0))
    m = re.search(r"^BENCH (.*)$", out.stdout, re.M)
    if not m:
        raise RuntimeError("wrk failed: %s %s" % (out.stdout, out.stderr))
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    r["cpu_ms"] = {k: (c1[k] - c0[k]) * 1000 / max(1, r["requests"]) for k in cpu_groups}
    r["cpu_total_ms"] = sum(r["cpu_ms"].values())
    r["threads"] = threads
    r["others"] = others  # the rest of the machine's load, as a share of all its CPUs
    return r


# --------------------------------------------------------------------------- configurations


def nginx_common(prefix):
    return """pid {p}/nginx.pid;
error_log {p}/logs/error.log warn;
""".format(p=prefix)


def temp_paths(prefix):
    return "".join("    %s_temp_path %s/tmp/%s;\n" % (k, prefix, k)
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def write_canned_upstream(prefix, port, silent_port, sse, nofile):
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    conf = """# bench: the canned upstream (not measured; must not be the bottleneck)
{user}worker_processes 2;
worker_rlimit_nofile {nofile};
{common}events {{ worker_connections {wc}; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
{temps}    upstream silent {{ server 127.0.0.1:{sp}; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v1/messages {{
            # ?hold=1 (kept by the responder): to the silent upstream
            if ($arg_hold) {{ rewrite ^ /_hold last; }}
            default_type text/event-stream;
            return 200 '{sse}';
        }}
        location = /_hold {{
            internal;
            proxy_pass http://silent;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
        location = /health {{
            default_type application/json;
            return 200 '{{"status":"ok"}}';
        }}
    }}
}}
""".format(user="user root;\n" if os.getuid() == 0 else "", nofile=nofile, common=nginx_common(prefix),
           wc=max(1024, nofile - 64), temps=temp_paths(prefix), sp=silent_port, port=port, sse=sse)
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(conf)


def stack_nginx_settings(conf_text):
    """worker_processes, worker_connections and worker_rlimit_nofile of the rendered stack conf."""
    def get(pat, default):
        m = re.search(pat, conf_text, re.M)
        return m.group(1) if m else default
    return {"worker_processes": get(r"^\s*worker_processes\s+(\S+);", "1"),
            "worker_connections": get(r"worker_connections\s+(\d+);", "512"),
            "worker_rlimit_nofile": get(r"^\s*worker_rlimit_nofile\s+(\d+);", None)}


def write_baseline(prefix, port, canned_port, ng):
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    conf = """# bench: the baseline, nginx proxy_pass to the canned upstream; the same
# worker count, worker_connections, access log and client buffers as the
# stack's nginx
{user}worker_processes {wp};
{rl}{common}events {{ worker_connections {wc}; }}
http {{
    access_log {p}/logs/access.log;
{temps}    upstream canned {{
        server 127.0.0.1:{cp};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        underscores_in_headers on;
        large_client_header_buffers 8 64k;
        client_header_buffer_size 4k;
        client_max_body_size 33m;
        client_body_buffer_size 1m;
        gzip off;
        location / {{
            proxy_pass http://canned;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 660s;
            proxy_send_timeout 660s;
        }}
    }}
}}
""".format(user="user root;\n" if os.getuid() == 0 else "", wp=ng["worker_processes"],
           rl=("worker_rlimit_nofile %s;\n" % ng["worker_rlimit_nofile"]) if ng["worker_rlimit_nofile"] else "",
           common=nginx_common(prefix), wc=ng["worker_connections"], p=prefix, temps=temp_paths(prefix),
           cp=canned_port, port=port)
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(conf)


# --------------------------------------------------------------------------- header


def cmd_out(argv, stderr=False):
    try:
        p = subprocess.run(argv, capture_output=True, text=True)
        return ((p.stderr if stderr else p.stdout) or p.stdout or p.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def machine_lines():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.1f GB" % (int(f.readline().split()[1]) / 1048576)
    except (OSError, ValueError):
        pass
    git = cmd_out(["git", "-C", REPO, "describe", "--always", "--dirty"])
    return [
        "machine: %d CPUs (nproc; %s), %s RAM, Linux %s, open files %d, load average %.2f at the start" % (
            len(os.sched_getaffinity(0)), model, mem, platform.release(),
            resource.getrlimit(resource.RLIMIT_NOFILE)[0], os.getloadavg()[0]),
        "versions: %s; %s; %s; %s; Python %s; cc-proxy %s" % (
            cmd_out(["nginx", "-v"], stderr=True).replace("nginx version: ", ""),
            cmd_out(["curl", "--version"]).split(" (")[0] + ", libcurl " + cmd_out(["curl-config", "--version"]).replace("libcurl ", ""),
            cmd_out(["wrk", "-v"]).split(" [")[0].split(" Copyright")[0],
            cmd_out(["spawn-fcgi", "-v"]).split(" - ")[0],
            platform.python_version(), git),
    ]


# --------------------------------------------------------------------------- table


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        s = "{:,.0f}".format(v)
    elif abs(v) >= 100:
        s = "%.0f" % v
    elif abs(v) >= 10:
        s = "%.1f" % v
    elif abs(v) >= 1:
        s = "%.2f" % v
    else:
        s = "%.3f" % v
    return s + unit


def ratio(a, b):
    if a is None or b is None or isinstance(a, str) or isinstance(b, str) or b == 0:
        return "-"
    return "%.2fx" % (a / b)


def table(rows):
    w0 = max(len(r[0]) for r in rows)
    out = ["%-*s  %14s  %14s  %8s" % (w0, "", "stack", "nginx proxy", "ratio"),
           "%s  %s  %s  %s" % ("-" * w0, "-" * 14, "-" * 14, "-" * 8)]
    for r in rows:
        if len(r) == 1:
            out.append(r[0])
            continue
        label, s, b = r[:3]
        unit = r[3] if len(r) > 3 else ""
        out.append("%-*s  %14s  %14s  %8s" % (w0, label, fmt(s, unit), fmt(b, unit), ratio(s, b)))
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def cancel_note(r):
    if r["cancel_s"] is None:
        return "%d still open at the upstream 30 s after their clients left" % r.get("left_open", -1)
    return "the clients closed within %.3f s, the upstream's last close %.3f s after the first" % (
        r["close_s"], r["cancel_s"])


def int_list(s):
    return [int(x) for x in s.replace(" ", "").split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int_list, default=[1000, 5000],
                    help="open-stream counts held against the silent upstream (default 1000,5000)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="wrk runs per target and connection count, stack and baseline taking turns; "
                         "each figure is then the run with the median req/s (default 1)")
    ap.add_argument("--connections", type=int_list, default=[50, 200], help="wrk connections (default 50,200)")
    ap.add_argument("--ttfb-samples", type=int, default=300, help="sequential first-event samples per target")
    ap.add_argument("--probe-samples", type=int, default=200, help="sequential probes per kind while streams are open")
    ap.add_argument("--window", type=int, default=64, help="streams waiting for their first event at once while opening")
    ap.add_argument("--open-timeout", type=float, default=60, help="seconds to open one set of streams")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="an extra variable for the responder, e.g. LOG_LEVEL=error (repeatable; printed)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, configs)")
    a = ap.parse_args()
    t_start = time.monotonic()

    for tool in ("wrk", "nginx", "spawn-fcgi"):
        if not shutil.which(tool):
            sys.exit("bench: %s is not installed (apt-get install %s)" % (tool, tool))
    resp_bin = os.path.join(BIN, "ccproxy-claude")
    if not os.access(resp_bin, os.X_OK):
        sys.exit("bench: %s is missing; run make first" % resp_bin)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = max(a.streams or [0]) + 200
    if hard < need:
        sys.exit("bench: the open-files hard limit (%d) is below the %d this run needs" % (hard, need))

    def on_signal(sig, _frame):
        raise SystemExit(128 + sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    tmp = tempfile.mkdtemp(prefix="ccproxy-bench.")
    os.chmod(tmp, 0o755)
    procs = Procs()
    body = request_body()
    sse = canned_sse()
    ctx = {"body": body}
    try:
        header = machine_lines()
        for line in header:
            log(line)
        # ---- the silent upstream ------------------------------------------------
        spf = os.path.join(tmp, "silent.port")
        silent = procs.start("silent upstream", [sys.executable, os.path.join(HERE, "silent_upstream.py"),
                                        "--port", "0", "--port-file", spf],
                    stderr=open(os.path.join(tmp, "silent.log"), "wb"))
        wait_for(lambda: os.path.exists(spf), 10, "the silent upstream")
        sport = int(open(spf).read())
        ctx["silent_port"] = sport
        # ---- the canned upstream ------------------------------------------------
        cport = free_port()
        cprefix = os.path.join(tmp, "canned")
        write_canned_upstream(cprefix, cport, sport, sse, hard)
        canned = procs.start("canned upstream", nginx_cmd(cprefix), stderr=subprocess.DEVNULL)
        # ---- the stack ----------------------------------------------------------
        sock = os.path.join(tmp, "claude.sock")
        renv = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:%d" % cport, "SHUTDOWN_GRACE": "5"}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        env.update(renv)
        for kv in a.env:
            k, eq, v = kv.partition("=")
            if not eq or not k:
                sys.exit("bench: --env wants NAME=VALUE, not %r" % kv)
            env[k] = v
        resp_log = os.path.join(tmp, "responder.log")
        sp = procs.start("responder", ["spawn-fcgi", "-n", "-s", sock, "-M", "0660", "--", resp_bin],
                         env=env, cwd=tmp, stderr=open(resp_log, "wb"))
        rpid = sp.pid  # spawn-fcgi -n execs the responder in place
        ctx["responder"] = rpid
        port = free_port()
        nprefix = os.path.join(tmp, "nginx")
        subprocess.run([os.path.join(REPO, "scripts", "render-nginx.sh"), nprefix], check=True,
                       stdout=subprocess.DEVNULL,
                       env=dict(os.environ, SERVICES="claude", CLAUDE_SERVICE_PORT=str(port),
                                CLAUDE_FCGI_SOCKET=sock, CODEX_SERVICE_PORT=str(free_port())))
        ngset = stack_nginx_settings(open(os.path.join(nprefix, "nginx.conf")).read())
        wait_for(lambda: os.path.exists(sock), 10, "the responder's socket")
        ng = procs.start("stack nginx", nginx_cmd(nprefix))
        # ---- the baseline -------------------------------------------------------
        bport = free_port()
        bprefix = os.path.join(tmp, "baseline")
        write_baseline(bprefix, bport, cport, ngset)
        bng = procs.start("baseline nginx", nginx_cmd(bprefix))
        for p, what in ((cport, "canned upstream"), (port, "stack nginx"), (bport, "baseline nginx")):
            wait_for(lambda: can_connect(p), 15, what)
        time.sleep(0.5)
        for p in procs.procs:
            if p.poll() is not None:
                last = open(resp_log, errors="replace").read().strip().splitlines()[-1:] if p is sp else []
                raise RuntimeError("%s exited at start (status %s)%s; see %s" % (
                    p.bench_name, p.returncode, (": " + last[0][:300]) if last else "", tmp))
        ng_pids = [ng.pid] + children_of(ng.pid)
        bng_pids = [bng.pid] + children_of(bng.pid)
        rss_fresh = rss_kb([rpid])
        # The split says what idle RSS is made of: file-backed pages are the
        # shared libraries' code and data (libcrypto, libcurl's many
        # dependencies), shared with every process that maps them.
        rss_split = (int(proc_status(rpid, "RssFile")), int(proc_status(rpid, "RssAnon")) + int(proc_status(rpid, "RssShmem")))
        log("stack: nginx (%s workers, worker_connections %s) + ccproxy-claude pid %d, idle RSS %.1f MB"
            % (ngset["worker_processes"], ngset["worker_connections"], rpid, rss_fresh / 1024))

        # ---- correctness first: the same answer everywhere, the adapter chosen ---
        st, direct = http_exchange(cport, raw_request(cport, body=body))
        if st != 200 or not direct.endswith(sse.encode()) or b"text/event-stream" not in direct:
            raise RuntimeError("the canned upstream answers wrongly: %r" % direct[:300])
        for name, p in (("stack", port), ("baseline", bport)):
            st, got = http_exchange(p, raw_request(p, body=body))
            if st != 200 or b"event: message_stop" not in got or got.count(b"event: content_block_delta") != 20:
                raise RuntimeError("%s: not the canned stream: %r" % (name, got[:600]))
        time.sleep(0.2)
        adapter = "?"
        with open(resp_log, errors="replace") as f:
            m = re.search(r'"adapter":"([^"]+)"', f.read())
            adapter = m.group(1) if m else "? (no request log line)"
        if adapter != "cherry_studio":
            log("WARNING: the responder chose adapter %s, not cherry_studio" % adapter)

        # ---- added time to the first event -------------------------------------
        log("first event: %d sequential fresh connections per target" % a.ttfb_samples)
        req = {p: raw_request(p, body=body) for p in (cport, port, bport)}
        for _ in range(20):
            for p in (cport, port, bport):
                first_event_ms(p, req[p])
        ttfb = {cport: [], port: [], bport: []}
        for _ in range(a.ttfb_samples):
            for p in (cport, port, bport):
                ttfb[p].append(first_event_ms(p, req[p]))
        med = {p: statistics.median(v) for p, v in ttfb.items()}
        rss_warm = rss_kb([rpid])

        # ---- open streams -------------------------------------------------------
        probes_stack = [("GET /health", raw_request(port, "/health", method="GET")),
                        ("POST", raw_request(port, body=body))]
        probes_base = [("GET /health", raw_request(bport, "/health", method="GET")),
                       ("POST", raw_request(bport, body=body))]
        held = {"stack": {}, "baseline": {}}
        for n in a.streams:
            log("open streams: %d through the stack" % n)
            held["stack"][n] = r = held_phase("stack", port, n, a, ctx, {"responder": [rpid], "nginx": ng_pids[1:]},
                                              probes_stack, procs)
            log("  %d open at the client, %d at the upstream, in %.1f s; failures %s; responder RSS +%.1f MB, "
                "%s threads, %s fds; cancel %s s" % (r["opened"], r["at_upstream"], r["open_s"], r["fails"] or "none",
                                                      r["rss"]["responder"][0] / 1024, r.get("threads"), r.get("fds"),
                                                      fmt(r["cancel_s"])))
            for s in r["samples"]:
                log("  a failed answer: %r" % s)
            if sp.poll() is not None:
                raise RuntimeError("the responder exited (status %s) with %d streams; see %s" % (sp.returncode, n, resp_log))
            log("open streams: %d through the baseline" % n)
            held["baseline"][n] = r = held_phase("baseline", bport, n, a, ctx, {"nginx": bng_pids[1:]}, probes_base, procs)
            log("  %d open at the client, %d at the upstream, in %.1f s; failures %s; cancel %s s"
                % (r["opened"], r["at_upstream"], r["open_s"], r["fails"] or "none", fmt(r["cancel_s"])))
            for s in r["samples"]:
                log("  a failed answer: %r" % s)

        # ---- throughput ---------------------------------------------------------
        lua = os.path.join(tmp, "request.lua")
        bodyf = os.path.join(tmp, "body.json")
        with open(bodyf, "wb") as f:
            f.write(body)
        with open(lua, "w") as f:
            f.write(WRK_LUA % {"body": bodyf, "headers": "\n".join(
                'wrk.headers["%s"] = "%s"' % (k, v) for k, v in REQUEST_HEADERS)})
        wrk = {"stack": {}, "baseline": {}}
        groups = {"stack": {"responder": [rpid], "nginx": ng_pids}, "baseline": {"nginx": bng_pids}}
        upstream_pids = [canned.pid] + children_of(canned.pid) + [silent.pid]
        for c in a.connections:
            runs = {"stack": [], "baseline": []}
            for i in range(max(1, a.repeat)):
                # Taking turns: a drift of the machine (another tenant, a
                # frequency change) then falls on both targets alike.
                for name, p in (("stack", port), ("baseline", bport)):
                    if i == 0:
                        run_wrk(p, c, 2, lua, groups[name])  # warm-up
                    log("wrk: %s, %d connections, %d s (run %d of %d)" % (name, c, a.duration, i + 1, max(1, a.repeat)))
                    r = run_wrk(p, c, a.duration, lua, groups[name], rpid if name == "stack" else None, upstream_pids)
                    runs[name].append(r)
                    log("  %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors, CPU %.3f ms/request"
                        % (r["rps"], r["p50"] / 1000, r["p99"] / 1000, r["errors"], r["cpu_total_ms"]))
            for name in runs:
                ordered = sorted(runs[name], key=lambda r: r["rps"])
                wrk[name][c] = dict(ordered[len(ordered) // 2])
                # Errors count over every run, not only the median one.
                wrk[name][c]["errors"] = sum(r["errors"] for r in runs[name])
                wrk[name][c]["runs"] = [r["rps"] for r in runs[name]]
        if sp.poll() is not None:
            raise RuntimeError("the responder exited (status %s); see %s" % (sp.returncode, resp_log))

        # ---- the table ----------------------------------------------------------
        rows, notes = [], []
        for c in a.connections:
            s, b = wrk["stack"][c], wrk["baseline"][c]
            rows.append(("req/s, %d connections" % c, s["rps"], b["rps"]))
        for c in a.connections:
            s, b = wrk["stack"][c], wrk["baseline"][c]
            rows.append(("latency p50, %d connections" % c, s["p50"] / 1000, b["p50"] / 1000, " ms"))
            rows.append(("latency p99, %d connections" % c, s["p99"] / 1000, b["p99"] / 1000, " ms"))
        for c in a.connections:
            s, b = wrk["stack"][c], wrk["baseline"][c]
            rows.append(("CPU per request, %d connections" % c, s["cpu_total_ms"], b["cpu_total_ms"], " ms"))
            rows.append(("  responder / nginx", "%.3f / %.3f" % (s["cpu_ms"]["responder"], s["cpu_ms"]["nginx"]),
                         "- / %.3f" % b["cpu_ms"]["nginx"]))
        for c in a.connections:
            rows.append(("others' CPU during wrk, %d connections" % c, "%.0f%%" % (wrk["stack"][c]["others"] * 100),
                         "%.0f%%" % (wrk["baseline"][c]["others"] * 100)))
        errs = {k: sum(wrk[k][c]["errors"] for c in a.connections) for k in wrk}
        rows.append(("wrk errors (non-2xx, socket)", str(errs["stack"]), str(errs["baseline"])))
        rows.append(("added time to first event, median", med[port] - med[cport], med[bport] - med[cport], " ms"))
        rows.append(("responder RSS idle, fresh / warm", "%.1f / %.1f MB" % (rss_fresh / 1024, rss_warm / 1024), "-"))
        rows.append(("  fresh: libraries' pages / own memory", "%.1f / %.1f MB" % (rss_split[0] / 1024, rss_split[1] / 1024),
                     "-"))
        floor = rss_floor()
        if floor:
            rows.append(("  the libraries alone (rss_floor)", "%.1f MB (%.1f / %.1f)" % (
                floor["VmRSS"] / 1024, floor["RssFile"] / 1024, (floor["RssAnon"] + floor["RssShmem"]) / 1024), "-"))
        for n in a.streams:
            s, b = held["stack"][n], held["baseline"][n]
            rows.append(("streams open at the upstream, of %d" % n, "%d" % s["at_upstream"], "%d" % b["at_upstream"]))
            rows.append(("RSS per open stream, %d (responder)" % n, s["rss"]["responder"][0] / max(1, s["opened"]),
                         b["rss"]["nginx"][0] / max(1, b["opened"]), " KB"))
            rows.append(("RSS per open stream, %d (+nginx)" % n,
                         (s["rss"]["responder"][0] + s["rss"]["nginx"][0]) / max(1, s["opened"]),
                         b["rss"]["nginx"][0] / max(1, b["opened"]), " KB"))
            for pname in ("GET /health", "POST"):
                sp50, sp99, sbad = s["probes"][pname]
                bp50, bp99, bbad = b["probes"][pname]
                rows.append(("probe %s, %d open, p50" % (pname, n), sp50, bp50, " ms"))
                rows.append(("probe %s, %d open, p99" % (pname, n), sp99, bp99, " ms"))
                if sbad or bbad:
                    rows.append(("  probes failed", str(sum(sbad.values())), str(sum(bbad.values()))))
                    notes.append("probe %s with %d open: stack %s, baseline %s" % (pname, n, sbad or "none",
                                                                                   bbad or "none"))
            rows.append(("all %d cancelled at the upstream after" % n, s["cancel_s"], b["cancel_s"], " s"))

        print()
        print("cc-proxy bench: the stack (nginx + ccproxy-claude, adapter %s) beside nginx proxy_pass" % adapter)
        for line in header:
            print(line)
        print("stack: one ccproxy-claude under spawn-fcgi, ENVIRONMENT=production LOG_LEVEL=info LOG_FORMAT=json "
              "(the defaults; log to a file), MAX_STREAMS and WORKER_THREADS default%s; nginx %s workers, "
              "worker_connections %s (scripts/render-nginx.sh; the baseline the same)"
              % ((" (set by --env: %s)" % " ".join(a.env)) if a.env else "",
                 ngset["worker_processes"], ngset["worker_connections"]))
        print("load: wrk -t2 -d%ds per run; POST /v1/messages, %d-byte CherryStudio body, %d-byte SSE answer (%d deltas)"
              % (a.duration, len(body), len(sse), sse.count("content_block_delta") // 2))
        if a.repeat > 1:
            print("repeat: %d runs per target and connection count, taking turns; each wrk figure is the run with "
                  "the median req/s; req/s of every run: %s" % (a.repeat, "; ".join(
                      "%s %d: %s" % (name, c, ", ".join("%.0f" % x for x in wrk[name][c]["runs"]))
                      for c in a.connections for name in ("stack", "baseline"))))
        print()
        print(table(rows))
        print()
        print("ratio: stack / baseline. CPU: utime+stime from /proc/<pid>/stat over the wrk run, responder + "
              "nginx (master and workers) for the stack, nginx for the baseline, / requests; others' CPU: what the rest of the machine used meanwhile (/proc/stat), a share of all CPUs (anything well above 0 makes the run noisy). Added time to first event: median over %d "
              "sequential fresh connections, minus the median directly to the canned upstream (%.3f ms). RSS per "
              "stream: Rss (smaps_rollup) with N open minus before opening (responder warm), / N; for the "
              "baseline and '+nginx', the nginx workers' sum. Probes: %d sequential fresh connections each, while "
              "the streams are open. Cancelled after: first client close to the silent upstream's last close."
              % (a.ttfb_samples, med[cport], a.probe_samples))
        print("wrk: the responder ran at most %s threads (%s connections)" % (
            ", ".join(str(wrk["stack"][c]["threads"]) for c in a.connections),
            ", ".join(str(c) for c in a.connections)))
        for n in a.streams:
            s = held["stack"][n]
            print("streams %d: stack opened %d in %.1f s (failures: %s), %d at the upstream (%d after the probes); "
                  "responder %s threads, %s fds, RSS %.1f MB open, %.1f MB after release; %s"
                  % (n, s["opened"], s["open_s"], s["fails"] or "none", s["at_upstream"],
                     s["at_upstream_after_probes"], s.get("threads"), s.get("fds"),
                     s["rss"]["responder"][1] / 1024, s["rss_after"]["responder"] / 1024, cancel_note(s)))
            b = held["baseline"][n]
            print("streams %d: baseline opened %d in %.1f s (failures: %s), %d at the upstream; %s"
                  % (n, b["opened"], b["open_s"], b["fails"] or "none", b["at_upstream"], cancel_note(b)))
        kinds = {}
        with open(resp_log, errors="replace") as f:
            for l in f:
                if '"level":"info"' in l or '"level":"debug"' in l:
                    continue
                lv = re.search(r'"level":"([a-z]+)"', l)
                ev = re.search(r'"event":"([a-z_]+)"', l)
                st = re.search(r'"status":(\d+)', l)
                msg = re.search(r'"(?:message|error)":"((?:[^"\\]|\\.)*)"', l)
                k = "%s %s %s" % (lv.group(1) if lv else "?", ev.group(1) if ev else "?",
                                  ("status " + st.group(1)) if st else (msg.group(1)[:160] if msg else l.strip()[:160]))
                kinds[k] = kinds.get(k, 0) + 1
        if kinds:
            print("responder log, lines above info (499: a client that left, i.e. the held streams released and "
                  "wrk's last requests):")
            for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:10]:
                print("  %6d  %s" % (v, k))
        for line in notes:
            print(line)
        for pre in (nprefix, bprefix):
            el = os.path.join(pre, "logs", "error.log")
            kinds = {}
            for l in open(el, errors="replace"):
                m = re.match(r"\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)", l)
                if m and m.group(1) != "notice":
                    k = "[%s] %s" % (m.group(1), re.sub(r", client: .*", "", m.group(2))[:160])
                    kinds[k] = kinds.get(k, 0) + 1
            if kinds:
                print("%s nginx error log:" % ("stack" if pre == nprefix else "baseline"))
                for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:6]:
                    print("  %6d  %s" % (v, k))
        print("run time: %.0f s" % (time.monotonic() - t_start))
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        return 130
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        log("failed: %s" % e)
        a.keep = True  # its logs say why
        return 1
    finally:
        procs.stop_all()
        if a.keep:
            log("run directory kept: " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
