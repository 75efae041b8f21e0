#!/usr/bin/env bash
# scripts/deb-test.sh - builds the Debian package libapache2-mod-msm and tests it
# installed. Run as root on Debian 12:
#
#   bash scripts/deb-test.sh [--keep]
#
#   1. apt-get installs what it needs (skipped when present): dpkg-dev,
#      build-essential, lintian, apache2, memcached, curl, and the package's
#      Build-Depends (debian/control);
#   2. copies the work tree (git's tracked + untracked-not-ignored files; no
#      build outputs) to a temporary directory /var/tmp/msm-deb.XXXXXX and
#      there: scripts/check-version.sh, dpkg-buildpackage -us -uc -S and -b;
#   3. lintian on the source and the binary package (fails on E: and W:);
#   4. waits until no scripts/test.sh runs on this machine (an Apache::Test run
#      must not see the module enabled in /etc/apache2), then installs the .deb
#      with apt-get, checks that it enabled msm (and session), a2enmod msm,
#      apache2ctl configtest;
#   5. smoke test of the INSTALLED module: its own memcached on 127.0.0.1:21490
#      and its own httpd (/usr/sbin/apache2 -f <temp conf>, nothing of
#      /etc/apache2, 127.0.0.1:21491) with a CGI that sets a session value
#      through SessionHeader; the value comes back on the next request and is
#      in memcached;
#   6. a2dismod msm, a2enmod msm, apt-get remove (the module is disabled and
#      configtest passes), apt-get purge (conffiles gone, configtest passes).
# Whatever happens, the package is purged, modules that were not enabled
# before (session) are disabled again, apache2's module state records are put
# back, the processes it started are stopped by their pids and the temporary
# directory is removed (kept with --keep or on failure: the build and the logs).
# If the system apache2 is running, the package's maintainer scripts restart it
# (as any module package does) on install and removal.
#
# Environment: MSM_DEB_WAIT (seconds to wait for running scripts/test.sh,
# default 2700), MSM_SKIP_APT=1 (no apt-get install of missing tools),
# MSM_DEB_MC_PORT (21490), MSM_DEB_HTTP_PORT (21491).
#
# The last line printed is always "N passed, N failed"; the exit status is
# non-zero on any failure.
set -u -o pipefail
exec 2>&1

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START_TS=$(date +%s)
PKG=libapache2-mod-msm
MC_PORT=${MSM_DEB_MC_PORT:-21490}
HTTP_PORT=${MSM_DEB_HTTP_PORT:-21491}
WAIT_TESTS=${MSM_DEB_WAIT:-2700}
KEEP=0
PASSED=0
FAILED=0
TMP=""
MC_PID=""
HTTPD_PIDFILE=""
INSTALLED_BY_US=0
STATE_SAVED=0
FINISHED=0
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

log()  { printf '== %s [%ss]\n' "$*" "$(( $(date +%s) - START_TS ))"; }
warn() { printf '!! %s\n' "$*"; }
pass() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$*"; }
# check "description" command...: runs the command (output to $LOG), counts it
check() {
    local what=$1; shift
    if "$@" >> "$LOG" 2>&1; then pass "$what"; return 0; fi
    fail "$what (see $LOG)"
    return 1
}

for a in "$@"; do
    case "$a" in
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,37p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "unknown argument '$a' (see --help)"; echo "0 passed, 1 failed"; exit 2 ;;
    esac
done

# ------------------------------------------------------------------ cleanup
pkg_known() {       # dpkg knows it at all (also config-files: removed, not purged)
    local st
    st=$(dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != not-installed ]
}

stop_pid() {        # stop_pid PID NAME: TERM, up to 10 s, then KILL
    local pid=$1 name=$2
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    warn "$name (pid $pid) did not stop on TERM: KILL"
    kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

stop_httpd() {
    [ -n "$HTTPD_PIDFILE" ] || return 0
    local pid=""
    [ -s "$HTTPD_PIDFILE" ] && pid=$(cat "$HTTPD_PIDFILE" 2>/dev/null)
    HTTPD_PIDFILE=""
    # the parent removes its pid file on exit and takes its children with it
    [ -n "$pid" ] && stop_pid "$pid" httpd
}

stop_memcached() {
    [ -n "$MC_PID" ] || return 0
    stop_pid "$MC_PID" memcached
    wait "$MC_PID" 2>/dev/null
    MC_PID=""
}

# module links and apache2's state records (/var/lib/apache2/module) as found
save_state() {
    ls -1 /etc/apache2/mods-enabled/ 2>/dev/null | sort > "$TMP/state.mods-enabled"
    (cd /var/lib/apache2 2>/dev/null && find module -mindepth 2 2>/dev/null | sort) > "$TMP/state.records"
    STATE_SAVED=1
}

restore_state() {
    [ "$STATE_SAVED" = 1 ] || return 0
    STATE_SAVED=0
    local now m f changed=0
    now=$(ls -1 /etc/apache2/mods-enabled/ 2>/dev/null | sort)
    # modules enabled since (mod_session as msm's dependency): disable them again
    for m in $(comm -13 "$TMP/state.mods-enabled" <(printf '%s\n' "$now") \
               | sed -n 's/\.load$//p'); do
        log "disabling $m again (it was not enabled before this run)"
        a2dismod -q -f "$m" >> "$LOG" 2>&1 || warn "a2dismod $m failed"
        changed=1
    done
    # anything still different (a module this run disabled): re-enable it
    for m in $(comm -23 "$TMP/state.mods-enabled" \
               <(ls -1 /etc/apache2/mods-enabled/ 2>/dev/null | sort) | sed -n 's/\.load$//p'); do
        warn "module $m was enabled before this run: enabling it again"
        a2enmod -q "$m" >> "$LOG" 2>&1 || warn "a2enmod $m failed"
        changed=1
    done
    # the state records: remove the ones this run created, recreate the ones it removed
    now=$(cd /var/lib/apache2 2>/dev/null && find module -mindepth 2 2>/dev/null | sort)
    for f in $(comm -13 "$TMP/state.records" <(printf '%s\n' "$now")); do
        rm -f "/var/lib/apache2/$f"
    done
    for f in $(comm -23 "$TMP/state.records" <(printf '%s\n' "$now")); do
        mkdir -p "/var/lib/apache2/${f%/*}" && touch "/var/lib/apache2/$f"
    done
    # a running system apache2 (by its pid file) drops what was disabled
    if [ "$changed" = 1 ] && [ -s /run/apache2/apache2.pid ] \
       && kill -0 "$(cat /run/apache2/apache2.pid)" 2>/dev/null; then
        invoke-rc.d apache2 reload >> "$LOG" 2>&1 || true
    fi
}

purge_package() {
    [ "$INSTALLED_BY_US" = 1 ] || return 0
    if pkg_known; then
        log "purging $PKG"
        timeout 300 apt-get purge -y -q "$PKG" >> "$LOG" 2>&1 \
            || timeout 120 dpkg --purge "$PKG" >> "$LOG" 2>&1 \
            || warn "could not purge $PKG: run apt-get purge $PKG"
    fi
    pkg_known || INSTALLED_BY_US=0
}

finish() {
    local rc=${1:-0}
    [ "$FINISHED" = 1 ] && exit "$rc"
    FINISHED=1
    trap - EXIT INT TERM HUP
    stop_httpd
    stop_memcached
    if [ "$INSTALLED_BY_US" = 1 ]; then
        purge_package
        if [ "$INSTALLED_BY_US" = 1 ]; then
            fail "cleanup: $PKG is still installed"
        fi
    fi
    restore_state
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "$FAILED" -eq 0 ] && [ "$rc" -eq 0 ] && [ "$KEEP" = 0 ]; then
            rm -rf "$TMP"
        else
            echo "kept: $TMP (log: $TMP/deb-test.log)"
        fi
    fi
    if [ "$FAILED" -gt 0 ] && [ "$rc" -eq 0 ]; then rc=1; fi
    if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then FAILED=1; fi
    log "done"
    echo "$PASSED passed, $FAILED failed"
    exit "$rc"
}
trap 'finish $?' EXIT
trap 'warn interrupted; FAILED=$((FAILED + 1)); finish 130' INT TERM HUP

abort() { fail "$*"; [ -n "${LOG:-}" ] && [ -f "$LOG" ] && tail -n 40 "$LOG"; finish 1; }

# ------------------------------------------------------------------ 0. preconditions
LOG=/dev/null
[ "$(id -u)" = 0 ] || abort "run as root (it installs and purges a package)"
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null || abort "not a Debian system"
TMP=$(mktemp -d /var/tmp/msm-deb.XXXXXX) || abort "mktemp"
chmod 755 "$TMP"
LOG=$TMP/deb-test.log
: > "$LOG"
log "work dir $TMP (log: $LOG)"

# ------------------------------------------------------------------ 1. packages
NEED="dpkg-dev build-essential lintian apache2 memcached curl"
if [ "${MSM_SKIP_APT:-0}" != 1 ]; then
    missing=""
    for p in $NEED; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] \
            || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        log "apt-get install:$missing"
        timeout 900 apt-get update -qq >> "$LOG" 2>&1 || abort "apt-get update"
        timeout 1200 apt-get install -y -qq --no-install-recommends $missing >> "$LOG" 2>&1 \
            || abort "apt-get install$missing"
    fi
fi

# ------------------------------------------------------------------ 2. build
SRC=$TMP/build/src
mkdir -p "$SRC" || abort "mkdir $SRC"
log "copying $REPO to $SRC"
bash "$REPO/scripts/copy-sources.sh" "$REPO" "$SRC" || abort "copying the sources"
[ -f "$SRC/debian/control" ] || abort "no debian/control in $REPO"

if [ "${MSM_SKIP_APT:-0}" != 1 ] && ! (cd "$SRC" && dpkg-checkbuilddeps) >> "$LOG" 2>&1; then
    log "apt-get build-dep (debian/control's Build-Depends)"
    timeout 1200 apt-get build-dep -y -qq "$SRC" >> "$LOG" 2>&1 \
        || { timeout 900 apt-get update -qq >> "$LOG" 2>&1 \
             && timeout 1200 apt-get build-dep -y -qq "$SRC" >> "$LOG" 2>&1; } \
        || abort "apt-get build-dep"
fi

check "configure.ac and debian/changelog carry the same version" \
    bash "$SRC/scripts/check-version.sh" "$SRC"

log "dpkg-buildpackage -us -uc -S (source package)"
check "source package builds" \
    bash -c 'cd "$1" && timeout 300 dpkg-buildpackage -us -uc -S' _ "$SRC"
log "dpkg-buildpackage -us -uc -b"
if ! check "binary package builds (with the C unit tests)" \
        bash -c 'cd "$1" && timeout 1200 dpkg-buildpackage -us -uc -b' _ "$SRC"; then
    tail -n 40 "$LOG"
    finish 1
fi
grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR):' "$LOG" | sed 's/^/   make check /'

cd "$TMP/build" || abort "cd $TMP/build"
DEB=$(ls ${PKG}_*.deb 2>/dev/null | head -n 1)
[ -n "$DEB" ] || abort "no ${PKG}_*.deb was produced"
dpkg-deb -c "$DEB" | awk '{print $NF}' | sed 's|^\./|/|' > "$TMP/contents"
for f in /usr/lib/apache2/modules/mod_msm.so /etc/apache2/mods-available/msm.load \
         /etc/apache2/mods-available/msm.conf /usr/share/doc/$PKG/README.gz \
         /usr/share/doc/$PKG/README.Debian /usr/share/doc/$PKG/copyright \
         /usr/share/doc/$PKG/examples/msm-example.conf; do
    check "the package ships $f" grep -qxF "$f" "$TMP/contents"
done
check "the package ships no libtool archive (.la)" bash -c '! grep -q "\.la$" "$1"' _ "$TMP/contents"
check "msm.load carries '# Depends: session'" \
    bash -c 'dpkg-deb --fsys-tarfile "$1" | tar -xOf - ./etc/apache2/mods-available/msm.load | grep -qx "# Depends: session"' _ "$DEB"
# mods-enabled/*.load are read alphabetically, msm before session: msm.load
# loads mod_msm, which finds mod_session's hooks once both are loaded (the
# configtest of the installed package below proves that order works)
check "msm.load loads mod_msm" \
    bash -c 'dpkg-deb --fsys-tarfile "$1" | tar -xOf - ./etc/apache2/mods-available/msm.load | grep -qx "LoadModule msm_module /usr/lib/apache2/modules/mod_msm.so"' _ "$DEB"

# ------------------------------------------------------------------ 3. lintian
log "lintian"
for what in "${PKG}_"*_source.changes "${PKG}_"*_"$(dpkg --print-architecture)".changes; do
    # every tag is shown (info, pedantic, experimental); only E: and W: fail
    timeout 300 lintian --fail-on error,warning -I -E --pedantic --display-level '>=pedantic' \
        "$what" > "$TMP/lintian.out" 2>&1
    lrc=$?
    grep -v 'running with root privileges' "$TMP/lintian.out" | sed 's/^/   /'
    cat "$TMP/lintian.out" >> "$LOG"
    if [ "$lrc" -eq 0 ]; then
        pass "lintian $what: no errors, no warnings"
    elif grep -qE '^[EW]: ' "$TMP/lintian.out"; then
        fail "lintian $what: errors or warnings"
    else
        fail "lintian $what did not run (exit $lrc)"
    fi
done

# ------------------------------------------------------------------ 4. install
if pkg_known; then
    abort "$PKG is already installed on this machine (apt-get purge $PKG first): not touching it"
fi
if [ -e /usr/lib/apache2/modules/mod_msm.so ] || [ -e /etc/apache2/mods-available/msm.load ] \
   || [ -e /etc/apache2/mods-available/msm.conf ]; then
    abort "mod_msm is installed by hand (/usr/lib/apache2/modules/mod_msm.so or mods-available/msm.*): not overwriting it"
fi
check "apache2ctl configtest passes before the installation" apache2ctl configtest \
    || abort "the system's apache2 configuration is broken already"
port_free() { ! timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }
port_free "$MC_PORT" || abort "127.0.0.1:$MC_PORT is in use (MSM_DEB_MC_PORT)"
port_free "$HTTP_PORT" || abort "127.0.0.1:$HTTP_PORT is in use (MSM_DEB_HTTP_PORT)"

# no Apache::Test run (scripts/test.sh) while the module is installed and enabled
test_runs() { pgrep -f '(^|[ /])scripts/test\.sh( |$)' 2>/dev/null | grep -vx "$$"; }
waited=0
while [ -n "$(test_runs)" ]; do
    if [ "$waited" -ge "$WAIT_TESTS" ]; then
        abort "scripts/test.sh still running after ${WAIT_TESTS}s (pids $(test_runs | tr '\n' ' ')): not installing"
    fi
    [ $((waited % 60)) = 0 ] && log "waiting for scripts/test.sh to finish (pids $(test_runs | tr '\n' ' '))"
    sleep 5
    waited=$((waited + 5))
done

save_state
log "apt-get install ./$DEB"
INSTALLED_BY_US=1
if ! check "apt-get install -y ./$DEB" timeout 600 apt-get install -y -q "./$DEB"; then
    finish 1
fi
check "mod_msm.so is installed" test -f /usr/lib/apache2/modules/mod_msm.so
check "installing enabled msm (dh_apache2's postinst)" a2query -q -m msm
check "and session with it (# Depends: session)" a2query -q -m session
check "a2enmod msm" a2enmod msm
check "apache2ctl configtest with msm enabled" apache2ctl configtest
check "apache2ctl -M lists msm_module and session_module" \
    bash -c 'm=$(apache2ctl -M 2>/dev/null); grep -q "msm_module" <<<"$m" && grep -q "session_module" <<<"$m"'

# ------------------------------------------------------------------ 5. smoke test
log "smoke test: memcached on 127.0.0.1:$MC_PORT, httpd on 127.0.0.1:$HTTP_PORT"
W=$TMP/smoke
mkdir -p "$W/htdocs/app" "$W/logs" "$W/run"
chmod 755 "$W" "$W/htdocs" "$W/htdocs/app"
memcached -u nobody -l 127.0.0.1 -p "$MC_PORT" -U 0 -m 16 -c 256 > "$W/logs/memcached.log" 2>&1 &
MC_PID=$!
mc_up=0
for _ in $(seq 50); do
    kill -0 "$MC_PID" 2>/dev/null || break
    port_free "$MC_PORT" || { mc_up=1; break; }
    sleep 0.1
done
check "memcached started (pid $MC_PID)" test "$mc_up" = 1

# mc "command": one memcached text-protocol command, its answer up to END/an error
mc() {
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "%s\r\n" "$2" >&3
        while IFS= read -r -t 3 line <&3; do
            line=${line%$'"'"'\r'"'"'}
            printf "%s\n" "$line"
            case "$line" in END|ERROR|CLIENT_ERROR*|SERVER_ERROR*) break ;; esac
        done
        printf "quit\r\n" >&3' _ "$MC_PORT" "$1"
}

# the application: sets msmvalue=<v> with ?set=<v> (SessionHeader), always
# prints the session it received (SessionEnv)
cat > "$W/htdocs/app/session.cgi" <<'EOF'
#!/bin/sh
printf 'Content-Type: text/plain\r\n'
v=${QUERY_STRING#set=}
if [ "$v" != "$QUERY_STRING" ] && [ -n "$v" ] && [ -z "$(printf %s "$v" | tr -d 'A-Za-z0-9')" ]; then
    printf 'X-Replace-Session: msmvalue=%s\r\n' "$v"
fi
printf '\r\n'
printf 'session=%s\n' "${HTTP_SESSION:-}"
EOF
chmod 755 "$W/htdocs/app/session.cgi"

M=/usr/lib/apache2/modules
cat > "$W/httpd.conf" <<EOF
# scripts/deb-test.sh: an httpd of its own, nothing of /etc/apache2
ServerRoot "$W"
ServerName 127.0.0.1
Listen 127.0.0.1:$HTTP_PORT
PidFile "$W/run/httpd.pid"
DefaultRuntimeDir "$W/run"
ErrorLog "$W/logs/error_log"
LogLevel info msm:debug
User www-data
Group www-data
LoadModule mpm_prefork_module $M/mod_mpm_prefork.so
LoadModule authz_core_module  $M/mod_authz_core.so
LoadModule alias_module       $M/mod_alias.so
LoadModule cgi_module         $M/mod_cgi.so
# mod_msm before mod_session, as Debian's alphabetical mods-enabled/*.load
LoadModule msm_module         $M/mod_msm.so
LoadModule session_module     $M/mod_session.so
StartServers 2
MinSpareServers 1
MaxSpareServers 4
DocumentRoot "$W/htdocs"
<Directory />
    Require all denied
</Directory>
MsmNodes n1:127.0.0.1:$MC_PORT
MsmKeyPrefix debtest:
ScriptAlias /app/ "$W/htdocs/app/"
<Directory "$W/htdocs/app">
    Require all granted
</Directory>
<Location /app/>
    Session On
    SessionEnv On
    SessionHeader X-Replace-Session
    MsmCookieName DEBSESSION path=/ httponly
</Location>
EOF

URL=http://127.0.0.1:$HTTP_PORT/app/session.cgi
check "the smoke httpd's configuration is valid" /usr/sbin/apache2 -f "$W/httpd.conf" -t
HTTPD_PIDFILE=$W/run/httpd.pid
if check "the smoke httpd starts (/usr/sbin/apache2 -f $W/httpd.conf)" \
        timeout 30 /usr/sbin/apache2 -f "$W/httpd.conf" -k start; then
    up=0
    for _ in $(seq 100); do
        if [ -s "$HTTPD_PIDFILE" ] && ! port_free "$HTTP_PORT"; then up=1; break; fi
        sleep 0.1
    done
    check "the smoke httpd listens on 127.0.0.1:$HTTP_PORT" test "$up" = 1
fi

VALUE=deb$$x$RANDOM
curl -sS -m 10 -c "$W/jar" -D "$W/h1" -o "$W/b1" "$URL?set=$VALUE" >> "$LOG" 2>&1
cookie=$(sed -n 's/^Set-Cookie: DEBSESSION=\([0-9a-f]\{32\}\)-n1;.*/\1/Ip' "$W/h1" | tr -d '\r' | head -n 1)
check "a request that writes the session gets a DEBSESSION cookie <32 hex>-n1" test -n "$cookie"
curl -sS -m 10 -b "$W/jar" -o "$W/b2" "$URL" >> "$LOG" 2>&1
check "the next request with the cookie reads the value back" grep -q "msmvalue=$VALUE" "$W/b2"
curl -sS -m 10 -o "$W/b3" "$URL" >> "$LOG" 2>&1
check "a request without the cookie has no session" grep -qx 'session=' "$W/b3"
# before our own get: the module's write (set/add/cas) and its read (gats: a touch hit)
mc stats > "$W/mc-stats" 2>> "$LOG"
check "memcached's stats count the module's write and read" \
    awk '$2 == "cmd_set" { s = $3 } $2 == "touch_hits" { t = $3 } $2 == "get_hits" { g = $3 }
         END { exit !(s > 0 && t + g > 0) }' "$W/mc-stats"
mc "get debtest:$cookie" > "$W/mc-get" 2>> "$LOG"
cat "$W/mc-get" >> "$LOG"
check "memcached holds the session under debtest:<id>" \
    bash -c 'grep -q "^VALUE debtest:$1 " "$2" && grep -q "msmvalue=$3" "$2"' _ "$cookie" "$W/mc-get" "$VALUE"
stop_httpd
check "no crash or error of mod_msm in the smoke httpd's error log" \
    bash -c '! grep -E "\[(msm|session):(emerg|alert|crit|error)\]|exit signal|AH00052" "$1"' _ "$W/logs/error_log"
stop_memcached
if [ "$FAILED" -gt 0 ] && [ -f "$W/logs/error_log" ]; then
    echo "---- $W/logs/error_log"; tail -n 30 "$W/logs/error_log"
fi

# ------------------------------------------------------------------ 6. disable, remove, purge
log "a2dismod, apt-get remove, apt-get purge"
check "a2dismod msm" a2dismod msm
check "apache2ctl configtest with msm disabled" apache2ctl configtest
check "a2enmod msm (again, for the removal)" a2enmod -q msm
check "apt-get remove -y $PKG" timeout 300 apt-get remove -y -q "$PKG"
check "removing disabled msm" bash -c '! a2query -q -m msm && [ ! -e /etc/apache2/mods-enabled/msm.load ]'
check "apache2ctl configtest after the removal" apache2ctl configtest
check "mod_msm.so is gone after the removal" test ! -e /usr/lib/apache2/modules/mod_msm.so
check "msm.load and msm.conf stay until purge (conffiles)" \
    test -f /etc/apache2/mods-available/msm.load -a -f /etc/apache2/mods-available/msm.conf
check "apt-get purge -y $PKG" timeout 300 apt-get purge -y -q "$PKG"
pkg_known || INSTALLED_BY_US=0
check "the package is purged" bash -c '! dpkg-query -W -f="\${db:Status-Status}" "$1" 2>/dev/null | grep -qv "^not-installed$"' _ "$PKG"
check "apache2ctl configtest after the purge" apache2ctl configtest
check "/usr/lib/apache2/modules/mod_msm.so is gone" test ! -e /usr/lib/apache2/modules/mod_msm.so
check "mods-available/msm.* and mods-enabled/msm.* are gone" \
    bash -c '! ls /etc/apache2/mods-available/msm.* /etc/apache2/mods-enabled/msm.* >/dev/null 2>&1'
restore_state
check "the enabled modules are those found at the start" \
    bash -c 'diff <(ls -1 /etc/apache2/mods-enabled/ | sort) "$1"' _ "$TMP/state.mods-enabled"
check "apache2ctl configtest at the end" apache2ctl configtest

finish 0
