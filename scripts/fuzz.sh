#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS seconds, one after the other, and prints per target the
# executions and whether it found anything; exits 1 on a finding (saved in fuzz/artifacts/TARGET/).
# Usage: scripts/fuzz.sh SECONDS [TARGET...]   (no TARGET: every target in fuzz/Cargo.toml)
#
# Installs cargo-fuzz if missing. Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets it take
# the nightly flags cargo-fuzz passes. Seeds are derived from tests/vectors, tests/data/policies,
# scenarios/ and fuzz/seeds/ into fuzz/corpus/TARGET/ (not kept in git), which keeps what each run
# adds; fuzz/dicts/TARGET.dict, where there is one, gives libFuzzer the words of a text format. Targets run with a 2 MiB stack, as a server's worker thread might have, with overflow
# checks on, and with AddressSanitizer unless FUZZ_SANITIZER says otherwise (e.g. `none`).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: scripts/fuzz.sh SECONDS [TARGET...]" >&2
    exit 2
}
[ $# -ge 1 ] || usage
seconds=$1
shift
[[ $seconds =~ ^[0-9]+$ ]] || usage

if ! command -v cargo-fuzz >/dev/null; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "== seeding fuzz/corpus"
python3 - <<'PY'
import json, pathlib, shutil

fuzz = pathlib.Path("fuzz")
corpus = fuzz / "corpus"

def put(target, name, data):
    folder = corpus / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)

def vectors(file):
    for line in pathlib.Path("tests/vectors", file).read_text().splitlines():
        vector = json.loads(line)
        yield vector["name"], bytes.fromhex(vector["hex"])

frames = list(vectors("frames.jsonl"))
for name, data in vectors("amf3.jsonl"):
    put("amf3_decode", name, data)
    put("roundtrip", "amf3-" + name, b"\x00" + data)
for name, data in vectors("amf0.jsonl"):
    put("amf0_decode", name, data)
    put("roundtrip", "amf0-" + name, b"\x01" + data)
for name, frame in frames:
    body = frame[4:]
    put("amf3_decode", "frame-" + name, body)
    put("roundtrip", "frame-" + name, b"\x00" + body)
    put("envelope", name, body)
    # Control byte: the default cap, in one piece; then a 64 KiB cap, in chunks of 1, 2 and 3 bytes.
    put("frame_chunks", name, b"\x00" + frame)
    put("frame_chunks", "chunked-" + name, b"\x3e\x01\x02\x03" + frame)
stream = b"".join(frame for _, frame in frames)
put("frame_chunks", "all-frames-then-a-partial-one", b"\x20\x05\x00" + stream + frames[0][1][:7])
put("policy_sniff", "frame-" + frames[0][0], b"\x00" + frames[0][1])
# Control byte: amf-socket with a 1 MiB decode cap, whole; then a 33-byte cap in chunks of 1, 2
# and 3 bytes; then xmlsocket with a 100-byte cap in chunks of 5 and 7.
put("proxy_tap", "all-frames", b"\x0e" + stream)
put("proxy_tap", "all-frames-chunked", b"\x38\x01\x02\x03" + stream + frames[0][1][:7])
put("proxy_tap", "xmlsocket", b"\x2b\x05\x07<policy-file-request/>\x00<msg>hi</msg>\x00" + b"x" * 150 + b"\x00<tail")
for policy in pathlib.Path("tests/data/policies").glob("*.xml"):
    put("policy_lint", policy.name, policy.read_bytes())
for scenario in pathlib.Path("scenarios").glob("*.toml"):
    put("scenario", scenario.name, scenario.read_bytes())
for seed in (fuzz / "seeds").glob("*/*"):
    put(seed.parent.name, seed.name, seed.read_bytes())
PY

mkdir -p fuzz/logs
summary=()
found=0
for target in "${targets[@]}"; do
    echo "== building $target (sanitizer: $sanitizer)"
    cargo fuzz build --release --debug-assertions --sanitizer "$sanitizer" "$target"
    artifacts=fuzz/artifacts/$target
    mkdir -p "$artifacts"
    before=$(find "$artifacts" -type f | wc -l)
    log=fuzz/logs/$target.log
    echo "== running $target for ${seconds}s (log: $log)"
    dict=()
    [ -f "fuzz/dicts/$target.dict" ] && dict=(-dict="fuzz/dicts/$target.dict")
    status=0
    started=$SECONDS
    # The stack limit is inherited by the fuzz target's main thread, where every input runs.
    (
        ulimit -s 2048
        cargo fuzz run --release --debug-assertions --sanitizer "$sanitizer" "$target" \
            "fuzz/corpus/$target" -- -max_total_time="$seconds" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}"
    ) >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    took=${took:-$((SECONDS - started))}
    after=$(find "$artifacts" -type f | wc -l)
    if [ "$status" -ne 0 ] || [ "$after" -gt "$before" ]; then
        found=1
        verdict="FINDING (exit $status; see $log and $artifacts)"
        tail -40 "$log"
    else
        verdict="nothing found"
    fi
    summary+=("$(printf '%-14s %12s executions in %5ss: %s' "$target" "${runs:-?}" "$took" "$verdict")")
done

echo "== summary (${seconds}s per target, sanitizer: $sanitizer)"
printf '%s\n' "${summary[@]}"
exit "$found"
