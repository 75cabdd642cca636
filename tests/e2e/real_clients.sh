#!/bin/bash
# Runs the real, unmodified clients through the whole stack (nginx + both
# responders) against the capture server as upstream, and checks that each
# client got its answer and what reached the upstream. The Codex CLI runs
# both ways a user configures it (a custom provider, and the built-in openai
# provider with openai_base_url), and the time of each codex exec is printed.
#
#   bash tests/e2e/real_clients.sh        (or: make e2e)
# Env: CLIENTS (npm dir with the clients, default /tmp/clients; installed there
# when missing), PORT_BASE (default 18900). Loopback only; the npm registry is
# used for the install. Telemetry and update checks are disabled.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${CCPROXY_BIN_DIR:-$REPO/build/bin}
CLIENTS=${CLIENTS:-/tmp/clients}
P=${PORT_BASE:-18900}
WORK=$(mktemp -d /tmp/ccproxy-e2e.XXXXXX)
chmod 755 "$WORK"
BASEPATH=/usr/local/bin:/usr/bin:/bin
pass=0 fail=0
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

if [ ! -x "$CLIENTS/node_modules/.bin/claude" ] || [ ! -x "$CLIENTS/node_modules/.bin/codex" ] ||
   [ ! -d "$CLIENTS/node_modules/@anthropic-ai/sdk" ] || [ ! -d "$CLIENTS/node_modules/openai" ]; then
    mkdir -p "$CLIENTS" && (cd "$CLIENTS" && { [ -f package.json ] || npm init -y >/dev/null; } &&
        npm install --no-audit --no-fund @anthropic-ai/claude-code @anthropic-ai/sdk @openai/codex openai >/dev/null)
fi

UP=$P CL=$((P + 1)) CX=$((P + 2))
python3 "$REPO/tests/capture/capture_server.py" --port $UP --out "$WORK/upstream.jsonl" > "$WORK/upstream.log" 2>&1 &
pids+=($!)
for s in claude codex; do
    env -i PATH=$BASEPATH ANTHROPIC_BASE_URL=http://127.0.0.1:$UP OPENAI_BASE_URL=http://127.0.0.1:$UP/v1 \
        ENVIRONMENT=test LOG_FORMAT=json WORKER_THREADS=8 \
        spawn-fcgi -n -s "$WORK/$s.sock" -M 0666 -- "$BIN/ccproxy-$s" 2> "$WORK/$s.log" &
    pids+=($!)
done
SERVICES="claude codex" CLAUDE_SERVICE_PORT=$CL CODEX_SERVICE_PORT=$CX CLAUDE_FCGI_SOCKET=$WORK/claude.sock \
    CODEX_FCGI_SOCKET=$WORK/codex.sock "$REPO/scripts/render-nginx.sh" "$WORK/nginx" > /dev/null
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log" -g 'daemon off;' &
pids+=($!)
sleep 1.5

check() { # NAME CONDITION-COMMAND...
    local name=$1; shift
    if "$@"; then echo "PASS $name"; pass=$((pass + 1)); else echo "FAIL $name"; fail=$((fail + 1)); fi
}
upstream_count() { cat "$WORK/upstream.jsonl" 2>/dev/null | grep -c "$1"; }  # 0 when none (or no file)

# ---- Claude Code (-p), API key and auth token ---------------------------
mkdir -p "$WORK/cchome" "$WORK/ccwork"
cc() {
    (cd "$WORK/ccwork" && env -i PATH=$BASEPATH HOME="$WORK/cchome" TERM=dumb DISABLE_TELEMETRY=1 \
        DISABLE_AUTOUPDATER=1 DISABLE_ERROR_REPORTING=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
        ANTHROPIC_BASE_URL=http://127.0.0.1:$CL "$@" timeout 120 "$CLIENTS/node_modules/.bin/claude" -p "say ok" \
        < /dev/null)
}
cc ANTHROPIC_API_KEY=sk-ant-e2e-key > "$WORK/cc.out" 2>&1
check "claude code answers through the proxy" grep -qi "ok" "$WORK/cc.out"
check "claude code request reached the upstream via claude_code adapter" \
    grep -q '"adapter":"claude_code".*"status":200' "$WORK/claude.log"
cc ANTHROPIC_AUTH_TOKEN=sk-ant-e2e-token > "$WORK/cc-bearer.out" 2>&1
check "claude code with a bearer token" grep -qi "ok" "$WORK/cc-bearer.out"

# ---- Anthropic and OpenAI SDKs --------------------------------------------
(cd "$REPO/tests/capture" && NODE_PATH=$CLIENTS/node_modules CAPTURE_URL=http://127.0.0.1:$CL timeout 60 \
    node anthropic_sdk_client.cjs > "$WORK/asdk.out" 2>&1)
check "@anthropic-ai/sdk stream and non-stream" test $? -eq 0
(cd "$REPO/tests/capture" && NODE_PATH=$CLIENTS/node_modules CAPTURE_URL=http://127.0.0.1:$CX timeout 60 \
    node openai_sdk_client.cjs > "$WORK/osdk.out" 2>&1)
check "openai sdk responses stream and non-stream" test $? -eq 0

# ---- the CherryStudio pipelines, driven by the official SDKs ----------------
# A non-stream Responses call from a CherryStudio user-agent is forced to
# stream upstream and answered as one Response; a Messages call gets the
# Claude Code system prompt and a session.
cat > "$WORK/cherry.cjs" <<'JS'
const OpenAI = require('openai');
const Anthropic = require('@anthropic-ai/sdk');
(async () => {
  const oa = new OpenAI({ apiKey: 'sk-e2e-cherry', baseURL: process.env.CODEX_URL + '/v1',
                          defaultHeaders: { 'user-agent': 'CherryStudio/1.5.0' } });
  const r = await oa.responses.create({ model: 'gpt-5-codex', input: 'say ok' });
  if (!r || r.object !== 'response' || r.status !== 'completed') throw new Error('bad response ' + JSON.stringify(r));
  const an = new Anthropic({ apiKey: 'sk-ant-e2e-cherry', baseURL: process.env.CLAUDE_URL,
                             defaultHeaders: { 'user-agent': 'CherryStudio/1.5.0' } });
  const m = await an.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 16, system: 'Be brief.',
                                       messages: [{ role: 'user', content: 'say ok' }] });
  if (!m || m.type !== 'message') throw new Error('bad message ' + JSON.stringify(m));
  console.log('ok');
})().catch(e => { console.error(e); process.exit(1); });
JS
(cd "$WORK" && NODE_PATH=$CLIENTS/node_modules CODEX_URL=http://127.0.0.1:$CX CLAUDE_URL=http://127.0.0.1:$CL \
    timeout 60 node cherry.cjs > "$WORK/cherry.out" 2>&1)
check "cherry_studio pipelines answer the SDKs (codex aggregated, claude transformed)" test $? -eq 0
check "cherry_studio adapters were chosen" bash -c "grep -q '\"adapter\":\"cherry_studio\".*\"status\":200' '$WORK/codex.log' &&
    grep -q '\"adapter\":\"cherry_studio\".*\"status\":200' '$WORK/claude.log'"
check "the transformed Claude request reached the upstream with the Claude Code prompt and a session" \
    grep -q "You are Claude Code, Anthropic's official CLI for Claude.*user_[0-9a-f]\{64\}_account__session_" "$WORK/upstream.jsonl"

# ---- Codex CLI (custom provider, wire_api = responses) ---------------------
CH=$WORK/codexhome
mkdir -p "$CH/home" "$WORK/codexwork"
cat > "$CH/config.toml" <<TOML
model_provider = "ccproxy"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[model_providers.ccproxy]
name = "cc-proxy"
base_url = "http://127.0.0.1:$CX/v1"
wire_api = "responses"
env_key = "CCPROXY_KEY"
TOML
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
t0=$EPOCHREALTIME
(cd "$WORK/codexwork" && env -i PATH=$BASEPATH HOME="$CH/home" CODEX_HOME="$CH" TERM=dumb CCPROXY_KEY=sk-e2e-codex \
    timeout 120 "$CLIENTS/node_modules/.bin/codex" exec --skip-git-repo-check "say ok" < /dev/null > "$WORK/codex.out" 2>&1)
echo "codex exec (custom provider, wire_api = responses): $(elapsed "$t0") s"
check "codex exec answers through the proxy" grep -qi "ok" "$WORK/codex.out"
check "codex request went through the codex_cli adapter" \
    grep -q '"adapter":"codex_cli".*"status":200' "$WORK/codex.log"

# ---- Codex CLI, built-in openai provider (openai_base_url, codex login) ---
# It opens every session with a WebSocket handshake (GET /v1/responses,
# Upgrade: websocket); the responder's 426 makes it fall back to HTTPS at
# once, where a 405 cost it 7 retries, about 6.5 s. The time is printed.
BH=$WORK/codexhome-builtin
mkdir -p "$BH/home"
cat > "$BH/config.toml" <<TOML
openai_base_url = "http://127.0.0.1:$CX/v1"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
TOML
cxb() { (cd "$WORK/codexwork" && env -i PATH=$BASEPATH HOME="$BH/home" CODEX_HOME="$BH" TERM=dumb timeout 120 \
    "$CLIENTS/node_modules/.bin/codex" "$@"); }
echo sk-e2e-codex-builtin | cxb login --with-api-key > "$WORK/codex-login.out" 2>&1
check "codex login --with-api-key (built-in provider)" test $? -eq 0
mark=$(wc -l < "$WORK/codex.log")
t0=$EPOCHREALTIME
cxb exec --skip-git-repo-check "say ok" < /dev/null > "$WORK/codex-builtin.out" 2>&1
echo "codex exec (built-in provider, openai_base_url): $(elapsed "$t0") s"
check "codex exec with the built-in provider answers through the proxy" grep -qi "^ok" "$WORK/codex-builtin.out"
since_mark() { tail -n +$((mark + 1)) "$WORK/codex.log" | grep "$1"; }
# Exactly one handshake, answered 426 (a 405 made Codex retry it 7 times).
ws_refused_once() {
    local h; h=$(since_mark '"method":"GET","path":"/v1/responses"')
    [ "$(printf '%s' "$h" | grep -c .)" = 1 ] && printf '%s\n' "$h" | grep -q '"status":426'
}
check "its WebSocket handshake got 426 once, and Codex fell back to HTTPS without retrying" ws_refused_once
check "the handshake was not forwarded upstream" test "$(upstream_count '"method": "GET", "path": "/v1/responses')" = 0
since_mark_has() { since_mark "$1" > /dev/null; }
check "the built-in provider's request went through the codex_cli adapter" \
    since_mark_has '"adapter":"codex_cli","method":"POST","path":"/v1/responses".*"status":200'

# ---- an upstream pool whose first upstream is down ---------------------------
# Both services behind a second nginx, each with UPSTREAMS_FILE: "down" (an
# unused loopback port, tried first by its priority) and "up" (the capture
# server). The real clients must not notice; the log names the failover.
DOWN=$((P + 5)) PCL=$((P + 3)) PCX=$((P + 4))
cat > "$WORK/upstreams.json" <<JSON
{"claude": [{"name": "down", "base_url": "http://127.0.0.1:$DOWN", "priority": 1},
            {"name": "up", "base_url": "http://127.0.0.1:$UP"}],
 "codex":  [{"name": "down", "base_url": "http://127.0.0.1:$DOWN/v1", "priority": 1},
            {"name": "up", "base_url": "http://127.0.0.1:$UP/v1"}]}
JSON
for s in claude codex; do
    env -i PATH=$BASEPATH UPSTREAMS_FILE="$WORK/upstreams.json" ENVIRONMENT=test LOG_FORMAT=json WORKER_THREADS=4 \
        spawn-fcgi -n -s "$WORK/pool-$s.sock" -M 0666 -- "$BIN/ccproxy-$s" 2> "$WORK/pool-$s.log" &
    pids+=($!)
done
SERVICES="claude codex" CLAUDE_SERVICE_PORT=$PCL CODEX_SERVICE_PORT=$PCX CLAUDE_FCGI_SOCKET=$WORK/pool-claude.sock \
    CODEX_FCGI_SOCKET=$WORK/pool-codex.sock "$REPO/scripts/render-nginx.sh" "$WORK/nginx-pool" > /dev/null
nginx -p "$WORK/nginx-pool" -c "$WORK/nginx-pool/nginx.conf" -e "$WORK/nginx-pool/logs/error.log" -g 'daemon off;' &
pids+=($!)
sleep 1.5
(cd "$WORK/ccwork" && env -i PATH=$BASEPATH HOME="$WORK/cchome" TERM=dumb DISABLE_TELEMETRY=1 \
    DISABLE_AUTOUPDATER=1 DISABLE_ERROR_REPORTING=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
    ANTHROPIC_BASE_URL=http://127.0.0.1:$PCL ANTHROPIC_API_KEY=sk-ant-e2e-pool \
    timeout 120 "$CLIENTS/node_modules/.bin/claude" -p "say ok" < /dev/null > "$WORK/cc-pool.out" 2>&1)
check "claude code answers through a pool whose first upstream is down" grep -qi "ok" "$WORK/cc-pool.out"
check "its requests failed over from down to up" \
    grep -q '"status":200.*"upstream":"up","attempts":2,"failover":"down: unreachable"' \
    "$WORK/pool-claude.log"
PH=$WORK/codexhome-pool
mkdir -p "$PH/home"
sed -e "s|127.0.0.1:$CX/v1|127.0.0.1:$PCX/v1|" "$CH/config.toml" > "$PH/config.toml"
(cd "$WORK/codexwork" && env -i PATH=$BASEPATH HOME="$PH/home" CODEX_HOME="$PH" TERM=dumb CCPROXY_KEY=sk-e2e-codex-pool \
    timeout 120 "$CLIENTS/node_modules/.bin/codex" exec --skip-git-repo-check "say ok" < /dev/null > "$WORK/codex-pool.out" 2>&1)
check "codex exec answers through a pool whose first upstream is down" grep -qi "ok" "$WORK/codex-pool.out"
check "its request failed over from down to up" \
    grep -q '"status":200.*"upstream":"up","attempts":2,"failover":"down: unreachable"' \
    "$WORK/pool-codex.log"

# ---- what the service saw (issue 12): metrics, token usage, request ids ----
curl -s http://127.0.0.1:$CL/metrics > "$WORK/claude.metrics"
curl -s http://127.0.0.1:$CX/metrics > "$WORK/codex.metrics"
metric() { # FILE NAME LABEL-SUBSTRING: the sum of the matching samples
    awk -v n="$2" -v l="$3" 'index($0, n "{") == 1 && index($0, l) { s += $NF } END { print s + 0 }' "$1"
}
check "/metrics counts claude code's answered requests"     test "$(metric "$WORK/claude.metrics" ccproxy_requests_total 'adapter="claude_code",status="200"')" -ge 1
check "/metrics counts the codex cli's answered requests"     test "$(metric "$WORK/codex.metrics" ccproxy_requests_total 'adapter="codex_cli",status="200"')" -ge 1
check "/metrics counts the tokens the upstream reported, on both services" bash -c \
    "test $(metric "$WORK/claude.metrics" ccproxy_tokens_total 'kind="output"') -ge 1 &&
     test $(metric "$WORK/codex.metrics" ccproxy_tokens_total 'kind="output"') -ge 1"
check "claude code's log lines carry a request id and the usage" \
    grep -q '"adapter":"claude_code".*"status":200.*"request_id":"[0-9a-f]\{32\}".*"usage":{"input":' "$WORK/claude.log"
check "codex's log lines carry a request id and the usage" \
    grep -q '"adapter":"codex_cli".*"status":200.*"request_id":"[0-9a-f]\{32\}".*"usage":{"input":' "$WORK/codex.log"

check "no client key in any responder log" bash -c "! grep -q 'sk-ant-e2e\|sk-e2e-codex' '$WORK/claude.log' '$WORK/codex.log' '$WORK/pool-claude.log' '$WORK/pool-codex.log'"
echo "e2e: logs and captures in $WORK"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
