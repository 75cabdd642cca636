#!/usr/bin/env python3
"""cc-proxy benchmark: the budgets of the relay, measured (never asserted).

Starts the mock upstream, ccproxy-claude under spawn-fcgi and nginx on
loopback, then reports:
  - idle RSS / PSS of one responder process
  - added latency to the first streamed byte: via nginx + responder minus
    directly to the mock, over sequential fresh connections (median, p90)
  - memory per open stream: K streams held open at a gate, RSS delta / K
  - CPU per short request: responder and nginx CPU time over N non-stream
    requests

  python3 tests/bench/bench.py [--streams 500] [--requests 2000]
Standard library only; loopback only; stops everything it started.
"""
import argparse, json, os, signal, socket, statistics, subprocess, sys, tempfile, threading, time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CCPROXY_BIN_DIR", os.path.join(REPO, "build", "bin"))
KEY = "sk-ant-bench-key"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close(); return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


def rss_kb(pid):
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Rss", "Pss", "Pss_Anon", "Private_Dirty"):
                out[k] = int(v.split()[0])
    return out


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tck


def children_of(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


BODY = json.dumps({"model": "claude-bench", "max_tokens": 16, "stream": True,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()


def request_bytes(port, body, extra=b""):
    return (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nx-api-key: %s\r\n"
            b"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n%s"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % (port, KEY.encode(), extra, len(body))) + body


def first_event_ms(port, body=BODY):
    """Time from sending the request to the first SSE event's bytes."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    s.sendall(request_bytes(port, body))
    buf = b""
    while b"event:" not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    t = (time.perf_counter() - t0) * 1000
    while s.recv(65536):
        pass
    s.close()
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--latency-samples", type=int, default=300)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ccproxy-bench.")
    os.chmod(tmp, 0o755)
    procs = []
    try:
        mport_file = os.path.join(tmp, "mock.port")
        procs.append(subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "mock_upstream.py"),
                                       "--port", "0", "--port-file", mport_file],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        for _ in range(200):
            if os.path.exists(mport_file) and open(mport_file).read().strip():
                break
            time.sleep(0.05)
        mport = int(open(mport_file).read())
        sock = os.path.join(tmp, "claude.sock")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ANTHROPIC_BASE_URL": "http://127.0.0.1:%d" % mport,
               "LOG_LEVEL": "error", "WORKER_THREADS": str(max(a.streams + 16, 64))}
        sp = subprocess.Popen(["spawn-fcgi", "-n", "-s", sock, "-M", "0666", "--", os.path.join(BIN, "ccproxy-claude")],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "responder.log"), "wb"),
                              start_new_session=True)
        procs.append(sp)
        port = free_port()
        renv = dict(os.environ, SERVICES="claude", CLAUDE_SERVICE_PORT=str(port), CLAUDE_FCGI_SOCKET=sock,
                    CODEX_SERVICE_PORT=str(free_port()))
        subprocess.run([os.path.join(REPO, "scripts", "render-nginx.sh"), os.path.join(tmp, "nginx")], env=renv,
                       check=True, stdout=subprocess.DEVNULL)
        ng = subprocess.Popen(["nginx", "-p", os.path.join(tmp, "nginx"), "-c", os.path.join(tmp, "nginx", "nginx.conf"),
                               "-e", os.path.join(tmp, "nginx", "logs", "error.log"), "-g", "daemon off;"],
                              start_new_session=True)
        procs.append(ng)
        wait_port(port)
        time.sleep(0.5)
        rpid = sp.pid  # spawn-fcgi -n execs the responder in place
        idle = rss_kb(rpid)
        print("responder idle (%s threads): RSS %.1f MB, PSS %.1f MB, anon %.1f MB"
              % (env["WORKER_THREADS"], idle["Rss"] / 1024, idle["Pss"] / 1024, idle["Pss_Anon"] / 1024))

        # ---- added latency to the first byte --------------------------------
        for _ in range(20):
            first_event_ms(mport); first_event_ms(port)
        direct, proxied = [], []
        for _ in range(a.latency_samples):
            direct.append(first_event_ms(mport))
            proxied.append(first_event_ms(port))
        dm, pm = statistics.median(direct), statistics.median(proxied)
        q = lambda xs: sorted(xs)[int(len(xs) * 0.9)]
        print("first event: direct median %.3f ms p90 %.3f; via proxy median %.3f ms p90 %.3f; added median %.3f ms"
              % (dm, q(direct), pm, q(proxied), pm - dm))

        # ---- CPU per short request ------------------------------------------
        nbody = json.dumps({"model": "claude-bench", "max_tokens": 16,
                            "messages": [{"role": "user", "content": "hi"}]}).encode()
        ng_workers = children_of(ng.pid)
        c0 = cpu_s(rpid); n0 = sum(cpu_s(p) for p in ng_workers)
        t0 = time.perf_counter()

        def worker(n):
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(request_bytes(port, nbody))
                while s.recv(65536):
                    pass
                s.close()
        ths = [threading.Thread(target=worker, args=(a.requests // 4,)) for _ in range(4)]
        [t.start() for t in ths]; [t.join() for t in ths]
        el = time.perf_counter() - t0
        n = (a.requests // 4) * 4
        print("short requests: %d in %.2f s (%.0f/s); responder CPU %.3f ms/request, nginx CPU %.3f ms/request"
              % (n, el, n / el, (cpu_s(rpid) - c0) * 1000 / n, (sum(cpu_s(p) for p in ng_workers) - n0) * 1000 / n))

        # ---- memory per open stream ------------------------------------------
        base = rss_kb(rpid)
        gate = "bench%d" % os.getpid()
        held = []
        body = json.dumps({"model": "claude-bench", "max_tokens": 16, "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        for i in range(a.streams):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(request_bytes(port, body, b"x-mock-behavior: gate=%s\r\n" % gate.encode()))
            held.append(s)
        # wait until the mock holds every stream at the gate
        end = time.time() + 60
        while time.time() < end:
            c = socket.create_connection(("127.0.0.1", mport))
            c.sendall(b"GET /_mock/wait?gate=%s&waiters=%d&timeout=5 HTTP/1.1\r\nHost: m\r\nconnection: close\r\n\r\n"
                      % (gate.encode(), a.streams))
            r = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                r += d
            c.close()
            if r.startswith(b"HTTP/1.1 200") or r.startswith(b"HTTP/1.0 200"):
                break
        time.sleep(0.5)
        peak = rss_kb(rpid)
        print("open streams: %d held; responder RSS %.1f MB -> %.1f MB: %.1f KB per stream (anon %.1f KB)"
              % (a.streams, base["Rss"] / 1024, peak["Rss"] / 1024, (peak["Rss"] - base["Rss"]) / a.streams,
                 (peak["Pss_Anon"] - base["Pss_Anon"]) / a.streams))
        c = socket.create_connection(("127.0.0.1", mport))
        c.sendall(b"POST /_mock/release?gate=%s&all=1 HTTP/1.1\r\nHost: m\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                  % gate.encode())
        while c.recv(65536):
            pass
        c.close()
        for s in held:
            s.settimeout(30)
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass
            s.close()
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
