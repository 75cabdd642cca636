"""More than one host: nginx's own upstream pool (conf/nginx/ccproxy-claude-pool.conf,
SERVICES=claude-pool) over two ccproxy-claude backends under spawn-fcgi on TCP, on
different loopback addresses (127.0.0.1 and 127.0.0.2), sharing SESSION_SECRET.

One backend is killed (SIGKILL) under a steady load: new requests keep succeeding (only
those in flight on the dead backend may fail), the stream that was open on it ends at
once for its client (never a hang) while the one on the other backend completes, and a
client key gets the same session id from either backend. Which backend served a request
is read from the kernel: the mock records the upstream connection's peer port, and that
socket belongs to exactly one backend process (/proc)."""

import threading

from harness import *
import adapters_support as sup

SECRET = "it-pool-secret-" + "5a5a" * 8
CHERRY_UA = "CherryStudio/1.5.3"


class Pool:
    def __init__(self, suite):
        self.suite = suite
        self.dir = os.path.join(suite.tmp, "pool")
        os.makedirs(self.dir, exist_ok=True)
        self.env = dict(minimal_env())
        self.env.update(BASE_ENV)
        self.env.update({"ANTHROPIC_BASE_URL": suite.mock.base, "SESSION_SECRET": SECRET, "WORKER_THREADS": "16"})
        self.backends = {}  # name -> (Proc, "host:port", stderr path)
        self.files = []
        self.nginx = None
        try:
            for name, host in (("a", "127.0.0.1"), ("b", "127.0.0.2")):
                self._start_backend(name, host)
            self._start_nginx()
        except Exception:
            self.stop()
            raise

    def _start_backend(self, name, host):
        last = ""
        for _ in range(3):
            port = free_port()
            errp = os.path.join(self.dir, "responder-%s.stderr" % name)
            f = open(errp, "ab")
            self.files.append(f)
            p = Proc("backend-" + name, ["spawn-fcgi", "-n", "-a", host, "-p", str(port), "--",
                                         str(service_bin("claude"))], env=self.env, cwd=self.dir, stdout=f, stderr=f)
            try:
                wait_for(lambda: can_connect((host, port)) or not p.alive(), 15, what="backend %s:%d" % (host, port))
            except HarnessError as e:
                last = str(e)
            if p.alive() and can_connect((host, port)):
                self.backends[name] = (p, "%s:%d" % (host, port), errp)
                return
            p.stop()
            last = last or Stack.file_tail(errp, 600)
        raise HarnessError("backend %s did not start: %s" % (name, last))

    def _start_nginx(self):
        ndir = os.path.join(self.dir, "nginx")
        os.makedirs(ndir, exist_ok=True)
        last = ""
        for _ in range(3):
            self.port = free_port()
            renv = minimal_env()
            renv.update({"SERVICES": "claude-pool", "CLAUDE_SERVICE_HOST": "127.0.0.1",
                         "CLAUDE_SERVICE_PORT": str(self.port), "HTTP_TIMEOUT": "30",
                         "CLAUDE_BACKENDS": " ".join(b[1] for b in self.backends.values())})
            r = subprocess.run(["sh", str(RENDER), ndir], env=renv, cwd=str(REPO), capture_output=True, timeout=30)
            if r.returncode != 0:
                raise HarnessError("render-nginx.sh SERVICES=claude-pool failed: %s" % r.stderr.decode()[-600:])
            conf = os.path.join(ndir, "nginx.conf")
            pool = open(os.path.join(ndir, "ccproxy-claude-pool.conf")).read()
            for b in self.backends.values():
                check("server %s " % b[1] in pool, "backend %s not in the rendered pool", b[1])
            pidfile = os.path.join(ndir, "nginx.pid")
            if os.path.exists(pidfile):
                os.unlink(pidfile)
            self.nginx_err = os.path.join(ndir, "logs", "error.log")
            f = open(os.path.join(self.dir, "nginx.stderr"), "ab")
            self.files.append(f)
            self.nginx = Proc("nginx", ["nginx", "-p", ndir, "-c", conf, "-e", self.nginx_err, "-g", "daemon off;"],
                              cwd=ndir, env=minimal_env(), stdout=f, stderr=f)
            up = lambda: os.path.exists(pidfile) and can_connect(("127.0.0.1", self.port))
            try:
                wait_for(lambda: up() or not self.nginx.alive(), 15, what="nginx (pool) on %d" % self.port)
            except HarnessError as e:
                last = str(e)
            if self.nginx.alive() and up():
                return
            self.nginx.stop()
            last = last or Stack.file_tail(self.nginx_err)
        raise HarnessError("nginx (pool) did not start: %s" % last)

    def request(self, method, path, headers=(), body=None, timeout=30.0):
        return request(self.port, method, path, headers, body, timeout=timeout)

    def open(self, method, path, headers=(), body=None, timeout=30.0):
        c = Conn(self.port, timeout=timeout)
        c.send_request(method, path, headers, body)
        return c

    def backend_of(self, peer):
        """The backend whose process owns the upstream connection the mock saw from `peer`."""
        port = int(peer.rsplit(":", 1)[1])
        inodes = set()
        for tbl in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = open(tbl).read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                lport = int(f[1].rsplit(":", 1)[1], 16)
                rport = int(f[2].rsplit(":", 1)[1], 16)
                if lport == port and rport == self.suite.mock.port:
                    inodes.add(f[9])
        for name, (p, _, _) in self.backends.items():
            try:
                fds = os.listdir("/proc/%d/fd" % p.pid)
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink("/proc/%d/fd/%s" % (p.pid, fd))
                except OSError:
                    continue
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return name
        return None

    def stop(self):
        if self.nginx is not None:
            self.nginx.stop()
        for p, _, _ in self.backends.values():
            p.stop()
        for f in self.files:
            f.close()
        remove_counters_files(self)

    def all_logs(self):
        """(path, text) of each backend's log, for remove_counters_files."""
        return [(e, Stack.file_tail(e, 1 << 30)) for _, _, e in self.backends.values()]


def _pool(s):
    p = getattr(s, "_pool", None)
    if p is None:
        if not can_connect_any_127_0_0_2():
            raise Skip("127.0.0.2 is not usable on this host's loopback")
        p = Pool(s)
        s._pool = p
        old_close = s.close

        def close(keep=False):
            try:
                p.stop()
            finally:
                old_close(keep)
        s.close = close
    return p


def can_connect_any_127_0_0_2():
    t = socket.socket()
    try:
        t.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False
    finally:
        t.close()


def test_pool_same_session_from_either_backend(s):
    """The same client key, CherryStudio: metadata.user_id is the one the spec derives with
    the shared SESSION_SECRET, whichever backend served (both must have served)."""
    pool = _pool(s)
    spec = sup.adapter_spec("cherry_studio")
    sess = sup.step_params(spec, "session")
    clock = sup.Clock()
    seen = {}
    for i in range(12):
        mid = new_id("pool")
        body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "system": "sys",
                "messages": [{"role": "user", "content": "hi %d" % i}], "stream": True}
        # a gate keeps the upstream connection open until the backend is identified
        c = pool.open("POST", "/v1/messages", api_headers(mock_id=mid, behavior="gate=" + mid,
                                                          extra=[("user-agent", CHERRY_UA)]),
                      json.dumps(body).encode(), timeout=20)
        try:
            rec = wait_record(s, mid, "gate_waiting", 10)
            who = pool.backend_of(rec["peer"])
            s.mock.release(mid, all=True)
            c.read_head()
            r = c.response()
        finally:
            c.close()
        eq(r.status, 200, "request %d status" % i)
        uid = sup.upstream_json(wait_record(s, mid), "pool cherry")["metadata"]["user_id"]
        seen.setdefault(who, []).append(uid)
        if "a" in seen and "b" in seen and len(seen["a"]) + len(seen["b"]) >= 4:
            break
    clock.stop()
    check(None not in seen, "a request's upstream connection belonged to no backend (%r)", seen.get(None))
    check("a" in seen and "b" in seen, "12 requests were all served by backend %s (round-robin expected)", list(seen))
    want = clock.user_ids(CLIENT_KEY, sess, secret=SECRET, default_purpose="cherry_studio")
    ids = seen["a"] + seen["b"]
    for uid in ids:
        check(uid in want, "user_id %r is not the spec's id with the shared SESSION_SECRET (%r)", uid, want)
    if len(want) == 1:
        eq(len(set(ids)), 1, "one session id from both backends")
    unsalted = clock.user_ids(CLIENT_KEY, sess, default_purpose="cherry_studio")
    check(not set(ids) & set(unsalted), "the ids ignore SESSION_SECRET")
    return "backend a served %d, b served %d, one id" % (len(seen["a"]), len(seen["b"]))


def test_pool_backend_killed_under_load(s):
    pool = _pool(s)
    gate = new_id("poolgate")
    # 1. one gated stream open on each backend (nginx's two workers each round-robin, so
    #    open streams until both backends hold one; at most 8)
    streams = {}  # backend -> (conn, mid)
    extra = []
    for i in range(8):
        mid = new_id("ps")
        c = pool.open("POST", "/v1/messages", api_headers(mock_id=mid, behavior="gate=%s,deltas=6" % gate),
                      message_body(stream=True), timeout=20)
        c.read_head()
        eq(c.status, 200, "stream status")
        check(c.read_event() is not None, "first event of stream %d" % i)
        rec = wait_record(s, mid, "gate_waiting", 10)
        who = pool.backend_of(rec["peer"])
        check(who is not None, "stream %d: its upstream connection belongs to no backend", i)
        if who in streams:
            extra.append((c, mid, who))
        else:
            streams[who] = (c, mid)
        if len(streams) == 2:
            break
    check(len(streams) == 2, "8 streams all went to backend %s", list(streams))

    # 2. steady load: 3 threads x 25 short requests; the kill happens once 15 completed
    results = []  # (started, ended, status or exception)
    lock = threading.Lock()
    done15 = threading.Event()
    kill_at = [None]

    def worker(k):
        for j in range(25):
            t0 = time.monotonic()
            try:
                r = pool.request("POST", "/v1/messages", api_headers(), message_body(text="load %d %d" % (k, j)),
                                 timeout=20)
                res = r.status if r.clean_end else "cut %d" % r.status
            except Exception as e:  # reported below
                res = "%s: %s" % (type(e).__name__, e)
            with lock:
                results.append((t0, time.monotonic(), res))
                if len(results) >= 15:
                    done15.set()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(3)]
    for t in threads:
        t.start()
    check(done15.wait(30), "the load did not get going (%d requests in 30 s)", len(results))
    dead = pool.backends["a"][0]
    kill_at[0] = time.monotonic()
    dead.stop(signal.SIGKILL, grace=2)
    killed_at = time.monotonic()

    # 3. the stream on the dead backend ends for its client at once (no hang)
    c, mid = streams["a"]
    t0 = time.monotonic()
    ended = None
    try:
        c.sock.settimeout(10)
        c.read_all()
        ended = "clean end" if c.clean_end else "cut"
    except EOFError:
        ended = "connection closed"
    except socket.timeout:
        raise AssertionError("the stream on the killed backend still hangs 10 s after the kill")
    finally:
        c.close()
    took = time.monotonic() - t0
    check(took < 5, "the stream on the killed backend took %.1fs to end", took)
    # nginx ends the chunked response properly when its FastCGI backend vanishes, so the
    # client tells a cut stream by the missing message_stop (or an error event, or a cut)
    names = [n for n, _ in parse_events(bytes(c.body_so_far))]
    check("message_stop" not in names, "the stream on the killed backend reached message_stop: %r", names)
    if ended == "clean end" and names and names[-1] == "error":
        ended = "error event"
    ended += " after events %s" % ",".join(n or "?" for n in names)

    for t in threads:
        t.join(60)
    check(not any(t.is_alive() for t in threads), "the load did not finish within 60 s")

    # 4. the stream on the living backend completes intact
    s.mock.release(gate, all=True)
    c, mid = streams["b"]
    try:
        body = c.read_all()
        check(c.clean_end, "the stream on the living backend did not end cleanly")
    finally:
        c.close()
    same_bytes(body, rec_response(wait_record(s, mid)), "stream on the living backend")
    for c, _, _ in extra:
        c.close()

    # 5. verdict on the load: failures only among requests in flight at the kill
    bad_after = [(round(a - killed_at, 3), r) for a, e, r in results if a > killed_at and r != 200]
    bad_in_flight = [(round(a - killed_at, 3), r) for a, e, r in results if a <= killed_at < e and r != 200]
    bad_before = [r for a, e, r in results if e < kill_at[0] and r != 200]
    eq(len(results), 75, "requests made")
    check(not bad_before, "requests failed before the kill: %r", bad_before[:3])
    check(not bad_after, "%d request(s) started after the kill failed: %r", len(bad_after), bad_after[:3])
    check(len(bad_in_flight) <= 3, "more failures than requests in flight: %r", bad_in_flight)
    after = [r for a, e, r in results if a > killed_at]
    check(after, "no request started after the kill (the load ended too early)")
    # and from now on, everything goes to the survivor
    for i in range(6):
        mid = new_id()
        r = pool.request("POST", "/v1/messages", api_headers(mock_id=mid), message_body(), timeout=20)
        eq(r.status, 200, "request %d after the load" % i)
    return ("%d requests, %d after the kill all 200, %d in-flight failures; the dead backend's stream: %s "
            "after %.3fs" % (len(results), len(after), len(bad_in_flight), ended, took))


test_pool_backend_killed_under_load.timeout = 120
