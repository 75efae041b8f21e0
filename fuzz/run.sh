#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) and runs each for a bounded
# time on its corpus in fuzz/corpus/<target>; new inputs found are added to
# the corpus. Exit status non-zero if a target crashed.
#
#   bash fuzz/run.sh [seconds-per-target]     (default 120)
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-120}
out=${FUZZ_OUT:-$(mktemp -d /tmp/msm-fuzz.XXXXXX)}
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        $(apr-1-config --cppflags --includes) $(apu-1-config --includes) -I../src"
LIBS="$(apu-1-config --link-ld) $(apr-1-config --link-ld) $(pkg-config --libs libssl libcrypto)"
status=0
for target in reply cookie copy crypt; do
    case $target in
        reply)  srcs="fuzz_reply.c ../src/msm_mc.c ../src/msm_tls.c" ;;
        cookie) srcs="fuzz_cookie.c ../src/msm_id.c" ;;
        copy)   srcs="fuzz_copy.c ../src/msm_copy.c ../src/msm_id.c" ;;
        crypt)  srcs="fuzz_crypt.c ../src/msm_crypt.c" ;;
    esac
    # shellcheck disable=SC2086
    if ! clang $CFLAGS -o "$out/fuzz_$target" $srcs $LIBS; then
        echo "fuzz_$target FAILED: it does not build"
        status=1
        continue
    fi
    mkdir -p "corpus/$target"
    echo "== fuzz_$target: ${secs}s"
    if ! "$out/fuzz_$target" -max_total_time="$secs" -max_len=4096 \
            -artifact_prefix="$out/$target-" -print_final_stats=1 \
            "corpus/$target" > "$out/$target.log" 2>&1; then
        status=1
        echo "fuzz_$target FAILED; see $out/$target.log and $out/$target-*"
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs" \
        "$out/$target.log" || true
done
exit $status
