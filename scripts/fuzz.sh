#!/usr/bin/env bash
# Build and run the libFuzzer targets under fuzz/ (`make fuzz`). Each target is compiled
# straight from the src/*.c files it needs (no CMake) with ASan + UBSan into build-fuzz/,
# then run for FUZZ_SECONDS on a fresh copy of its seed corpus (fuzz/corpus/<target>/ is
# never written to). Idempotent; installs nothing.
#
#   scripts/fuzz.sh                  every target, 60 s each
#   FUZZ_SECONDS=20 scripts/fuzz.sh  shorter
#   scripts/fuzz.sh fuzz_statsd      only the named targets
#
# FUZZ_JOBS targets build and run at a time (default: one per core; a libFuzzer run keeps
# one core busy). FUZZ_BUDGET=N caps the whole run near N seconds however many targets
# there are: each then runs N / ceil(targets / jobs) seconds, at most FUZZ_SECONDS and at
# least FUZZ_MIN_SECONDS (15), so CI stays bounded as targets are added.
#
# Exit status: 0 when every target ran clean, 1 when any crashed (or failed to build),
# 2 when clang is missing. Crash inputs and full logs: build-fuzz/run/<target>/.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/build-fuzz
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
CLANG=${CLANG:-clang}

if ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "fuzz.sh: '$CLANG' not found: libFuzzer needs clang (Debian: apt-get install clang" \
        "libclang-rt-14-dev)" >&2
    exit 2
fi

CFLAGS=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -fno-omit-frame-pointer -D_GNU_SOURCE -std=c11 -Isrc)

JANSSON_LIBS=$(pkg-config --libs jansson 2>/dev/null || echo -ljansson)

# target -> the sources it links, and extra libraries
declare -A SRCS=(
    [fuzz_statsd]="src/statsd.c src/metric.c src/ingest_fold.c src/agg.c src/series_key.c src/sketch.c"
    [fuzz_sketch]="src/sketch.c"
    [fuzz_ingest_json]="src/ingest_json.c src/statsd.c src/metric.c"
    [fuzz_client_parse]="lib/http_resp.c lib/url.c lib/sbuf.c"
    [fuzz_host_parse]="src/host_parse.c"
    [fuzz_bridge]="src/bridge.c src/cursor.c src/event.c src/agg.c src/series_key.c src/sketch.c src/statsd.c src/metric.c src/buf.c src/jsonw.c src/sources.c src/clock.c"
)
declare -A LIBS=(
    [fuzz_statsd]="-lm"
    [fuzz_sketch]="-lm"
    [fuzz_ingest_json]="$JANSSON_LIBS -lm"
    [fuzz_client_parse]="-Ilib -Iinclude" # the client library's private headers
    [fuzz_host_parse]=""
    [fuzz_bridge]="$JANSSON_LIBS -lm"
)
ALL=(fuzz_statsd fuzz_sketch fuzz_ingest_json fuzz_client_parse fuzz_host_parse fuzz_bridge)

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")
for t in "${targets[@]}"; do
    if [ -z "${SRCS[$t]+x}" ]; then
        echo "fuzz.sh: unknown target '$t' (known: ${ALL[*]})" >&2
        exit 1
    fi
done

mkdir -p "$OUT/run"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$JOBS" -ge 1 ] 2>/dev/null || JOBS=1
if [ -n "${FUZZ_BUDGET:-}" ]; then
    rounds=$(( (${#targets[@]} + JOBS - 1) / JOBS ))
    per=$(( FUZZ_BUDGET / rounds ))
    min=${FUZZ_MIN_SECONDS:-15}
    [ "$per" -ge "$min" ] || per=$min
    [ "$per" -le "$SECONDS_PER_TARGET" ] || per=$SECONDS_PER_TARGET
    SECONDS_PER_TARGET=$per
fi

# One target: build, fuzz, and leave its summary line in $OUT/run/<t>.summary and its
# verdict (0 clean, 1 crashed or did not build) in $OUT/run/<t>.status.
fuzz_one() {
    local t=$1 s missing="" run rc status execs eps rss cov corp artifact
    run=$OUT/run/$t
    rm -rf "$run" "$run.summary" "$run.status"
    for s in fuzz/$t.c ${SRCS[$t]}; do [ -f "$s" ] || missing+=" $s"; done
    if [ -n "$missing" ]; then
        printf '%-18s SKIPPED  missing:%s\n' "$t" "$missing" >"$run.summary"
        echo "fuzz.sh: $t skipped: missing$missing" >&2
        echo 0 >"$run.status"
        return
    fi

    echo "== $t: build" >&2
    # shellcheck disable=SC2086 # the source and library lists are word lists on purpose
    if ! "$CLANG" "${CFLAGS[@]}" -o "$OUT/$t" "fuzz/$t.c" ${SRCS[$t]} ${LIBS[$t]}; then
        printf '%-18s BUILD-FAILED\n' "$t" >"$run.summary"
        echo 1 >"$run.status"
        return
    fi

    mkdir -p "$run/corpus"
    if [ -d "fuzz/corpus/$t" ]; then cp -R "fuzz/corpus/$t/." "$run/corpus/"; fi
    echo "== $t: fuzz ${SECONDS_PER_TARGET}s (log: $run/log.txt)" >&2
    rc=0
    "$OUT/$t" -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$run/" "$run/corpus" >"$run/log.txt" 2>&1 ||
        rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log.txt" | tail -n1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$run/log.txt" | tail -n1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$run/log.txt" | tail -n1)
    cov=$(grep -oE 'cov: [0-9]+' "$run/log.txt" | tail -n1 | cut -d' ' -f2)
    corp=$(find "$run/corpus" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        status=ok
        echo 0 >"$run.status"
    else
        status="CRASH(rc=$rc)"
        echo 1 >"$run.status"
        artifact=$(find "$run" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
            -o -name 'timeout-*' -o -name 'oom-*' \) | head -n1)
        [ -n "$artifact" ] && status+=" input=$artifact"
        # the first sanitizer/libFuzzer report lines, for the terminal
        grep -m1 -A12 -E 'Assertion .* failed|runtime error:|==[0-9]+== ?ERROR|deadly signal' \
            "$run/log.txt" >&2 || tail -n 20 "$run/log.txt" >&2
    fi
    printf '%-18s %-8s execs=%s exec/s=%s cov=%s corpus=%s rss=%sMB\n' "$t" "$status" \
        "${execs:-?}" "${eps:-?}" "${cov:-?}" "$corp" "${rss:-?}" >"$run.summary"
}

pids=()
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    fuzz_one "$t" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done

failed=0
echo "== fuzz summary (${SECONDS_PER_TARGET}s per target, $JOBS at a time)"
for t in "${targets[@]}"; do
    if [ -f "$OUT/run/$t.summary" ]; then
        cat "$OUT/run/$t.summary"
    else
        printf '%-18s NO-RESULT\n' "$t"
    fi
    [ "$(cat "$OUT/run/$t.status" 2>/dev/null || echo 1)" = 0 ] || failed=1
done
exit "$failed"
