#!/usr/bin/env bash
# Install, from Debian's archive only, whatever metricast needs to build, run and test
# and is not installed yet. Idempotent and silent when nothing is missing.
#
#   scripts/deps.sh            build + run + test dependencies
#   scripts/deps.sh --build    only what the build needs
#   scripts/deps.sh --bench    everything, plus the references the benchmarks compare with
#
# Runs as root (the CI machine and a fresh Debian 12 are root); elsewhere uses sudo.
set -euo pipefail

build_pkgs=(
  gcc make cmake ninja-build pkg-config
  libuv1-dev          # event loops, TCP, UDP, timers, signals, threads
  node-llhttp         # HTTP/1.1 parser, C sources compiled at build time
  libwslay-dev        # WebSocket framing
  libssl-dev          # SHA-1 + base64 for the WebSocket handshake
  libjansson-dev      # parsing incoming JSON
  libinih-dev         # INI configuration
  libsqlite3-dev      # the embedded store
  libcurl4-openssl-dev # webhooks (libcurl multi)
  dpkg-dev            # make deb: dpkg-shlibdeps derives the package's Depends
  libcmocka-dev       # the build always configures the unit tests (make run too)
  zlib1g-dev          # tools/embed_assets gzips the dashboard's files at build time
  nodejs              # npm ci of the dashboard's front-end packages (uPlot) at build time
  libnats-dev         # --nats: bridging hubs through NATS (nats.c on the libuv loop)
)
test_pkgs=(
  python3 python3-websockets # integration-test harness (a real WebSocket client)
  openssl             # the TLS tests make a self-signed certificate with the CLI
  curl                # smoke checks in scripts
  prometheus          # promtool check metrics, and a real server scraping the hub in tests
  clang libclang-rt-14-dev # libFuzzer targets (make fuzz; CI runs each)
  systemd             # systemd-analyze verify on packaging/metricastd.service
  gdb                 # the test harness dumps the stacks of a daemon that does not stop
  chromium            # the dashboard's browser tests (driven by npm playwright-core)
  nats-server         # a real NATS server for the scale-out tests
)

bench_pkgs=(
  netdata             # bench_host_source runs Netdata's whole agent beside the hub (by hand)
)

want=("${build_pkgs[@]}")
[ "${1:-}" = "--build" ] || want+=("${test_pkgs[@]}")
[ "${1:-}" = "--bench" ] && want+=("${bench_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = "installed" ] || missing+=("$p")
done
# Some nodejs packages bundle npm (and conflict with Debian's npm package): ask for npm
# only when there is no npm command once nodejs is there.
want_npm=0
command -v npm >/dev/null 2>&1 || want_npm=1
[ ${#missing[@]} -eq 0 ] && [ $want_npm -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
[ ${#missing[@]} -gt 0 ] && echo "deps: installing ${missing[*]}" >&2

# Some packages (prometheus, nats-server) start their services on install; forbid that so
# they never hold the ports tests use. Removed again on exit if we created it.
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  made_policy=1
fi
cleanup() { [ $made_policy -eq 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d; return 0; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# another apt run (a second make, a package test) may hold the lock: wait for it
APT_OPTS=(-o DPkg::Lock::Timeout=600)
$SUDO apt-get "${APT_OPTS[@]}" update -qq >/dev/null
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "deps: installing npm" >&2
  $SUDO apt-get "${APT_OPTS[@]}" install -y -qq --no-install-recommends npm >/dev/null
fi
echo "deps: done" >&2
