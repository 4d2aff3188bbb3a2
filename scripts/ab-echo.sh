#!/usr/bin/env bash
# Compares two amf-bench builds on echo round trips of one payload size: scripts/ab-run.sh on a
# closed model of 50 connections, 2 requests in flight each, for 5 s, each session one `echo` of
# a BYTES-long string. Its first column, sessions per second, is echo requests per second.
# Usage: scripts/ab-echo.sh BINARY_A BINARY_B BYTES [ROUNDS]
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 BINARY_A BINARY_B BYTES [ROUNDS]" >&2
    exit 2
fi
scenario="$(mktemp --suffix .toml)"
trap 'rm -f "$scenario"' EXIT
python3 - "$3" >"$scenario" <<'EOF'
import sys
print(f'''name = "ab-echo"
connections = 50
in_flight = 2
duration = "5s"
[load]
model = "closed"
[[session]]
name = "echo"
steps = [{{ request = "echo", params = {{ text = "{'x' * int(sys.argv[1])}" }} }}]''')
EOF
"$(dirname "$0")/ab-run.sh" "$1" "$2" "$scenario" "${4:-8}" echo
