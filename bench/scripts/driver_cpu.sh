#!/usr/bin/env bash
# Where the CPU goes while TigerBeetle's own benchmark driver runs its 1-transfer command (64
# clients, one transfer per request) against a fresh `tally start`: per thread of the server and of
# the driver, over the window in which transfers flow (the driver's account setup, several seconds
# of its own CPU, is left out: the window starts when the core thread starts working).
#
#   bench/scripts/driver_cpu.sh [TALLY_BINARY] [TRANSFERS]
#
# Prints each thread group's share of one CPU, the CPU per request in µs, and the driver's figures.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tally=${1:-$here/../../target/release/tally}
transfers=${2:-200000}
driver=${TIGERBEETLE:-$here/../../../shared/tools/tigerbeetle/tigerbeetle}
port=${PORT:-3790}
data=$(mktemp -d)
trap 'kill "${server:-}" "${bench:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"' EXIT

port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
# A leftover server on the port would answer the readiness check below and take the load.
if port_answers; then
    echo "driver_cpu: 127.0.0.1:$port is already in use (PORT=... picks another)" >&2
    exit 1
fi
"$tally" start --data-dir "$data/d" --addresses "127.0.0.1:$port" --graphql-address off \
    --auto-peering-address off >"$data/server.log" 2>&1 &
server=$!
# Serving: the port answers and the core thread (whose CPU marks the window) is running.
serving() { port_answers && grep -qx tally-core /proc/"$server"/task/*/comm 2>/dev/null; }
for _ in $(seq 100); do serving && break; sleep 0.1; done
if ! serving; then
    echo "driver_cpu: the server is not serving; its log:" >&2
    cat "$data/server.log" >&2
    exit 1
fi
"$driver" benchmark --addresses="127.0.0.1:$port" --transfer-batch-count=1 --clients=64 \
    --transfer-count="$transfers" --query-count=0 >"$data/driver.out" 2>&1 &
bench=$!

# Per thread name: CPU ticks (utime + stime) of both processes.
ticks() {
    for task in /proc/"$server"/task/* /proc/"$bench"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$task/comm" 2>/dev/null)" \
            "$(awk '{print $14 + $15}' "$task/stat" 2>/dev/null)"
    done 2>/dev/null | awk '$2 != "" {sub(/-[0-9]+$/, "", $1); t[$1] += $2} END {for (n in t) print n, t[n]}'
}
# The window starts once the core thread has worked 50 ms (the driver's setup is over).
core_stat=$(grep -l '^tally-core$' /proc/"$server"/task/*/comm | sed 's/comm$/stat/')
core_ticks() { awk '{print $14 + $15}' "$core_stat"; }
initial=$(core_ticks)
while kill -0 "$bench" 2>/dev/null && [ "$(core_ticks)" -lt $((initial + 5)) ]; do sleep 0.2; done
before=$(ticks); started=$(date +%s.%N)
sleep "${WINDOW_S:-3}"
after=$(ticks); ended=$(date +%s.%N)
wait "$bench"
accepted=$(awk '/load accepted/ {print $(NF-1)}' "$data/driver.out")
python3 - "$before" "$after" "$started" "$ended" "$accepted" <<'PY'
import sys
def parse(text):
    return {name: int(v) for name, v in (line.split() for line in text.strip().splitlines())}
before, after = parse(sys.argv[1]), parse(sys.argv[2])
seconds = float(sys.argv[4]) - float(sys.argv[3])
rate = float(sys.argv[5])
hz = 100
total = 0.0
for name in sorted(after):
    share = (after[name] - before.get(name, 0)) / hz / seconds
    total += share
    if share >= 0.005:
        print(f"{name:<20} {100 * share:6.1f}% of a CPU  {1e6 * share / rate:6.1f} µs/request")
print(f"{'all':<20} {100 * total:6.1f}% of a CPU  {1e6 * total / rate:6.1f} µs/request"
      f"  at {rate:,.0f} requests/s")
PY
grep -E "load accepted|batch latency p(50|99) " "$data/driver.out"
