#!/usr/bin/env bash
# `make run`: nginx plus the responders in the foreground, from this checkout.
# Honours the environment and the .env file (CCPROXY_ENV_FILE, default ./.env);
# its files (rendered configs, sockets, logs) go to CCPROXY_RUN_DIR (default
# build/run). SIGTERM, SIGINT or SIGHUP, to this script or to the make that
# runs it, stops everything it started; so does the end of that make.
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

run=${CCPROXY_RUN_DIR:-$here/build/run}
mkdir -p "$run"
# A unix socket path must fit in 108 bytes.
[ ${#run} -gt 80 ] && run=$(mktemp -d /tmp/ccproxy-run.XXXXXX)
export CLAUDE_FCGI_SOCKET=$run/claude.sock CODEX_FCGI_SOCKET=$run/codex.sock
services=(claude codex)

for s in "${services[@]}"; do
    "$bin/ccproxy-$s" --check-config > /dev/null || { echo "run: fix the configuration above and try again" >&2; exit 2; }
done

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
    local grace=${SHUTDOWN_GRACE:-30} waited=0
    [[ $grace =~ ^[0-9]+$ ]] || grace=30
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
    SERVICES="${services[*]}" "$here/scripts/render-nginx.sh" "$run/nginx" > /dev/null
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
while :; do
    still_alive "${pids[@]}"
    if [ ${#alive[@]} -ne ${#pids[@]} ]; then echo "run: a process of the stack exited; stopping" >&2; stop 1; fi
    if parent_stopping; then echo "run: the process that started the run is stopping or gone; stopping" >&2; stop 143; fi
    sleep 0.5
done
