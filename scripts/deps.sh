#!/bin/sh
# Installs the Debian packages the build and tests need, when missing.
# As root it runs apt-get; otherwise it names the packages to install.
quiet=0
[ "$1" = "--quiet" ] && { quiet=1; shift; }
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
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
    exit $rc
fi
echo "deps: missing Debian packages:$missing" >&2
echo "deps: install them with: sudo apt-get install$missing" >&2
exit 1
