#!/usr/bin/env bash
# Runs the proxy benchmark (benches/proxy.rs) RUNS times (default 3) and prints each run's
# figures and their medians: for frames of 100 B, 1 KiB and 64 KiB, replies per second direct,
# through a plain tokio relay (in the bench's process, and in a process of its own), through
# socat (installed here with apt-get when missing, skipped when that fails) and through amf-bench
# proxy decoding and logging every frame to a file; the ratios to the plain relay in both forms;
# the p99 round trip each adds over direct at a moderate rate; and for the relays and the proxy,
# the CPU time each spends per frame relayed in the throughput test.
# Usage: scripts/bench-proxy.sh [RUNS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
seconds="${2:-3}"
if ! command -v socat >/dev/null; then
    echo "== socat is not installed; trying apt-get install socat"
    (apt-get install -y socat >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y socat >/dev/null 2>&1; }) \
        || echo "== socat could not be installed: its rows are skipped"
fi
cargo bench --bench proxy --no-run --quiet
out="$(mktemp)"
for run in $(seq "$runs"); do
    echo "== run $run of $runs"
    cargo bench --quiet --bench proxy -- "$seconds" | tee -a "$out"
done
source scripts/median.sh
echo "== medians of $runs runs"
for size in 100B 1KiB 64KiB; do
    for target in direct relay relay-process socat proxy proxy-nolog; do
        rate="$(grep "^throughput $size $target:" "$out" | awk '{ print $4 }' | median)"
        [ "$rate" = "-" ] && continue
        ratio="$(grep "^ratio $size $target/relay:" "$out" | awk '{ print $4 }' | median)"
        ratio_process="$(grep "^ratio $size $target/relay-process:" "$out" | awk '{ print $4 }' | median)"
        p99="$(grep "^latency $size $target:" "$out" | awk '{ print $8 }' | median)"
        added="$(grep "^added-p99 $size $target:" "$out" | awk '{ print $4 }' | median)"
        # Only the relays' and the proxies' rows have a CPU figure.
        cpu="$({ grep "^cpu $size $target:" "$out" || true; } | awk '{ print $4 }' | median)"
        printf '%-6s %-13s %9s replies/s  x%-6s vs relay  x%-6s vs relay-process  p99 %6s us  added p99 %6s us  cpu %5s us/frame\n' \
            "$size" "$target" "$rate" "$ratio" "$ratio_process" "$p99" "$added" "$cpu"
    done
    dropped="$(grep "^proxy-log $size:" "$out" | awk '{ print $6 }' | median)"
    echo "$size    proxy log events dropped (median): $dropped"
done
rm -f "$out"
