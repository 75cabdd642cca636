"""Support for test_adapters.py: what the adapter spec says, computed independently.

- the session ids (HMAC-SHA256 keyed by SHA-256(client key) [+ SESSION_SECRET] over
  "<purpose>\\n<window>", windows aligned to the Unix epoch), in both shapes;
- the adapters file's own values (profiles, step parameters), read from conf/ so a
  profile update does not need a test update;
- stacks with extra environment (ADAPTERS_FILE, SESSION_SECRET) through the harness's
  public API, and running the responder alone (--check-config, spawn-fcgi) for
  start-up failures.

Standard library only; nothing here edits harness.py.
"""

import hashlib
import hmac
import json
import os
import socket
import subprocess
import time

import harness

REPO = harness.REPO
ADAPTERS_JSON = REPO / "conf" / "adapters.json"
ADAPTERS_D = REPO / "conf" / "adapters.d"
FIXTURES = REPO / "tests" / "fixtures"

CLAUDE_CODE_PROMPT = "You are Claude Code, Anthropic's official CLI for Claude."
EPHEMERAL = {"type": "ephemeral"}
PROMPT_CACHING_BETA = "prompt-caching-2024-07-31"

# Headers the relay never forwards as sent (hop-by-hop, host, framing, encoding).
DROPPED = {"host", "content-length", "connection", "accept-encoding", "keep-alive",
           "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


# --------------------------------------------------------------------------- spec data


def load_json(path):
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def builtin():
    return load_json(ADAPTERS_JSON)


def profile(name, source=None):
    return (source or builtin())["profiles"][name]


def adapter_spec(name, service="claude", source=None):
    for a in (source or builtin())[service]:
        if a["name"] == name:
            return a
    raise KeyError(name)


def step_params(adapter, step):
    for s in adapter.get("steps", []):
        if s["step"] == step:
            return s
    raise KeyError(step)


# --------------------------------------------------------------------------- sessions


def derive(client_key, secret, purpose, window_seconds, now):
    """(session uuid, device hex) as session.h documents them."""
    key = hashlib.sha256(client_key.encode()).digest()
    if secret:
        s = secret.encode()
        if len(s) > 256:
            s = hashlib.sha256(s).digest()
        key += s
    window = int(now) // window_seconds
    d = bytearray(hmac.new(key, ("%s\n%d" % (purpose, window)).encode(), hashlib.sha256).digest())
    d[6] = (d[6] & 0x0F) | 0x40
    d[8] = (d[8] & 0x3F) | 0x80
    h = d[:16].hex()
    uuid = "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:32])
    device = hmac.new(key, ("%s\ndevice" % purpose).encode(), hashlib.sha256).hexdigest()
    return uuid, device


def shaped(shape, uuid, device):
    if shape == "classic":
        return "user_%s_account__session_%s" % (device, uuid)
    if shape == "json":
        return '{"device_id":"%s","account_uuid":"","session_id":"%s"}' % (device, uuid)
    return uuid


class Clock:
    """The instants around a request: ids are checked against the windows of both."""

    def __init__(self):
        self.t0 = time.time()
        self.t1 = None

    def stop(self):
        self.t1 = time.time()
        return self

    def user_ids(self, client_key, params, secret=None, default_purpose=None):
        purpose = params.get("purpose") or default_purpose
        window = int(params.get("window_hours", 12)) * 3600
        shape = params.get("shape", "classic")
        out = []
        for t in (self.t0, self.t1 if self.t1 is not None else time.time()):
            v = shaped(shape, *derive(client_key, secret, purpose, window, t))
            if v not in out:
                out.append(v)
        return out


def merged_list(client_value, *additions):
    """A comma-separated list header after merging: the client's text first, as sent,
    then each new value once."""
    have = [v.strip() for v in (client_value or "").split(",") if v.strip()]
    out = client_value or ""
    for add in additions:
        for v in add.split(","):
            v = v.strip()
            if v and v not in have:
                have.append(v)
                out = out + "," + v if out else v
    return out


# --------------------------------------------------------------------------- records


def upstream_headers(rec):
    return harness.rec_headers(rec)


def one_header(rec, name, what):
    vals = upstream_headers(rec).get(name.lower(), [])
    if len(vals) != 1:
        raise AssertionError("%s: upstream header %s: expected exactly one, got %r" % (what, name, vals))
    return vals[0]


def upstream_json(rec, what):
    body = harness.rec_body(rec)
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise AssertionError("%s: the upstream body is not JSON: %r" % (what, body[:300]))


def diff_json(got, want, path="$"):
    """The first difference between two JSON values, or None."""
    if type(got) is not type(want):
        return "%s: got %r, want %r" % (path, got, want)
    if isinstance(want, dict):
        for k in want:
            if k not in got:
                return "%s: key %r missing" % (path, k)
        for k in got:
            if k not in want:
                return "%s: unexpected key %r = %r" % (path, k, got[k])
        for k in want:
            d = diff_json(got[k], want[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if isinstance(want, list):
        if len(got) != len(want):
            return "%s: %d items, want %d (got %r)" % (path, len(got), len(want), got)
        for i, (g, w) in enumerate(zip(got, want)):
            d = diff_json(g, w, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    return None if got == want else "%s: got %r, want %r" % (path, got, want)


def request_log_line(stack, pred, timeout=5.0, what="request log line"):
    """The responder's JSON "request" log line for which pred holds (waits for it)."""
    found = []

    def look():
        for line in stack.log_lines():
            if line.get("event") == "request" and pred(line):
                found.append(line)
                return True
        return False

    harness.wait_for(look, timeout, what=what)
    return found[0]


# --------------------------------------------------------------------------- stacks


def stack(suite, name, env):
    """A stack with extra environment, started once per suite (the harness stops it)."""
    if name in suite.stacks:
        return suite.stacks[name]
    return suite.custom_stack(name, env=env)


def responder_bin():
    f = getattr(harness, "service_bin", None)
    return f("claude") if f else harness.claude_bin()


def responder_env(extra):
    env = harness.minimal_env()
    env.update(harness.BASE_ENV)
    env["ANTHROPIC_BASE_URL"] = "http://127.0.0.1:9"
    env.update(extra)
    return env


def check_config(extra_env, timeout=20):
    """Runs `ccproxy-claude --check-config`: (rc, stdout, stderr)."""
    r = subprocess.run([str(responder_bin()), "--check-config"], env=responder_env(extra_env),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, cwd=str(REPO))
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def spawn_fcgi_start(extra_env, sock, foreground=True, timeout=20):
    """Starts the responder the way deployments do (spawn-fcgi); returns (rc, output).
    A responder that starts is stopped again (its process group only)."""
    argv = ["spawn-fcgi"] + (["-n"] if foreground else []) + ["-s", sock, "--", str(responder_bin())]
    p = subprocess.Popen(argv, env=responder_env(extra_env), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, 9)
        except OSError:
            pass
        out, _ = p.communicate()
        return None, out.decode("utf-8", "replace")


def can_connect_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
