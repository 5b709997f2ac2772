#!/usr/bin/env bash
# Runs every benchmark built under BUILD_DIR/bench against BUILD_DIR/metricastd, each with
# a fresh temporary data directory, then prints the machine-readable result lines together.
#
#   bench/run_all.sh [--full] BUILD_DIR   (what `make bench` runs, with BUILD_DIR=build)
#
# The default run takes about 4 minutes: bench_statsd_ingest sweeps with 2 s steps (~35 s),
# bench_exposition times 20 requests per endpoint (~10 s), bench_store_aggregate one
# in-process aggregation of 100k series x 60 points (~80 s). --full is the long version
# (4 s sweep steps over more rates, ~90 s; 50 requests per endpoint; the long fan-out run;
# 3 aggregation repeats plus the end-to-end loop-lag run, ~7 min); bench_host_source
# measures 3 x 20 s by default (~1 min), 3 x 70 s with --full.
#
# Environment: METRICASTD (daemon to measure; default BUILD_DIR/metricastd),
# BENCH_RUNS (bench_startup runs, default 50), BENCH_WS_CONNS (bench_ws_idle connections,
# default 2000), BENCH_TIMEOUT (seconds allowed per benchmark program, default 600).
# Exit status: 0 when every benchmark passed, 1 when any failed, 2 on a usage error.
set -euo pipefail

full=0
if [[ $# -ge 1 && $1 == --full ]]; then full=1; shift; fi
if [[ $# -eq 2 && $2 == --full ]]; then full=1; set -- "$1"; fi
if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
    echo "usage: $0 [--full] BUILD_DIR" >&2
    exit 2
fi
if [[ ! -d $1 ]]; then
    echo "run_all: $1 is not a build directory: run make (or cmake --build) first" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
daemon=${METRICASTD:-$build/metricastd}
runs=${BENCH_RUNS:-50}
ws_conns=${BENCH_WS_CONNS:-2000}
limit=${BENCH_TIMEOUT:-600}

if [[ ! -x $daemon ]]; then
    echo "run_all: $daemon is not an executable: build first (cmake --build $1)" >&2
    exit 2
fi
if [[ ! -d $build/bench ]]; then
    echo "run_all: $build/bench does not exist: the build must include add_subdirectory(bench)" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/metricast-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== metricast benchmarks: $(date -u +%Y-%m-%dT%H:%M:%SZ)$([[ $full -eq 1 ]] && echo ' (--full)')"
echo "   daemon:  $daemon ($("$daemon" --version 2>&1 | head -n 1))"
echo "   machine: $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)," \
     "$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null)," \
     "kernel $(uname -r)"
echo "   load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min; other work on the machine skews every number)"

# The invocation of each benchmark program; $2 is a fresh temporary data directory.
# Returns 1 for a program this script does not know.
bench_argv() {
    case $1 in
    bench_startup)
        argv=(--runs "$runs" -- "$daemon" --listen 127.0.0.1:PORT --statsd off --data "$2") ;;
    bench_ws_idle)
        argv=(--conns "$ws_conns" -- "$daemon" --listen 127.0.0.1:PORT --statsd off --data "$2") ;;
    bench_statsd_ingest)
        # sink (raw ceiling) then the daemon, same generator: 2 sender threads, rate sweep
        if [[ $full -eq 1 ]]; then
            argv=(--mode both --sweep --threads 2 --step-seconds 4
                  --rates 2M,4M,6M,7M,8M,9M,10M,11M,12M)
        else
            argv=(--mode both --sweep --threads 2 --step-seconds 2
                  --rates 2M,4M,6M,8M,9M,10M,12M)
        fi
        argv+=(-- "$daemon" --listen 127.0.0.1:PORT --statsd 127.0.0.1:0 --data "$2") ;;
    bench_statsd_fold)
        # the same load in-process: a UDP thread's parse, aggregate, hand-over + the hub's
        # merge, CPU ns per line (~10 s)
        argv=(--lines 10M --runs "$([[ $full -eq 1 ]] && echo 9 || echo 5)") ;;
    bench_exposition)
        argv=(--runs "$([[ $full -eq 1 ]] && echo 50 || echo 20)"
              -- "$daemon" --listen 127.0.0.1:PORT --statsd 127.0.0.1:0
              --max-series 200000 --data "$2") ;;
    bench_ws_fanout)
        # hub then bench_ws_ceiling, same subscribers; --short: ~45 s, full: ~3 min
        if [[ $full -eq 1 ]]; then
            argv=(--scenario all --target both --ceiling-tick 0.001)
        else
            argv=(--scenario all --target both --ceiling-tick 0.001 --short)
        fi
        argv+=(-- "$daemon" --data "$2") ;;
    bench_ws_fanout:events)
        # events: publisher -> hub -> subscribers, and source connect+close; ~35 s
        argv=(--scenario events --target hub --short -- "$daemon" --data "$2") ;;
    bench_event_publish)
        # one WebSocket publish's CPU in-process: parse, envelope, seal (~5 s)
        argv=(--n 200000 --runs "$([[ $full -eq 1 ]] && echo 9 || echo 5)") ;;
    bench_store_aggregate)
        # 100k series x 60 points: three jobs in-process on a fresh store (~30 s per
        # repeat, most of it seeding) and the hub's own cost per second (~5 s); --full adds
        # the end-to-end run against the daemon (loop lag during jobs, ~1.5 min)
        if [[ $full -eq 1 ]]; then
            argv=(--mode both --repeats 3 -- "$daemon" --listen 127.0.0.1:PORT
                  --statsd 127.0.0.1:0 --max-series 200000 --aggregate-every 5 --data "$2")
        else
            argv=(--mode job --repeats 1)
        fi ;;
    bench_alert_eval)
        # 100k series, 100 rules with source=*: evaluation cost per tick (~5 s)
        argv=(--passes "$([[ $full -eq 1 ]] && echo 50 || echo 20)") ;;
    bench_client_statsd)
        # libmetricast's batched StatsD calls against one send() per line (~10 s)
        argv=(--lines "$([[ $full -eq 1 ]] && echo 2000000 || echo 1000000)" --repeats 5) ;;
    bench_host_source)
        # the hub with host metrics off, then on, then Netdata's whole agent (run by hand on
        # free loopback ports, stopped by its process group): 3 x (warm-up + window)
        if [[ $full -eq 1 ]]; then
            argv=(--seconds 60 --warmup 10)
        else
            argv=(--seconds 15 --warmup 5)
        fi
        argv+=(-- "$daemon" --listen 127.0.0.1:PORT --statsd off) ;;
    bench_tls_cost)
        # plain then TLS: 1,000 subscribers at --tick 1, then sequential full handshakes
        # (~1 min; --callgrind by hand for instruction counts, see docs/BENCHMARKS.md)
        argv=(--subs 1000 --duration "$([[ $full -eq 1 ]] && echo 20 || echo 10)"
              --handshakes "$([[ $full -eq 1 ]] && echo 2000 || echo 500)"
              -- "$daemon" --data "$2") ;;
    bench_bridge_codec)
        # the scale-out bridge's encode/decode per batch delta and per event (~5 s); the
        # cross-hub runs need a nats-server: bench_ws_fanout --peer, see docs/BENCHMARKS.md
        argv=(--runs "$([[ $full -eq 1 ]] && echo 10 || echo 5)") ;;
    bench_ws_ceiling) argv=() ;; # not run on its own: bench_ws_fanout starts it
    *) return 1 ;;
    esac
}
order=(bench_startup bench_ws_idle bench_statsd_ingest bench_statsd_fold bench_exposition)
order+=(bench_ws_fanout bench_ws_fanout:events bench_event_publish bench_tls_cost)
order+=(bench_store_aggregate bench_alert_eval bench_host_source)
order+=(bench_client_statsd bench_bridge_codec)

failed=()
results=()
found=0
for name in "${order[@]}"; do
    prog=$build/bench/${name%%:*}
    [[ -x $prog ]] || continue
    found=$((found + 1))
    data=$(mktemp -d "$tmp/$name-data.XXXXXX")
    bench_argv "$name" "$data"
    echo
    echo "== $name ${argv[*]}"
    rc=0
    timeout --kill-after=10 "$limit" "$prog" "${argv[@]}" | tee "$tmp/$name.out" || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "run_all: $name FAILED (exit $rc)" >&2
        failed+=("$name")
    fi
    line=$(grep -E '^[a-z_]+=' "$tmp/$name.out" | tail -n 1 || true)
    if [[ -n $line ]]; then results+=("$name: $line"); fi
    rm -rf "$data"
done

for prog in "$build"/bench/bench_*; do
    [[ -x $prog && -f $prog ]] || continue
    bench_argv "$(basename "$prog")" "$tmp" ||
        echo "run_all: $(basename "$prog") has no invocation in $0: not run" >&2
done
if [[ $found -eq 0 ]]; then
    echo "run_all: no benchmark programs under $build/bench: build first (cmake --build $1)" >&2
    exit 1
fi

echo
echo "== results"
for r in "${results[@]}"; do echo "$r"; done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "run_all: failed: ${failed[*]}" >&2
    exit 1
fi
