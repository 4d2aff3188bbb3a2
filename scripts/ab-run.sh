#!/usr/bin/env bash
# Compares two amf-bench builds on one scenario, alternating them ROUNDS times: each round starts
# `A serve --threads 1 --no-ping` pinned to core 1 and runs SCENARIO (its `target` replaced by
# that server) with `A run --threads 1` pinned to core 0, then the same with B. Prints, per run
# and as medians per build: sessions started per second, the run process's CPU time per session
# (with `perf stat` when installed), the generator's busy share, and COMMAND's lag p50 and p99 and
# latency p50 in microseconds (COMMAND: the scenario's first in summary.json when not given).
# Usage: scripts/ab-run.sh BINARY_A BINARY_B SCENARIO [ROUNDS] [COMMAND]
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 BINARY_A BINARY_B SCENARIO [ROUNDS] [COMMAND]" >&2
    exit 2
fi
binaries=("$1" "$2")
scenario="$3"
rounds="${4:-5}"
command="${5:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
perf_stat=()
if command -v perf >/dev/null && perf stat -e task-clock true >/dev/null 2>&1; then
    perf_stat=(perf stat -x, -e task-clock -o "$work/cpu")
fi

# One run of BINARY: prints "sessions/s cpu-us/session busy% lag-p50 lag-p99 latency-p50".
one_run() {
    local binary="$1" out="$2"
    taskset -c 1 "$binary" serve --listen 127.0.0.1:0 --threads 1 --no-ping \
        >"$work/serve.out" 2>/dev/null &
    local server=$!
    local addr=""
    for _ in $(seq 100); do
        addr="$(sed -n 's/^listening on //p' "$work/serve.out")"
        [ -n "$addr" ] && break
        sleep 0.05
    done
    { echo "target = \"$addr\""; grep -v '^target *=' "$scenario"; } >"$work/scenario.toml"
    rm -f "$work/cpu"
    taskset -c 0 "${perf_stat[@]}" "$binary" run "$work/scenario.toml" --threads 1 --quiet \
        --out "$out" >/dev/null || true
    kill -INT "$server"
    wait "$server" 2>/dev/null || true
    local cpu_ms
    cpu_ms="$( (grep task-clock "$work/cpu" 2>/dev/null || echo -) | cut -d, -f1)"
    python3 - "$out/summary.json" "$cpu_ms" "$command" <<'EOF'
import json, sys
summary = json.load(open(sys.argv[1]))
cpu_ms, command = sys.argv[2], sys.argv[3] or next(iter(summary["commands"]))
started = summary["sessions"]["started"]
measured = summary["commands"][command]
cpu = f"{float(cpu_ms) * 1000 / started:.2f}" if cpu_ms not in ("", "-") and started else "-"
print(round(started / summary["duration_s"]), cpu, round(summary["generator"]["busy_percent"]),
      measured["lag_us"]["p50"], measured["lag_us"]["p99"], measured["latency_us"]["p50"])
EOF
}

names=(A B)
for round in $(seq "$rounds"); do
    for which in 0 1; do
        name="${names[$which]}"
        figures="$(one_run "${binaries[$which]}" "$work/$name$round")"
        echo "$name $figures" >>"$work/all"
        echo "round $round, $name: $figures"
    done
done
source "$(dirname "$0")/median.sh"
echo "medians of $rounds rounds" \
    "(sessions/s, CPU us/session, busy %, lag p50, lag p99, latency p50):"
for name in A B; do
    line="$name:"
    for column in 2 3 4 5 6 7; do
        values="$(awk -v n="$name" -v c="$column" '$1 == n && $c != "-" { print $c }' "$work/all")"
        line="$line $(median <<<"$values")"
    done
    echo "$line"
done
