#!/usr/bin/env bash
# The mod_msm demo on one machine, all on 127.0.0.1: three memcached nodes,
# two httpd back ends (routes a and b, sticky mode, mod_auth_form login) and
# a mod_proxy_balancer front.
#
#   bash scripts/demo.sh          install, build, start, print the URL
#   bash scripts/demo.sh stop     stop what the demo started
#
# Run as root on Debian 12 (it installs packages); the servers run as nobody.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=${MSM_DEMO_DIR:-/var/tmp/msm-demo}
FRONT_PORT=${MSM_DEMO_PORT:-8080}
PORT_A=8081
PORT_B=8082
MC_PORTS="21211 21212 21213"
HTTPD=/usr/sbin/apache2
MODULES=/usr/lib/apache2/modules

stop_pidfile() {
    local f=$1 pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

stop_all() {
    [ -d "$RUN" ] || return 0
    for f in "$RUN"/front.pid "$RUN"/backend-*.pid "$RUN"/memcached-*.pid; do
        [ -e "$f" ] && stop_pidfile "$f"
    done
    return 0
}

if [ "${1:-}" = stop ]; then
    stop_all
    echo "demo stopped"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "run as root: it installs Debian packages" >&2
    exit 1
fi

echo "== installing packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq apache2 apache2-dev apache2-utils memcached autoconf \
    automake libtool pkg-config libssl-dev openssl make gcc perl curl >/dev/null

echo "== building mod_msm"
cd "$ROOT"
if [ ! -f .libs/mod_msm.so ] || [ -n "$(find . -name '*.c' -newer .libs/mod_msm.so -print -quit)" ]; then
    autoreconf -fi >/dev/null 2>&1
    ./configure --with-apxs=/usr/bin/apxs >/dev/null
    make -j2 >/dev/null
fi

stop_all
mkdir -p "$RUN"
rm -rf "$RUN/htdocs"
cp -r "$ROOT/demo/htdocs" "$RUN/htdocs"
cp "$ROOT/.libs/mod_msm.so" "$RUN/mod_msm.so"
htpasswd -bc "$RUN/htpasswd" demo demo >/dev/null 2>&1
secret=$(head -c 24 /dev/urandom | base64)
chown -R nobody:nogroup "$RUN"
chmod -R a+rX "$RUN"

echo "== starting memcached on $MC_PORTS"
for p in $MC_PORTS; do
    memcached -u nobody -l 127.0.0.1 -p "$p" -U 0 -m 64 -d -P "$RUN/memcached-$p.pid"
done

render() {      # template output route port
    sed -e "s|@RUN@|$RUN|g" -e "s|@MODULES@|$MODULES|g" \
        -e "s|@MSM_SO@|$RUN/mod_msm.so|g" -e "s|@HTDOCS@|$RUN/htdocs|g" \
        -e "s|@USER@|nobody|g" -e "s|@GROUP@|nogroup|g" \
        -e "s|@SECRET@|$secret|g" -e "s|@ROUTE@|$3|g" -e "s|@PORT@|$4|g" \
        -e "s|@PORT_A@|$PORT_A|g" -e "s|@PORT_B@|$PORT_B|g" "$1" > "$2"
}

echo "== starting httpd back ends a ($PORT_A), b ($PORT_B) and the front ($FRONT_PORT)"
render "$ROOT/demo/backend.conf.in" "$RUN/backend-a.conf" a "$PORT_A"
render "$ROOT/demo/backend.conf.in" "$RUN/backend-b.conf" b "$PORT_B"
render "$ROOT/demo/front.conf.in" "$RUN/front.conf" front "$FRONT_PORT"
for c in backend-a backend-b front; do
    "$HTTPD" -t -f "$RUN/$c.conf" >/dev/null 2>&1 || { "$HTTPD" -t -f "$RUN/$c.conf"; exit 1; }
    "$HTTPD" -f "$RUN/$c.conf" -k start
done

for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$FRONT_PORT/login.html" && break
    sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$FRONT_PORT/login.html" || {
    echo "the front did not answer; logs in $RUN" >&2; exit 1; }

cat <<MSG

mod_msm demo is running:

    URL:    http://127.0.0.1:$FRONT_PORT/
    login:  demo / demo

The page shows your user, a counter kept in the session, and which back end
(route a or b) and memcached node (m1, m2, m3) hold it. Stop the back end or
the memcached node shown (pids in $RUN/*.pid) and reload: you stay logged in
with the same counter.

    statistics:  curl http://127.0.0.1:$PORT_A/msm-status
    logs:        $RUN/*.error.log
    stop:        bash scripts/demo.sh stop
MSG
