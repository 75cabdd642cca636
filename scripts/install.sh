#!/bin/sh
# make install / make uninstall: one list of what is installed, so the two
# can never disagree.
#   scripts/install.sh install|uninstall BIN_DIR
# Environment: PREFIX (/usr/local), DESTDIR (empty).
set -eu
mode=$1 bin=$2
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-/usr/local}
root=${DESTDIR:-}$prefix
share=$root/share/ccproxy

# "source destination mode" lines; destinations are relative to $root.
manifest() {
    for s in claude codex; do
        echo "$bin/ccproxy-$s bin/ccproxy-$s 755"
        echo "$here/man/ccproxy-$s.8 share/man/man8/ccproxy-$s.8 644"
        for u in ccproxy-$s.socket ccproxy-$s.service ccproxy-$s-spawn.service; do
            echo "$here/conf/systemd/$u share/ccproxy/examples/systemd/$u 644"
        done
        echo "$here/conf/nginx/ccproxy-$s.conf share/ccproxy/examples/nginx/ccproxy-$s.conf 644"
    done
    for f in "$here"/conf/nginx/*.conf; do
        case $f in */ccproxy-claude.conf|*/ccproxy-codex.conf) continue ;; esac
        echo "$f share/ccproxy/examples/nginx/$(basename "$f") 644"
    done
    for f in "$here"/conf/lighttpd/*; do
        [ -f "$f" ] && echo "$f share/ccproxy/examples/lighttpd/$(basename "$f") 644"
    done
    for f in "$here"/conf/lighttpd/errors/*.html; do
        echo "$f share/ccproxy/examples/lighttpd/errors/$(basename "$f") 644"
    done
    echo "$here/conf/adapters.json share/ccproxy/adapters.json 644"
    for f in "$here"/conf/adapters.d/*.json; do
        echo "$f share/ccproxy/adapters.d/$(basename "$f") 644"
    done
    echo "$here/conf/codex_instructions.md share/ccproxy/codex_instructions.md 644"
    echo "$here/conf/codex_tools.json share/ccproxy/codex_tools.json 644"
}

case $mode in
install)
    for s in claude codex; do
        [ -x "$bin/ccproxy-$s" ] || { echo "install: $bin/ccproxy-$s is not built (run make)" >&2; exit 1; }
    done
    manifest | while read -r src dst m; do
        mkdir -p "$(dirname "$root/$dst")"
        case $dst in
        # Paths inside man pages, units and example configs follow the prefix.
        *.8|*.service|*.socket|*.conf)
            sed -e "s|@PREFIX@|$prefix|g" -e "s|/usr/local/bin/|$prefix/bin/|g" -e "s|@BIN_DIR@|$prefix/bin|g" \
                -e "s|@ERRORS_DIR@|$prefix/share/ccproxy/examples/lighttpd/errors|g" -e "s|@RUN_DIR@|/run/ccproxy|g" -e "s|@MAX_FDS@|65536|g" -e "s|@MAX_CONNECTIONS@|32000|g" \
                "$src" > "$root/$dst"
            chmod "$m" "$root/$dst" ;;
        *) install -m "$m" "$src" "$root/$dst" ;;
        esac
        echo "installed $root/$dst"
    done
    ;;
uninstall)
    manifest | while read -r src dst m; do
        [ -e "$root/$dst" ] && rm -f "$root/$dst" && echo "removed $root/$dst"
        true
    done
    for d in share/ccproxy/examples/nginx share/ccproxy/examples/lighttpd/errors share/ccproxy/examples/lighttpd \
             share/ccproxy/examples/systemd \
             share/ccproxy/examples share/ccproxy/adapters.d share/ccproxy; do
        [ -d "$root/$d" ] && rmdir "$root/$d" 2>/dev/null || true
    done
    ;;
*) echo "usage: install.sh install|uninstall BIN_DIR" >&2; exit 2 ;;
esac
