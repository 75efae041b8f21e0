#!/usr/bin/env bash
# scripts/test.sh - THE test command of mod_msm (CI runs it through .ci/run).
#
#   bash scripts/test.sh [--asan] [--mpm event] [--fpm] [--only t/foo.t]... [--keep] [--no-module] [--verbose] [--no-skip]
#
# Run as root on a fresh Debian 12 machine it:
#   1. apt-get installs what the build and the tests need (skipped when present);
#   2. creates the unprivileged user msmtest (Apache::Test refuses to run as root);
#   3. copies the work tree (no .git, no build outputs) into a fresh build dir
#      ${MSM_BUILD_DIR:-/var/tmp}/msm-test.PID owned by msmtest;
#   4. there, as msmtest: autoreconf -fi, ./configure --with-apxs, make,
#      make check (C unit tests), then the Apache::Test suite t/*.t.
# Run as another user it skips 1-2 and builds/tests as that user.
#
# Options:
#   --asan       configure --enable-sanitizers; httpd runs with libasan LD_PRELOADed;
#                any ASan report fails the run
#   --only FILE  run only this t/*.t file (repeatable; skips make check)
#   --keep       keep the build dir even when everything passed
#   --no-module  infra development only: skip the build and make check and run the
#                Apache::Test suite without mod_msm (-defines MSM_NO_MODULE)
#   --verbose    verbose TAP output
#   --mpm NAME   the MPM of every httpd the suite starts: prefork (default) or event
#   --fpm        the test application (/msm/app.cgi and every location that serves
#                it) runs in php-fpm through mod_proxy_fcgi (t/htdocs/msm/app.php:
#                the session reaches PHP as a FastCGI parameter, X-Replace-Session
#                comes back as a response header), as with mpm_event in production
#   --no-skip    every skip (a stage, a C test program, a t/*.t file or assertion)
#                also counts as a failure: CI runs as root on Debian, where
#                everything the suite needs can be installed
# Environment: MSM_BUILD_DIR (parent of the build dir), MSM_TEST_TIMEOUT (per t/*.t
# file, seconds, default 300, raised to fit MSM_LIFECYCLE_SECONDS of t/90_lifecycle.t),
# MSM_LIFECYCLE_* (t/90_lifecycle.t, see t/README.md), MSM_SKIP_APT=1 (do not run apt-get),
# MSM_FUZZ_SECONDS (per libFuzzer target on a full run, default 60; 0 = none).
#
# Exit status is non-zero on any failure. The last line printed is always
# "N passed, N failed, N skipped": the C unit tests' checks one by one, the
# Apache::Test assertions, and one each for the stages make distcheck and
# fuzzing (a build failure is "0 passed, 1 failed, 0 skipped"). A skip is never
# counted as passed.
set -u -o pipefail
exec 2>&1   # one ordered stream: the summary line stays the last line

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START_TS=$(date +%s)

ASAN=0 KEEP=0 NO_MODULE=0 VERBOSE=0 NO_SKIP=0 FPM=0
FPM_PID=""
ONLY=()
PASSED=0
FAILED=0
SKIPPED=0
BUILD=""
HTTPD_STARTED=0
FINISHED=0

log()  { printf '== %s [%ss]\n' "$*" "$(( $(date +%s) - START_TS ))"; }
warn() { printf '!! %s\n' "$*" >&2; }

# run a command as the test user, in the build dir
# memcached for the C unit tests (test_client, test_store), outside the t/ range
UNIT_MC_PORTS=${MSM_UNIT_MC_PORTS:-21401,21402}
# seconds per libFuzzer target on a full run (0: no fuzzing)
FUZZ_SECS=${MSM_FUZZ_SECONDS:-60}

as_user() {
    if [ -n "${RUN_USER:-}" ]; then
        runuser -u "$RUN_USER" -- env HOME="$BUILD/.home" TMPDIR="$BUILD/.tmp" \
            LC_ALL=C.UTF-8 "$@"
    else
        env HOME="${HOME:-$BUILD/.home}" TMPDIR="$BUILD/.tmp" LC_ALL=C.UTF-8 "$@"
    fi
}

stop_httpd() {
    [ "$HTTPD_STARTED" = 1 ] || return 0
    HTTPD_STARTED=0
    (cd "$BUILD" && as_user timeout 60 t/TEST -stop-httpd >/dev/null 2>&1) || true
    # fallback: the pid from Apache::Test's own pid file (the server this run started)
    local pidf="$BUILD/t/logs/httpd.pid" pid
    if [ -s "$pidf" ]; then
        pid=$(cat "$pidf" 2>/dev/null)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            warn "httpd $pid still running after t/TEST -stop-httpd: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
}

# php-fpm of --fpm: its master's pid (from its pid file) and the runuser
# that started it
stop_fpm() {
    [ -n "$FPM_PID" ] || return 0
    local pid i
    pid=$(cat "$BUILD/.fpm/php-fpm.pid" 2>/dev/null || true)
    for p in $pid $FPM_PID; do kill -TERM "$p" 2>/dev/null || true; done
    for i in $(seq 50); do
        kill -0 "$FPM_PID" 2>/dev/null || { [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; } && break
        sleep 0.1
    done
    for p in $pid $FPM_PID; do kill -KILL "$p" 2>/dev/null || true; done
    FPM_PID=""
}

# --fpm: one php-fpm as the test user, a static pool on a Unix socket that
# every httpd of the suite (Apache::Test's and the tests' own) proxies to
start_fpm() {
    local bin d=$BUILD/.fpm
    bin=$(ls /usr/sbin/php-fpm* 2>/dev/null | sort -V | tail -n 1)
    [ -n "$bin" ] || fail_step "--fpm: no /usr/sbin/php-fpm* (Debian package php-fpm)"
    as_user mkdir -p "$d"
    as_user sh -c "cat > '$d/php-fpm.conf'" <<EOF_FPM
[global]
pid = $d/php-fpm.pid
error_log = $d/php-fpm.log
daemonize = no
[app]
listen = $d/fpm.sock
listen.mode = 0660
listen.backlog = 511
pm = static
pm.max_children = 40
catch_workers_output = yes
EOF_FPM
    log "php-fpm: $bin, 40 workers on $d/fpm.sock"
    as_user "$bin" -F -y "$d/php-fpm.conf" >> "$LOGS/php-fpm.log" 2>&1 &
    FPM_PID=$!
    for _ in $(seq 100); do
        [ -S "$d/fpm.sock" ] && break
        kill -0 "$FPM_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -S "$d/fpm.sock" ] || fail_step "--fpm: php-fpm did not start" "$LOGS/php-fpm.log"
    export MSM_TEST_FPM_SOCKET=$d/fpm.sock
}

# "passed failed skipped" of make check, from each unit test program's log
# (tests/*.log, tests/*.trs): its checks one by one ("<name>: N checks, M
# failed"); a program that failed without that line is one failure, one that
# exited 77 one skip (besides the checks it did run)
count_unit_checks() {
    local trs log res line n m p=0 f=0 k=0
    for trs in tests/*.trs; do
        [ -f "$trs" ] || continue
        log=${trs%.trs}.log
        res=$(sed -n 's/^:test-result: //p' "$trs" | head -n 1)
        line=$(grep -E '^[a-z_]+: [0-9]+ checks, [0-9]+ failed$' "$log" 2>/dev/null | tail -n 1)
        n=0 m=0
        if [ -n "$line" ]; then
            n=$(echo "$line" | awk '{ print $2 }')
            m=$(echo "$line" | awk '{ print $4 }')
        fi
        p=$((p + n - m))
        f=$((f + m))
        case "$res" in
            SKIP) k=$((k + 1)) ;;
            FAIL|ERROR|XPASS) [ "$m" -gt 0 ] || f=$((f + 1)) ;;
        esac
    done
    echo "$p $f $k"
}

# always the last thing printed
# what failed, said again at the very end: CI keeps only the tail of the output
WHAT_FAILED=()
failed_because() { WHAT_FAILED+=("$@"); }
failed_because_lines() { mapfile -t -O "${#WHAT_FAILED[@]}" WHAT_FAILED; }   # one per line of stdin

finish() {
    local rc=${1:-0} line
    [ "$FINISHED" = 1 ] && exit "$rc"
    FINISHED=1
    trap - EXIT INT TERM
    stop_httpd
    stop_fpm
    # before the build dir goes: the skip list is in it, and a skip fails here
    if [ "$NO_SKIP" = 1 ] && [ "$SKIPPED" -gt 0 ]; then
        warn "--no-skip: $SKIPPED skip(s) counted as failures"
        failed_because "--no-skip: $SKIPPED skip(s)"
        [ -s "$LOGS/at-counts.skips" ] && failed_because_lines < "$LOGS/at-counts.skips"
        FAILED=$((FAILED + SKIPPED))
    fi
    if [ -n "$BUILD" ] && [ -d "$BUILD" ]; then
        if [ "$FAILED" -eq 0 ] && [ "$rc" -eq 0 ] && [ "$KEEP" = 0 ]; then
            rm -rf "$BUILD"
        else
            echo "build dir kept: $BUILD (logs: $BUILD/.logs, $BUILD/t/logs)"
        fi
    fi
    for line in "${WHAT_FAILED[@]}"; do echo "FAILED: $line"; done
    if [ "$FAILED" -gt 0 ] && [ "$rc" -eq 0 ]; then rc=1; fi
    if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then FAILED=1; fi
    log "done"
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
    exit "$rc"
}
trap 'finish $?' EXIT
trap 'warn interrupted; failed_because interrupted; FAILED=$((FAILED+1)); finish 130' INT TERM

while [ $# -gt 0 ]; do
    case "$1" in
        --asan) ASAN=1 ;;
        --keep) KEEP=1 ;;
        --no-module) NO_MODULE=1 ;;
        --verbose|-v) VERBOSE=1 ;;
        --no-skip) NO_SKIP=1 ;;
        --fpm) FPM=1 ;;
        --mpm) shift; case "${1:-}" in prefork|event) export MSM_TEST_MPM=$1 ;;
                   *) warn "--mpm: prefork or event"; exit 2 ;; esac ;;
        --only) shift; [ $# -gt 0 ] || { warn "--only needs a file"; exit 2; }; ONLY+=("$1") ;;
        --only=*) ONLY+=("${1#--only=}") ;;
        -h|--help) FINISHED=1; sed -n '2,39p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) warn "unknown argument '$1' (see --help)"; exit 2 ;;
    esac
    shift
done


fail_step() {   # fail_step "what" [logfile]
    warn "FAILED: $1"
    failed_because "$1"
    if [ -n "${2:-}" ] && [ -f "$2" ]; then
        echo "---- last lines of $2"
        tail -n 60 "$2"
        echo "----"
    fi
    FAILED=$((FAILED + 1))
    finish 1
}

# ------------------------------------------------------------------ 1. packages
PKGS="apache2 apache2-dev memcached libapache2-mod-perl2 autoconf automake libtool
      pkg-config make gcc libc6-dev libssl-dev openssl libwww-perl libjson-pp-perl libjson-xs-perl wrk nutcracker yrmcds
      curl perl git ca-certificates procps clang libclang-rt-14-dev apache2-utils
      chromium nodejs php-fpm libapache2-mod-php"

if [ "$(id -u)" = 0 ]; then
    if [ "${MSM_SKIP_APT:-0}" != 1 ]; then
        missing=""
        for p in $PKGS; do
            st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
            [ "$st" = installed ] || missing="$missing $p"
        done
        # npm (t/browser): Debian's package, unless nodejs brings its own (NodeSource's
        # nodejs contains npm and conflicts with Debian's npm package)
        command -v npm >/dev/null 2>&1 || missing="$missing npm"
        if [ -n "$missing" ]; then
            log "apt-get install:$missing"
            export DEBIAN_FRONTEND=noninteractive
            timeout 900 apt-get update -qq >/dev/null \
                || fail_step "apt-get update"
            timeout 1200 apt-get install -y -qq --no-install-recommends $missing >/dev/null \
                || fail_step "apt-get install$missing"
        fi
        # promtool (t/50_status.t) comes with Debian's prometheus package, which
        # would also start a server: unpack the tool only
        if [ ! -x /usr/local/lib/msm-promtool/usr/bin/promtool ] && ! command -v promtool >/dev/null; then
            log "unpacking promtool from Debian's prometheus package"
            ( d=$(mktemp -d) && cd "$d" && timeout 600 apt-get download -qq prometheus >/dev/null 2>&1 \
              && mkdir -p /usr/local/lib/msm-promtool \
              && dpkg -x prometheus_*.deb /usr/local/lib/msm-promtool; rm -rf "$d" ) \
              || warn "could not unpack promtool; t/50_status.t uses its own format check only"
        fi
    fi
    [ -x /usr/local/lib/msm-promtool/usr/bin/promtool ] \
        && export MSM_PROMTOOL=/usr/local/lib/msm-promtool/usr/bin/promtool
    RUN_USER=msmtest
    if ! id -u "$RUN_USER" >/dev/null 2>&1; then
        log "creating user $RUN_USER"
        useradd --system --user-group --create-home --home-dir /var/lib/msmtest \
            --shell /bin/bash "$RUN_USER" || fail_step "useradd $RUN_USER"
    fi
else
    RUN_USER=""
    for c in apxs memcached autoreconf make gcc perl; do
        command -v "$c" >/dev/null 2>&1 || [ -x "/usr/bin/$c" ] \
            || fail_step "'$c' is missing (run scripts/test.sh as root to install packages)"
    done
fi

HTTPD=/usr/sbin/apache2
APXS=/usr/bin/apxs
[ -x "$HTTPD" ] || fail_step "$HTTPD not found"
[ -x "$APXS" ] || fail_step "$APXS not found"

# ------------------------------------------------------------------ 2. build dir
PARENT=${MSM_BUILD_DIR:-/var/tmp}
mkdir -p "$PARENT" || fail_step "mkdir $PARENT"
BUILD=$(cd "$PARENT" && pwd)/msm-test.$$
rm -rf "$BUILD"
mkdir -p "$BUILD" || fail_step "mkdir $BUILD"
log "copying $REPO to $BUILD"

bash "$REPO/scripts/copy-sources.sh" "$REPO" "$BUILD" \
    || fail_step "copying the sources"
mkdir -p "$BUILD/.logs" "$BUILD/.home" "$BUILD/.tmp"
if [ -n "$RUN_USER" ]; then
    chown -R "$RUN_USER:" "$BUILD" || fail_step "chown $BUILD"
fi
chmod 755 "$BUILD"
LOGS=$BUILD/.logs

# ------------------------------------------------------------------ ASan setup
CONFIGURE_ARGS=(--with-apxs="$APXS")
HTTPD_FOR_TESTS=$HTTPD
if [ "$ASAN" = 1 ]; then
    ASAN_LIB=$(gcc -print-file-name=libasan.so)
    [ -e "$ASAN_LIB" ] || fail_step "libasan not found (gcc -print-file-name=libasan.so: $ASAN_LIB)"
    ASAN_LIB=$(readlink -f "$ASAN_LIB")
    CONFIGURE_ARGS+=(--enable-sanitizers)
    mkdir -p "$BUILD/t/logs"
    # httpd is not built with ASan: preload the runtime into it (and only into it)
    cat > "$BUILD/.httpd-asan" <<EOF
#!/bin/sh
# generated by scripts/test.sh --asan: $HTTPD with the ASan runtime preloaded
LD_PRELOAD="$ASAN_LIB\${LD_PRELOAD:+:\$LD_PRELOAD}" exec $HTTPD "\$@"
EOF
    chmod 755 "$BUILD/.httpd-asan"
    HTTPD_FOR_TESTS=$BUILD/.httpd-asan
    export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_odr_violation=0:log_path=$BUILD/t/logs/asan}"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:log_path=$BUILD/t/logs/ubsan}"
    [ -n "$RUN_USER" ] && chown -R "$RUN_USER:" "$BUILD/.httpd-asan" "$BUILD/t/logs"
fi

# ------------------------------------------------------------------ 3. build
cd "$BUILD" || fail_step "cd $BUILD"
if [ "$NO_MODULE" = 1 ]; then
    warn "--no-module: mod_msm is NOT built nor tested (infra development only)"
else
    [ -f configure.ac ] || fail_step "build: no configure.ac in the tree (mod_msm sources missing)"
    log "build: autoreconf -fi && ./configure ${CONFIGURE_ARGS[*]} && make"
    as_user timeout 600 bash -c 'autoreconf -fi && ./configure "$@" && make -j2' \
        build "${CONFIGURE_ARGS[@]}" > "$LOGS/build.log" 2>&1 \
        || fail_step "build (autoreconf/configure/make), see $LOGS/build.log" "$LOGS/build.log"
    [ -f .libs/mod_msm.so ] \
        || fail_step "build: .libs/mod_msm.so was not produced" "$LOGS/build.log"
    if [ "$ASAN" = 1 ] && [ "$(nm -D .libs/mod_msm.so 2>/dev/null | grep -c '__asan_')" = 0 ]; then
        fail_step "--asan: .libs/mod_msm.so is not built with AddressSanitizer (configure --enable-sanitizers)" "$LOGS/build.log"
    fi
    log "build ok"

    # -------------------------------------------------------------- 4. make check
    if [ ${#ONLY[@]} -eq 0 ]; then
        log "unit tests: make check (memcached on 127.0.0.1:$UNIT_MC_PORTS)"
        unit_mc_pids=()
        for p in ${UNIT_MC_PORTS//,/ }; do
            as_user memcached -l 127.0.0.1 -p "$p" -U 0 -m 64 -d -P "$BUILD/.tmp/unit-mc-$p.pid" \
                || warn "could not start memcached on $p for the unit tests"
        done
        for p in ${UNIT_MC_PORTS//,/ }; do
            for _ in $(seq 50); do [ -s "$BUILD/.tmp/unit-mc-$p.pid" ] && break; sleep 0.1; done
            [ -s "$BUILD/.tmp/unit-mc-$p.pid" ] && unit_mc_pids+=("$(cat "$BUILD/.tmp/unit-mc-$p.pid")")
        done
        as_user env MSM_TEST_MEMCACHED="$UNIT_MC_PORTS" timeout 600 make -j2 check > "$LOGS/check.log" 2>&1
        rc=$?
        for pid in "${unit_mc_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
        read -r upass ufail uskip < <(count_unit_checks)
        grep -E '^(PASS|FAIL|XFAIL|XPASS|SKIP|ERROR): ' "$LOGS/check.log" | sed 's/^/   /'
        grep -hE '^[a-z_]+: [0-9]+ checks, [0-9]+ failed$' tests/*.log 2>/dev/null | sed 's/^/   /'
        if [ "$rc" -ne 0 ] && [ "$ufail" -eq 0 ]; then ufail=1; fi
        PASSED=$((PASSED + upass))
        FAILED=$((FAILED + ufail))
        SKIPPED=$((SKIPPED + uskip))
        if [ "$rc" -ne 0 ]; then
            warn "make check failed (exit $rc), see $LOGS/check.log"
            failed_because "make check (exit $rc)"
            failed_because_lines < <(grep -hE '^(FAIL|ERROR): ' "$LOGS/check.log"; \
                grep -hE '^[a-z_]+: [0-9]+ checks, [1-9][0-9]* failed$' tests/*.log 2>/dev/null)
            tail -n 40 "$LOGS/check.log"
            for f in $(find . -name 'test-suite.log' -newer configure 2>/dev/null); do
                echo "---- $f"; tail -n 80 "$f"
            done
        fi
        log "unit tests: $upass checks passed, $ufail failed, $uskip program(s) skipped"

        # ---------------------------------------------------------- 4a. distcheck
        log "make distcheck"
        if as_user timeout 900 make distcheck > "$LOGS/distcheck.log" 2>&1; then
            PASSED=$((PASSED + 1))
        else
            FAILED=$((FAILED + 1))
            warn "make distcheck failed, see $LOGS/distcheck.log"
            failed_because "make distcheck"
            tail -n 30 "$LOGS/distcheck.log"
        fi

        # ---------------------------------------------------------- 4b. fuzzing
        if [ "$FUZZ_SECS" -eq 0 ] || ! command -v clang >/dev/null; then
            SKIPPED=$((SKIPPED + 1))
            warn "fuzzing skipped ($([ "$FUZZ_SECS" -eq 0 ] && echo MSM_FUZZ_SECONDS=0 || echo 'no clang'))"
            [ "$NO_SKIP" = 1 ] && failed_because "fuzzing skipped"
        else
            log "fuzzing: fuzz/run.sh, ${FUZZ_SECS}s per target"
            if as_user env FUZZ_OUT="$BUILD/.tmp" timeout $((FUZZ_SECS * 5 + 120)) \
                    bash fuzz/run.sh "$FUZZ_SECS" > "$LOGS/fuzz.log" 2>&1; then
                PASSED=$((PASSED + 1))
            else
                FAILED=$((FAILED + 1))
                warn "fuzzing failed (a crash, or a target that does not build), see $LOGS/fuzz.log"
                failed_because "fuzzing: $(grep -E 'FAILED' "$LOGS/fuzz.log" | head -n 3 | tr '\n' ' ')"
            fi
            sed 's/^/   /' "$LOGS/fuzz.log" | grep -E '==|Done|FAILED|stat::' || true
        fi
    fi
fi

# ------------------------------------------------------------------ 5. Apache::Test
if [ ${#ONLY[@]} -gt 0 ]; then
    TESTS=()
    for f in "${ONLY[@]}"; do
        f=${f#./}
        [ -f "$BUILD/$f" ] || fail_step "--only: no such test file $f"
        TESTS+=("$f")
    done
else
    mapfile -t TESTS < <(cd "$BUILD" && ls t/*.t 2>/dev/null | sort)
fi
[ ${#TESTS[@]} -gt 0 ] || fail_step "no t/*.t test files"

TEST_PL_ARGS=(-httpd "$HTTPD_FOR_TESTS" -apxs "$APXS")
DEFINES=""
if [ "$FPM" = 1 ]; then
    start_fpm
    DEFINES="$DEFINES MSM_FPM"
fi
if [ "$NO_MODULE" = 1 ]; then
    DEFINES="$DEFINES MSM_NO_MODULE"
    export MSM_REQUIRE_MODULE=0
else
    export MSM_REQUIRE_MODULE=1   # t/lib/MsmTest.pm: mod_msm tests must not skip
fi
[ -n "$DEFINES" ] && TEST_PL_ARGS+=(-defines "${DEFINES# }")
# t/80_browser.t: playwright-core (t/browser/package-lock.json) from the npm registry;
# npm's cache lives in the test user's home, so that later runs need no download
if [ -f t/browser/package-lock.json ]; then
    log "npm ci in t/browser"
    npm_cache=${MSM_NPM_CACHE:-$BUILD/.home/.npm}
    if [ -n "$RUN_USER" ] && [ -z "${MSM_NPM_CACHE:-}" ]; then
        npm_cache=$(getent passwd "$RUN_USER" | cut -d: -f6)/.npm
    fi
    as_user timeout 600 npm ci --prefix t/browser --prefer-offline --cache "$npm_cache" \
        --no-audit --no-fund > "$LOGS/npm-ci.log" 2>&1 \
        || warn "npm ci in t/browser failed (t/80_browser.t will fail), see $LOGS/npm-ci.log"
fi
log "Apache::Test: configure (MPM ${MSM_TEST_MPM:-prefork})"
{ as_user perl t/TEST.PL "${TEST_PL_ARGS[@]}" \
  && as_user timeout 120 t/TEST -configure -port select; } > "$LOGS/at-configure.log" 2>&1 \
    || fail_step "Apache::Test configuration" "$LOGS/at-configure.log"

log "Apache::Test: starting httpd"
HTTPD_STARTED=1
as_user timeout 120 t/TEST -start-httpd > "$LOGS/at-start.log" 2>&1
if [ $? -ne 0 ] || ! grep -q 'server .* started' "$LOGS/at-start.log"; then
    cat "$LOGS/at-start.log"
    [ -f t/logs/error_log ] && tail -n 40 t/logs/error_log
    fail_step "Apache::Test could not start httpd"
fi
grep -E '^(/|.*server .* (started|listening))' "$LOGS/at-start.log" | sed 's/^/   /'

log "Apache::Test: ${#TESTS[@]} test file(s)"
# t/90_lifecycle.t runs MSM_LIFECYCLE_SECONDS per mode (3 modes by default): a long run
# gets a per-file timeout that fits it, unless MSM_TEST_TIMEOUT says otherwise
FILE_TIMEOUT=${MSM_TEST_TIMEOUT:-300}
if [ -z "${MSM_TEST_TIMEOUT:-}" ] && [ -n "${MSM_LIFECYCLE_SECONDS:-}" ]; then
    lc_modes=$(printf '%s' "${MSM_LIFECYCLE_MODES:-nonsticky,locking,sticky}" | tr ',' '\n' | grep -c .)
    # per mode: the run, its start and stop (about 1/10 more), the check of
    # its history (about 1/8 of the run)
    lc_need=$(( lc_modes * (${MSM_LIFECYCLE_SECONDS%.*} * 3 / 2 + 60) + 120 ))
    [ "$lc_need" -gt "$FILE_TIMEOUT" ] && FILE_TIMEOUT=$lc_need
fi
HARNESS_ARGS=(--counts "$LOGS/at-counts" --timeout "$FILE_TIMEOUT")
[ "$VERBOSE" = 1 ] && HARNESS_ARGS+=(--verbose)
as_user timeout $(( FILE_TIMEOUT > 1200 ? FILE_TIMEOUT + 1800 : 1800 )) perl scripts/harness.pl "${HARNESS_ARGS[@]}" "${TESTS[@]}" 2>&1 \
    | tee "$LOGS/at-tests.log"
hrc=${PIPESTATUS[0]}
stop_httpd
# memcached / extra httpd processes that a killed test could not stop (by their pid files)
left=$(as_user perl -It/lib -MMsmTest -e 'print join(" ", MsmTest::reap_leftovers())' 2>/dev/null || true)
[ -n "$left" ] && warn "killed processes left over by the tests: $left"

if [ -s "$LOGS/at-counts" ]; then
    read -r apass afail askip < "$LOGS/at-counts"
else
    apass=0; afail=1; askip=0
    warn "the test harness produced no counts (exit $hrc)"
    failed_because "Apache::Test: the harness produced no counts (exit $hrc)"
fi
if [ "$hrc" -ne 0 ] && [ "$afail" -eq 0 ]; then afail=1; fi
[ -s "$LOGS/at-counts.failures" ] && failed_because_lines < "$LOGS/at-counts.failures"
PASSED=$((PASSED + apass))
FAILED=$((FAILED + afail))
SKIPPED=$((SKIPPED + ${askip:-0}))

# crashes the tests could not see (a child dying after it answered) and ASan reports
# (sanitizer output that went to stderr lands in the error_logs)
crashes=$(cat t/logs/error_log t/tmp/httpd-*/logs/error_log t/tmp/httpd-*/logs/stderr.log 2>/dev/null \
          | grep -E 'exit signal (Segmentation|Aborted|Bus error|Illegal|Floating)|runtime error:|ERROR: (Address|Leak|UndefinedBehavior|Memory)Sanitizer' || true)
if [ -n "$crashes" ]; then
    warn "httpd children crashed or a sanitizer reported during the tests:"
    echo "$crashes" | sort | uniq -c | sort -rn | head -n 20
    failed_because "httpd children crashed or a sanitizer reported (see above)"
    FAILED=$((FAILED + 1))
fi
asan_reports=$(ls t/logs/asan.* t/logs/ubsan.* 2>/dev/null || true)
if [ -n "$asan_reports" ]; then
    warn "sanitizer reports:"
    for f in $asan_reports; do echo "---- $f"; head -n 60 "$f"; done
    failed_because "sanitizer reports: $asan_reports"
    FAILED=$((FAILED + 1))
fi
# the lifecycle checker's reports (anomalies with excerpts of the history):
# the harness keeps only the TAP lines, and CI keeps only this output
if [ "$afail" -gt 0 ]; then
    for f in t/logs/lifecycle/*.report.txt; do
        [ -f "$f" ] || continue
        echo "---- $f"
        head -n 120 "$f"
    done
fi
if [ "$afail" -gt 0 ] && [ -f t/logs/error_log ]; then
    echo "---- last lines of t/logs/error_log"
    grep -v -E '\] \[[a-z_]+:(debug|trace[0-9])\]' t/logs/error_log | tail -n 40
fi
log "Apache::Test: $apass passed, $afail failed, ${askip:-0} skipped"

finish 0
