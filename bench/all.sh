#!/usr/bin/env bash
# bench/all.sh - bench/run.sh under both MPMs, at heavy and at light load,
# and one table and one plot of the four runs.
#
#   bash bench/all.sh [seconds-per-run [output-dir]]     (as root on Debian 12)
#   bash bench/all.sh --report DIR     (summary.md and the plot again, from DIR)
#
# Runs bench/run.sh four times, one after the other, each with the same
# seconds per run (default 5) and the same cases (MSM_BENCH_CASES, default all
# of run.sh's; MSM_BENCH_SESSIONS is passed on too):
#   prefork-c16  MSM_BENCH_MPM=prefork (mod_php), MSM_BENCH_CONNECTIONS=16 (heavy load)
#   event-c16    MSM_BENCH_MPM=event (php-fpm),   MSM_BENCH_CONNECTIONS=16
#   prefork-c2   MSM_BENCH_MPM=prefork,           MSM_BENCH_CONNECTIONS=2 (light load)
#   event-c2     MSM_BENCH_MPM=event,             MSM_BENCH_CONNECTIONS=2
# Each run builds mod_msm from this checkout, starts its own memcached, httpd
# (and php-fpm) and stops them again (see run.sh); run.sh refuses to start
# when one of its ports is in use, and all.sh stops at the first run that
# fails. Each run is bounded by `timeout` (MSM_BENCH_RUN_TIMEOUT seconds;
# default 2400 for installing and building, plus 2 x (seconds + 40) per case);
# ^C or TERM stops the running one, which stops what it started.
#
# Output: output-dir/STAMP/ (STAMP: the UTC date and time of the start,
# YYYYmmdd-HHMMSS; output-dir defaults to /var/tmp/msm-bench-results, outside
# the repository), and the link output-dir/latest to it:
#   summary.md     a row per case and shape: req/s under prefork and event
#                  (heavy load), event/prefork, p50/p99 ms at heavy and at light
#                  load under both, server CPU µs/req under both (heavy load),
#                  the non-2xx answers of the four runs (0: every answer of
#                  every run was 2xx); then each run's software, load average
#                  and notes
#   rps-read.png   gnuplot bar chart of req/s per case, read shape, heavy load,
#                  prefork and event side by side; its title names the date,
#                  the machine and the commit (gnuplot-nox is installed when
#                  there is no gnuplot)
#   RUN.tsv, RUN.md  each run's results.tsv (columns: see run.sh) and
#                  results.md, RUN = prefork-c16, event-c16, prefork-c2, event-c2
#   run.log        run.sh's progress lines
# A run that fails leaves what it wrote there, and all.sh exits 1 without the
# summary.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUNS=("prefork 16" "event 16" "prefork 2" "event 2")
REPORT_ONLY=""
if [ "${1:-}" = --report ]; then
    REPORT_ONLY=1
    [ -d "${2:-}" ] || { echo "usage: bash bench/all.sh --report DIR" >&2; exit 2; }
    OUT=$(cd "$2" && pwd)
else
    SECS=${1:-5}
    case "$SECS" in ''|*[!0-9]*|0) echo "usage: bash bench/all.sh [seconds-per-run (>= 1) [output-dir]]" >&2; exit 2 ;; esac
    OUTBASE=${2:-/var/tmp/msm-bench-results}
    ncases=$(echo ${MSM_BENCH_CASES:-} | wc -w)
    [ "$ncases" -gt 0 ] || ncases=16   # run.sh has 12; room for more
    BOUND=${MSM_BENCH_RUN_TIMEOUT:-$(( 2400 + 2 * ncases * (SECS + 40) ))}
    case "$BOUND" in ''|*[!0-9]*|0) echo "MSM_BENCH_RUN_TIMEOUT must be a number of seconds" >&2; exit 2 ;; esac
fi

die() { printf '!! %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || [ -n "$REPORT_ONLY" ] || die "run as root (run.sh installs packages and starts httpd)"

if ! command -v gnuplot >/dev/null 2>&1; then
    echo "== apt-get install gnuplot-nox" >&2
    export DEBIAN_FRONTEND=noninteractive
    timeout 900 apt-get update -qq >/dev/null || die "apt-get update failed"
    timeout 1200 apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null \
        || die "apt-get install gnuplot-nox failed"
fi

# ------------------------------------------------------------ the report
# md_line PREFIX FILE: the rest of the first line of FILE that starts with PREFIX
md_line() { awk -v p="$1" 'index($0, p) == 1 { print substr($0, length(p) + 1); exit }' "$2"; }

# report DIR: summary.md and rps-read.png from the four runs' .tsv and .md in
# DIR (all they say comes from those: date, machine, commit, seconds)
report() {
    local dir=$1 r f mpm conns first=$1/prefork-c16.md date machine commit commits secs term
    for r in "${RUNS[@]}"; do
        read -r mpm conns <<< "$r"
        for f in tsv md; do [ -s "$dir/$mpm-c$conns.$f" ] || die "no $dir/$mpm-c$conns.$f"; done
    done
    date=$(md_line '- date: ' "$first")
    machine=$(md_line '- machine: ' "$first" | sed 's/, Linux.*//')
    commit=$(md_line '- software: ' "$first" | sed 's/.*, mod_msm //')
    secs=$(md_line '- workload: ' "$first" | sed -n 's/^wrk -t[0-9]* -c[0-9]* -d\([0-9]*\)s.*/\1/p')
    commits=$(for r in "${RUNS[@]}"; do
                  read -r mpm conns <<< "$r"
                  md_line '- software: ' "$dir/$mpm-c$conns.md" | sed 's/.*, mod_msm //'
              done | sort -u | tr '\n' ' ')
    {
        echo "## mod_msm benchmark: prefork + mod_php and event + php-fpm"
        echo
        echo "- date: $date (the end of the first run); machine: $(md_line '- machine: ' "$first"); mod_msm $commit"
        if [ "$(echo $commits | wc -w)" -gt 1 ]; then
            echo "- WARNING: the runs built different sources (${commits% }): the checkout changed while they ran"
        fi
        echo "- wrk ${secs}s per run after 1 s of warm-up, $(md_line '- workload: ' "$first" | sed 's/^[^,]*, //; s/ (Cookie header).*//'); heavy load: wrk -t2 -c16, light load: wrk -t2 -c2 (bash bench/all.sh $secs)"
        for r in prefork event; do
            echo "- $r: $(md_line '- workload: ' "$dir/$r-c16.md" | sed 's/.*; httpd [a-z]*, //; s/; no Mutex.*//')"
        done
        echo "- req/s and server CPU µs/req (user + system time of the httpd children, php-fpm and memcached over the requests answered) at heavy load; p50/p99 latency in ms; non-2xx: of all four runs (0: every answer was 2xx; \"failed\": not measured, see the notes)"
        echo
        echo "| case | shape | prefork req/s | event req/s | event/prefork | prefork p50/p99 c16 | event p50/p99 c16 | prefork p50/p99 c2 | event p50/p99 c2 | prefork CPU µs/req | event CPU µs/req | non-2xx |"
        echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        awk -F'\t' '
            FNR == 1 { run = FILENAME; sub(/.*\//, "", run); sub(/\.tsv$/, "", run) }
            {
                k = $1 SUBSEP $3
                if (!(k in label)) { order[++n] = k; label[k] = $2; shape[k] = $3 }
                rps[k, run] = $4; lat[k, run] = ($5 == "-" ? "-" : $5 "/" $6); cpu[k, run] = $14
                if ($7 != "0") bad[k] = bad[k] (bad[k] == "" ? "" : ", ") run ": " ($7 == "-" ? "failed" : $7)
            }
            function v(x) { return (x == "" ? "-" : x) }
            END {
                for (i = 1; i <= n; i++) {
                    k = order[i]
                    p = rps[k, "prefork-c16"]; e = rps[k, "event-c16"]
                    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                        label[k], shape[k], v(p), v(e),
                        (p + 0 > 0 && e + 0 > 0 ? sprintf("%.2f", e / p) : "-"),
                        v(lat[k, "prefork-c16"]), v(lat[k, "event-c16"]),
                        v(lat[k, "prefork-c2"]), v(lat[k, "event-c2"]),
                        v(cpu[k, "prefork-c16"]), v(cpu[k, "event-c16"]), (k in bad ? bad[k] : "0")
                }
            }' "$dir/prefork-c16.tsv" "$dir/event-c16.tsv" "$dir/prefork-c2.tsv" "$dir/event-c2.tsv"
        echo
        echo "The runs (each one's own table, with the memcached operations per request and the ratios: RUN.md beside this file):"
        echo
        for r in "${RUNS[@]}"; do
            read -r mpm conns <<< "$r"
            f=$dir/$mpm-c$conns.md
            echo "- $mpm-c$conns: $(md_line '- software: ' "$f"); load average $(md_line '- load average (1/5/15 min) ' "$f")"
            awk '/^Notes:/ { on = 1; next } on && /^- / { print "  - " substr($0, 3) }' "$f"
        done
    } > "$dir/summary.md"

    # the plot: read shape, heavy load, a cluster of two bars per case
    awk -F'\t' 'NR == FNR { if ($3 == "read") e[$1] = $4; next }
                $3 == "read" { print $2 "\t" $4 "\t" ($1 in e ? e[$1] : "-") }' \
        "$dir/event-c16.tsv" "$dir/prefork-c16.tsv" > "$dir/rps-read.dat"
    term="png size 1600,900"
    gnuplot -e 'set terminal' 2>&1 | grep -qw pngcairo && term="pngcairo size 1600,900 font 'DejaVu Sans,11'"
    gnuplot > "$dir/gnuplot.log" 2>&1 <<EOF_PLOT || { cat "$dir/gnuplot.log" >&2; die "gnuplot failed"; }
set terminal $term
set output "$dir/rps-read.png"
set title "mod_msm peer benchmark: requests per second, read shape, wrk -t2 -c16, ${secs} s per run\n$date; $machine; mod_msm $commit" noenhanced
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key above horizontal noenhanced
set ylabel "requests per second"
set yrange [0:*]
set offsets 0, 0, graph 0.06, 0
set grid ytics
set xtics rotate by 30 right scale 0 noenhanced
set bmargin 10
set lmargin 12
plot "$dir/rps-read.dat" using 2:xtic(1) title "prefork + mod_php", \
     '' using 3 title "event + php-fpm", \
     '' using (\$0 - 1.0/6):2:2 with labels offset 0,0.7 font ",9" notitle, \
     '' using (\$0 + 1.0/6):3:3 with labels offset 0,0.7 font ",9" notitle
EOF_PLOT
    rm -f "$dir/rps-read.dat" "$dir/gnuplot.log"
}

if [ -n "$REPORT_ONLY" ]; then
    report "$OUT"
    cat "$OUT/summary.md"
    exit 0
fi

# ------------------------------------------------------------ the four runs
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=$OUTBASE/$STAMP
mkdir -p "$OUT" || die "cannot make $OUT"
OUT=$(cd "$OUT" && pwd)
echo "== results in $OUT" >&2

RUN_PID=""
stop_run() {
    [ -n "$RUN_PID" ] || return 0
    kill -TERM "$RUN_PID" 2>/dev/null || true   # timeout passes it on to run.sh
    wait "$RUN_PID" 2>/dev/null || true
    RUN_PID=""
}
trap 'echo "!! interrupted" >&2; stop_run; exit 130' INT TERM

for r in "${RUNS[@]}"; do
    read -r mpm conns <<< "$r"
    name=$mpm-c$conns
    echo "== $name: MSM_BENCH_MPM=$mpm MSM_BENCH_CONNECTIONS=$conns bash bench/run.sh $SECS (at most ${BOUND}s)" >&2
    echo "== $name" >> "$OUT/run.log"
    # in the background, so that the trap above runs at once on ^C
    MSM_BENCH_MPM=$mpm MSM_BENCH_CONNECTIONS=$conns MSM_BENCH_OUT=$OUT/$name \
        MSM_BENCH_COMPARE="" MSM_BENCH_STRACE=0 \
        timeout --kill-after=120 "$BOUND" bash "$BENCH/run.sh" "$SECS" \
        > /dev/null 2> >(tee -a "$OUT/run.log" >&2) &
    RUN_PID=$!
    rc=0
    wait "$RUN_PID" || rc=$?
    RUN_PID=""
    for f in tsv md; do
        [ -f "$OUT/$name/results.$f" ] && mv "$OUT/$name/results.$f" "$OUT/$name.$f"
    done
    rmdir "$OUT/$name" 2>/dev/null || true
    [ "$rc" = 124 ] && die "$name: run.sh took more than ${BOUND}s and was stopped (see $OUT/run.log)"
    [ "$rc" = 0 ] || die "$name: run.sh failed (exit $rc; see $OUT/run.log)"
    [ -s "$OUT/$name.tsv" ] || die "$name: run.sh wrote no results"
done
trap - INT TERM

report "$OUT"
ln -sfn "$STAMP" "$OUTBASE/latest"
cat "$OUT/summary.md"
echo "== done: $OUT (summary.md, rps-read.png, each run's .tsv and .md, run.log)" >&2
