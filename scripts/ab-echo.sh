#!/usr/bin/env bash
# Compares two amf-bench builds on echo round trips of one payload size, alternating them ROUNDS
# times: each round starts `A serve --threads 1 --no-ping` pinned to core 1 and drives it for 5 s
# with `A run --threads 1` pinned to core 0 (a closed model, 50 connections, 2 requests in flight
# each, one `echo` of a BYTES-long string), then the same with B. Prints each run's requests per
# second, each build's median and B's median over A's.
# Usage: scripts/ab-echo.sh BINARY_A BINARY_B BYTES [ROUNDS]
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 BINARY_A BINARY_B BYTES [ROUNDS]" >&2
    exit 2
fi
a="$1"
b="$2"
bytes="$3"
rounds="${4:-8}"
cd "$(dirname "$0")/.."
source scripts/median.sh
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# One round with BINARY: prints its echo requests per second.
echo_rate() {
    local binary="$1" run="$2"
    taskset -c 1 "$binary" serve --listen 127.0.0.1:0 --threads 1 --no-ping >"$work/serve.out" 2>/dev/null &
    local server=$!
    local addr=""
    for _ in $(seq 100); do
        addr="$(sed -n 's/^listening on //p' "$work/serve.out")"
        [ -n "$addr" ] && break
        sleep 0.05
    done
    python3 - "$addr" "$bytes" >"$work/echo.toml" <<'EOF'
import sys
addr, size = sys.argv[1], int(sys.argv[2])
print(f'''name = "ab-echo"
target = "{addr}"
connections = 50
in_flight = 2
duration = "5s"
[load]
model = "closed"
[[session]]
name = "echo"
steps = [{{ request = "echo", params = {{ text = "{'x' * size}" }} }}]''')
EOF
    taskset -c 0 "$binary" run "$work/echo.toml" --threads 1 --quiet --out "$work/$run" >/dev/null || true
    kill -INT "$server"
    wait "$server" 2>/dev/null || true
    python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
print(round(s["commands"]["echo"]["count"] / s["duration_s"]))' "$work/$run/summary.json"
}

for round in $(seq "$rounds"); do
    rate_a="$(echo_rate "$a" "a$round")"
    rate_b="$(echo_rate "$b" "b$round")"
    echo "round $round: A $rate_a/s, B $rate_b/s"
    echo "$rate_a" >>"$work/a"
    echo "$rate_b" >>"$work/b"
done
median_a="$(median <"$work/a")"
median_b="$(median <"$work/b")"
echo "medians of $rounds rounds at $bytes bytes: A $median_a/s, B $median_b/s, B/A $(python3 -c "print(f'{$median_b / $median_a:.2f}')")"
