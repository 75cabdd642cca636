#!/bin/bash
# Re-run every capture behind tests/fixtures/ and rebuild the fixtures.
#
#   bash tests/capture/run_captures.sh [FIXTURE_DIR]
#
# Env: CLIENTS (scratch npm dir, default /tmp/clients), CAP (capture dir,
# default /tmp/cap), PORT_BASE (default 8800).  Needs node/npm, python3,
# tmux (for the two interactive captures).  Network: loopback only, plus the
# npm registry for the install.  Nothing is installed inside the repo.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
FIX=${1:-$HERE/../fixtures}
CLIENTS=${CLIENTS:-/tmp/clients}
CAP=${CAP:-/tmp/cap}
P=${PORT_BASE:-8800}
SERVER="python3 $HERE/capture_server.py"
BASEPATH=/usr/local/bin:/usr/bin:/bin
mkdir -p "$CAP" /tmp/ccwork /tmp/codexwork

if [ ! -x "$CLIENTS/node_modules/.bin/claude" ] || [ ! -x "$CLIENTS/node_modules/.bin/codex" ]; then
  mkdir -p "$CLIENTS" && (cd "$CLIENTS" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    npm install @anthropic-ai/claude-code@2.1.197 @anthropic-ai/sdk@1.14.0 @openai/codex@0.171.0 openai@6.49.0)
fi
CLAUDE=$CLIENTS/node_modules/.bin/claude
CODEX=$CLIENTS/node_modules/.bin/codex

start_server() { # NAME PORT
  rm -f "$CAP/$1.jsonl"
  $SERVER --port "$2" --out "$CAP/$1.jsonl" -v >"$CAP/$1.server.log" 2>&1 &
  SPID=$!
  sleep 0.7
}
stop_server() { kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; echo "--- $1:"; grep '#' "$CAP/$1.server.log"; }

# ---------------------------------------------------------------- Claude Code
cc_env() { # NAME PORT -> env -i prefix (throwaway HOME, telemetry off)
  rm -rf "/tmp/cchome_$1"; mkdir -p "/tmp/cchome_$1"
  echo env -i PATH=$BASEPATH HOME=/tmp/cchome_$1 TERM=dumb DISABLE_TELEMETRY=1 \
    DISABLE_AUTOUPDATER=1 DISABLE_ERROR_REPORTING=1 \
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_NON_ESSENTIAL_MODEL_CALLS=1 \
    ANTHROPIC_BASE_URL=http://127.0.0.1:$2
}
cc_run() { # NAME PORT AUTHVAR -- args
  local name=$1 port=$2 auth=$3; shift 4
  start_server "$name" "$port"
  (cd /tmp/ccwork && $(cc_env "$name" "$port") "$auth=sk-ant-test-capture" \
     timeout 120 "$CLAUDE" "$@" </dev/null >"$CAP/$name.out" 2>&1; echo "$name rc=$?")
  stop_server "$name"
}
cc_run cc_default $((P+0)) ANTHROPIC_API_KEY -- -p "say ok"
cc_run cc_model   $((P+1)) ANTHROPIC_API_KEY -- -p "say ok" --model claude-sonnet-4-6
cc_run cc_haiku   $((P+2)) ANTHROPIC_API_KEY -- -p "say ok" --model haiku
cc_run cc_bearer  $((P+3)) ANTHROPIC_AUTH_TOKEN -- -p "say ok"

# interactive Claude Code (tmux): approve the env key, two turns, /exit
name=cc_interactive; port=$((P+4))
start_server $name $port
rm -rf /tmp/cchome_$name; mkdir -p /tmp/cchome_$name
printf '{"hasCompletedOnboarding": true, "theme": "dark", "projects": {"/tmp/ccwork": {"hasTrustDialogAccepted": true}}}\n' >/tmp/cchome_$name/.claude.json
cat >"$CAP/$name.sh" <<EOF
cd /tmp/ccwork && exec env -i PATH=$BASEPATH HOME=/tmp/cchome_$name TERM=xterm-256color DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 DISABLE_ERROR_REPORTING=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 ANTHROPIC_BASE_URL=http://127.0.0.1:$port ANTHROPIC_API_KEY=sk-ant-test-capture $CLAUDE
EOF
tmux new-session -d -s capcc -x 150 -y 45 "bash $CAP/$name.sh"
sleep 8; tmux send-keys -t capcc Up; sleep 0.5; tmux send-keys -t capcc Enter    # "Yes" to the API key
sleep 6; tmux send-keys -t capcc "say ok"; sleep 0.5; tmux send-keys -t capcc Enter
sleep 12; tmux send-keys -t capcc "say ok again"; sleep 0.5; tmux send-keys -t capcc Enter
sleep 10; tmux send-keys -t capcc "/exit"; sleep 0.5; tmux send-keys -t capcc Enter
sleep 3; tmux kill-session -t capcc 2>/dev/null
stop_server $name

# ---------------------------------------------------------------- SDKs
start_server sdk $((P+5))
(cd "$HERE" && NODE_PATH=$CLIENTS/node_modules CAPTURE_URL=http://127.0.0.1:$((P+5)) timeout 60 node anthropic_sdk_client.cjs &&
 NODE_PATH=$CLIENTS/node_modules CAPTURE_URL=http://127.0.0.1:$((P+5)) timeout 60 node openai_sdk_client.cjs)
stop_server sdk

# ---------------------------------------------------------------- Codex
codex_home() { # NAME PORT PROVIDER_BLOCK...
  local ch=/tmp/codexhome_$1
  rm -rf "$ch"; mkdir -p "$ch/home"
  cat >"$ch/config.toml" <<EOF
$3
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[model_providers.capture]
name = "capture"
base_url = "http://127.0.0.1:$2/v1"
wire_api = "responses"
env_key = "CAPTURE_API_KEY"
EOF
}
codex_env() { echo env -i PATH=$BASEPATH HOME=/tmp/codexhome_$1/home CODEX_HOME=/tmp/codexhome_$1 TERM=dumb CAPTURE_API_KEY=sk-test-capture; }
codex_run() { # NAME PORT -- args
  local name=$1 port=$2; shift 3
  start_server "$name" "$port"
  codex_home "$name" "$port" 'model_provider = "capture"'
  (cd /tmp/codexwork && $(codex_env "$name") timeout 120 "$CODEX" "$@" </dev/null >"$CAP/$name.out" 2>&1; echo "$name rc=$?")
  stop_server "$name"
}
codex_run codex_try1  $((P+6)) -- exec --strict-config --skip-git-repo-check "say ok"
codex_run codex_model $((P+7)) -- exec --skip-git-repo-check -m gpt-5-codex "say ok"

# two turns: exec, then exec resume --last
name=codex_resume; port=$((P+8))
start_server $name $port
codex_home $name $port 'model_provider = "capture"'
(cd /tmp/codexwork && $(codex_env $name) timeout 120 "$CODEX" exec --skip-git-repo-check "say ok" </dev/null >"$CAP/$name.out" 2>&1
 $(codex_env $name) timeout 120 "$CODEX" exec --skip-git-repo-check resume --last "say ok again" </dev/null >>"$CAP/$name.out" 2>&1)
stop_server $name

# built-in "openai" provider pointed at the server (API-key login)
name=codex_builtin2; port=$((P+9))
start_server $name $port
codex_home $name $port "openai_base_url = \"http://127.0.0.1:$port/v1\""
echo sk-test-capture | $(codex_env $name) "$CODEX" login --with-api-key >"$CAP/$name.out" 2>&1
(cd /tmp/codexwork && $(codex_env $name) timeout 200 "$CODEX" exec --strict-config --skip-git-repo-check "say ok" </dev/null >>"$CAP/$name.out" 2>&1; echo "$name rc=$?")
stop_server $name

# interactive Codex TUI (tmux)
name=codex_tui; port=$((P+10))
start_server $name $port
codex_home $name $port 'model_provider = "capture"'
echo "cd /tmp/codexwork && exec $(codex_env $name | sed 's/TERM=dumb/TERM=xterm-256color/') $CODEX --no-daemon" >"$CAP/$name.sh"
tmux new-session -d -s capcx -x 150 -y 45 "bash $CAP/$name.sh"
sleep 6; tmux send-keys -t capcx "say ok"; sleep 0.5; tmux send-keys -t capcx Enter
sleep 10; tmux send-keys -t capcx C-c; sleep 1; tmux send-keys -t capcx C-c; sleep 2
tmux kill-session -t capcx 2>/dev/null
stop_server $name

python3 "$HERE/make_fixtures.py" "$CAP" "$FIX"
