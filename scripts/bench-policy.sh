#!/usr/bin/env bash
# Policy server benchmark (benches/policy.rs): installs the npm `policyfile` package into
# target/npm-policyfile (once), then runs the benchmark RUNS times (default 3) with the load
# generator on core 0 and each server on core 1, and prints each run and the medians.
# Usage: scripts/bench-policy.sh [RUNS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
seconds="${2:-3}"
npm_dir="target/npm-policyfile"
if [ ! -d "$npm_dir/node_modules/policyfile" ]; then
    mkdir -p "$npm_dir"
    npm install --silent --prefix "$npm_dir" policyfile@0.0.6 >/dev/null
fi
cargo bench --bench policy --no-run --quiet
out="$(mktemp)"
for run in $(seq "$runs"); do
    echo "== run $run of $runs"
    taskset -c 0 cargo bench --quiet --bench policy -- "$PWD/$npm_dir/node_modules" "$seconds" | tee -a "$out"
done
source scripts/median.sh
echo "== medians of $runs runs (exchanges per second)"
for name in "npm policyfile" "amf-bench policy"; do
    busy="$(grep "^$name:" "$out" | awk -F'[:;]' '{ print $2 }' | awk '{ print $1 }' | median)"
    busy_failed="$(grep "^$name:" "$out" | awk -F'[:;]' '{ print $2 }' | awk '{ print $3 }' | tr -d '(/s' | median)"
    held="$(grep "^$name:" "$out" | awk -F';' '{ print $2 }' | awk '{ print $1 }' | median)"
    held_failed="$(grep "^$name:" "$out" | awk -F';' '{ print $2 }' | awk '{ print $8 }' | tr -d '(/s' | median)"
    echo "$name: $busy ($busy_failed/s failed); with 10000 idle held: $held ($held_failed/s failed)"
done
rm -f "$out"
