"""Integration harness: mock upstream + ccproxy-claude or ccproxy-codex behind a web server
(nginx + spawn-fcgi, or lighttpd spawning the responder itself), on loopback.

Standard library only. A `Suite` owns one mock upstream (shared: every test request
carries its own `x-mock-id`) and lazily started `Stack`s, one per configuration
(see STACKS) and web server (`Suite.web`: the runner runs the server-dependent modules
once per entry of CCPROXY_WEB_SERVERS). Everything it starts runs in its own process group and is stopped by
`Suite.close()`, which the runner calls in a `finally` (also on failure, Ctrl-C and
SIGTERM).

Also here: a small raw-socket HTTP/1.1 client (exact control over headers, bodies,
incremental reading of SSE events, closing mid-stream) and the plain-CGI runner.
"""

import base64
import subprocess as _sp
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MOCK = REPO / "tests" / "mock_upstream.py"
RENDER = REPO / "scripts" / "render-nginx.sh"
RENDER_LIGHTTPD = REPO / "scripts" / "render-lighttpd.sh"

# The web servers a stack can run behind; CCPROXY_WEB_SERVERS selects (default: all).
WEB_SERVERS = ("nginx", "lighttpd")


def web_servers():
    """The web servers of this run, from CCPROXY_WEB_SERVERS ("nginx lighttpd" by default)."""
    raw = os.environ.get("CCPROXY_WEB_SERVERS")
    if raw is None or not raw.strip():
        return list(WEB_SERVERS)
    out = []
    for w in raw.replace(",", " ").split():
        if w not in WEB_SERVERS:
            raise HarnessError("CCPROXY_WEB_SERVERS: unknown web server %r (known: %s)" % (w, " ".join(WEB_SERVERS)))
        if w not in out:
            out.append(w)
    return out


def bin_dir():
    d = Path(os.environ.get("CCPROXY_BIN_DIR") or "build/bin")
    return d if d.is_absolute() else REPO / d


def claude_bin():
    return bin_dir() / "ccproxy-claude"


def service_bin(service="claude"):
    return bin_dir() / ("ccproxy-" + service)


# Keys used by the suite: the log test greps every log for each of them.
CLIENT_KEY = "sk-ant-api03-CLIENTKEY-" + "a1b2c3d4e5f6" * 4
BEARER_KEY = "sk-ant-api03-BEARERKEY-" + "0f1e2d3c4b5a" * 4
BARE_KEY = "sk-ant-api03-BAREKEY-" + "9a8b7c6d5e4f" * 4
SERVER_KEY = "sk-ant-api03-SERVERKEY-" + "5e5e5e5e5e5e" * 4
ACCESS_PLAIN = "ccp-access-plain-" + "77aa" * 8
ACCESS_HASHED = "ccp-access-hashed-" + "88bb" * 8
ACCESS_WRONG = "ccp-access-wrong-" + "99cc" * 8
# the Codex service's (OpenAI-style keys)
OA_CLIENT_KEY = "sk-proj-OACLIENTKEY-" + "c0ffee1234ab" * 4
OA_OTHER_KEY = "sk-proj-OAOTHERKEY-" + "beef56789cd0" * 4
OA_SERVER_KEY = "sk-proj-OASERVERKEY-" + "d00d9876fedc" * 4
ALL_KEYS = {CLIENT_KEY, BEARER_KEY, BARE_KEY, SERVER_KEY, ACCESS_PLAIN, ACCESS_HASHED, ACCESS_WRONG,
            OA_CLIENT_KEY, OA_OTHER_KEY, OA_SERVER_KEY}

ALLOWED_ORIGIN = "https://allowed.example"


def sha256_hex(s):
    return hashlib.sha256(s.encode() if isinstance(s, str) else s).hexdigest()


# name -> dict(env=..., upstream_path=..., upstream="mock"|"closed", service="claude"|"codex")
# A codex stack's OPENAI_BASE_URL is the mock + upstream_path (default "/v1").
CODEX_CWD = "/home/dev/cc-proxy-it"
CODEX_ENV = {"CODEX_ENV_CWD": CODEX_CWD}
STACKS = {
    # the default deployment: client keys pass through, generous timeouts
    "main": dict(env={"CORS_ALLOW_ORIGINS": ALLOWED_ORIGIN, "WORKER_THREADS": "256"}),
    # server-held key; clients must present a key from ACCESS_KEYS
    "serverkey": dict(env={"ANTHROPIC_API_KEY": SERVER_KEY,
                           "ACCESS_KEYS": "%s,sha256:%s" % (ACCESS_PLAIN, sha256_hex(ACCESS_HASHED))}),
    # mounted under /claude, upstream base URL with a path
    "prefix": dict(env={"BASE_PATH": "/claude"}, upstream_path="/api"),
    # tiny body limit, two worker threads (keep-alive reuse is observable)
    "small": dict(env={"MAX_BODY_BYTES": "4096", "WORKER_THREADS": "2"}),
    # upstream idle timeout of 1 s
    "timeout": dict(env={"HTTP_TIMEOUT": "1"}),
    # an idle timeout that a big transfer through a loaded machine does not reach by itself
    "timeout5": dict(env={"HTTP_TIMEOUT": "5"}),
    # upstream is a closed port
    "down": dict(upstream="closed", env={"HTTP_CONNECT_TIMEOUT": "3"}),
    # the responder gets killed by its test (nginx's own 502)
    "killable": dict(env={}),
    # the responder gets SIGTERM while a stream runs (drain)
    "drain": dict(env={}),
    # issue 9 (test_scale): few request threads (2 started, 4 at most) under hundreds of
    # streams; the default stream ceiling; an idle timeout well above a paused stream's wait
    "scale": dict(env={"WORKER_THREADS": "4", "HTTP_TIMEOUT": "90"}),
    # a small stream ceiling: the 6th stream at once gets a 503
    "ceiling": dict(env={"WORKER_THREADS": "4", "MAX_STREAMS": "5"}),

    # issue 13 (test_limits): every limit small, so that a test meets the responder's
    # limit before the web server's own (nginx: 64 KiB a header line, 512 KiB in all;
    # lighttpd: 64 KiB for the request line and headers together)
    "limits": dict(env={"MAX_HEADER_COUNT": "40", "MAX_HEADER_BYTES": "2048", "MAX_HEADER_TOTAL_BYTES": "8192",
                        "MAX_JSON_DEPTH": "16", "MAX_SSE_EVENT_BYTES": "65536", "WORKER_THREADS": "2"}),

    # ---- ccproxy-codex
    # the default deployment: OPENAI_BASE_URL ends in /v1, client keys pass through
    "codex": dict(service="codex", env=dict(CODEX_ENV, CORS_ALLOW_ORIGINS=ALLOWED_ORIGIN, WORKER_THREADS="64")),
    # OPENAI_BASE_URL without /v1 (the responder adds it)
    "codex_bare": dict(service="codex", env=dict(CODEX_ENV), upstream_path=""),
    # mounted under /codex; the upstream base has a path of its own, with /v1
    "codex_prefix": dict(service="codex", env=dict(CODEX_ENV, BASE_PATH="/codex"), upstream_path="/openai/v1/"),
    # server-held OPENAI_API_KEY; clients present a key from ACCESS_KEYS
    "codex_serverkey": dict(service="codex", env=dict(CODEX_ENV, OPENAI_API_KEY=OA_SERVER_KEY,
                                                      ACCESS_KEYS="%s,sha256:%s" % (ACCESS_PLAIN, sha256_hex(ACCESS_HASHED)))),
    "codex_small": dict(service="codex", env=dict(CODEX_ENV, MAX_BODY_BYTES="4096", WORKER_THREADS="2")),
    "codex_timeout": dict(service="codex", env=dict(CODEX_ENV, HTTP_TIMEOUT="1")),
    "codex_timeout5": dict(service="codex", env=dict(CODEX_ENV, HTTP_TIMEOUT="5")),
    "codex_down": dict(service="codex", upstream="closed", env=dict(CODEX_ENV, HTTP_CONNECT_TIMEOUT="3")),
    "codex_killable": dict(service="codex", env=dict(CODEX_ENV)),
    "codex_ceiling": dict(service="codex", env=dict(CODEX_ENV, WORKER_THREADS="4", MAX_STREAMS="5")),
    "codex_limits": dict(service="codex", env=dict(CODEX_ENV, MAX_HEADER_COUNT="40", MAX_SSE_EVENT_BYTES="65536",
                                                   MAX_AGGREGATE_BYTES="65536", MAX_STEP_OUTPUTS="100",
                                                   WORKER_THREADS="2")),
}

BASE_ENV = {
    "ENVIRONMENT": "test",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "debug",
    "HTTP_TIMEOUT": "30",
    "HTTP_CONNECT_TIMEOUT": "5",
}


class HarnessError(Exception):
    pass


class Skip(Exception):
    """Raised by a test that does not apply here (a tool is missing): the runner prints
    SKIP with the reason and counts it neither passed nor failed."""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def closed_port():
    """A loopback port with nothing listening (bound then released)."""
    return free_port()


def wait_for(pred, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise HarnessError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def can_connect(addr):
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


def minimal_env():
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
           "LANG": "C.UTF-8"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TMPDIR"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


class Proc:
    """A child in its own process group; stop() ends that group only."""

    def __init__(self, name, argv, env=None, cwd=None, stdout=None, stderr=None, stdin=None):
        self.name = name
        self.argv = argv
        self.p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL if stdin is None else stdin,
                                  stdout=stdout or subprocess.DEVNULL,
                                  stderr=stderr or subprocess.DEVNULL,
                                  start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def send_signal(self, sig):
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, sig=signal.SIGTERM, grace=5.0):
        if self.p.poll() is None:
            self.send_signal(sig)
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left of the group (children that outlived the leader)
        self.send_signal(signal.SIGKILL)
        try:
            self.p.wait(2)
        except subprocess.TimeoutExpired:
            pass


# --------------------------------------------------------------------------- HTTP


class Response:
    def __init__(self, status, reason, headers, body, clean_end=True):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.clean_end = clean_end

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise AssertionError("body is not JSON (status %d): %r" % (self.status, self.body[:300]))

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


class Conn:
    """One raw HTTP/1.1 exchange over a TCP (or unix) socket."""

    def __init__(self, port, host="127.0.0.1", timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.port = port
        self.status = None
        self.headers = None
        self._pieces = None
        self._ebuf = bytearray()
        self.body_so_far = bytearray()
        self.clean_end = None

    # -- sending
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_request(self, method, path, headers=(), body=None, host=None, close=True):
        body = body.encode() if isinstance(body, str) else body
        names = {k.lower() for k, _ in headers}
        lines = ["%s %s HTTP/1.1" % (method, path)]
        if "host" not in names:
            lines.append("Host: %s" % (host or "127.0.0.1:%d" % self.port))
        for k, v in headers:
            lines.append("%s: %s" % (k, v))
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            lines.append("Content-Length: %d" % len(body))
        elif body is None and method in ("POST", "PUT", "PATCH") and "content-length" not in names:
            lines.append("Content-Length: 0")
        if close and "connection" not in names:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        self.sock.sendall(head + (body or b""))

    # -- receiving
    def _recv(self):
        d = self.sock.recv(262144)
        if not d:
            raise EOFError("connection closed by server")
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line.rstrip(b"\r\n")
            self._recv()

    def _exact(self, n):
        while len(self.buf) < n:
            self._recv()
        d = bytes(self.buf[:n])
        del self.buf[:n]
        return d

    def read_head(self):
        while True:
            line = self._line()
            parts = line.decode("latin-1").split(" ", 2)
            status = int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            while True:
                h = self._line()
                if not h:
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers.append((k.strip(), v.strip()))
            if 100 <= status < 200:
                continue
            self.status, self.reason, self.headers = status, reason, headers
            self._pieces = self._body_gen()
            return status, headers

    def header(self, name):
        for k, v in self.headers or ():
            if k.lower() == name.lower():
                return v
        return None

    def _body_gen(self):
        te = (self.header("transfer-encoding") or "").lower()
        cl = self.header("content-length")
        self.clean_end = False
        if "chunked" in te:
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line():
                        pass
                    self.clean_end = True
                    return
                yield self._exact(size)
                self._exact(2)
        elif cl is not None:
            left = int(cl)
            while left > 0:
                if not self.buf:
                    self._recv()
                d = bytes(self.buf[:left])
                del self.buf[:len(d)]
                left -= len(d)
                yield d
            self.clean_end = True
        else:
            while True:
                if self.buf:
                    d = bytes(self.buf)
                    self.buf.clear()
                    yield d
                try:
                    self._recv()
                except EOFError:
                    self.clean_end = True
                    return

    def read_piece(self):
        """Next piece of the decoded body, or None at its (clean) end. EOFError if cut."""
        try:
            d = next(self._pieces)
        except StopIteration:
            return None
        self.body_so_far += d
        return d

    def read_event(self):
        """The next complete SSE event (bytes up to and including the blank line),
        or the trailing remainder / None at the end of the body."""
        while True:
            i = self._ebuf.find(b"\n\n")
            if i >= 0:
                ev = bytes(self._ebuf[:i + 2])
                del self._ebuf[:i + 2]
                return ev
            d = self.read_piece()
            if d is None:
                if self._ebuf:
                    ev = bytes(self._ebuf)
                    self._ebuf.clear()
                    return ev
                return None
            self._ebuf += d

    def read_all(self):
        while self.read_piece() is not None:
            pass
        return bytes(self.body_so_far)

    def response(self):
        body = self.read_all()
        return Response(self.status, self.reason, self.headers, body, self.clean_end)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def request(port, method, path, headers=(), body=None, timeout=30.0, host=None):
    c = Conn(port, timeout=timeout)
    try:
        c.send_request(method, path, headers, body, host=host)
        c.read_head()
        return c.response()
    finally:
        c.close()


def api_headers(key=CLIENT_KEY, mock_id=None, behavior=None, extra=(), version=True,
                content_type=True):
    h = []
    if key is not None:
        h.append(("x-api-key", key))
    if version:
        h.append(("anthropic-version", "2023-06-01"))
    if content_type:
        h.append(("content-type", "application/json"))
    if mock_id:
        h.append(("x-mock-id", mock_id))
    if behavior:
        h.append(("x-mock-behavior", behavior))
    h.extend(extra)
    return h


def message_body(stream=False, model="claude-sonnet-4-20250514", text="Hello, Claude", **extra):
    obj = {"model": model, "max_tokens": 1024,
           "messages": [{"role": "user", "content": text}]}
    if stream:
        obj["stream"] = True
    obj.update(extra)
    return json.dumps(obj).encode()


def oa_headers(key=OA_CLIENT_KEY, mock_id=None, behavior=None, extra=(), bearer=True, content_type=True,
               user_agent=None):
    """Request headers of an OpenAI-style client (Authorization: Bearer)."""
    h = []
    if key is not None:
        h.append(("authorization", ("Bearer " + key) if bearer else key))
    if content_type:
        h.append(("content-type", "application/json"))
    if user_agent:
        h.append(("user-agent", user_agent))
    if mock_id:
        h.append(("x-mock-id", mock_id))
    if behavior:
        h.append(("x-mock-behavior", behavior))
    h.extend(extra)
    return h


def responses_body(stream=False, model="gpt-5-codex", text="Hello, Codex", **extra):
    obj = {"model": model, "input": text}
    if stream is not None:
        obj["stream"] = stream
    obj.update(extra)
    return json.dumps(obj).encode()


def new_id(prefix="t"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:16])


# --------------------------------------------------------------------------- mock


class Mock:
    def __init__(self, tmp, name="mock"):
        self.name = name
        self.port_file = os.path.join(tmp, "%s.port" % name)
        self.log = open(os.path.join(tmp, "%s.stderr" % name), "wb")
        self.proc = Proc("mock", [sys.executable, str(MOCK), "--port", "0",
                                  "--port-file", self.port_file],
                         env=minimal_env(), stderr=self.log)
        wait_for(lambda: os.path.exists(self.port_file) or not self.proc.alive(), 10,
                 what="mock port file")
        if not self.proc.alive():
            raise HarnessError("mock upstream exited at start")
        self.port = int(open(self.port_file).read())
        self.base = "http://127.0.0.1:%d" % self.port

    def call(self, method, path, timeout=30.0):
        r = request(self.port, method, path, timeout=timeout)
        return r.status, r.json()

    def records(self, mock_id=None):
        q = "/_mock/requests" + ("?id=%s" % mock_id if mock_id else "")
        return self.call("GET", q)[1]["requests"]

    def record(self, mock_id):
        recs = self.records(mock_id)
        if not recs:
            raise AssertionError("the mock received no request with x-mock-id %s" % mock_id)
        return recs[-1]

    def wait(self, mock_id, state="finished", timeout=10.0):
        st, obj = self.call("GET", "/_mock/wait?id=%s&state=%s&timeout=%s" % (mock_id, state, timeout),
                            timeout=timeout + 10)
        return st == 200, obj.get("request")

    def wait_gate(self, gate, waiters=1, timeout=10.0):
        st, obj = self.call("GET", "/_mock/wait?gate=%s&waiters=%d&timeout=%s" % (gate, waiters, timeout),
                            timeout=timeout + 10)
        return st == 200, obj.get("waiting")

    def release(self, gate, n=1, all=False):
        self.call("POST", "/_mock/release?gate=%s&%s" % (gate, "all=1" if all else "n=%d" % n))

    def behave(self, behavior=""):
        """The behaviour of every request without x-mock-behavior ("" : a healthy upstream)."""
        from urllib.parse import quote
        self.call("POST", "/_mock/behavior?set=%s" % quote(behavior))

    def stop(self):
        self.proc.stop()
        self.log.close()


def rec_headers(rec):
    """Upstream request headers recorded by the mock, as {lowercase name: [values]}."""
    out = {}
    for k, v in rec["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def rec_body(rec):
    return base64.b64decode(rec.get("body_b64") or "")


def rec_response(rec):
    return base64.b64decode(rec["response_b64"])


# --------------------------------------------------------------------------- stack


class Stack:
    """ccproxy-claude or ccproxy-codex under spawn-fcgi + nginx rendered by
    scripts/render-nginx.sh (SERVICES=<that service>). LighttpdStack is the lighttpd variant."""

    web = "nginx"

    def __init__(self, suite, name, env=None, upstream="mock", upstream_path="", service="claude"):
        if service not in ("claude", "codex"):
            raise HarnessError("unknown service %r" % service)
        self.suite = suite
        self.name = name
        self.service = service
        self.dir = os.path.join(suite.tmp, name)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "%s.sock" % service)
        self.stderr_path = os.path.join(self.dir, "responder.stderr")
        self.nginx_dir = os.path.join(self.dir, "nginx")
        os.makedirs(self.nginx_dir)
        self.responder = None
        self.nginx = None
        if upstream == "closed":
            self.upstream_port = closed_port()
        else:
            self.upstream_port = suite.mock.port
        self.upstream_url = "http://127.0.0.1:%d%s" % (self.upstream_port, upstream_path)
        self.env = dict(BASE_ENV)
        self.env["OPENAI_BASE_URL" if service == "codex" else "ANTHROPIC_BASE_URL"] = self.upstream_url
        self.env.update(env or {})
        self.port = None

    def responder_env(self):
        env = minimal_env()
        env.update(self.env)
        return env

    @property
    def binary(self):
        return service_bin(self.service)

    def start(self):
        b = self.binary
        if not os.access(b, os.X_OK):
            raise HarnessError("responder binary %s not built (run make)" % b)
        if not os.access(RENDER, os.R_OK):
            raise HarnessError("%s missing" % RENDER)
        self.start_responder()
        self.start_nginx()

    def listen_socket(self):
        """The responders' FastCGI listen socket, made as spawn-fcgi makes it (for
        add_responder: several processes on one socket, as spawn-fcgi -F N runs them)."""
        if getattr(self, "_listen", None) is None:
            if os.path.exists(self.sock):
                os.unlink(self.sock)
            ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            ls.bind(self.sock)
            os.chmod(self.sock, 0o666)
            ls.listen(8192)
            self._listen = ls
        return self._listen

    def add_responder(self, stderr_path=None):
        """Another responder process on the stack's listen socket (fd 0, as spawn-fcgi
        -F N hands it to each child). Stopped with the stack. Returns its Proc."""
        ls = self.listen_socket()
        f = open(stderr_path or self.stderr_path, "ab")
        self._extra_files = getattr(self, "_extra_files", []) + [f]
        p = Proc("responder", [str(self.binary)], env=self.responder_env(), cwd=self.dir, stdout=f, stderr=f,
                 stdin=ls.fileno())
        self.extra_responders = getattr(self, "extra_responders", []) + [p]
        return p

    def start_responder(self):
        if getattr(self, "responders", 1) > 1:
            # spawn-fcgi -F N: N processes on one listen socket
            for i in range(self.responders):
                self.add_responder()
            self.responder = self.extra_responders[0]
            wait_for(lambda: can_connect(self.sock), 15, what="responder socket %s" % self.sock)
            return
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self._stderr = open(self.stderr_path, "ab")
        self.responder = Proc("responder", ["spawn-fcgi", "-n", "-b", "8192", "-s", self.sock, "-M", "0666",
                                            "--", str(self.binary)],
                              env=self.responder_env(), cwd=self.dir,
                              stdout=self._stderr, stderr=self._stderr)
        try:
            wait_for(lambda: can_connect(self.sock) or not self.responder.alive(), 15,
                     what="responder socket %s" % self.sock)
        except HarnessError:
            raise HarnessError("responder did not listen: %s" % self.stderr_tail())
        if not self.responder.alive():
            raise HarnessError("responder exited at start (rc %s): %s"
                               % (self.responder.p.returncode, self.stderr_tail()))

    def start_nginx(self):
        last = ""
        for attempt in range(3):
            self.port = free_port()
            renv = minimal_env()
            other = "codex" if self.service == "claude" else "claude"
            up, oup = self.service.upper(), other.upper()
            renv.update({
                "%s_SERVICE_HOST" % up: "127.0.0.1",
                "%s_SERVICE_PORT" % up: str(self.port),
                "%s_FCGI_SOCKET" % up: self.sock,
                "HTTP_TIMEOUT": self.env.get("HTTP_TIMEOUT", "30"),
                # one service per stack; should the other block be rendered anyway,
                # keep it off fixed ports
                "SERVICES": self.service,
                "%s_SERVICE_HOST" % oup: "127.0.0.1",
                "%s_SERVICE_PORT" % oup: str(free_port()),
                "%s_FCGI_SOCKET" % oup: os.path.join(self.dir, "%s.sock" % other),
            })
            for k in ("MAX_BODY_BYTES", "BASE_PATH", "UPSTREAM_MAX_ATTEMPTS"):
                if k in self.env:
                    renv[k] = self.env[k]
            r = subprocess.run(["bash", str(RENDER), self.nginx_dir], env=renv, cwd=str(REPO),
                               capture_output=True, timeout=30)
            if r.returncode != 0:
                raise HarnessError("render-nginx.sh failed (%d): %s" % (r.returncode, r.stderr.decode()[-800:]))
            conf = os.path.join(self.nginx_dir, "nginx.conf")
            os.makedirs(os.path.join(self.nginx_dir, "logs"), exist_ok=True)
            self.nginx_err = os.path.join(self.nginx_dir, "logs", "error.log")
            self._nginx_out = open(os.path.join(self.dir, "nginx.stderr"), "ab")
            pidfile = os.path.join(self.nginx_dir, "nginx.pid")
            if os.path.exists(pidfile):  # a stale one from a failed attempt; before the start
                os.unlink(pidfile)
            self.nginx = Proc("nginx", ["nginx", "-p", self.nginx_dir, "-c", conf, "-e", self.nginx_err,
                                        "-g", "daemon off;"],
                              cwd=self.nginx_dir, env=minimal_env(),
                              stdout=self._nginx_out, stderr=self._nginx_out)
            # nginx writes its pid file only once every listen socket is bound (a failed
            # bind is retried for a few seconds before it gives up)
            up = lambda: os.path.exists(pidfile) and can_connect(("127.0.0.1", self.port))
            try:
                wait_for(lambda: up() or not self.nginx.alive(), 15, what="nginx on port %d" % self.port)
            except HarnessError as e:
                last = str(e)
            if self.nginx.alive() and up():
                return
            self.nginx.stop()
            last = last or self.file_tail(self.nginx_err) + self.file_tail(os.path.join(self.dir, "nginx.stderr"))
        raise HarnessError("nginx did not start: %s" % last)

    @staticmethod
    def file_tail(path, n=1500):
        try:
            with open(path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, n=1500):
        return self.file_tail(self.stderr_path, n)

    def log_text(self):
        return self.file_tail(self.stderr_path, 1 << 30)

    def log_lines(self):
        out = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def all_logs(self):
        """(path, text) of every log this stack wrote."""
        paths = [self.stderr_path, os.path.join(self.dir, "nginx.stderr")]
        logs = os.path.join(self.nginx_dir, "logs")
        if os.path.isdir(logs):
            paths += [os.path.join(logs, f) for f in os.listdir(logs)]
        return [(p, self.file_tail(p, 1 << 30)) for p in paths if os.path.isfile(p)]

    def url(self, path):
        return path

    def _dead(self):
        out = []
        for p in (self.nginx, self.responder):
            if p is not None and not p.alive():
                out.append("%s (pid %d) is gone, exit status %s" % (p.name, p.pid, p.p.returncode))
        return out

    def _explain(self, e):
        dead = self._dead()
        if dead:
            raise HarnessError("stack %s: %s (%s); nginx error log: %s" % (
                self.name, "; ".join(dead), e, self.file_tail(self.nginx_err, 300).strip()))
        raise e

    def request(self, method, path, headers=(), body=None, timeout=30.0, host=None):
        try:
            return request(self.port, method, path, headers, body, timeout=timeout, host=host)
        except (ConnectionRefusedError, ConnectionResetError, EOFError) as e:
            self._explain(e)

    def open(self, method, path, headers=(), body=None, timeout=30.0):
        try:
            c = Conn(self.port, timeout=timeout)
        except ConnectionRefusedError as e:
            self._explain(e)
        c.send_request(method, path, headers, body)
        return c

    def kill_responder(self):
        if self.responder:
            self.responder.stop(signal.SIGKILL, grace=2)

    def stop(self):
        for p in [self.nginx, self.responder] + getattr(self, "extra_responders", []):
            if p is not None:
                p.stop(signal.SIGTERM, grace=5)
        for f in ("_stderr", "_nginx_out"):
            if hasattr(self, f):
                getattr(self, f).close()
        for f in getattr(self, "_extra_files", []):
            f.close()
        if getattr(self, "_listen", None) is not None:
            self._listen.close()
            self._listen = None
        remove_counters_files(self)


COUNTERS_LINE = re.compile(r'"event":"metrics".*?counters shared through (/[^"]+\.metrics)"')


def remove_counters_files(st):
    """The shared counters files the stack's responders named at start-up: a responder
    that was killed leaves its file (a dead process keeps its counts), which the next
    stack, on another socket, never reuses."""
    try:
        texts = [t for _, t in st.all_logs()]
    except Exception:
        return
    for t in texts:
        for path in set(COUNTERS_LINE.findall(t)):
            try:
                os.unlink(path)
            except OSError:
                pass


# --------------------------------------------------------------------------- lighttpd


class SpawnedResponder:
    """A responder that lighttpd spawned (mod_fastcgi bin-path), known by the pid its
    wrapper recorded before exec. The surface of Proc the tests use: pid, alive(),
    send_signal(), stop(), and p.wait()/p.poll()/p.returncode (its exit status belongs to
    lighttpd, its parent: returncode stays None)."""

    def __init__(self, name, pid, binary):
        self.name = name
        self.pid = pid
        self.binary = str(binary)
        self.returncode = None
        self.p = self

    def alive(self):
        try:
            with open("/proc/%d/stat" % self.pid, "rb") as f:
                stat = f.read()
            with open("/proc/%d/cmdline" % self.pid, "rb") as f:
                cmd = f.read().split(b"\0")[0].decode("utf-8", "replace")
        except OSError:
            return False
        if cmd != self.binary and cmd:  # a reused pid
            return False
        state = stat[stat.rfind(b")") + 2:][:1]
        if state not in (b"Z", b"X"):
            return True
        # a zombie leader whose other threads still exit still holds its files (the socket)
        try:
            for t in os.listdir("/proc/%d/task" % self.pid):
                with open("/proc/%d/task/%s/stat" % (self.pid, t), "rb") as f:
                    ts = f.read()
                if ts[ts.rfind(b")") + 2:][:1] not in (b"Z", b"X"):
                    return True
        except OSError:
            pass
        return False

    def poll(self):
        return None if self.alive() else self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.alive():
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.binary, timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, sig=signal.SIGTERM, grace=5.0):
        self.send_signal(sig)
        try:
            self.wait(grace)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            try:
                self.wait(2)
            except subprocess.TimeoutExpired:
                pass


class LighttpdProc(Proc):
    """lighttpd -D; its spawned responders share its process group. stop() lets them
    finish (a SIGTERM'd responder drains, a sanitizer build writes its report at exit)
    before the group is killed."""

    def __init__(self, name, argv, children, **kw):
        Proc.__init__(self, name, argv, **kw)
        self.children = children  # callable: the SpawnedResponders to wait for

    def stop(self, sig=signal.SIGTERM, grace=5.0):
        kids = [k for k in self.children() if k.alive()]
        if self.p.poll() is None:
            self.send_signal(sig)  # the group: lighttpd and the responders it spawned
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + max(grace, 10.0)
        for k in kids:
            try:
                k.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.send_signal(signal.SIGKILL)
        try:
            self.p.wait(2)
        except subprocess.TimeoutExpired:
            pass


class LighttpdStack(Stack):
    """The same service behind lighttpd: scripts/render-lighttpd.sh renders the config
    (both service blocks, as shipped; this stack's service is the one its tests use), and
    lighttpd's mod_fastcgi spawns the responders itself with the stack's configuration in
    bin-environment. bin-path points at a small wrapper per service that records the
    responder's pid and sends its stderr to <stack>/responder.stderr (the other service's
    to <stack>/other-responder.stderr) before exec'ing the real binary; a `<service>.down`
    file makes the wrapper refuse to start (lighttpd then answers with its own error)."""

    web = "lighttpd"

    def __init__(self, suite, name, env=None, upstream="mock", upstream_path="", service="claude"):
        Stack.__init__(self, suite, name, env, upstream, upstream_path, service)
        os.rmdir(self.nginx_dir)
        self.nginx_dir = None
        self.other = "codex" if service == "claude" else "claude"
        self.web_dir = os.path.join(self.dir, "lighttpd")
        self.wrap_dir = os.path.join(self.dir, "bin")
        os.makedirs(self.wrap_dir)
        self.other_stderr_path = os.path.join(self.dir, "other-responder.stderr")
        self.nginx_err = os.path.join(self.web_dir, "logs", "error.log")
        self.sock = os.path.join(self.web_dir, "run", "%s.sock-0" % service)
        self.other_port = None
        self._responders = {}

    # -- files
    def pid_file(self, service):
        return os.path.join(self.dir, "%s.pid" % service)

    def down_file(self, service):
        return os.path.join(self.dir, "%s.down" % service)

    def _write_wrappers(self):
        import shlex
        extra = "".join("export %s=%s\n" % (k, shlex.quote(os.environ[k]))
                        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TMPDIR") if k in os.environ)
        for svc in ("claude", "codex"):
            err = self.stderr_path if svc == self.service else self.other_stderr_path
            pid = self.pid_file(svc)
            text = ("#!/bin/sh\n"
                    "# written by tests/integration/harness.py: lighttpd spawns this (bin-path)\n"
                    "if [ -e %(down)s ]; then echo 'harness: %(svc)s marked down' >&2; exit 1; fi\n"
                    "echo $$ > %(pid)s.tmp && mv %(pid)s.tmp %(pid)s\n"
                    "%(extra)s"
                    "exec %(bin)s >>%(err)s 2>&1\n"
                    % dict(down=shlex.quote(self.down_file(svc)), svc=svc, pid=shlex.quote(pid), extra=extra,
                           bin=shlex.quote(str(service_bin(svc))), err=shlex.quote(err)))
            path = os.path.join(self.wrap_dir, "ccproxy-" + svc)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o755)

    def read_pid(self, service=None):
        try:
            with open(self.pid_file(service or self.service)) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def current_responder(self, service=None):
        """The responder lighttpd runs now for the service (re-read: lighttpd respawns)."""
        svc = service or self.service
        pid = self.read_pid(svc)
        if pid is None:
            return None
        r = self._responders.get(svc)
        if r is None or r.pid != pid:
            r = SpawnedResponder("responder" if svc == self.service else "other-responder", pid, service_bin(svc))
            self._responders[svc] = r
        return r

    @property
    def responder(self):
        """The responder spawned first, or at the last current_responder() call."""
        r = self._responders.get(self.service)
        return r if r is not None else self.current_responder()

    @responder.setter
    def responder(self, value):  # Stack.__init__ assigns None
        pass

    def spawned(self):
        return [r for r in self._responders.values() if r is not None]

    # -- life cycle
    def start(self):
        b = self.binary
        if not os.access(b, os.X_OK):
            raise HarnessError("responder binary %s not built (run make)" % b)
        if not os.access(RENDER_LIGHTTPD, os.R_OK):
            raise HarnessError("%s missing" % RENDER_LIGHTTPD)
        if not shutil.which("lighttpd"):
            raise HarnessError("lighttpd is not installed")
        self._write_wrappers()
        self._stderr = open(self.stderr_path, "ab")  # created now: the log tests read it
        last = ""
        for attempt in range(3):
            self.port, self.other_port = free_port(), free_port()
            if self.port == self.other_port:
                continue
            renv = minimal_env()
            renv.update(self.env)
            up, oup = self.service.upper(), self.other.upper()
            renv.update({"%s_SERVICE_HOST" % up: "127.0.0.1", "%s_SERVICE_PORT" % up: str(self.port),
                         "%s_SERVICE_HOST" % oup: "127.0.0.1", "%s_SERVICE_PORT" % oup: str(self.other_port)})
            # the real responders print the configuration (bin-path's wrappers log to a file)
            renv["CCPROXY_BIN_DIR"] = str(bin_dir())
            r = subprocess.run(["sh", str(RENDER_LIGHTTPD), self.web_dir, self.wrap_dir], env=renv,
                               cwd=str(REPO), capture_output=True, timeout=30)
            if r.returncode != 0:
                raise HarnessError("render-lighttpd.sh failed (%d): %s" % (r.returncode, r.stderr.decode()[-800:]))
            conf = os.path.join(self.web_dir, "lighttpd.conf")
            self._check_rendered_env(os.path.join(self.web_dir, "ccproxy.conf"))
            for svc in ("claude", "codex"):
                if os.path.exists(self.pid_file(svc)):
                    os.unlink(self.pid_file(svc))
            self._responders = {}
            self._nginx_out = open(os.path.join(self.dir, "lighttpd.stderr"), "ab")
            self.nginx = LighttpdProc("lighttpd", ["lighttpd", "-D", "-f", conf], self.spawned,
                                      cwd=self.web_dir, env=minimal_env(),
                                      stdout=self._nginx_out, stderr=self._nginx_out)

            def up():
                return (self.read_pid(self.service) and self.read_pid(self.other)
                        and can_connect(self.sock) and can_connect(("127.0.0.1", self.port)))
            try:
                wait_for(lambda: up() or not self.nginx.alive(), 20, what="lighttpd on port %d" % self.port)
            except HarnessError as e:
                last = str(e)
            if self.nginx.alive() and up():
                for svc in ("claude", "codex"):
                    self.current_responder(svc)
                return
            self.nginx.stop()
            self._nginx_out.close()
            last = (last + " " + self.file_tail(self.nginx_err) + self.file_tail(
                os.path.join(self.dir, "lighttpd.stderr")) + self.stderr_tail(600)).strip()
        raise HarnessError("lighttpd did not start: %s" % last)

    def _check_rendered_env(self, conf):
        """Every variable of the stack's configuration reached this service's bin-environment."""
        text = open(conf).read()
        port_line = '$SERVER["socket"] == "127.0.0.1:%d"' % self.port
        i = text.find(port_line)
        if i < 0:
            raise HarnessError("render-lighttpd.sh: no block for %s in %s" % (port_line, conf))
        j = text.find('$SERVER["socket"]', i + 1)
        block = text[i:j if j > 0 else len(text)]
        for k, v in self.env.items():
            esc = v.replace("\\", "\\\\").replace('"', '\\"')
            if '"%s" => "%s"' % (k, esc) not in block:
                raise HarnessError("render-lighttpd.sh did not put %s=%r into the %s responder's "
                                   "bin-environment" % (k, v, self.service))

    def kill_responder(self, stay_down=True):
        """SIGKILL the service's responder. stay_down: its wrapper refuses the restart lighttpd
        attempts, so the service stays down (as with nginx, where nothing restarts it)."""
        if stay_down:
            open(self.down_file(self.service), "w").close()
        r = self.current_responder()
        if r is not None:
            r.stop(signal.SIGKILL, grace=5)

    def revive(self):
        """Let lighttpd restart the service's responder again (after kill_responder)."""
        if os.path.exists(self.down_file(self.service)):
            os.unlink(self.down_file(self.service))

    def all_logs(self):
        paths = [self.stderr_path, self.other_stderr_path, os.path.join(self.dir, "lighttpd.stderr")]
        logs = os.path.join(self.web_dir, "logs")
        if os.path.isdir(logs):
            paths += [os.path.join(logs, f) for f in os.listdir(logs)]
        return [(p, self.file_tail(p, 1 << 30)) for p in paths if os.path.isfile(p)]

    def _dead(self):
        out = []
        if self.nginx is not None and not self.nginx.alive():
            out.append("lighttpd (pid %d) is gone, exit status %s" % (self.nginx.pid, self.nginx.p.returncode))
        r = self._responders.get(self.service)
        if r is not None and not r.alive() and not (self.current_responder() and self.current_responder().alive()):
            out.append("the %s responder (pid %d) is gone" % (self.service, r.pid))
        return out

    def stop(self):
        if self.nginx is not None:
            self.nginx.stop(signal.SIGTERM, grace=5)
        for r in self.spawned():
            if r.alive():
                r.stop(signal.SIGKILL, grace=2)
        for f in ("_stderr", "_nginx_out"):
            if hasattr(self, f):
                getattr(self, f).close()
        remove_counters_files(self)


# --------------------------------------------------------------------------- CGI


class CGIResult:
    def __init__(self, rc, stdout, stderr):
        self.rc = rc
        self.raw = stdout
        self.stderr = stderr.decode("utf-8", "replace")
        head, sep, body = stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, body = stdout.partition(b"\n\n")
        self.headers = []
        for line in head.decode("latin-1").splitlines():
            if ":" in line:
                k, _, v = line.partition(":")
                self.headers.append((k.strip(), v.strip()))
        self.body = body
        st = self.header("status")
        self.status = int(st.split()[0]) if st else (200 if sep else None)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        try:
            return json.loads(self.body.decode())
        except (ValueError, UnicodeDecodeError):
            raise AssertionError("CGI body not JSON (rc %s): %r / stderr %s" % (self.rc, self.raw[:300], self.stderr[-300:]))


def cgi_env(env, method, path_info, headers=(), body_len=None, query="", script="/cgi-bin/ccproxy-claude"):
    """The environment a CGI host gives the responder for one request."""
    e = minimal_env()
    e.update(BASE_ENV)
    e.update(env)
    uri = script + path_info + ("?" + query if query else "")
    e.update({
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "ccproxy-it", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "REMOTE_ADDR": env.get("REMOTE_ADDR", "127.0.0.1"), "REQUEST_METHOD": method, "SCRIPT_NAME": script,
        "PATH_INFO": path_info, "REQUEST_URI": uri, "QUERY_STRING": query,
    })
    if body_len is not None:
        e["CONTENT_LENGTH"] = str(body_len)
    for k, v in headers:
        lk = k.lower()
        if lk == "content-type":
            e["CONTENT_TYPE"] = v
        elif lk == "content-length":
            e["CONTENT_LENGTH"] = v
        else:
            e["HTTP_" + k.upper().replace("-", "_")] = v
    return e


def run_cgi(env, method, path_info, headers=(), body=b"", query="", script=None,
            timeout=30.0, cwd=None, content_length=None, service="claude"):
    """Run the responder (ccproxy-<service>) once as plain CGI (fd 0 a pipe, not a socket)."""
    blen = None if body is None else (len(body) if content_length is None else content_length)
    e = cgi_env(env, method, path_info, headers, blen, query, script or "/cgi-bin/ccproxy-" + service)
    r = subprocess.run([str(service_bin(service))], input=body or b"", env=e, capture_output=True,
                       timeout=timeout, cwd=cwd or tempfile.gettempdir())
    return CGIResult(r.returncode, r.stdout, r.stderr)


# --------------------------------------------------------------------------- suite


class StackTable(dict):
    """Suite.stacks: every started stack, keyed "<name>" (nginx) or "<name>@<web>". A plain
    name looks up the stack of the suite's current web server; items()/values() are all."""

    def __init__(self, suite):
        dict.__init__(self)
        self.suite = suite

    def key(self, name, web=None):
        if "@" in name:
            return name
        web = web or self.suite.web
        return name if web == "nginx" else "%s@%s" % (name, web)

    def __contains__(self, name):
        return dict.__contains__(self, self.key(name))

    def __getitem__(self, name):
        return dict.__getitem__(self, self.key(name))

    def __delitem__(self, name):
        dict.__delitem__(self, self.key(name))

    def get(self, name, default=None):
        return dict.get(self, self.key(name), default)


class Suite:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="ccproxy-it-")
        os.chmod(self.tmp, 0o755)
        self._mock = None
        self._mocks = {}  # more upstreams (an upstream pool): name -> Mock
        self.web = "nginx"  # the web server of the test running now (the runner sets it)
        self.stacks = StackTable(self)
        self.failed = {}
        self.cgi_logs = []  # stderr texts of CGI runs, for the key-leak test

    @property
    def mock(self):
        if self._mock is None:
            self._mock = Mock(self.tmp)
        return self._mock

    def more_mock(self, name):
        """Another mock upstream `name` (started on first use, stopped with the suite)."""
        if name not in self._mocks:
            self._mocks[name] = Mock(self.tmp, name)
        return self._mocks[name]

    def stack(self, name, web=None):
        """The stack `name` (see STACKS) behind `web` (default: the current web server),
        started on first use."""
        key = self.stacks.key(name, web)
        web = web or (key.split("@", 1)[1] if "@" in key else "nginx")
        name = name.split("@", 1)[0]
        if key in self.failed:
            raise HarnessError("stack %s failed to start: %s" % (key, self.failed[key]))
        st = dict.get(self.stacks, key)
        if st is None:
            spec = STACKS[name]
            service = spec.get("service", "claude")
            cls = LighttpdStack if web == "lighttpd" else Stack
            st = cls(self, key, env=spec.get("env"), upstream=spec.get("upstream", "mock"),
                     upstream_path=spec.get("upstream_path", "/v1" if service == "codex" else ""),
                     service=service)
            st.responders = spec.get("responders", 1)
            dict.__setitem__(self.stacks, key, st)
            try:
                st.start()
            except Exception as e:
                st.stop()
                dict.__delitem__(self.stacks, key)
                self.failed[key] = str(e)
                raise
        return st

    def custom_stack(self, name, env=None, upstream="mock", upstream_path=None, service="claude", web=None):
        """A one-off configuration (started now, stopped with the suite)."""
        if upstream_path is None:
            upstream_path = "/v1" if service == "codex" else ""
        STACKS[name] = dict(env=env or {}, upstream=upstream, upstream_path=upstream_path, service=service)
        return self.stack(name, web)

    def cgi(self, method, path_info, headers=(), body=b"", env=None, service="claude", **kw):
        if service == "codex":
            e = {"OPENAI_BASE_URL": self.mock.base + "/v1", "CODEX_ENV_CWD": CODEX_CWD}
        else:
            e = {"ANTHROPIC_BASE_URL": self.mock.base}
        e.update(env or {})
        r = run_cgi(e, method, path_info, headers, body, service=service, **kw)
        self.cgi_logs.append(r.stderr)
        return r

    def close(self, keep=False):
        for st in list(self.stacks.values()):
            try:
                st.stop()
            except Exception:
                pass
        for m in [self._mock] + list(self._mocks.values()):
            if m is None:
                continue
            try:
                m.stop()
            except Exception:
                pass
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- asserts


def check(cond, msg, *args):
    if not cond:
        raise AssertionError(msg % args if args else msg)


def eq(a, b, what):
    if a != b:
        raise AssertionError("%s: expected %r, got %r" % (what, b, a))


def assert_anthropic_error(resp, status, etype=None, what=""):
    """resp: Response or CGIResult."""
    st = resp.status
    body = resp.body
    if st != status:
        raise AssertionError("%sexpected status %d, got %s; body %r" % (what and what + ": ", status, st, body[:300]))
    obj = resp.json()
    check(isinstance(obj, dict) and obj.get("type") == "error" and isinstance(obj.get("error"), dict),
          "%snot an Anthropic error shape: %r", what and what + ": ", body[:300])
    err = obj["error"]
    check(isinstance(err.get("type"), str) and isinstance(err.get("message"), str) and err["message"],
          "%serror.type/message missing: %r", what and what + ": ", body[:300])
    if etype:
        eq(err["type"], etype, "%serror.type" % (what and what + ": "))
    ct = resp.header("content-type") or ""
    check(ct.startswith("application/json"), "%scontent-type %r is not application/json",
          what and what + ": ", ct)
    return obj


def assert_openai_error(resp, status, etype=None, code=False, what=""):
    """resp: Response or CGIResult. An OpenAI error {"error":{"message","type","param","code"}}
    (code=False: any code)."""
    pre = what and what + ": "
    if resp.status != status:
        raise AssertionError("%sexpected status %d, got %s; body %r" % (pre, status, resp.status, resp.body[:300]))
    obj = resp.json()
    check(isinstance(obj, dict) and isinstance(obj.get("error"), dict) and "type" not in obj,
          "%snot an OpenAI error shape: %r", pre, resp.body[:300])
    err = obj["error"]
    eq(sorted(err), ["code", "message", "param", "type"], "%skeys of error" % pre)
    check(isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str) and err["type"],
          "%serror.type/message missing: %r", pre, resp.body[:300])
    check(err["code"] is None or isinstance(err["code"], str), "%serror.code %r", pre, err["code"])
    if etype:
        eq(err["type"], etype, "%serror.type" % pre)
    if code is not False:
        eq(err["code"], code, "%serror.code" % pre)
    ct = resp.header("content-type") or ""
    check(ct.startswith("application/json"), "%scontent-type %r is not application/json", pre, ct)
    return obj


def parse_events(body):
    """[(event name, data json or raw)] from an SSE body."""
    out = []
    for block in body.split(b"\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
        raw = b"\n".join(data)
        try:
            val = json.loads(raw.decode())
        except (ValueError, UnicodeDecodeError):
            val = raw
        out.append((name, val))
    return out


def same_bytes(got, sent, what):
    """Assert byte identity, naming the first differing offset."""
    if got == sent:
        return
    n = min(len(got), len(sent))
    i = next((k for k in range(n) if got[k] != sent[k]), n)
    raise AssertionError("%s differs from what the upstream sent: %d bytes received vs %d sent; "
                         "first difference at byte %d: got %r, sent %r"
                         % (what, len(got), len(sent), i, got[max(0, i - 20):i + 40],
                            sent[max(0, i - 20):i + 40]))


def wait_record(suite, mock_id, state="finished", timeout=15.0):
    ok, rec = suite.mock.wait(mock_id, state, timeout)
    if rec is None:
        raise AssertionError("the mock received no request with x-mock-id %s" % mock_id)
    if not ok:
        raise AssertionError("mock record %s did not reach state %s within %ss (state %s)"
                             % (mock_id, state, timeout, rec.get("state")))
    return rec


def assert_not_forwarded(suite, mock_id, what):
    recs = suite.mock.records(mock_id)
    check(not recs, "%s: the request was forwarded upstream but must not be", what)


def check_passed_headers(resp, rec, what):
    """request-id and every anthropic-ratelimit-*/retry-after/x-should-retry the mock sent
    reach the client with the same value; infra headers and set-cookie do not."""
    sent = rec["response_headers"] or []
    for k, v in sent:
        lk = k.lower()
        if lk in ("request-id", "retry-after", "retry-after-ms", "x-should-retry") or \
                lk.startswith("anthropic-ratelimit-"):
            eq(resp.header(lk), v, "%s: response header %s" % (what, lk))
    for h in ("set-cookie", "cf-ray", "via"):
        check(resp.header(h) is None, "%s: upstream header %s must not be passed back (got %r)",
              what, h, resp.header(h))
