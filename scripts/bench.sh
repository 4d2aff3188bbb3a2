#!/usr/bin/env bash
# Runs the codec benchmark RUNS times (default 3) and prints, per input set, the median over runs
# of each measurement, the rate it implies on one core, and amf-bench's speed-up over the `amf`
# crate measured in the same runs; "(view)" rows decode into a borrowed `View` instead of a
# `Value`. Usage: scripts/bench.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
out=target/bench-runs
rm -rf "$out" && mkdir -p "$out"
for run in $(seq 1 "$runs"); do
    cargo bench --quiet --bench codec >/dev/null 2>&1
    mkdir -p "$out/$run"
    for estimates in target/criterion/*/*/*/new/estimates.json; do
        id=${estimates#target/criterion/}
        id=${id%/new/estimates.json}
        mkdir -p "$out/$run/$(dirname "$id")"
        cp "$estimates" "$out/$run/$id.json"
    done
done
python3 - "$out" "$runs" <<'PY'
import json, statistics, sys, pathlib
root, runs = pathlib.Path(sys.argv[1]), int(sys.argv[2])
times = {}
for path in root.glob("*/*/*/*.json"):
    run, group, codec, op = path.relative_to(root).with_suffix("").parts
    times.setdefault((group, op, codec), []).append(json.loads(path.read_text())["median"]["point_estimate"])
groups = sorted({g for g, _, _ in times})
print(f"median of {runs} runs (criterion's median per run), ns per input set")
for group in groups:
    print(f"\n[{group}]")
    print(f"{'operation':<22}{'amf-bench':>12}{'amf':>12}{'speed-up':>10}{'amf-bench/s':>14}")
    rows = [(op, "amf-bench", op) for op in ("decode", "encode", "encode+decode")]
    rows += [(op, "amf-bench-view", f"{op} (view)") for op in ("decode", "encode+decode")]
    for op, codec, label in rows:
        ours = statistics.median(times[(group, op, codec)])
        theirs = statistics.median(times[(group, op, "amf")])
        print(f"{label:<22}{ours:>12.0f}{theirs:>12.0f}{theirs / ours:>9.2f}x{1e9 / ours:>14,.0f}")
PY
