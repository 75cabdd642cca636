#!/bin/sh
# Installs the Debian packages the build and tests need, when missing.
#   scripts/deps.sh [--quiet] PACKAGE...
# Nothing missing: exit 0 at once (no root, no network). Missing, as root:
# apt-get installs them. Missing, not root: one line naming them and the
# command that installs them, exit 1 (make stops there).
quiet=0
[ "$1" = "--quiet" ] && { quiet=1; shift; }
if ! command -v dpkg-query >/dev/null 2>&1; then
    # Not Debian: nothing to ask. The build names what it lacks (pkg-config).
    [ $quiet = 1 ] && exit 0
    echo "deps: no dpkg-query here (not Debian?); install the equivalents of: $*" >&2
    exit 1
fi
missing=""
for p in "$@"; do
    # db:Status-Status is "installed" whatever the selection (install, hold).
    dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed || missing="$missing $p"
done
# nginx-full or nginx (the metapackage) also provide the nginx binary.
case "$missing" in *nginx-light*) command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] && missing=$(echo "$missing" | sed 's/ nginx-light//');; esac
[ -z "$missing" ] && { [ $quiet = 1 ] || echo "deps: all packages present"; exit 0; }
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # Install without starting the packaged services (nginx would take port 80).
    policy=/usr/sbin/policy-rc.d; made_policy=0
    if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy && made_policy=1; fi
    (apt-get install -y -q --no-install-recommends $missing || { apt-get update -q && apt-get install -y -q --no-install-recommends $missing; }) >&2
    rc=$?
    [ $made_policy = 1 ] && rm -f $policy
    [ $rc = 0 ] || echo "deps: apt-get could not install:$missing" >&2
    exit $rc
fi
echo "deps: missing Debian packages:$missing; install them with: sudo apt-get install$missing" >&2
exit 1
