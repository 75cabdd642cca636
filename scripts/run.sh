#!/usr/bin/env bash
# `make run`: nginx plus the responders in the foreground, from this checkout.
# Honours the environment and the .env file (CCPROXY_ENV_FILE, default ./.env);
# its files (rendered configs, sockets, logs) go to CCPROXY_RUN_DIR (default
# build/run). SIGTERM, SIGINT or SIGHUP, to this script or to the make that
# runs it, stops everything it started; so does the end of that make.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${CCPROXY_BIN_DIR:-$here/build/bin}

run=${CCPROXY_RUN_DIR:-$here/build/run}
mkdir -p "$run"
# A unix socket path must fit in 108 bytes.
[ ${#run} -gt 80 ] && run=$(mktemp -d /tmp/ccproxy-run.XXXXXX)
export CLAUDE_FCGI_SOCKET=$run/claude.sock CODEX_FCGI_SOCKET=$run/codex.sock
services=(claude codex)

for s in "${services[@]}"; do
    "$bin/ccproxy-$s" --check-config > /dev/null || { echo "run: fix the configuration above and try again" >&2; exit 2; }
done
# The responders read the environment and .env themselves; the run takes the
# few values it needs (listen addresses, timeouts, the grace) from what they
# read, never parsing .env again: --print-config-env gives NAME='value' lines.
claude_conf=$("$bin/ccproxy-claude" --print-config-env) || exit 2
codex_conf=$("$bin/ccproxy-codex" --print-config-env) || exit 2
conf() { # text NAME: NAME's value in a --print-config-env text (eval'd in a subshell)
    (eval "$1"; eval "printf '%s' \"\${$2-}\"")
}
claude_host=$(conf "$claude_conf" CLAUDE_SERVICE_HOST) claude_port=$(conf "$claude_conf" CLAUDE_SERVICE_PORT)
codex_host=$(conf "$codex_conf" CODEX_SERVICE_HOST) codex_port=$(conf "$codex_conf" CODEX_SERVICE_PORT)
claude_upstream=$(conf "$claude_conf" ANTHROPIC_BASE_URL) codex_upstream=$(conf "$codex_conf" OPENAI_BASE_URL)
grace=$(conf "$claude_conf" SHUTDOWN_GRACE)

pids=()
alive=()
running() { # pid: it exists and has not exited (a zombie has)
    local st
    kill -0 "$1" 2>/dev/null || return 1
    [ -r "/proc/$1/stat" ] || return 0
    read -r st 2>/dev/null < "/proc/$1/stat" || return 1
    st=${st##*) }
    [ "${st%% *}" != Z ]
}
still_alive() { # those of "$@" still running, into alive
    alive=()
    for p in "$@"; do running "$p" && alive+=("$p"); done
    return 0
}
children_of() { # pid: its children's pids, into kids (lighttpd's responders)
    local f st
    kids=()
    for f in /proc/[0-9]*/stat; do
        read -r st 2>/dev/null < "$f" || continue
        st=${st##*) }; st=${st#* }
        [ "${st%% *}" = "$1" ] && { f=${f#/proc/}; kids+=("${f%/stat}"); }
    done
    return 0
}
# Stop everything, exit with $1. Each process gets SIGTERM once (the responders
# drain running streams for up to SHUTDOWN_GRACE seconds); the run waits for
# all of them, those lighttpd spawned included, and whatever is still there
# 10 s after the grace gets SIGKILL, so the ports are always given back.
stop() {
    trap '' INT TERM HUP
    trap - EXIT
    local all=("${pids[@]}") kids=() p
    for p in "${pids[@]}"; do children_of "$p"; all+=("${kids[@]}"); done
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    local waited=0
    still_alive "${all[@]}"
    while [ ${#alive[@]} -gt 0 ] && [ $waited -lt $(( (grace + 10) * 5 )) ]; do
        sleep 0.2; waited=$((waited + 1)); still_alive "${all[@]}"
    done
    [ ${#alive[@]} -gt 0 ] && { echo "run: killing ${alive[*]}, still running after ${grace}+10 s" >&2; kill -KILL "${alive[@]}" 2>/dev/null || true; }
    wait 2>/dev/null || true
    rm -f "$CLAUDE_FCGI_SOCKET" "$CODEX_FCGI_SOCKET"
    echo "run: stopped"
    exit "$1"
}
trap 'stop 130' INT
trap 'stop 143' TERM
trap 'stop 129' HUP
trap 'stop $?' EXIT

# make (whose recipe execs this script) passes SIGTERM on to it, but on SIGINT
# or SIGHUP sent to make alone it passes nothing and waits for its child, and a
# make killed outright passes nothing either. So the run also watches the
# process that started it: when that one is gone (we were reparented), or has
# dropped its handler for a stop signal it caught at our start (make's
# fatal-signal handler resets it, then waits for us), the run stops.
parent=$PPID
stop_mask=$(( 1 << (1 - 1) | 1 << (2 - 1) | 1 << (3 - 1) | 1 << (15 - 1) )) # HUP INT QUIT TERM
parent_caught=0
read_parent_caught() { # the parent's caught stop signals into parent_caught; 1 when it is gone
    local k v st
    [ -r /proc/$$/stat ] && read -r st 2>/dev/null < /proc/$$/stat || return 0 # no /proc: no watch
    st=${st##*) }; st=${st#* }
    [ "${st%% *}" = "$parent" ] || return 1
    while read -r k v; do
        [ "$k" = SigCgt: ] && { parent_caught=$(( 16#$v & stop_mask )); return 0; }
    done 2>/dev/null < /proc/$parent/status
    return 0
}
read_parent_caught
parent_caught_at_start=$parent_caught
parent_stopping() {
    read_parent_caught || return 0
    (( parent_caught_at_start & ~parent_caught ))
}

server=${SERVER:-nginx}
case $server in
nginx)
    SERVICES="${services[*]}" CLAUDE_SERVICE_HOST=$claude_host CLAUDE_SERVICE_PORT=$claude_port \
        CODEX_SERVICE_HOST=$codex_host CODEX_SERVICE_PORT=$codex_port \
        HTTP_TIMEOUT=$(conf "$claude_conf" HTTP_TIMEOUT) MAX_BODY_BYTES=$(conf "$claude_conf" MAX_BODY_BYTES) \
        UPSTREAM_MAX_ATTEMPTS=$(conf "$claude_conf" UPSTREAM_MAX_ATTEMPTS) \
        "$here/scripts/render-nginx.sh" "$run/nginx" > /dev/null
    for s in "${services[@]}"; do
        sock_var=${s^^}_FCGI_SOCKET
        sock=${!sock_var}
        rm -f "$sock"
        spawn-fcgi -n -b 8192 -s "$sock" -M 0660 -- "$bin/ccproxy-$s" &
        pids+=($!)
        for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
    done
    nginx -p "$run/nginx" -c "$run/nginx/nginx.conf" -e "$run/nginx/logs/error.log" -g 'daemon off;' &
    pids+=($!)
    logs=$run/nginx/logs
    ;;
lighttpd)
    # lighttpd spawns the responders itself (mod_fastcgi bin-path), with the
    # configuration (all of it, from --print-config-env) in their bin-environment.
    "$here/scripts/render-lighttpd.sh" "$run/lighttpd" "$bin" > /dev/null
    lighttpd -D -f "$run/lighttpd/lighttpd.conf" &
    pids+=($!)
    logs=$run/lighttpd/logs
    ;;
*) echo "run: SERVER must be nginx or lighttpd, not $server" >&2; exit 2 ;;
esac

echo "run: claude service (Anthropic Messages API) on http://$claude_host:$claude_port, upstream $claude_upstream"
echo "run: codex service (OpenAI Responses API) on http://$codex_host:$codex_port, upstream $codex_upstream"
echo "run: $server logs in $logs; Ctrl-C stops"
# Any child exiting ends the run: a half-started stack is worse than none.
while :; do
    still_alive "${pids[@]}"
    if [ ${#alive[@]} -ne ${#pids[@]} ]; then echo "run: a process of the stack exited; stopping" >&2; stop 1; fi
    if parent_stopping; then echo "run: the process that started the run is stopping or gone; stopping" >&2; stop 143; fi
    sleep 0.5
done
