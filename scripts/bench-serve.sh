#!/usr/bin/env bash
# Runs the server benchmark (benches/serve.rs) RUNS times (default 3) and prints each run's
# figures and their medians: echo replies per second for the frame-echo baseline and for
# amf-bench serve (each on one core, 1,000 connections), their ratio, and the server's memory per
# idle connection. Usage: scripts/bench-serve.sh [RUNS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
seconds="${2:-5}"
cargo bench --bench serve --no-run --quiet
out="$(mktemp)"
for run in $(seq "$runs"); do
    echo "== run $run of $runs"
    cargo bench --quiet --bench serve -- "$seconds" | tee -a "$out"
done
source scripts/median.sh
echo "== medians of $runs runs"
echo "frame echo (baseline): $(grep '^frame echo' "$out" | awk '{ print $4 }' | median) replies/s"
echo "amf-bench serve echo:  $(grep '^amf-bench serve' "$out" | awk '{ print $4 }' | median) replies/s"
echo "ratio:                 $(grep '^ratio' "$out" | awk '{ print $2 }' | median)"
echo "idle connection:       $(grep '^idle connection' "$out" | awk '{ print $3 }' | median) KiB"
rm -f "$out"
