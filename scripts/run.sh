#!/usr/bin/env bash
# `make run`: nginx plus the responders in the foreground, from this checkout.
# Honours the environment and the .env file (CCPROXY_ENV_FILE, default ./.env);
# Ctrl-C or SIGTERM stops everything it started.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${CCPROXY_BIN_DIR:-$here/build/bin}

# The responders read .env themselves; this only takes the values nginx's
# rendering needs (ports, hosts, timeouts), without overriding the environment.
env_file=${CCPROXY_ENV_FILE:-.env}
if [ -f "$env_file" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line#export }
        [[ $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]] || continue
        k=${BASH_REMATCH[1]} v=${BASH_REMATCH[2]}
        v=${v%%[[:space:]]#*}; v=${v%\"}; v=${v#\"}; v=${v%\'}; v=${v#\'}
        [ -z "${!k+x}" ] && export "$k=$v"
    done < "$env_file"
fi

run=$here/build/run
mkdir -p "$run"
# A unix socket path must fit in 108 bytes.
[ ${#run} -gt 80 ] && run=$(mktemp -d /tmp/ccproxy-run.XXXXXX)
export CLAUDE_FCGI_SOCKET=$run/claude.sock CODEX_FCGI_SOCKET=$run/codex.sock
services=(claude codex)

for s in "${services[@]}"; do
    "$bin/ccproxy-$s" --check-config > /dev/null || { echo "run: fix the configuration above and try again" >&2; exit 2; }
done

pids=()
cleanup() {
    trap - INT TERM EXIT
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f "$CLAUDE_FCGI_SOCKET" "$CODEX_FCGI_SOCKET"
    echo "run: stopped"
}
trap cleanup INT TERM EXIT

server=${SERVER:-nginx}
case $server in
nginx)
    SERVICES="${services[*]}" "$here/scripts/render-nginx.sh" "$run/nginx" > /dev/null
    for s in "${services[@]}"; do
        sock_var=${s^^}_FCGI_SOCKET
        sock=${!sock_var}
        rm -f "$sock"
        spawn-fcgi -n -s "$sock" -M 0660 -- "$bin/ccproxy-$s" &
        pids+=($!)
        for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
    done
    nginx -p "$run/nginx" -c "$run/nginx/nginx.conf" -e "$run/nginx/logs/error.log" -g 'daemon off;' &
    pids+=($!)
    logs=$run/nginx/logs
    ;;
lighttpd)
    # lighttpd spawns the responders itself (mod_fastcgi bin-path), with the
    # configuration in their bin-environment.
    [ -f "$env_file" ] && export CCPROXY_ENV_FILE=$(cd "$(dirname "$env_file")" && pwd)/$(basename "$env_file")
    "$here/scripts/render-lighttpd.sh" "$run/lighttpd" "$bin" > /dev/null
    lighttpd -D -f "$run/lighttpd/lighttpd.conf" &
    pids+=($!)
    logs=$run/lighttpd/logs
    ;;
*) echo "run: SERVER must be nginx or lighttpd, not $server" >&2; exit 2 ;;
esac

echo "run: claude service (Anthropic Messages API) on http://${CLAUDE_SERVICE_HOST:-127.0.0.1}:${CLAUDE_SERVICE_PORT:-8001}, upstream ${ANTHROPIC_BASE_URL:-https://api.anthropic.com}"
echo "run: codex service (OpenAI Responses API) on http://${CODEX_SERVICE_HOST:-127.0.0.1}:${CODEX_SERVICE_PORT:-8002}, upstream ${OPENAI_BASE_URL:-https://api.openai.com/v1}"
echo "run: $server logs in $logs; Ctrl-C stops"
# Any child exiting ends the run: a half-started stack is worse than none.
wait -n "${pids[@]}" || true
