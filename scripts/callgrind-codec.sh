#!/usr/bin/env bash
# Counts the instructions one envelope decode, encode and encode+decode take, with
# valgrind's callgrind (exact and repeatable, unlike timings on a shared machine).
# Usage: scripts/callgrind-codec.sh [OPERATION...]  (default: decode encode encode+decode;
# also view-decode and encode+view-decode)
# Each operation runs 20,000 and 40,000 times; the difference / 20,000 is its per-operation cost,
# free of the set-up both runs share. With CALLGRIND_KEEP=1 the 40,000-run profiles stay in
# target/callgrind/ for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
cargo bench --bench codec --no-run 2>/dev/null
binary=$(ls -t target/release/deps/codec-* | grep -v '\.d$' | head -1)
mkdir -p target/callgrind
operations=("$@")
[ ${#operations[@]} -eq 0 ] && operations=(decode encode encode+decode)
for operation in "${operations[@]}"; do
    declare -A total=()
    for count in 20000 40000; do
        file=target/callgrind/${operation/+/-}.$count.out
        AMF_BENCH_PROFILE=$operation AMF_BENCH_PROFILE_COUNT=$count \
            valgrind --tool=callgrind --callgrind-out-file="$file" "$binary" >/dev/null 2>&1
        total[$count]=$(awk '/^summary:/ {print $2}' "$file")
    done
    echo "$operation: $(( (total[40000] - total[20000]) / 20000 )) instructions per operation"
    [ "${CALLGRIND_KEEP:-0}" = 1 ] || rm -f target/callgrind/${operation/+/-}.*.out
done
