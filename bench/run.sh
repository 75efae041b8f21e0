#!/usr/bin/env bash
# bench/run.sh - mod_msm against its peers, on one machine.
#
#   bash bench/run.sh [seconds-per-run]        (default 5; as root on Debian 12)
#
# What it does:
#   1. apt-get installs what it needs when missing (apache2 apache2-dev memcached
#      wrk libapache2-mod-php php-memcached sqlite3 libaprutil1-dbd-sqlite3 curl
#      autoconf automake libtool make gcc libc6-dev libssl-dev openssl; php-fpm instead of
#      libapache2-mod-php with MSM_BENCH_MPM=event; strace with
#      MSM_BENCH_STRACE=1). No service is started during the install (a
#      policy-rc.d answering 101 is put in place when there is none), and the
#      links in /etc/apache2/mods-enabled and conf-enabled are put back as they
#      were (libapache2-mod-php would enable php and switch the MPM): the system
#      apache2's configuration and service are left alone.
#   2. builds mod_msm from this repository in a temporary directory
#      (autoreconf -fi, configure, make); nothing is installed.
#   3. starts 3 memcached (127.0.0.1:21211-21213 in clear text and, the same
#      servers, 21221-21223 with TLS: a throwaway CA and certificate made with
#      openssl), 3 more on Unix sockets (memcached -s), and ONE httpd
#      (/usr/sbin/apache2 -f bench's own config) on 127.0.0.1:18080 (18081 for
#      the sticky case, 18082 TLS, 18083 Unix sockets, 18084 MsmEncryptKeyFile),
#      children running as www-data (nobody if there is none). MSM_BENCH_MPM:
#        prefork (default): exactly 16 children (StartServers, MinSpareServers,
#          MaxSpareServers, MaxRequestWorkers 16), PHP in them (mod_php);
#        event: 2 children x 16 threads (ServerLimit 2, ThreadsPerChild 16,
#          MaxRequestWorkers 32); mod_php is not thread-safe, so every case's
#          page runs in php-fpm (one php-fpm, pm static 16, through
#          mod_proxy_fcgi on a unix socket; the php-memcached cases on pools
#          of their own with their settings, also pm static 16). Same pages,
#          same PHP.
#      No Mutex directive: httpd's and APR's default mutexes.
#   4. for each case and page shape ("read": the page reads the session;
#      "write": it changes it), creates 200 sessions, checks that the page runs
#      and finds them (a write with the first session's cookie answers
#      count=2, a read after it too: the session reached PHP, SessionEnv as a
#      FastCGI parameter under php-fpm, and the X-Replace-Session it answered
#      was stored; a case that fails this is not measured, its row is "-" and
#      a note says why), warms up for 1 s and runs
#         wrk -t2 -c16 -d<seconds>s --latency -s rot.lua
#      rotating their 200 Cookie headers (each wrk thread from its own offset),
#      and records req/s, p50 and p99 latency, the non-2xx answers (wrk's
#      "Non-2xx or 3xx responses"; socket errors are added as "+N sock"), the
#      memcached operations per request: the `stats` deltas of cmd_get + cmd_set +
#      cmd_touch + delete_hits + delete_misses summed over the three nodes,
#      divided by wrk's request count (cas is not added on top: memcached 1.6
#      counts every cas in cmd_set too, and add in cmd_set; gat(s)/touch are
#      cmd_touch), the machine's idle CPU during the run (/proc/stat deltas of
#      idle + iowait over all CPUs; wrk runs on the same CPUs), the server
#      CPU per request (user + system ticks of the run user's processes,
#      httpd children and php-fpm, and of the memcached nodes, over wrk's
#      request count) and the 1-minute load average at its start.
#   5. prints a markdown table, the operations per request by memcached command,
#      the ratios, the date, the machine and its load average (other work on the
#      machine makes the numbers noisy: measure on a quiet one).
#
# Cases: no session; mod_session_cookie; mod_session_cookie + mod_session_crypto;
# mod_session_dbd (sqlite3); PHP sessions in memcached (php-memcached) with
# locking on and off; mod_msm non-sticky; mod_msm sticky (MsmSticky On, MsmRoute
# a, requests straight to the back end, cookies "<id>-<node>.a"); mod_msm with
# MsmLocking On; mod_msm non-sticky over TLS (MsmTLS On, verified against the
# throwaway CA; the TLS handshakes per 10 000 requests of the measured run are
# printed, from mod_msm's counters), over Unix-domain sockets, and with
# MsmEncryptKeyFile (one key). Every mod_session case runs the same page (app.php: SessionEnv +
# X-Replace-Session, SessionMaxAge 1800), php-memcached runs the same page with
# PHP sessions (phpsess.php); both are those of shared/repro/peer-bench.
#
# Interleaved comparison (instead of the table):
#   MSM_BENCH_COMPARE="cookie sticky" MSM_BENCH_REPEAT=5 bash bench/run.sh 5
# runs two cases (ids below; "sticky" = msm-sticky) alternately, A B A B ...,
# REPEAT times each (page shape MSM_BENCH_SHAPE, default read), each run after
# its own 1 s warm-up, prints every run, the median req/s of each case and the
# median (and range) of the per-pair ratios B/A: slow drifts of a shared
# machine hit both cases alike.
#
# MSM_BENCH_STRACE=1: after the measurements, one more bounded run
# (MSM_BENCH_STRACE_SECONDS, default 3) of each compared case (of cookie and
# msm-sticky, read, in the table mode) with `strace -C -f -y` attached to every
# httpd child (not the parent, not php-fpm) from before its first request to
# after its last; prints the system calls per request, in all and those that
# lock (futex, flock, semop, semtimedop, and fcntl with a lock command, with
# the file locked). strace slows the run: its req/s is not a measurement.
#
# Everything it starts (memcached, php-fpm, strace, httpd: `-k stop` on its pid
# file) is stopped by pid on exit, also on failure or ^C. The temporary
# directory is removed after a successful run (MSM_BENCH_KEEP=1 keeps it; it is
# kept on failure); MSM_BENCH_OUT=DIR copies results.tsv and results.md into
# DIR first (made when missing; also after a failure, with what there is).
# It is never run by the test suite.
#
# results.tsv, one line per measured run, tab separated: id, label, shape,
# req/s, p50 ms, p99 ms, non-2xx (+N sock), mc ops/req, ops by command, CPU
# idle %, load, run (- in the table), pos (- in the table), server CPU
# µs/req; "-" where a run failed. bench/all.sh reads it.
#
# Environment: MSM_BENCH_SESSIONS (default 200), MSM_BENCH_CASES (a space
# separated subset of the case ids below, for development), MSM_BENCH_KEEP=1,
# MSM_BENCH_OUT,
# MSM_BENCH_CONNECTIONS (wrk -c, default 16; e.g. 2 for latency at light load:
# with 16 connections on 2 cores the p99 is the scheduler's, not the module's),
# MSM_BENCH_MPM (prefork|event), MSM_BENCH_COMPARE, MSM_BENCH_REPEAT (default
# 5), MSM_BENCH_SHAPE (read|write, comparison only), MSM_BENCH_STRACE=1,
# MSM_BENCH_STRACE_SECONDS.
set -euo pipefail

SECS=${1:-5}
case "$SECS" in ''|*[!0-9]*) echo "usage: bash bench/run.sh [seconds-per-run]" >&2; exit 2 ;; esac
[ "$SECS" -ge 1 ] || { echo "seconds must be >= 1" >&2; exit 2; }
NSESS=${MSM_BENCH_SESSIONS:-200}
CONNS=${MSM_BENCH_CONNECTIONS:-16}
case "$CONNS" in ''|*[!0-9]*|0) echo "MSM_BENCH_CONNECTIONS must be a number >= 1" >&2; exit 2 ;; esac
THREADS=$(( CONNS < 2 ? 1 : 2 ))
MPM=${MSM_BENCH_MPM:-prefork}
case "$MPM" in prefork|event) ;; *) echo "MSM_BENCH_MPM must be prefork or event" >&2; exit 2 ;; esac
COMPARE=${MSM_BENCH_COMPARE:-}
REPEAT=${MSM_BENCH_REPEAT:-5}
case "$REPEAT" in ''|*[!0-9]*|0) echo "MSM_BENCH_REPEAT must be a number >= 1" >&2; exit 2 ;; esac
CMP_SHAPE=${MSM_BENCH_SHAPE:-read}
case "$CMP_SHAPE" in read|write) ;; *) echo "MSM_BENCH_SHAPE must be read or write" >&2; exit 2 ;; esac
STRACE=${MSM_BENCH_STRACE:-0}
STRACE_SECS=${MSM_BENCH_STRACE_SECONDS:-3}
case "$STRACE_SECS" in ''|*[!0-9]*|0) echo "MSM_BENCH_STRACE_SECONDS must be a number >= 1" >&2; exit 2 ;; esac
OUT=""                  # MSM_BENCH_OUT, absolute (the cleanup runs in $WORK)
if [ -n "${MSM_BENCH_OUT:-}" ]; then
    OUT=$(mkdir -p "$MSM_BENCH_OUT" && cd "$MSM_BENCH_OUT" && pwd) \
        || { echo "MSM_BENCH_OUT: cannot make $MSM_BENCH_OUT" >&2; exit 2; }
fi
FPM_CHILDREN=16         # php-fpm's pm.max_children (event): one per wrk connection
PORT=18080
PORT_STICKY=18081
PORT_TLS=18082          # mod_msm over TLS (MsmTLS On)
PORT_UNIX=18083         # mod_msm over Unix-domain sockets
PORT_ENC=18084          # mod_msm with MsmEncryptKeyFile
MC_PORTS=(21211 21212 21213)
MC_TLS_PORTS=(21221 21222 21223)   # TLS listeners of the same memcached
HTTPD=/usr/sbin/apache2
APXS=/usr/bin/apxs
MODDIR=/usr/lib/apache2/modules
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
T0=$(date +%s)

# id | label | port | path | cookie name (- = none)
CASES=(
    "none|no session|$PORT|/none/|-"
    "cookie|mod_session_cookie|$PORT|/cookie/|session"
    "crypto|mod_session_cookie + crypto|$PORT|/crypto/|csession"
    "dbd|mod_session_dbd (sqlite)|$PORT|/dbd/|dsession"
    "phpmc|php-memcached, locking on|$PORT|/phpmc/|PHPSESSID"
    "phpmc-nolock|php-memcached, locking off|$PORT|/phpmc-nolock/|PHPSESSID"
    "msm|mod_msm non-sticky|$PORT|/msm/|MSMSESSION"
    "msm-sticky|mod_msm sticky|$PORT_STICKY|/msm-sticky/|MSMSESSION"
    "msm-lock|mod_msm MsmLocking On|$PORT|/msm-lock/|MSMSESSION"
    "msm-tls|mod_msm over TLS|$PORT_TLS|/msm/|MSMSESSION"
    "msm-unix|mod_msm over Unix sockets|$PORT_UNIX|/msm/|MSMSESSION"
    "msm-enc|mod_msm MsmEncryptKeyFile|$PORT_ENC|/msm/|MSMSESSION"
)
case_of() {   # case_of ID: its line of CASES ("sticky" = msm-sticky)
    local id=$1 c
    [ "$id" = sticky ] && id=msm-sticky
    for c in "${CASES[@]}"; do
        [ "${c%%|*}" = "$id" ] && { echo "$c"; return 0; }
    done
    return 1
}
CMP=()
if [ -n "$COMPARE" ]; then
    for id in $COMPARE; do
        case_of "$id" >/dev/null || { echo "MSM_BENCH_COMPARE: no case '$id'" >&2; exit 2; }
        CMP+=("$(case_of "$id")")
    done
    [ ${#CMP[@]} -eq 2 ] || { echo "MSM_BENCH_COMPARE takes two case ids, e.g. \"cookie sticky\"" >&2; exit 2; }
fi

say() { printf '== %s [%ss]\n' "$*" "$(( $(date +%s) - T0 ))" >&2; }
die() { printf '!! %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs Debian packages and starts httpd as www-data)"

# ------------------------------------------------------------ cleanup (trap)
WORK=""
HTTPD_CONF=""
MC_PIDS=()
FPM_PID=""
STRACE_PID=""
POLICY_CREATED=0
MODS_SAVED=""
OK=0

stop_pid() {   # stop_pid PID [name]: TERM, wait up to 10 s, KILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

stop_httpd() {
    [ -n "$HTTPD_CONF" ] || return 0
    local pidf="$WORK/run/httpd.pid" pid kids i
    [ -s "$pidf" ] || return 0
    pid=$(cat "$pidf" 2>/dev/null || true)
    [ -n "$pid" ] || return 0
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -s ' \n' ' ' || true)
    "$HTTPD" -f "$HTTPD_CONF" -k stop >/dev/null 2>&1 || true
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    for k in $kids; do kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null || true; done
    HTTPD_CONF=""
}

restore_mods() {   # put /etc/apache2/{mods,conf}-enabled back as they were before apt-get
    [ -n "$MODS_SAVED" ] && [ -d "$MODS_SAVED" ] || return 0
    local sub d f
    for sub in mods-enabled conf-enabled; do
        d=/etc/apache2/$sub
        [ -d "$d" ] && [ -d "$MODS_SAVED/$sub" ] || continue
        for f in "$d"/* ; do
            [ -e "$f" ] || [ -L "$f" ] || continue
            [ -e "$MODS_SAVED/$sub/${f##*/}" ] || [ -L "$MODS_SAVED/$sub/${f##*/}" ] || rm -f "$f"
        done
        for f in "$MODS_SAVED/$sub"/*; do
            [ -e "$f" ] || [ -L "$f" ] || continue
            [ -e "$d/${f##*/}" ] || [ -L "$d/${f##*/}" ] || cp -a "$f" "$d/"
        done
    done
    rm -rf "$MODS_SAVED"
    MODS_SAVED=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [ -n "$STRACE_PID" ] && stop_pid "$STRACE_PID"
    stop_httpd
    [ -n "$FPM_PID" ] && stop_pid "$FPM_PID"
    for p in "${MC_PIDS[@]}"; do stop_pid "$p"; done
    if [ "$POLICY_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    restore_mods
    if [ -n "$OUT" ] && [ -n "$WORK" ]; then
        for f in results.tsv results.md; do
            [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT/$f"
        done
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$OK" = 1 ] && [ "${MSM_BENCH_KEEP:-0}" != 1 ]; then
            cd / && rm -rf "$WORK"
        else
            echo "work dir kept: $WORK (logs/error.log, build.log)" >&2
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "!! interrupted" >&2; exit 130' INT TERM

# ------------------------------------------------------------ 1. packages
PKGS="apache2 apache2-dev memcached wrk php-memcached sqlite3
      libaprutil1-dbd-sqlite3 curl autoconf automake libtool make gcc libc6-dev
      libssl-dev openssl"
if [ "$MPM" = event ]; then PKGS="$PKGS php-fpm"; else PKGS="$PKGS libapache2-mod-php"; fi
[ "$STRACE" = 1 ] && PKGS="$PKGS strace"
missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "apt-get install:$missing"
    MODS_SAVED=$(mktemp -d /tmp/msm-bench-mods.XXXXXX)
    for sub in mods-enabled conf-enabled; do
        if [ -d "/etc/apache2/$sub" ]; then
            mkdir -p "$MODS_SAVED/$sub"
            cp -a "/etc/apache2/$sub/." "$MODS_SAVED/$sub/"
        fi
    done
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# bench/run.sh: no service starts during its apt-get\nexit 101\n' \
            > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_CREATED=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    timeout 900 apt-get update -qq >/dev/null || die "apt-get update failed"
    timeout 1200 apt-get install -y -qq --no-install-recommends $missing >/dev/null \
        || die "apt-get install$missing failed"
    if [ "$POLICY_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; POLICY_CREATED=0; fi
    restore_mods
fi
PHP_SO=""
FPM=""
if [ "$MPM" = event ]; then
    FPM=$(ls /usr/sbin/php-fpm* 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$FPM" ] || die "no /usr/sbin/php-fpm* (php-fpm)"
    for m in mpm_event proxy proxy_fcgi; do
        [ -e "$MODDIR/mod_$m.so" ] || die "missing $MODDIR/mod_$m.so"
    done
else
    PHP_SO=$(ls "$MODDIR"/libphp*.so 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$PHP_SO" ] || die "no libphp*.so in $MODDIR (libapache2-mod-php)"
    [ -e "$MODDIR/mod_mpm_prefork.so" ] || die "missing $MODDIR/mod_mpm_prefork.so"
fi
for m in authz_core mime session session_cookie session_crypto session_dbd dbd; do
    [ -e "$MODDIR/mod_$m.so" ] || die "missing $MODDIR/mod_$m.so"
done
for c in wrk memcached curl sqlite3 "$HTTPD" "$APXS"; do
    command -v "$c" >/dev/null 2>&1 || die "missing $c"
done
[ "$STRACE" = 1 ] && { command -v strace >/dev/null 2>&1 || die "missing strace"; }
RUN_USER=www-data
id -u "$RUN_USER" >/dev/null 2>&1 || RUN_USER=nobody
RUN_GROUP=$(id -gn "$RUN_USER")

# nothing of ours may be listening already
for p in "$PORT" "$PORT_STICKY" "$PORT_TLS" "$PORT_UNIX" "$PORT_ENC" "${MC_PORTS[@]}" "${MC_TLS_PORTS[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port 127.0.0.1:$p is in use: stop what listens there first"
    fi
done

WORK=$(mktemp -d /tmp/msm-bench.XXXXXX)
chmod 755 "$WORK"
cd "$WORK"
mkdir -p "$WORK"/{logs,run,db,htdocs,cookies,build,tls}

# ------------------------------------------------------------ 2. build mod_msm
say "building mod_msm in $WORK/build"
# the sources (no build outputs): scripts/copy-sources.sh
bash "$REPO/scripts/copy-sources.sh" "$REPO" "$WORK/build" || die "copying the sources"
(cd "$WORK/build" && autoreconf -fi && ./configure --with-apxs="$APXS" && make -j"$(nproc)") \
    > "$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; die "build failed (see $WORK/build.log)"; }
MSM_SO=$WORK/build/.libs/mod_msm.so
[ -f "$MSM_SO" ] || die "build produced no .libs/mod_msm.so"

# ------------------------------------------------------------ 3. memcached, httpd
# a throwaway CA and a certificate for 127.0.0.1 (the TLS listeners)
(cd "$WORK/tls" \
 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout ca.key -out ca.pem -days 2 -subj /CN=msm-bench-ca \
 && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout server.key -out server.csr -subj /CN=127.0.0.1 \
 && printf 'subjectAltName=IP:127.0.0.1\n' > server.ext \
 && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -days 2 -extfile server.ext -out server.pem) > "$WORK/logs/openssl.log" 2>&1 \
    || die "openssl could not make the bench certificates (see $WORK/logs/openssl.log)"
chmod 644 "$WORK"/tls/*
# the encryption key (read by httpd as root at start-up)
openssl rand -base64 32 > "$WORK/run/msm.keys"
chmod 600 "$WORK/run/msm.keys"

say "starting memcached on ${MC_PORTS[*]} (TLS also on ${MC_TLS_PORTS[*]}) and on 3 Unix sockets"
# each node listens in clear text on MC_PORTS and with TLS on MC_TLS_PORTS:
# the TLS case reaches the same servers as the plain ones
for i in "${!MC_PORTS[@]}"; do
    p=${MC_PORTS[$i]}
    memcached -u nobody -Z -o "ssl_chain_cert=$WORK/tls/server.pem,ssl_key=$WORK/tls/server.key,ssl_session_cache" \
        -l "notls:127.0.0.1:$p,127.0.0.1:${MC_TLS_PORTS[$i]}" -U 0 -m 64 -t 1 -c 1024 \
        >> "$WORK/logs/memcached-$p.log" 2>&1 &
    MC_PIDS+=($!)
done
MC_SOCKS=()
mkdir -p "$WORK/mcsock"          # memcached (nobody) makes its sockets there
chown nobody "$WORK/mcsock"
chmod 755 "$WORK/mcsock"
for i in 1 2 3; do
    memcached -u nobody -s "$WORK/mcsock/mc-$i.sock" -a 0666 -m 64 -t 1 -c 1024 \
        >> "$WORK/logs/memcached-unix-$i.log" 2>&1 &
    MC_PIDS+=($!)
    MC_SOCKS+=("$WORK/mcsock/mc-$i.sock")
done
for s in "${MC_SOCKS[@]}"; do
    for _ in $(seq 100); do [ -S "$s" ] && break; sleep 0.05; done
    [ -S "$s" ] || die "memcached on $s did not come up"
done
for p in "${MC_PORTS[@]}" "${MC_TLS_PORTS[@]}"; do
    up=0
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then up=1; break; fi
        sleep 0.05
    done
    [ "$up" = 1 ] || die "memcached on $p did not come up"
done

cp "$BENCH/app.php" "$BENCH/phpsess.php" "$BENCH/none.php" "$WORK/htdocs/"
for d in none cookie crypto dbd phpmc phpmc-nolock msm msm-lock msm-sticky; do
    mkdir -p "$WORK/htdocs/$d"
done
cp "$BENCH/none.php" "$WORK/htdocs/none/app.php"
for d in cookie crypto dbd msm msm-lock msm-sticky; do cp "$BENCH/app.php" "$WORK/htdocs/$d/app.php"; done
for d in phpmc phpmc-nolock; do cp "$BENCH/phpsess.php" "$WORK/htdocs/$d/app.php"; done
chmod -R a+rX "$WORK/htdocs"

sqlite3 "$WORK/db/sess.db" \
    "create table session (key varchar(256) primary key, value varchar(4096), expiry integer);"
chown -R "$RUN_USER:$RUN_GROUP" "$WORK/db"

MC_LIST=$(printf '127.0.0.1:%s,' "${MC_PORTS[@]}"); MC_LIST=${MC_LIST%,}
MSM_NODES=""
MSM_NODES_TLS=""
MSM_NODES_UNIX=""
i=1
for p in "${MC_PORTS[@]}"; do MSM_NODES="$MSM_NODES m$i:127.0.0.1:$p"; i=$((i + 1)); done
i=1
for p in "${MC_TLS_PORTS[@]}"; do MSM_NODES_TLS="$MSM_NODES_TLS m$i:127.0.0.1:$p"; i=$((i + 1)); done
i=1
for s in "${MC_SOCKS[@]}"; do MSM_NODES_UNIX="$MSM_NODES_UNIX m$i:unix:$s"; i=$((i + 1)); done
PASSPHRASE=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
HTTPD_CONF_FILE=$WORK/httpd.conf
sed -e "s|@ROOT@|$WORK|g" -e "s|@PORT@|$PORT|g" -e "s|@PORT_STICKY@|$PORT_STICKY|g" \
    -e "s|@USER@|$RUN_USER|g" -e "s|@GROUP@|$RUN_GROUP|g" -e "s|@MODDIR@|$MODDIR|g" \
    -e "s|@PHP_SO@|$PHP_SO|g" -e "s|@MSM_SO@|$MSM_SO|g" -e "s|@MC_LIST@|$MC_LIST|g" \
    -e "s|@MSM_NODES@|${MSM_NODES# }|g" -e "s|@PASSPHRASE@|$PASSPHRASE|g" \
    -e "s|@PORT_TLS@|$PORT_TLS|g" -e "s|@PORT_UNIX@|$PORT_UNIX|g" -e "s|@PORT_ENC@|$PORT_ENC|g" \
    -e "s|@MSM_NODES_TLS@|${MSM_NODES_TLS# }|g" -e "s|@MSM_NODES_UNIX@|${MSM_NODES_UNIX# }|g" \
    "$BENCH/httpd.conf.in" > "$HTTPD_CONF_FILE"
# the MPM, its sizing and PHP (Include'd by httpd.conf)
if [ "$MPM" = event ]; then
    MPM_NOTE="event, 2 children x 16 threads (ServerLimit 2, StartServers 2, ThreadsPerChild 16, MaxRequestWorkers 32); PHP in php-fpm ($("$FPM" -v 2>/dev/null | awk 'NR == 1 { print $2 }'), pm static $FPM_CHILDREN) through mod_proxy_fcgi on a unix socket"
    cat > "$WORK/mpm.conf" <<EOF_MPM
LoadModule mpm_event_module $MODDIR/mod_mpm_event.so
ServerLimit 2
StartServers 2
ThreadLimit 16
ThreadsPerChild 16
MaxRequestWorkers 32
MinSpareThreads 16
MaxSpareThreads 32
LoadModule proxy_module $MODDIR/mod_proxy.so
LoadModule proxy_fcgi_module $MODDIR/mod_proxy_fcgi.so
<FilesMatch "\.php\$">
    SetHandler "proxy:unix:$WORK/run/fpm-www.sock|fcgi://localhost"
</FilesMatch>
EOF_MPM
    # one php-fpm: the pages' pool, and the php-memcached cases' pools with
    # the settings mod_php gets from php_value in httpd.conf.in
    {
        printf '[global]\npid = %s\nerror_log = %s\ndaemonize = no\n' \
            "$WORK/run/php-fpm.pid" "$WORK/logs/php-fpm.log"
        for pool in www phpmc phpmc-nolock; do
            printf '\n[%s]\nuser = %s\ngroup = %s\nlisten = %s\n' \
                "$pool" "$RUN_USER" "$RUN_GROUP" "$WORK/run/fpm-$pool.sock"
            printf 'listen.owner = %s\nlisten.group = %s\nlisten.mode = 0660\nlisten.backlog = 511\n' \
                "$RUN_USER" "$RUN_GROUP"
            printf 'pm = static\npm.max_children = %s\n' "$FPM_CHILDREN"
            if [ "$pool" != www ]; then
                printf 'php_value[session.save_handler] = memcached\nphp_value[session.save_path] = "%s"\n' "$MC_LIST"
                printf 'php_value[memcached.sess_locking] = %s\nphp_value[session.lazy_write] = 1\n' \
                    "$([ "$pool" = phpmc ] && echo 1 || echo 0)"
            fi
        done
    } > "$WORK/php-fpm.conf"
    "$FPM" -t -y "$WORK/php-fpm.conf" > "$WORK/logs/php-fpm-test.log" 2>&1 \
        || { cat "$WORK/logs/php-fpm-test.log" >&2; die "php-fpm -t failed"; }
    say "starting php-fpm ($FPM, $RUN_USER)"
    "$FPM" -F -y "$WORK/php-fpm.conf" >> "$WORK/logs/php-fpm.log" 2>&1 &
    FPM_PID=$!
    up=0
    for _ in $(seq 100); do
        [ -S "$WORK/run/fpm-www.sock" ] && [ -S "$WORK/run/fpm-phpmc.sock" ] \
            && [ -S "$WORK/run/fpm-phpmc-nolock.sock" ] && { up=1; break; }
        kill -0 "$FPM_PID" 2>/dev/null || break
        sleep 0.05
    done
    [ "$up" = 1 ] || { tail -n 20 "$WORK/logs/php-fpm.log" >&2; die "php-fpm did not come up"; }
else
    MPM_NOTE="prefork, 16 children (StartServers, MinSpareServers, MaxSpareServers, MaxRequestWorkers 16); PHP in them (mod_php)"
    cat > "$WORK/mpm.conf" <<EOF_MPM
LoadModule mpm_prefork_module $MODDIR/mod_mpm_prefork.so
StartServers 16
MinSpareServers 16
MaxSpareServers 16
MaxRequestWorkers 16
LoadModule php_module $PHP_SO
AddHandler application/x-httpd-php .php
EOF_MPM
fi
"$HTTPD" -t -f "$HTTPD_CONF_FILE" > "$WORK/logs/configtest.log" 2>&1 \
    || { cat "$WORK/logs/configtest.log" >&2; die "httpd -t failed"; }
say "starting httpd ($MPM, $RUN_USER) on 127.0.0.1:$PORT, :$PORT_STICKY, :$PORT_TLS, :$PORT_UNIX and :$PORT_ENC"
HTTPD_CONF=$HTTPD_CONF_FILE
"$HTTPD" -f "$HTTPD_CONF" -k start || die "httpd did not start (see $WORK/logs/error.log)"
up=0
for _ in $(seq 200); do
    up=1
    for p in "$PORT" "$PORT_STICKY" "$PORT_TLS" "$PORT_UNIX" "$PORT_ENC"; do
        curl -s -o /dev/null -m 2 "http://127.0.0.1:$p/none/app.php" || { up=0; break; }
    done
    [ "$up" = 1 ] && break
    sleep 0.05
done
[ "$up" = 1 ] || { tail -n 20 "$WORK/logs/error.log" >&2; die "httpd does not answer"; }

# ------------------------------------------------------------ helpers
# operation counters of one memcached: "cmd_get cmd_set cmd_touch delete_hits
# delete_misses cas" (cas = cas_hits + cas_badval + cas_misses, already in cmd_set)
mc_stats_one() {
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$1"'; printf "stats\r\nquit\r\n" >&3; cat <&3' 2>/dev/null \
        | tr -d '\r' | awk '$1 == "STAT" { v[$2] = $3 }
            END { printf "%d %d %d %d %d %d\n", v["cmd_get"], v["cmd_set"], v["cmd_touch"],
                  v["delete_hits"], v["delete_misses"], v["cas_hits"] + v["cas_badval"] + v["cas_misses"] }'
}
# the same for a memcached on a Unix socket
mc_stats_unix() {
    timeout 3 perl -MIO::Socket::UNIX -e '
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or exit 1;
        print $s "stats\r\nquit\r\n"; print while <$s>;' "$1" 2>/dev/null \
        | tr -d '\r' | awk '$1 == "STAT" { v[$2] = $3 }
            END { printf "%d %d %d %d %d %d\n", v["cmd_get"], v["cmd_set"], v["cmd_touch"],
                  v["delete_hits"], v["delete_misses"], v["cas_hits"] + v["cas_badval"] + v["cas_misses"] }'
}
# the same, summed over the nodes (TCP and Unix sockets)
mc_stats() {
    local p
    { for p in "${MC_PORTS[@]}"; do mc_stats_one "$p"; done
      for p in "${MC_SOCKS[@]}"; do mc_stats_unix "$p"; done; } \
        | awk '{ for (i = 1; i <= 6; i++) s[i] += $i } END { printf "%d %d %d %d %d %d\n", s[1], s[2], s[3], s[4], s[5], s[6] }'
}

# first_set_cookie NAME: of each response's headers on stdin, the first
# Set-Cookie NAME=... as "NAME=value"
first_set_cookie() {
    tr -d '\r' | awk -v name="$1" '
        /^HTTP\// { got = 0 }
        tolower($1) == "set-cookie:" && index($2, name "=") == 1 && !got {
            split($2, a, ";"); print a[1]; got = 1 }'
}

# mkcookies PORT PATH NAME FILE: NSESS new sessions (write page), their cookies
mkcookies() {
    local port=$1 path=$2 name=$3 out=$4 n
    if [ "$name" = - ]; then
        for n in $(seq "$NSESS"); do echo "nosession=$n"; done > "$out"
        return 0
    fi
    # one curl, NSESS sequential requests without a cookie jar: NSESS sessions;
    # the first Set-Cookie NAME= of each response
    curl -s -m 120 -D - -o /dev/null "http://127.0.0.1:$port${path}app.php?w=1&n=[1-$NSESS]" \
        | first_set_cookie "$name" > "$out"
    n=$(wc -l < "$out")
    [ "$n" -eq "$NSESS" ] || { echo "!! $path: $n cookies for $NSESS sessions" >&2; return 1; }
}

# "handshakes resumed" of the TLS nodes so far (mod_msm's shared counters)
tls_counts() {
    curl -s -m 5 "http://127.0.0.1:$PORT_TLS/msm-status?format=prometheus" \
        | awk '/^msm_node_tls_handshakes_total\{.*tls="on"/ { h += $NF }
               /^msm_node_tls_resumptions_total\{.*tls="on"/ { r += $NF }
               END { printf "%d %d\n", h, r }'
}

# wrk output -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.2f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
        else printf "?" }'
}

# "user nice system idle iowait irq softirq steal" ticks of all CPUs
cpu_times() { awk '$1 == "cpu" { print $2, $3, $4, $5, $6, $7, $8, $9; exit }' /proc/stat; }
# idle percent between two cpu_times: (idle + iowait) / all
idle_pct() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a, x, " "); split(b, y, " "); t = 0
        for (i = 1; i <= n; i++) t += y[i] - x[i]
        printf "%.1f", (t > 0 ? 100 * (y[4] - x[4] + y[5] - x[5]) / t : 0) }'
}
# CPU ticks (utime + stime) used so far by the server side: every process
# of the run user (httpd children, php-fpm) and the memcached nodes
# (server_ticks PIDS: of those only)
server_ticks() {
    local p t=0 st pids=${1:-}
    [ -n "$pids" ] || pids="$(pgrep -u "$RUN_USER" 2>/dev/null | tr '\n' ' ') ${MC_PIDS[*]}"
    for p in $pids; do
        st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        st=${st##*) }
        t=$(( t + $(echo "$st" | awk '{ print $12 + $13 }') ))
    done
    echo "$t"
}
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
# median FORMAT NUMBER...: the middle one (mean of the two middle ones)
median() {
    local fmt=$1; shift
    printf '%s\n' "$@" | { grep -E '^[0-9.]+$' || true; } | sort -g | awk -v fmt="$fmt" '{ v[NR] = $1 }
        END { if (NR == 0) print "n/a"
              else printf fmt "\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# range FORMAT NUMBER...: "min-max"
range() {
    local fmt=$1; shift
    printf '%s\n' "$@" | { grep -E '^[0-9.]+$' || true; } | sort -g | awk -v fmt="$fmt" '{ v[NR] = $1 }
        END { if (NR == 0) print "n/a"; else printf fmt "-" fmt "\n", v[1], v[NR] }'
}
# error_log lines, without prefork's one "server reached MaxRequestWorkers"
# (16 connections keep all 16 children busy: that is the point)
errlines() { grep -vc 'reached MaxRequestWorkers' "$WORK/logs/error.log" || true; }
errline() { grep -v 'reached MaxRequestWorkers' "$WORK/logs/error.log" | sed -n "$1p" | cut -c1-200; }

# prepare ID LABEL PORT PATH COOKIENAME SHAPE: the sessions of a case, in
# $WORK/cookies/ID-SHAPE.txt, and a check that they are found
prepare() {
    local id=$1 label=$2 port=$3 path=$4 cname=$5 shape=$6 body
    local cookies=$WORK/cookies/$id-$shape.txt
    if ! mkcookies "$port" "$path" "$cname" "$cookies"; then
        NOTES+=("$label $shape: could not create $NSESS sessions (skipped)")
        return 1
    fi
    # the page runs (PHP's answer, not its source or an error page) and the
    # sessions work: a write with the first cookie finds its session (created
    # with count=1) and answers count=2, and a read then finds what it wrote
    # (with the cookie the write sent back, if any: mod_session_cookie's).
    # A page that does not see the session (SessionEnv) makes a new one with
    # count=1; one whose X-Replace-Session is lost leaves count=1 stored.
    local c=() w=2 q="?w=1" r hdrs=$WORK/logs/check-$id-$shape.txt new
    if [ "$cname" = - ]; then w=1; else c=(-H "Cookie: $(head -n 1 "$cookies")"); fi
    for r in write read; do
        body=$(curl -s -m 10 -D "$hdrs" "${c[@]}" "http://127.0.0.1:$port${path}app.php$q" \
                   | head -c 200 | tr '\n' ' ' || true)
        if [ "$body" != "count=$w " ]; then
            NOTES+=("$label $shape: a $r with the first cookie answered '$body', not 'count=$w' (not measured)")
            return 1
        fi
        if [ "$cname" != - ]; then
            new=$(first_set_cookie "$cname" < "$hdrs")
            [ -z "$new" ] || c=(-H "Cookie: $new")
        fi
        q=""
    done
    return 0
}

# warmup PORT PATH QUERY COOKIES: 1 s of wrk (children, connections, opcache)
warmup() {
    timeout 60 wrk -t"$THREADS" -c"$CONNS" -d1s -s "$WORK/rot.lua" \
        "http://127.0.0.1:$1$2app.php$3" -- "$2app.php$3" "$4" "$THREADS" >/dev/null 2>&1 || true
}

# measure ID LABEL PORT PATH SHAPE RUN POS: warm-up, one measured run; its
# line in RESULTS: id label shape req/s p50 p99 non-2xx ops/req ops-by-command
# idle% load1 run pos (run and pos "-" in the table; 1.. and 1|2 compared)
measure() {
    local id=$1 label=$2 port=$3 path=$4 shape=$5 run=$6 pos=$7
    local cookies=$WORK/cookies/$id-$shape.txt q="" out reqs rps p50 p99 non2xx sock bad
    local st0 st1 c0 c1 k0 k1 m0 m1 idle load ew e0 e1 opsreq opsdetail log cpureq mcreq h0 h1 r0 r1
    [ "$shape" = write ] && q="?w=1"
    log=$WORK/logs/wrk-$id-$shape.txt
    [ "$run" = - ] || log=$WORK/logs/wrk-$id-$shape-$run.txt
    ew=$(errlines)
    warmup "$port" "$path" "$q" "$cookies"
    sleep 0.3
    e0=$(errlines)
    if [ "$e0" -gt "$ew" ]; then
        NOTES+=("$label $shape$([ "$run" = - ] || echo " run $run"): $(( e0 - ew )) error_log line(s) in its warm-up (not in the measured run), first: $(errline $(( ew + 1 )))")
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    st0=$(mc_stats)
    [ "$id" = msm-tls ] && read -r h0 r0 < <(tls_counts)
    c0=$(cpu_times)
    k0=$(server_ticks)
    m0=$(server_ticks "${MC_PIDS[*]}")
    out=$(timeout $(( SECS + 60 )) wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency \
              -s "$WORK/rot.lua" "http://127.0.0.1:$port${path}app.php$q" \
              -- "${path}app.php$q" "$cookies" "$THREADS" 2>&1) || true
    c1=$(cpu_times)
    k1=$(server_ticks)
    m1=$(server_ticks "${MC_PIDS[*]}")
    [ "$id" = msm-tls ] && read -r h1 r1 < <(tls_counts)
    sleep 0.5   # backups and deletes run after the response
    st1=$(mc_stats)
    idle=$(idle_pct "$c0" "$c1")
    echo "$out" > "$log"
    reqs=$(echo "$out" | awk '/requests in/ { print $1; exit }')
    rps=$(echo "$out" | awk '/^Requests\/sec:/ { printf "%.0f", $2 }')
    p50=$(echo "$out" | awk '$1 == "50%" { print $2; exit }')
    p99=$(echo "$out" | awk '$1 == "99%" { print $2; exit }')
    non2xx=$(echo "$out" | awk '/Non-2xx or 3xx responses:/ { print $NF }')
    sock=$(echo "$out" | awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }')
    if [ -z "$reqs" ] || [ -z "$rps" ]; then
        NOTES+=("$label $shape: wrk failed: $(echo "$out" | tail -n 3 | tr '\n' ' ')")
        printf '%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t%s\t%s\t%s\t-\n' "$id" "$label" "$shape" \
            "$load" "$run" "$pos" >> "$RESULTS"
        return 0
    fi
    bad=${non2xx:-0}
    [ "${sock:-0}" -gt 0 ] && bad="$bad +${sock} sock"
    # per request: total (get+set+touch+delete) and by command
    read -r opsreq opsdetail < <(awk -v a="$st0" -v b="$st1" -v n="$reqs" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= 6; i++) d[i] = (n > 0 ? (y[i] - x[i]) / n : 0)
        printf "%.2f get=%.2f,set=%.2f,touch=%.2f,delete=%.2f,cas=%.2f\n",
               d[1] + d[2] + d[3] + d[4] + d[5], d[1], d[2], d[3], d[4] + d[5], d[6] }')
    cpureq=$(awk -v t="$(( k1 - k0 ))" -v u="$TICK_US" -v n="$reqs" 'BEGIN { printf "%.0f", (n > 0 ? t * u / n : 0) }')
    mcreq=$(awk -v t="$(( m1 - m0 ))" -v u="$TICK_US" -v n="$reqs" 'BEGIN { printf "%.0f", (n > 0 ? t * u / n : 0) }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$label" "$shape" "$rps" \
        "$(to_ms "$p50")" "$(to_ms "$p99")" "$bad" "$opsreq" "$opsdetail" "$idle" "$load" \
        "$run" "$pos" "$cpureq" "$mcreq" >> "$RESULTS"
    if [ "$id" = msm-tls ]; then
        HANDSHAKE_LINES+=("$label, $shape$([ "$run" = - ] || echo " run $run"): $(awk -v h=$(( h1 - h0 )) -v r=$(( r1 - r0 )) -v n="$reqs" 'BEGIN { printf "%d handshakes (%d of them resumed) in %d requests: %.1f per 10 000", h, r, n, (n > 0 ? h * 10000 / n : 0) }'); $h1 since httpd started (connections opened by its warm-up and earlier runs)")
    fi
    e1=$(errlines)
    if [ "$e1" -gt "$e0" ]; then
        NOTES+=("$label $shape$([ "$run" = - ] || echo " run $run"): $(( e1 - e0 )) error_log line(s), first: $(errline $(( e0 + 1 )))")
    fi
}

# strace_case ID LABEL PORT PATH SHAPE: one more run of MSM_BENCH_STRACE_SECONDS
# with `strace -C -f -y` attached to every httpd child from before its first
# request to after its last (-C: the -c summary, and every call, so that an
# fcntl that locks (F_SETLK, F_SETLKW, F_OFD_*, F_GETLK) is told from one that
# does not, with the file it locks); system calls per request into STRACE_LINES
STRACE_LINES=()
HANDSHAKE_LINES=()
strace_case() {
    local id=$1 label=$2 port=$3 path=$4 shape=$5
    local cookies=$WORK/cookies/$id-$shape.txt q="" pid kids k n nk args=() out reqs st0 st1 sf line
    [ "$shape" = write ] && q="?w=1"
    sf=$WORK/logs/strace-$id-$shape.txt
    pid=$(cat "$WORK/run/httpd.pid" 2>/dev/null || true)
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -s ' \n' ' ' || true)
    for k in $kids; do args+=(-p "$k"); done
    nk=$(echo $kids | wc -w)
    if [ "$nk" -eq 0 ]; then NOTES+=("strace $label: no httpd children"); return 0; fi
    say "$label, $shape: strace -C -f -y on $nk httpd children, wrk -t$THREADS -c$CONNS -d${STRACE_SECS}s"
    warmup "$port" "$path" "$q" "$cookies"
    sleep 0.3
    timeout $(( STRACE_SECS + 60 )) strace -C -f -y -qq -o "$sf" "${args[@]}" \
        2>> "$WORK/logs/strace.log" &
    STRACE_PID=$!
    for _ in $(seq 200); do   # attached: every child has a tracer
        n=0
        for k in $kids; do
            [ "$(awk '/^TracerPid:/ { print $2 }' "/proc/$k/status" 2>/dev/null)" = 0 ] || n=$((n + 1))
        done
        [ "$n" -ge "$nk" ] && break
        sleep 0.05
    done
    sleep 0.5
    st0=$(mc_stats)
    out=$(timeout $(( STRACE_SECS + 60 )) wrk -t"$THREADS" -c"$CONNS" -d"${STRACE_SECS}s" \
              -s "$WORK/rot.lua" "http://127.0.0.1:$port${path}app.php$q" \
              -- "${path}app.php$q" "$cookies" "$THREADS" 2>&1) || true
    sleep 0.5
    st1=$(mc_stats)
    kill -TERM "$STRACE_PID" 2>/dev/null || true   # timeout passes it on: strace detaches, writes -c
    for _ in $(seq 200); do kill -0 "$STRACE_PID" 2>/dev/null || break; sleep 0.05; done
    stop_pid "$STRACE_PID"
    wait "$STRACE_PID" 2>/dev/null || true
    STRACE_PID=""
    reqs=$(echo "$out" | awk '/requests in/ { print $1; exit }')
    if [ -z "$reqs" ] || [ "$reqs" -eq 0 ] || ! grep -q 'total$' "$sf" 2>/dev/null; then
        NOTES+=("strace $label $shape: no result (wrk: $(echo "$out" | tail -n 1); see $sf)")
        return 0
    fi
    line=$(awk -v n="$reqs" -v a="$st0" -v b="$st1" '
        /^% time/ { summary = 1; next }
        summary && $NF == "total" { total = $4; next }
        summary && $1 ~ /^[0-9.]+$/ && NF >= 5 { calls[$NF] = $4; next }
        summary { next }
        # the calls themselves ("PID name(args" ; "<... name resumed>" lines are not counted)
        /^[0-9]+ +futex\(/ { futex++ }
        /^[0-9]+ +flock\(/ { flock++ }
        /^[0-9]+ +sem(timed)?op\(/ { sem++ }
        /^[0-9]+ +fcntl\(/ {
            if ($0 ~ /F_(OFD_)?(SETLKW?|GETLK)/) {
                fl++
                f = $0; sub(/^[0-9]+ +fcntl\([0-9]+</, "", f); sub(/>.*/, "", f)
                what[f]++
            } else fo++
        }
        END {
            split(a, x, " "); split(b, y, " "); mc = 0
            for (i = 1; i <= 5; i++) mc += y[i] - x[i]
            lk = futex + flock + fl + sem
            printf "%d requests traced, %.2f system calls per request; lock calls per request %.3f (futex %.3f, flock %.3f, fcntl locks %.3f, semop/semtimedop %.3f; fcntl that do not lock %.3f)",
                n, total / n, lk / n, futex / n, flock / n, fl / n, sem / n, fo / n
            sep = "; fcntl locks on: "
            for (f in what) { printf "%s%s %.3f", sep, f, what[f] / n; sep = ", " }
            printf "; memcached operations per request %.3f; most frequent per request:", mc / n
            for (k = 0; k < 8; k++) {
                best = ""; bc = -1
                for (c in calls) if (calls[c] > bc) { best = c; bc = calls[c] }
                if (best == "" || bc <= 0) break
                printf "%s %s %.2f", (k ? "," : ""), best, bc / n
                delete calls[best]
            }
            printf "\n" }' "$sf")
    STRACE_LINES+=("$label, $shape ($MPM): $line")
}

# ------------------------------------------------------------ 4. the cases
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS=$WORK/results.tsv
: > "$RESULTS"
NOTES=()
cp "$BENCH/rot.lua" "$WORK/rot.lua"

if [ ${#CMP[@]} -eq 0 ]; then
    for c in "${CASES[@]}"; do
        IFS='|' read -r id label port path cname <<< "$c"
        if [ -n "${MSM_BENCH_CASES:-}" ] && ! [[ " $MSM_BENCH_CASES " == *" $id "* ]]; then continue; fi
        for shape in read write; do
            say "$label, $shape: $NSESS sessions, wrk -t$THREADS -c$CONNS -d${SECS}s"
            if ! prepare "$id" "$label" "$port" "$path" "$cname" "$shape"; then
                printf '%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n' "$id" "$label" "$shape" >> "$RESULTS"
                continue
            fi
            measure "$id" "$label" "$port" "$path" "$shape" - -
        done
    done
    if [ "$STRACE" = 1 ]; then
        for id in cookie msm-sticky; do
            [ -s "$WORK/cookies/$id-read.txt" ] || continue
            IFS='|' read -r id label port path cname <<< "$(case_of "$id")"
            strace_case "$id" "$label" "$port" "$path" read
        done
    fi
else
    for c in "${CMP[@]}"; do
        IFS='|' read -r id label port path cname <<< "$c"
        [ -s "$WORK/cookies/$id-$CMP_SHAPE.txt" ] && continue   # the same case twice
        say "$label, $CMP_SHAPE: $NSESS sessions"
        prepare "$id" "$label" "$port" "$path" "$cname" "$CMP_SHAPE" \
            || die "$label: could not create $NSESS sessions"
    done
    for r in $(seq "$REPEAT"); do
        pos=0
        for c in "${CMP[@]}"; do
            pos=$((pos + 1))
            IFS='|' read -r id label port path cname <<< "$c"
            say "run $r/$REPEAT: $label, $CMP_SHAPE, wrk -t$THREADS -c$CONNS -d${SECS}s"
            measure "$id" "$label" "$port" "$path" "$CMP_SHAPE" "$r" "$pos"
            tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "   %s req/s, p50 %s ms, p99 %s ms, non-2xx %s, mc ops/req %s, server CPU %s us/req, CPU idle %s%%, load %s\n", $4, $5, $6, $7, $8, $14, $10, $11 }' >&2
        done
    done
    if [ "$STRACE" = 1 ]; then
        for c in "${CMP[@]}"; do
            IFS='|' read -r id label port path cname <<< "$c"
            strace_case "$id" "$label" "$port" "$path" "$CMP_SHAPE"
        done
    fi
fi

# ------------------------------------------------------------ 5. report
rps_of() { awk -F'\t' -v id="$1" -v s="$2" '$1 == id && $3 == s { print $4 }' "$RESULTS"; }
ratio() {
    local a b
    a=$(rps_of "$1" "$2"); b=$(rps_of "$3" "$4")
    awk -v a="$a" -v b="$b" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "n/a" }'
}
# col POS FIELD: a column of the compared runs of case POS (1 or 2), in run order
col() { awk -F'\t' -v p="$1" -v f="$2" '$13 == p { print $f }' "$RESULTS"; }

stop_httpd   # before the report: the machine is quiet again
[ -n "$FPM_PID" ] && stop_pid "$FPM_PID"

{
    echo "## mod_msm benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPU(s), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr)"
    echo "- software: $("$HTTPD" -v | awk -F': ' '/version/ { print $2 }') $MPM, PHP $(php -r 'echo PHP_VERSION;' 2>/dev/null || dpkg-query -W -f='${Version}' php-common) ($([ "$MPM" = event ] && echo php-fpm || echo mod_php)), $(memcached -V), $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }'), mod_msm $(cd "$REPO" && git -c safe.directory='*' describe --always --dirty 2>/dev/null || echo '(no git)')"
    echo "- load average (1/5/15 min) at the start of the runs: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- workload: wrk -t$THREADS -c$CONNS -d${SECS}s --latency, $NSESS sessions rotated (Cookie header), 1 s of warm-up before each run; 3 memcached nodes; httpd $MPM_NOTE; no Mutex directive"
    echo "- server CPU µs/req: user + system time of the httpd children, php-fpm and memcached during the run (/proc/PID/stat) over the requests answered: the cost of a request, which the noise of a shared machine moves far less than req/s"
    echo "- CPU idle: all CPUs during the run (/proc/stat), wrk included; load: the 1-minute load average at the start of the run"
    echo
    if [ ${#CMP[@]} -eq 0 ]; then
        echo "| case | shape | req/s | p50 ms | p99 ms | non-2xx | mc ops/req | server CPU µs/req | CPU idle % | load |"
        echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8, $14, $10, $11 }' "$RESULTS"
        echo
        echo "memcached operations per request by command (cas is included in set):"
        echo
        awk -F'\t' '$8 != "-" && $8 + 0 > 0 { printf "- %s, %s: %s\n", $2, $3, $9 }' "$RESULTS"
        echo
        echo "Ratios (req/s, read shape):"
        echo
        echo "- mod_msm sticky / mod_session_cookie: $(ratio msm-sticky read cookie read)"
        echo "- mod_msm non-sticky / mod_session_cookie: $(ratio msm read cookie read)"
        echo "- mod_msm non-sticky / php-memcached locking off: $(ratio msm read phpmc-nolock read)"
        echo "- mod_msm non-sticky / php-memcached locking on: $(ratio msm read phpmc read)"
        echo "- mod_msm MsmLocking On / php-memcached locking on: $(ratio msm-lock read phpmc read)"
        echo "- mod_msm sticky / php-memcached locking off: $(ratio msm-sticky read phpmc-nolock read)"
        echo "- mod_msm over TLS / mod_msm non-sticky (TCP): $(ratio msm-tls read msm read)"
        echo "- mod_msm over Unix sockets / mod_msm non-sticky (TCP): $(ratio msm-unix read msm read)"
        echo "- mod_msm MsmEncryptKeyFile / mod_msm non-sticky: $(ratio msm-enc read msm read) (write shape: $(ratio msm-enc write msm write))"
        echo "- mod_session_cookie + crypto / mod_session_cookie: $(ratio crypto read cookie read)"
    else
        IFS='|' read -r _ label_a _ <<< "${CMP[0]}"
        IFS='|' read -r _ label_b _ <<< "${CMP[1]}"
        echo "Interleaved: $label_a and $label_b, $CMP_SHAPE shape, $REPEAT runs each, alternately."
        echo
        echo "| run | case | req/s | p50 ms | p99 ms | non-2xx | mc ops/req | server CPU µs/req | CPU idle % | load |"
        echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $12, $2, $4, $5, $6, $7, $8, $14, $10, $11 }' "$RESULTS"
        echo
        # per-pair ratios: run r of B over run r of A
        mapfile -t RA < <(col 1 4)
        mapfile -t RB < <(col 2 4)
        PAIRS=()
        for i in "${!RA[@]}"; do
            PAIRS+=("$(awk -v a="${RA[$i]}" -v b="${RB[$i]:-}" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.3f", b / a; else printf "-" }')")
        done
        MA=$(median %.0f "${RA[@]}"); MB=$(median %.0f "${RB[@]}")
        echo "- median req/s: $label_a $MA (range $(range %.0f "${RA[@]}")), $label_b $MB (range $(range %.0f "${RB[@]}"))"
        echo "- $label_b / $label_a, run by run: $(printf '%s ' "${PAIRS[@]}" | sed 's/ $//'); median $(median %.2f "${PAIRS[@]}") (range $(range %.2f "${PAIRS[@]}")); ratio of the medians $(awk -v a="$MA" -v b="$MB" 'BEGIN { if (a + 0 > 0) printf "%.2f", b / a; else printf "n/a" }')"
        echo "- server CPU µs per request (median, range): $label_a $(median %.0f $(col 1 14)) ($(range %.0f $(col 1 14))), $label_b $(median %.0f $(col 2 14)) ($(range %.0f $(col 2 14))); $label_b / $label_a $(awk -v a="$(median %.0f $(col 1 14))" -v b="$(median %.0f $(col 2 14))" 'BEGIN { if (a + 0 > 0) printf "%.2f", b / a; else printf "n/a" }')"
        echo "- of that, memcached's CPU µs per request (median): $label_a $(median %.0f $(col 1 15)), $label_b $(median %.0f $(col 2 15)); without it (httpd, php): $label_a $(awk -v a="$(median %.0f $(col 1 14))" -v m="$(median %.0f $(col 1 15))" 'BEGIN { printf "%.0f", a - m }'), $label_b $(awk -v a="$(median %.0f $(col 2 14))" -v m="$(median %.0f $(col 2 15))" 'BEGIN { printf "%.0f", a - m }')"
        echo "- CPU idle % (median, range): $label_a $(median %.1f $(col 1 10)) ($(range %.1f $(col 1 10))), $label_b $(median %.1f $(col 2 10)) ($(range %.1f $(col 2 10)))"
        echo "- memcached operations per request (median): $label_a $(median %.2f $(col 1 8)), $label_b $(median %.2f $(col 2 8))"
        echo "- load average (1 min) at the runs' starts: $(range %.2f $(col 1 11) $(col 2 11))"
    fi
    if [ ${#HANDSHAKE_LINES[@]} -gt 0 ]; then
        echo
        echo "TLS handshakes of mod_msm in the measured runs (after the warm-up; mod_msm's counters):"
        echo
        for n in "${HANDSHAKE_LINES[@]}"; do echo "- $n"; done
    fi
    if [ ${#STRACE_LINES[@]} -gt 0 ]; then
        echo
        echo "System calls of the httpd children (strace -C -f -y, one run of ${STRACE_SECS}s each, not timed):"
        echo
        for n in "${STRACE_LINES[@]}"; do echo "- $n"; done
    fi
    if [ ${#NOTES[@]} -gt 0 ]; then
        echo
        echo "Notes:"
        echo
        for n in "${NOTES[@]}"; do echo "- $n"; done
    fi
} | tee "$WORK/results.md"
say "done"
OK=1
