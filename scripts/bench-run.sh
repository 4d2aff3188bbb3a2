#!/usr/bin/env bash
# Runs the load-generator benchmark (benches/run.rs) RUNS times (default 3) and prints each run's
# figures and their medians: echo requests per second from one generator core for the minimal
# generator (baseline) and for amf-bench run (closed model), their ratio, the open model's own
# capacity, the schedule lag p99 at 80% of each capacity, and the memory per idle simulated
# client at 10,000 and 50,000 clients (or as many as the open-file limit lets one process hold).
# The server (`amf-bench serve`) runs on core 1;
# this script pins the bench and the runs it starts to core 0.
# Usage: scripts/bench-run.sh [RUNS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
seconds="${2:-5}"
cargo bench --bench run --no-run --quiet
out="$(mktemp)"
for run in $(seq "$runs"); do
    echo "== run $run of $runs"
    taskset -c 0 cargo bench --quiet --bench run -- "$seconds" | tee -a "$out"
done
source scripts/median.sh
echo "== medians of $runs runs"
echo "minimal generator (baseline): $(grep '^minimal generator' "$out" | awk '{ print $4 }' | median) requests/s"
echo "amf-bench run:                $(grep '^amf-bench run' "$out" | awk '{ print $3 }' | median) requests/s"
echo "ratio:                        $(grep '^ratio' "$out" | awk '{ print $2 }' | median)"
echo "open-model capacity:          $(grep '^open-model capacity' "$out" | awk '{ print $3 }' | median) sessions/s"
for of in open closed; do
    echo "lag p99 at 80% of $of: $(grep "^lag p99 at 80% of $of:" "$out" | awk '{ print $7 }' | median) us" \
        "at $(grep "^lag p99 at 80% of $of:" "$out" | awk '{ print $10 }' | tr -d '/s' | median)/s"
done
for clients in $(grep '^idle client' "$out" | sed 's/.*(\([0-9]*\) clients.*/\1/' | sort -nu); do
    echo "idle client ($clients clients): $(grep "^idle client.*($clients clients" "$out" | awk '{ print $3 }' | median) KiB"
done
rm -f "$out"
