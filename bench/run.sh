#!/usr/bin/env bash
# bench/run.sh - mod_msm against its peers, on one machine.
#
#   bash bench/run.sh [seconds-per-run]        (default 5; as root on Debian 12)
#
# What it does:
#   1. apt-get installs what it needs when missing (apache2 apache2-dev memcached
#      wrk libapache2-mod-php php-memcached sqlite3 libaprutil1-dbd-sqlite3 curl
#      autoconf automake libtool make gcc libc6-dev). No service is started
#      during the install (a policy-rc.d answering 101 is put in place when there
#      is none), and the module links in /etc/apache2/mods-enabled are put back
#      as they were (libapache2-mod-php would enable php and switch the MPM):
#      the system apache2's configuration and service are left alone.
#   2. builds mod_msm from this repository in a temporary directory
#      (autoreconf -fi, configure, make); nothing is installed.
#   3. starts 3 memcached (127.0.0.1:21211-21213) and ONE httpd (/usr/sbin/apache2
#      -f bench's own config, prefork + mod_php, StartServers 8 .. MaxRequestWorkers
#      32 like shared/repro/peer-bench/httpd.conf) on 127.0.0.1:18080 (18081 for the
#      sticky case), children running as www-data (nobody if there is none).
#   4. for each case and page shape ("read": the page reads the session;
#      "write": it changes it), creates 200 sessions, warms up for 1 s and runs
#         wrk -t2 -c16 -d<seconds>s --latency -s rot.lua
#      rotating their 200 Cookie headers (each wrk thread from its own offset),
#      and records req/s, p50 and p99 latency, the non-2xx answers (wrk's
#      "Non-2xx or 3xx responses"; socket errors are added as "+N sock") and the
#      memcached operations per request: the `stats` deltas of cmd_get + cmd_set +
#      cmd_touch + delete_hits + delete_misses summed over the three nodes,
#      divided by wrk's request count. (cas is not added on top: memcached 1.6
#      counts every cas in cmd_set too, and add in cmd_set; gat(s)/touch are
#      cmd_touch.)
#   5. prints a markdown table, the operations per request by memcached command,
#      the ratios, the date, the machine and its load average (other work on the
#      machine makes the numbers noisy: measure on a quiet one).
#
# Cases: no session; mod_session_cookie; mod_session_cookie + mod_session_crypto;
# mod_session_dbd (sqlite3); PHP sessions in memcached (php-memcached) with
# locking on and off; mod_msm non-sticky; mod_msm sticky (MsmSticky On, MsmRoute
# a, requests straight to the back end, cookies "<id>-<node>.a"); mod_msm with
# MsmLocking On. Every mod_session case runs the same page (app.php: SessionEnv +
# X-Replace-Session, SessionMaxAge 1800), php-memcached runs the same page with
# PHP sessions (phpsess.php); both are those of shared/repro/peer-bench.
#
# Everything it starts (memcached, httpd: `-k stop` on its pid file) is stopped
# by pid on exit, also on failure or ^C. The temporary directory is removed
# after a successful run (MSM_BENCH_KEEP=1 keeps it; it is kept on failure).
# It is never run by the test suite.
#
# Environment: MSM_BENCH_SESSIONS (default 200), MSM_BENCH_CASES (a space
# separated subset of the case ids below, for development), MSM_BENCH_KEEP=1,
# MSM_BENCH_CONNECTIONS (wrk -c, default 16; e.g. 2 for latency at light load:
# with 16 connections on 2 cores the p99 is the scheduler's, not the module's).
set -euo pipefail

SECS=${1:-5}
case "$SECS" in ''|*[!0-9]*) echo "usage: bash bench/run.sh [seconds-per-run]" >&2; exit 2 ;; esac
[ "$SECS" -ge 1 ] || { echo "seconds must be >= 1" >&2; exit 2; }
NSESS=${MSM_BENCH_SESSIONS:-200}
CONNS=${MSM_BENCH_CONNECTIONS:-16}
case "$CONNS" in ''|*[!0-9]*|0) echo "MSM_BENCH_CONNECTIONS must be a number >= 1" >&2; exit 2 ;; esac
THREADS=$(( CONNS < 2 ? 1 : 2 ))
PORT=18080
PORT_STICKY=18081
MC_PORTS=(21211 21212 21213)
HTTPD=/usr/sbin/apache2
APXS=/usr/bin/apxs
MODDIR=/usr/lib/apache2/modules
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
T0=$(date +%s)

say() { printf '== %s [%ss]\n' "$*" "$(( $(date +%s) - T0 ))" >&2; }
die() { printf '!! %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs Debian packages and starts httpd as www-data)"

# ------------------------------------------------------------ cleanup (trap)
WORK=""
HTTPD_CONF=""
MC_PIDS=()
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

restore_mods() {   # put /etc/apache2/mods-enabled back as it was before apt-get
    [ -n "$MODS_SAVED" ] && [ -d "$MODS_SAVED" ] || return 0
    local d=/etc/apache2/mods-enabled f
    [ -d "$d" ] || return 0
    for f in "$d"/* ; do
        [ -e "$f" ] || [ -L "$f" ] || continue
        [ -e "$MODS_SAVED/${f##*/}" ] || [ -L "$MODS_SAVED/${f##*/}" ] || rm -f "$f"
    done
    for f in "$MODS_SAVED"/*; do
        [ -e "$f" ] || [ -L "$f" ] || continue
        [ -e "$d/${f##*/}" ] || [ -L "$d/${f##*/}" ] || cp -a "$f" "$d/"
    done
    rm -rf "$MODS_SAVED"
    MODS_SAVED=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_httpd
    for p in "${MC_PIDS[@]}"; do stop_pid "$p"; done
    if [ "$POLICY_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    restore_mods
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
PKGS="apache2 apache2-dev memcached wrk libapache2-mod-php php-memcached sqlite3
      libaprutil1-dbd-sqlite3 curl autoconf automake libtool make gcc libc6-dev"
missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "apt-get install:$missing"
    if [ -d /etc/apache2/mods-enabled ]; then
        MODS_SAVED=$(mktemp -d /tmp/msm-bench-mods.XXXXXX)
        cp -a /etc/apache2/mods-enabled/. "$MODS_SAVED/"
    fi
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
PHP_SO=$(ls "$MODDIR"/libphp*.so 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$PHP_SO" ] || die "no libphp*.so in $MODDIR (libapache2-mod-php)"
for m in mpm_prefork authz_core mime session session_cookie session_crypto session_dbd dbd; do
    [ -e "$MODDIR/mod_$m.so" ] || die "missing $MODDIR/mod_$m.so"
done
for c in wrk memcached curl sqlite3 "$HTTPD" "$APXS"; do
    command -v "$c" >/dev/null 2>&1 || die "missing $c"
done
RUN_USER=www-data
id -u "$RUN_USER" >/dev/null 2>&1 || RUN_USER=nobody
RUN_GROUP=$(id -gn "$RUN_USER")

# nothing of ours may be listening already
for p in "$PORT" "$PORT_STICKY" "${MC_PORTS[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port 127.0.0.1:$p is in use: stop what listens there first"
    fi
done

WORK=$(mktemp -d /tmp/msm-bench.XXXXXX)
chmod 755 "$WORK"
cd "$WORK"
mkdir -p "$WORK"/{logs,run,db,htdocs,cookies,build}

# ------------------------------------------------------------ 2. build mod_msm
say "building mod_msm in $WORK/build"
# the sources: git's tracked and untracked-not-ignored files (no build outputs)
if command -v git >/dev/null 2>&1 \
   && git -c safe.directory='*' -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -c safe.directory='*' -C "$REPO" ls-files -z --cached --others --exclude-standard \
        | (cd "$REPO" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done; exit 0' sh) \
        | tar -C "$REPO" --null -T - -cf - | tar -C "$WORK/build" -xf -
else
    tar -C "$REPO" --exclude=.git --exclude='*.o' --exclude='*.lo' --exclude='*.la' \
        --exclude='*.so' --exclude=.libs --exclude=.deps --exclude=autom4te.cache \
        --exclude=config.status --exclude=config.log --exclude=libtool --exclude=stamp-h1 \
        -cf - . | tar -C "$WORK/build" -xf -
fi
(cd "$WORK/build" && autoreconf -fi && ./configure --with-apxs="$APXS" && make -j"$(nproc)") \
    > "$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; die "build failed (see $WORK/build.log)"; }
MSM_SO=$WORK/build/.libs/mod_msm.so
[ -f "$MSM_SO" ] || die "build produced no .libs/mod_msm.so"

# ------------------------------------------------------------ 3. memcached, httpd
say "starting memcached on ${MC_PORTS[*]}"
for p in "${MC_PORTS[@]}"; do
    memcached -u nobody -l 127.0.0.1 -p "$p" -U 0 -m 64 -t 1 -c 1024 \
        >> "$WORK/logs/memcached-$p.log" 2>&1 &
    MC_PIDS+=($!)
done
for p in "${MC_PORTS[@]}"; do
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
i=1
for p in "${MC_PORTS[@]}"; do MSM_NODES="$MSM_NODES m$i:127.0.0.1:$p"; i=$((i + 1)); done
PASSPHRASE=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
HTTPD_CONF_FILE=$WORK/httpd.conf
sed -e "s|@ROOT@|$WORK|g" -e "s|@PORT@|$PORT|g" -e "s|@PORT_STICKY@|$PORT_STICKY|g" \
    -e "s|@USER@|$RUN_USER|g" -e "s|@GROUP@|$RUN_GROUP|g" -e "s|@MODDIR@|$MODDIR|g" \
    -e "s|@PHP_SO@|$PHP_SO|g" -e "s|@MSM_SO@|$MSM_SO|g" -e "s|@MC_LIST@|$MC_LIST|g" \
    -e "s|@MSM_NODES@|${MSM_NODES# }|g" -e "s|@PASSPHRASE@|$PASSPHRASE|g" \
    "$BENCH/httpd.conf.in" > "$HTTPD_CONF_FILE"
"$HTTPD" -t -f "$HTTPD_CONF_FILE" > "$WORK/logs/configtest.log" 2>&1 \
    || { cat "$WORK/logs/configtest.log" >&2; die "httpd -t failed"; }
say "starting httpd (prefork + mod_php, $RUN_USER) on 127.0.0.1:$PORT and :$PORT_STICKY"
HTTPD_CONF=$HTTPD_CONF_FILE
"$HTTPD" -f "$HTTPD_CONF" -k start || die "httpd did not start (see $WORK/logs/error.log)"
up=0
for _ in $(seq 200); do
    if curl -s -o /dev/null -m 2 "http://127.0.0.1:$PORT/none/app.php" \
       && curl -s -o /dev/null -m 2 "http://127.0.0.1:$PORT_STICKY/none/app.php"; then up=1; break; fi
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
# the same, summed over the nodes
mc_stats() {
    local p
    for p in "${MC_PORTS[@]}"; do mc_stats_one "$p"; done \
        | awk '{ for (i = 1; i <= 6; i++) s[i] += $i } END { printf "%d %d %d %d %d %d\n", s[1], s[2], s[3], s[4], s[5], s[6] }'
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
        | tr -d '\r' | awk -v name="$name" '
            /^HTTP\// { got = 0 }
            tolower($1) == "set-cookie:" && index($2, name "=") == 1 && !got {
                split($2, a, ";"); print a[1]; got = 1 }' > "$out"
    n=$(wc -l < "$out")
    [ "$n" -eq "$NSESS" ] || { echo "!! $path: $n cookies for $NSESS sessions" >&2; return 1; }
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

# ------------------------------------------------------------ 4. the cases
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
)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS=$WORK/results.tsv
: > "$RESULTS"
NOTES=()
cp "$BENCH/rot.lua" "$WORK/rot.lua"

for c in "${CASES[@]}"; do
    IFS='|' read -r id label port path cname <<< "$c"
    if [ -n "${MSM_BENCH_CASES:-}" ] && ! [[ " $MSM_BENCH_CASES " == *" $id "* ]]; then continue; fi
    for shape in read write; do
        say "$label, $shape: $NSESS sessions, wrk -t$THREADS -c$CONNS -d${SECS}s"
        cookies=$WORK/cookies/$id-$shape.txt
        if ! mkcookies "$port" "$path" "$cname" "$cookies"; then
            NOTES+=("$label $shape: could not create $NSESS sessions (skipped)")
            printf '%s\t%s\t%s\t-\t-\t-\t-\t-\t-\n' "$id" "$label" "$shape" >> "$RESULTS"
            continue
        fi
        # the sessions work: a read with the first cookie sees count >= 1
        if [ "$cname" != - ]; then
            body=$(curl -s -m 10 -H "Cookie: $(head -n 1 "$cookies")" "http://127.0.0.1:$port${path}app.php")
            case "$body" in
                count=[1-9]*) ;;
                *) NOTES+=("$label: a read with a created session answered '$body' (session not found?)") ;;
            esac
        fi
        q=""
        [ "$shape" = write ] && q="?w=1"
        # 1 s of warm-up (children, connections, opcache), then the measured run
        timeout 60 wrk -t"$THREADS" -c"$CONNS" -d1s -s "$WORK/rot.lua" \
            "http://127.0.0.1:$port${path}app.php$q" -- "${path}app.php$q" "$cookies" "$THREADS" \
            >/dev/null 2>&1 || true
        sleep 0.3
        errlines0=$(wc -l < "$WORK/logs/error.log")
        st0=$(mc_stats)
        out=$(timeout $(( SECS + 60 )) wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency \
                  -s "$WORK/rot.lua" "http://127.0.0.1:$port${path}app.php$q" \
                  -- "${path}app.php$q" "$cookies" "$THREADS" 2>&1) || true
        sleep 0.5   # backups and deletes run after the response
        st1=$(mc_stats)
        echo "$out" > "$WORK/logs/wrk-$id-$shape.txt"
        reqs=$(echo "$out" | awk '/requests in/ { print $1; exit }')
        rps=$(echo "$out" | awk '/^Requests\/sec:/ { printf "%.0f", $2 }')
        p50=$(echo "$out" | awk '$1 == "50%" { print $2; exit }')
        p99=$(echo "$out" | awk '$1 == "99%" { print $2; exit }')
        non2xx=$(echo "$out" | awk '/Non-2xx or 3xx responses:/ { print $NF }')
        sock=$(echo "$out" | awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }')
        if [ -z "$reqs" ] || [ -z "$rps" ]; then
            NOTES+=("$label $shape: wrk failed: $(echo "$out" | tail -n 3 | tr '\n' ' ')")
            printf '%s\t%s\t%s\t-\t-\t-\t-\t-\t-\n' "$id" "$label" "$shape" >> "$RESULTS"
            continue
        fi
        bad=${non2xx:-0}
        [ "${sock:-0}" -gt 0 ] && bad="$bad +${sock} sock"
        # per request: total (get+set+touch+delete) and by command
        read -r opsreq opsdetail < <(awk -v a="$st0" -v b="$st1" -v n="$reqs" 'BEGIN {
            split(a, x, " "); split(b, y, " ")
            for (i = 1; i <= 6; i++) d[i] = (n > 0 ? (y[i] - x[i]) / n : 0)
            printf "%.2f get=%.2f,set=%.2f,touch=%.2f,delete=%.2f,cas=%.2f\n",
                   d[1] + d[2] + d[3] + d[4] + d[5], d[1], d[2], d[3], d[4] + d[5], d[6] }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$label" "$shape" "$rps" \
            "$(to_ms "$p50")" "$(to_ms "$p99")" "$bad" "$opsreq" "$opsdetail" >> "$RESULTS"
        errlines1=$(wc -l < "$WORK/logs/error.log")
        if [ "$errlines1" -gt "$errlines0" ]; then
            NOTES+=("$label $shape: $(( errlines1 - errlines0 )) error_log line(s), first: $(sed -n "$(( errlines0 + 1 ))p" "$WORK/logs/error.log" | cut -c1-200)")
        fi
    done
done

# ------------------------------------------------------------ 5. report
rps_of() { awk -F'\t' -v id="$1" -v s="$2" '$1 == id && $3 == s { print $4 }' "$RESULTS"; }
ratio() {
    local a b
    a=$(rps_of "$1" "$2"); b=$(rps_of "$3" "$4")
    awk -v a="$a" -v b="$b" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "n/a" }'
}

stop_httpd   # before the report: the machine is quiet again

{
    echo "## mod_msm benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPU(s), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr)"
    echo "- software: $("$HTTPD" -v | awk -F': ' '/version/ { print $2 }') prefork, PHP $(php -r 'echo PHP_VERSION;' 2>/dev/null || dpkg-query -W -f='${Version}' libapache2-mod-php), $(memcached -V), $(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }'), mod_msm $(cd "$REPO" && git -c safe.directory='*' describe --always --dirty 2>/dev/null || echo '(no git)')"
    echo "- load average (1/5/15 min) at the start of the runs: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- workload: wrk -t$THREADS -c$CONNS -d${SECS}s --latency, $NSESS sessions rotated (Cookie header); 3 memcached nodes; httpd StartServers 8, MaxRequestWorkers 32"
    echo
    echo "| case | shape | req/s | p50 ms | p99 ms | non-2xx | mc ops/req |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8 }' "$RESULTS"
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
    if [ ${#NOTES[@]} -gt 0 ]; then
        echo
        echo "Notes:"
        echo
        for n in "${NOTES[@]}"; do echo "- $n"; done
    fi
} | tee "$WORK/results.md"
say "done"
OK=1
