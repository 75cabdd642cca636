"""Observability (issue 12): GET /metrics counts exactly what happened, over every
responder process of a service; token usage from the upstream's own reports (read here
independently from the bytes the mock sent); request ids on every response and in the
log; METRICS_ALLOW; the label bounds; the shipped dashboard and rules query only names
that /metrics has.

The multi-process stacks run their responders as spawn-fcgi -F N does: N processes on one
listen socket (Stack.add_responder). One process serves a first part of the mix and is
stopped (its counts must stay), then two run at once for the rest."""

import re

from harness import *

CLAUDE = "claude-service"
CODEX = "codex-service"
KINDS = ("input", "output", "cache_read", "cache_creation", "reasoning")


# ---------------------------------------------------------------- reading /metrics

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{(name, ((label, value), ...)): float} of a text exposition; fails on a malformed line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        check(m, "malformed exposition line %r", line)
        labels = tuple(sorted(LABEL.findall(m.group(3) or "")))
        key = (m.group(1), labels)
        check(key not in out, "duplicate series %r", line)
        out[key] = float(m.group(4))
    return out


def total(samples, name, **want):
    """Sum of the samples of name whose labels include want."""
    t = 0.0
    for (n, labels), v in samples.items():
        d = dict(labels)
        if n == name and all(d.get(k) == v2 for k, v2 in want.items()):
            t += v
    return t


def scrape(st, headers=()):
    r = st.request("GET", "/metrics", list(headers))
    eq(r.status, 200, "GET /metrics: %s" % r.body[:300])
    eq(r.header("content-type"), "text/plain; version=0.0.4", "content-type")
    return parse_metrics(r.body.decode())


# ---------------------------------------------------------------- expected usage

def sent_usage(rec, api):
    """The usage the mock reported in what it sent, by this test's own reading (disjoint
    kinds: input without cache, output without reasoning)."""
    raw = rec_response(rec).decode("utf-8", "replace")
    objs = []
    if raw.lstrip().startswith("{"):
        objs.append(("body", json.loads(raw)))
    else:
        for line in raw.splitlines():
            if line.startswith("data:"):
                try:
                    objs.append(("event", json.loads(line[5:])))
                except ValueError:
                    pass
    u = dict.fromkeys(KINDS, 0)
    for kind, o in objs:
        if api == "messages":
            usage = o.get("usage") if kind == "body" else (o.get("message") or {}).get("usage") or o.get("usage")
            if kind == "event" and o.get("type") not in ("message_start", "message_delta"):
                continue
            for k, name in (("input_tokens", "input"), ("output_tokens", "output"),
                            ("cache_read_input_tokens", "cache_read"),
                            ("cache_creation_input_tokens", "cache_creation")):
                if usage and k in usage:
                    u[name] = usage[k]
        else:
            if kind == "event" and o.get("type") not in ("response.completed", "response.incomplete"):
                continue
            usage = o.get("usage") if kind == "body" else (o.get("response") or {}).get("usage")
            if not usage:
                continue
            cached = (usage.get("input_tokens_details") or {}).get("cached_tokens", 0)
            reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0)
            u.update(input=usage["input_tokens"] - cached, cache_read=cached,
                     output=usage["output_tokens"] - reasoning, reasoning=reasoning)
    return u


class Mix:
    """What the test sent and what it expects the metrics to count."""

    def __init__(self, st, service):
        self.st, self.service = st, service
        self.requests = {}   # (route, status) -> n
        self.tokens = {}     # (model, kind) -> n
        self.errors = {}     # kind -> n
        self.ids = []

    def count(self, route, status):
        self.requests[(route, status)] = self.requests.get((route, status), 0) + 1

    def tokens_of(self, model, rec, api):
        for k, v in sent_usage(rec, api).items():
            self.tokens[(model, k)] = self.tokens.get((model, k), 0) + v

    def _relay(self, mid, path, headers, body, api, model, behavior, status, error):
        r = self.st.request("POST", path, headers, body)
        eq(r.status, status, "status of %s %s: %s" % (model, behavior, r.body[:200]))
        self.ids.append(r.header("x-ccproxy-request-id"))
        self.count(path, str(status))
        rec = self.st.suite.mock.wait(mid)[1]
        if status == 200:
            self.tokens_of(model, rec, api)
        if error:
            self.errors[error] = self.errors.get(error, 0) + 1
        return r

    def claude(self, model, stream, behavior=None, status=200, error=None):
        mid = new_id("met")
        return self._relay(mid, "/v1/messages", api_headers(mock_id=mid, behavior=behavior),
                           message_body(stream=stream, model=model), "messages", model, behavior, status, error)

    def codex(self, model, stream, behavior=None, status=200, ua=None, error=None):
        mid = new_id("met")
        return self._relay(mid, "/v1/responses", oa_headers(mock_id=mid, behavior=behavior, user_agent=ua),
                           responses_body(stream=stream, model=model), "responses", model, behavior, status, error)

    def local(self, path, status, route):
        r = self.st.request("GET", path)
        eq(r.status, status, "GET %s" % path)
        self.ids.append(r.header("x-ccproxy-request-id"))
        self.count(route, str(status))

    def verify(self, samples, scrapes):
        svc = self.service
        got = {}
        for (n, labels), v in samples.items():
            d = dict(labels)
            if n == "ccproxy_requests_total":
                eq(d["service"], svc, "service label")
                key = (d["route"], d["status"])
                got[key] = got.get(key, 0) + v
        want = dict(self.requests)
        if scrapes:
            want[("/metrics", "200")] = want.get(("/metrics", "200"), 0) + scrapes
        eq(got, {k: float(v) for k, v in want.items()}, "ccproxy_requests_total by route and status")
        n = sum(self.requests.values()) + scrapes
        eq(total(samples, "ccproxy_request_duration_seconds_count", service=svc), n, "duration histogram count")
        for (model, kind), v in self.tokens.items():
            eq(total(samples, "ccproxy_tokens_total", service=svc, model=model, kind=kind), v,
               "tokens %s %s" % (model, kind))
        models = {m for m, _ in self.tokens}
        eq(total(samples, "ccproxy_tokens_total", service=svc), sum(self.tokens.values()), "all tokens")
        for (name, labels) in samples:
            if name == "ccproxy_tokens_total":
                check(dict(labels)["model"] in models, "tokens of a model never asked for: %r", labels)
        for kind in ("unreachable", "timeout", "broken", "status_5xx", "status_429", "error_event"):
            eq(total(samples, "ccproxy_upstream_errors_total", service=svc, upstream="default", kind=kind),
               self.errors.get(kind, 0), "upstream errors %s" % kind)
        eq(total(samples, "ccproxy_active_streams", service=svc), 0, "active streams at rest")
        relayed = sum(v for (route, _), v in self.requests.items() if route.startswith("/v1/"))
        eq(total(samples, "ccproxy_upstream_ttfb_seconds_count", service=svc, upstream="default"), relayed,
           "one time to first byte per relayed request")


def responder_pids(st):
    return [p.pid for p in getattr(st, "extra_responders", []) if p.alive()]


def mapped(st, n):
    """Wait until n responders of st have mapped the shared counters (their start-up line)."""
    wait_for(lambda: sum(1 for l in st.log_lines() if l.get("event") == "metrics") >= n, 15,
             what="%d responders with the shared counters" % n)


def claude_mix(m, part):
    if part == 0:
        m.claude("claude-sonnet-4-5", True, behavior="cache=300:40")
        m.claude("claude-sonnet-4-5", False)
        m.claude("claude-haiku-4-5", True)
        m.claude("claude-haiku-4-5", False, behavior="status=500", status=500, error="status_5xx")
        m.local("/health", 200, "/health")
    else:
        m.claude("claude-sonnet-4-5", True, behavior="thinking")
        m.claude("claude-opus-4-1", False, behavior="cache=1000:0")
        m.claude("claude-opus-4-1", True, behavior="status=429", status=429, error="status_429")
        # the upstream's own error event ends the stream (a 200 that went wrong)
        m.claude("claude-haiku-4-5", True, behavior="sse_error_after=2", error="error_event")
        m.local("/no-such-route", 404, "other")


def codex_mix(m, part):
    if part == 0:
        m.codex("gpt-5-codex", True, behavior="reasoning,cache=50:0")
        m.codex("gpt-5-codex", False)
        m.codex("gpt-5", True, behavior="incomplete")
    else:
        # CherryStudio's adapter forces a stream upstream: the answer is aggregated
        m.codex("gpt-5", False, ua="CherryStudio/1.5.3", behavior="reasoning")
        m.codex("gpt-5-mini", True, behavior="status=503", status=503, error="status_5xx")
        m.local("/v1", 200, "/v1")


def _multi_process(s, name, service, mix_fn):
    env = dict(CODEX_ENV) if service == "codex" else {}
    env["WORKER_THREADS"] = "2"
    st = s.custom_stack(name, env=env, service=service)
    svc = CODEX if service == "codex" else CLAUDE
    m = Mix(st, svc)
    first = st.responder
    mapped(st, 1)
    # part 1 on the first process alone
    mix_fn(m, 0)
    # a second process, then the first one goes (SIGTERM: it drains and exits)
    st.add_responder()
    mapped(st, 2)
    first.stop(signal.SIGTERM, grace=10)
    check(not first.alive(), "the first responder did not exit")
    mix_fn(m, 1)
    # two processes at once for the rest
    st.add_responder()
    mapped(st, 3)
    wait_for(lambda: len(responder_pids(st)) == 2, 10, what="two live responders")
    mix_fn(m, 0)
    scrapes = 0
    seen_processes = set()
    # whichever process answers a scrape, it reports the whole service
    for _ in range(4):
        samples = scrape(st)
        m.verify(samples, scrapes)
        seen_processes.add(total(samples, "ccproxy_processes", service=svc))
        scrapes += 1
    eq(seen_processes, {2.0}, "live processes")
    ids = [i for i in m.ids if i]
    eq(len(ids), len(m.ids), "x-ccproxy-request-id on every response")
    check(all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), "request ids: %r", ids[:3])
    eq(len(set(ids)), len(ids), "request ids are unique")
    return st, m


def test_metrics_claude_two_processes_count_exactly(s):
    st, m = _multi_process(s, "metrics_claude", "claude", claude_mix)
    samples = scrape(st)
    check(total(samples, "ccproxy_tokens_total", service=CLAUDE, kind="cache_read") >= 1300,
          "cache reads counted")
    eq(total(samples, "ccproxy_build_info", service=CLAUDE), 1, "build info")
    check(total(samples, "process_start_time_seconds") > 1e9, "process_start_time_seconds")


def test_metrics_codex_two_processes_count_exactly(s):
    st, m = _multi_process(s, "metrics_codex", "codex", codex_mix)
    samples = scrape(st)
    check(total(samples, "ccproxy_tokens_total", service=CODEX, kind="reasoning") > 0, "reasoning counted")
    check(total(samples, "ccproxy_requests_total", service=CODEX, adapter="cherry_studio") >= 1,
          "the adapter label names the adapter")


def test_metrics_usage_request_ids_in_log_line(s):
    st = s.stack("main")
    model = "claude-usage-" + uuid.uuid4().hex[:8]
    mid = new_id("use")
    r = st.request("POST", "/v1/messages", api_headers(mock_id=mid, behavior="cache=64:8"),
                   message_body(stream=True, model=model))
    eq(r.status, 200, "status")
    want = sent_usage(s.mock.wait(mid)[1], "messages")
    rid = r.header("x-ccproxy-request-id")
    check(rid and re.fullmatch(r"[0-9a-f]{32}", rid), "x-ccproxy-request-id %r", rid)
    upstream_id = r.header("request-id")
    found = []
    wait_for(lambda: found.extend(l for l in st.log_lines() if l.get("model") == model) or found, 10,
             what="log line")
    line = found[0]
    eq(line.get("request_id"), rid, "the log line names the response's request id")
    eq(line.get("upstream_request_id"), upstream_id, "upstream request id")
    eq(line.get("usage"), {k: want[k] for k in ("input", "output", "cache_read", "cache_creation")}, "usage")
    check(line.get("bytes_in", 0) > 0 and "upstream_ttfb_ms" in line and "duration_ms" in line,
          "bytes, ttfb, duration: %r", line)
    # a local answer and an error carry an id too
    for path in ("/health", "/nope"):
        r = st.request("GET", path)
        check(re.fullmatch(r"[0-9a-f]{32}", r.header("x-ccproxy-request-id") or ""), "id on %s", path)


def test_metrics_trusted_request_id(s):
    trusted = s.custom_stack("metrics_trust", env={"TRUST_REQUEST_ID": "1"})
    r = trusted.request("GET", "/health", [("x-request-id", "front-abc_123")])
    eq(r.header("x-ccproxy-request-id"), "front-abc_123", "a trusted front's id is used")
    r = trusted.request("GET", "/health", [("x-request-id", "bad id with spaces")])
    check(re.fullmatch(r"[0-9a-f]{32}", r.header("x-ccproxy-request-id") or ""), "an unfit id is replaced")
    # off by default: the client's header is not the id
    r = s.stack("main").request("GET", "/health", [("x-request-id", "front-abc_123")])
    check(re.fullmatch(r"[0-9a-f]{32}", r.header("x-ccproxy-request-id") or ""), "not trusted by default")


def test_metrics_codex_usage_in_log_line(s):
    st = s.stack("codex")
    model = "gpt-usage-" + uuid.uuid4().hex[:8]
    mid = new_id("use")
    r = st.request("POST", "/v1/responses", oa_headers(mock_id=mid, behavior="reasoning,cache=20:0"),
                   responses_body(stream=True, model=model))
    eq(r.status, 200, "status")
    want = sent_usage(s.mock.wait(mid)[1], "responses")
    found = []
    wait_for(lambda: found.extend(l for l in st.log_lines() if l.get("model") == model) or found, 10,
             what="log line")
    eq(found[0].get("usage"), {k: want[k] for k in KINDS}, "usage with reasoning")
    eq(found[0].get("upstream_request_id"), r.header("x-request-id"), "x-request-id")


def test_metrics_remote_client_gets_403(s):
    # nginx's REMOTE_ADDR is 127.0.0.1: outside this METRICS_ALLOW
    st = s.custom_stack("metrics_allow", env={"METRICS_ALLOW": "10.0.0.0/8, 2001:db8::/32"})
    r = st.request("GET", "/metrics")
    eq(r.status, 403, "status")
    body = r.json()
    eq((body.get("type"), body["error"].get("type")), ("error", "permission_error"), "Anthropic error shape")
    check("METRICS_ALLOW" in body["error"]["message"], "the message names METRICS_ALLOW: %r", body)
    # plain CGI with a remote REMOTE_ADDR, both services, both dialects
    r = s.cgi("GET", "/metrics", env={"REMOTE_ADDR": "203.0.113.7"})
    eq(r.status, 403, "CGI status")
    eq(r.json()["error"]["type"], "permission_error", "CGI error type")
    r = s.cgi("GET", "/metrics", env={"REMOTE_ADDR": "2001:db8::9"}, service="codex")
    eq(r.status, 403, "codex CGI status")
    e = r.json()["error"]
    eq((e["type"], e["code"], e["param"]), ("invalid_request_error", "address_not_allowed", None), "OpenAI error shape")
    # loopback (v4 and v6) is let in by default
    for addr in ("127.0.0.1", "::1"):
        r = s.cgi("GET", "/metrics", env={"REMOTE_ADDR": addr})
        eq(r.status, 200, "CGI from %s" % addr)
        check(b"ccproxy_build_info" in r.body, "metrics body")
    # a bad METRICS_ALLOW stops start-up with a line naming it
    r = s.cgi("GET", "/metrics", env={"METRICS_ALLOW": "10.0.0.0/40"})
    check(r.rc != 0 and "METRICS_ALLOW" in r.stderr, "bad METRICS_ALLOW: rc %s %r", r.rc, r.stderr[-300:])


def test_metrics_models_are_bounded(s):
    st = s.custom_stack("metrics_models", env={"WORKER_THREADS": "2"})
    n = 105
    for i in range(n):
        r = st.request("POST", "/v1/messages", api_headers(), message_body(model="bound-model-%03d" % i))
        eq(r.status, 200, "status")
    samples = scrape(st)
    models = {dict(l)["model"] for (name, l) in samples if name == "ccproxy_tokens_total"}
    eq(len(models), 101, "100 models and other")
    check("other" in models, "later models count as other")
    per = total(samples, "ccproxy_tokens_total", service=CLAUDE, model="bound-model-000")
    check(per > 0, "first model counted")
    eq(total(samples, "ccproxy_tokens_total", service=CLAUDE, model="other"), per * (n - 100),
       "the last five models' tokens under other")
    text = st.request("GET", "/metrics").body.decode()
    for key in ALL_KEYS:
        check(key not in text, "a key in /metrics")


def _queried_names(expr_texts):
    names = set()
    for t in expr_texts:
        for n in re.findall(r"\b((?:ccproxy|process)_[a-z_]+)\b", t):
            names.add(n)
    return names


def shipped_queries():
    """Every PromQL expression the dashboard and the alert rules ship."""
    exprs = []
    dash = json.loads((REPO / "conf" / "grafana" / "ccproxy.json").read_text())

    def walk(o):
        if isinstance(o, dict):
            if isinstance(o.get("expr"), str):
                exprs.append(o["expr"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    rules = (REPO / "conf" / "prometheus" / "ccproxy-rules.yml").read_text()
    exprs += re.findall(r"expr:\s*(.+(?:\n\s{8,}.+)*)", rules)
    return exprs


def test_metrics_dashboard_and_rules_query_existing_names(s):
    exprs = shipped_queries()
    check(len(exprs) >= 8, "dashboard and rules expressions found: %d", len(exprs))
    names = _queried_names(exprs)
    check(names, "no metric names in the shipped queries")
    st = s.stack("main")
    st.request("POST", "/v1/messages", api_headers(), message_body(stream=True))
    exposed = set()
    for (n, _) in scrape(st):
        exposed.add(n)
        for suffix in ("_bucket", "_sum", "_count"):
            if n.endswith(suffix):
                exposed.add(n[:-len(suffix)])
    missing = sorted(names - exposed)
    eq(missing, [], "names the dashboard or rules query that /metrics lacks")


# ---------------------------------------------------------------- the real Prometheus

def _prom_query(port, expr, at=None):
    q = "query=" + urllib_quote(expr) + ("&time=%s" % at if at is not None else "")
    r = request(port, "GET", "/api/v1/query?" + q)
    check(r.status == 200, "Prometheus query %s: %s %s", expr, r.status, r.body[:300])
    data = r.json()["data"]["result"]
    return float(data[0]["value"][1]) if data else None


def urllib_quote(s):
    import urllib.parse
    return urllib.parse.quote(s, safe="")


def test_metrics_promtool_checks_what_ships(s):
    for args in (["check", "config", str(REPO / "conf" / "prometheus" / "prometheus.yml")],
                 ["check", "rules", str(REPO / "conf" / "prometheus" / "ccproxy-rules.yml")]):
        check(shutil.which("promtool"), "promtool missing: make deps installs the prometheus package")
        r = subprocess.run(["promtool"] + args, capture_output=True, timeout=60)
        eq(r.returncode, 0, "promtool %s: %s" % (" ".join(args), (r.stdout + r.stderr).decode()[-500:]))


def test_metrics_real_prometheus_scrapes_the_stack(s):
    check(shutil.which("prometheus"), "prometheus missing: make deps installs the prometheus package")
    claude = s.custom_stack("prom_claude", env={"WORKER_THREADS": "2"})
    codex = s.custom_stack("prom_codex", env=dict(CODEX_ENV, WORKER_THREADS="2"), service="codex")
    mc, mx = Mix(claude, CLAUDE), Mix(codex, CODEX)
    mc.claude("claude-sonnet-4-5", True, behavior="cache=500:20")
    mc.claude("claude-haiku-4-5", False)
    mc.claude("claude-haiku-4-5", False, behavior="status=500", status=500, error="status_5xx")
    mx.codex("gpt-5-codex", True, behavior="reasoning")
    mx.codex("gpt-5", False)
    mine = sum(mc.requests.values()) + sum(mx.requests.values())
    tokens = sum(mc.tokens.values()) + sum(mx.tokens.values())
    check(tokens > 0, "the mix used tokens")

    pdir = os.path.join(s.tmp, "prometheus")
    os.makedirs(pdir)
    shipped = (REPO / "conf" / "prometheus" / "prometheus.yml").read_text()
    check("127.0.0.1:8001" in shipped and "127.0.0.1:8002" in shipped, "the shipped targets are make run's ports")
    conf = shipped.replace("127.0.0.1:8001", "127.0.0.1:%d" % claude.port) \
                  .replace("127.0.0.1:8002", "127.0.0.1:%d" % codex.port) \
                  .replace("scrape_interval: 15s", "scrape_interval: 1s") \
                  .replace("evaluation_interval: 15s", "evaluation_interval: 1s") \
                  .replace("- ccproxy-rules.yml", "- " + str(REPO / "conf" / "prometheus" / "ccproxy-rules.yml"))
    cpath = os.path.join(pdir, "prometheus.yml")
    with open(cpath, "w") as f:
        f.write(conf)
    port = free_port()
    log = open(os.path.join(pdir, "prometheus.log"), "ab")
    p = Proc("prometheus", ["prometheus", "--config.file=" + cpath, "--storage.tsdb.path=" + os.path.join(pdir, "data"),
                            "--web.listen-address=127.0.0.1:%d" % port], cwd=pdir, stdout=log, stderr=log)
    try:
        def ready():
            if not p.alive():
                return True
            try:
                return request(port, "GET", "/-/ready", timeout=5).status == 200
            except (OSError, EOFError):
                return False
        # it listens before its storage is open (503 until then)
        wait_for(ready, 60, interval=0.2, what="prometheus ready")
        check(p.alive(), "prometheus exited: %s", Stack.file_tail(os.path.join(pdir, "prometheus.log")))
        # each target's own scrapes are requests too (route /metrics)
        got = {}

        def settled():
            t = "%.3f" % time.time()
            got["all"] = _prom_query(port, "sum(ccproxy_requests_total)", t)
            got["scrapes"] = _prom_query(port, "sum(count_over_time(up[1h])) - count(up)", t)
            got["mine"] = _prom_query(port, 'sum(ccproxy_requests_total{route!="/metrics"})', t)
            got["tokens"] = _prom_query(port, "sum(ccproxy_tokens_total)", t)
            got["up"] = _prom_query(port, "sum(up)", t)
            return got["up"] == 2 and got["mine"] == mine and got["tokens"] == tokens
        try:
            wait_for(settled, 60, interval=0.5, what="Prometheus to scrape both services")
        except HarnessError:
            raise AssertionError("Prometheus answers %r, expected %d requests and %d tokens; log: %s"
                                 % (got, mine, tokens, Stack.file_tail(os.path.join(pdir, "prometheus.log"), 600)))
        eq(got["all"], mine + got["scrapes"], "sum(ccproxy_requests_total): the mix plus the earlier scrapes")
        eq(got["tokens"], tokens, "sum(ccproxy_tokens_total)")
        ok = _prom_query(port, 'sum(ccproxy_upstream_errors_total{kind="status_5xx"})')
        eq(ok, 1, "the one upstream 5xx")
    finally:
        p.stop(signal.SIGTERM, grace=10)
        log.close()
