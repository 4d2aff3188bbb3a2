#!/usr/bin/env bash
# End-to-end test with a real Flash runtime: a SWF built from swf/Main.hx with Haxe runs under
# Ruffle's web build (npm @ruffle-rs/ruffle, pinned in package.json) in Debian's headless
# chromium, and talks AMF Socket RPC over WebSocket to `amf-bench serve`. Each leg starts the
# server, lets the SWF call echo and push, answer pings and report what it decoded, then checks
# the SWF's report (driver.mjs) and the server's counters, and keeps a screenshot.
#
#   tests/e2e/run.sh [--install] [LEG...]     legs: ws-listen ws-on-tcp (default: all)
#
# --install: apt-get install what is missing (haxe, chromium, npm) and `npm ci` the browser
# side into target/e2e/node. Exit status: 0 passed, 1 failed, 77 skipped (the reason printed).
# Outputs in target/e2e/: LEG.png (screenshot), LEG.report.json, LEG.serve.out (counters).
set -euo pipefail
cd "$(dirname "$0")/../.."

E2E=target/e2e
NODE_DIR=$E2E/node
BIN=target/debug/amf-bench
LEG_TIMEOUT=90   # seconds for one leg's browser run, start to screenshot
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
STARTED=()       # process ids to end on exit

skip() { echo "e2e: SKIPPED: $*"; exit 77; }
fail() { echo "e2e: FAILED ($LEG): $*" >&2; exit 1; }
cleanup() { for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

install_missing() {
    local need=()
    command -v haxe >/dev/null || need+=(haxe)
    [ -n "$CHROMIUM" ] || need+=(chromium)
    command -v npm >/dev/null || need+=(npm)
    if [ ${#need[@]} -gt 0 ]; then
        local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "e2e: installing ${need[*]} (apt-get)"
        { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}" >/dev/null; } ||
            echo "e2e: apt-get install ${need[*]} failed"
        CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
    fi
}

# The browser side from the lockfile, reinstalled when the lockfile changes.
install_node_modules() {
    mkdir -p "$NODE_DIR"
    if ! cmp -s tests/e2e/package-lock.json "$NODE_DIR/package-lock.json" ||
        [ ! -d "$NODE_DIR/node_modules/@ruffle-rs/ruffle" ]; then
        cp tests/e2e/package.json tests/e2e/package-lock.json "$NODE_DIR/"
        (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) ||
            skip "npm ci of @ruffle-rs/ruffle and playwright-core failed (is the npm registry reachable?)"
    fi
}

check_tools() {
    command -v haxe >/dev/null || skip "haxe is not installed (Debian package haxe; or pass --install)"
    [ -n "$CHROMIUM" ] || skip "chromium is not installed (Debian package chromium; or pass --install)"
    command -v node >/dev/null || skip "node is not installed (Debian package nodejs; or pass --install)"
    [ -d "$NODE_DIR/node_modules/playwright-core" ] ||
        skip "the browser side is not installed in $NODE_DIR (pass --install)"
}

build() {
    cargo build --quiet --bin amf-bench
    haxe --cwd tests/e2e/swf --swf "$PWD/$E2E/client.swf" --swf-version 11 -main Main ||
        { LEG=build; fail "haxe could not build the SWF"; }
}

free_port() {
    node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# The text after PREFIX on a line of FILE, waiting up to 10 s for it.
read_line() {
    local file=$1 prefix=$2 line
    for _ in $(seq 100); do
        line=$(sed -n "s/^$prefix//p" "$file" | head -n 1)
        [ -n "$line" ] && { echo "$line"; return; }
        sleep 0.1
    done
    fail "no '$prefix' line from the server in $file"
}

# Starts `amf-bench serve` with OPTIONS on loopback, allowing the page's origin; sets SERVE_PID,
# SERVE_ADDR and (with --ws-listen) SERVE_WS_ADDR. Pings every 0.3 s, so the SWF answers some.
start_serve() {
    local out=$E2E/$LEG.serve.out
    : >"$out"
    "$BIN" serve --listen 127.0.0.1:0 --ping-interval 0.3 --ping-timeout 5 \
        --ws-origin "http://127.0.0.1:$HTTP_PORT" "$@" >"$out" 2>"$E2E/$LEG.serve.log" &
    SERVE_PID=$!
    STARTED+=("$SERVE_PID")
    SERVE_ADDR=$(read_line "$out" "listening on ")
    SERVE_WS_ADDR=""
    if [[ " $* " == *" --ws-listen "* ]]; then
        SERVE_WS_ADDR=$(read_line "$out" "WebSocket listening on ")
    fi
}

# SIGTERM, then waits (at most 20 s) for the counters the server prints on its way out.
stop_serve() {
    kill -TERM "$SERVE_PID"
    for _ in $(seq 200); do
        kill -0 "$SERVE_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$SERVE_PID" 2>/dev/null && fail "the server did not stop within 20 s"
    wait "$SERVE_PID" || fail "the server exited with status $?"
}

# Opens the page with Ruffle's socketProxy pointing at WS_URL; the driver checks the report.
run_swf() {
    local ws_url=$1
    echo "e2e: $LEG: SWF -> $ws_url"
    timeout "$LEG_TIMEOUT" node tests/e2e/driver.mjs --http-port "$HTTP_PORT" --ws "$ws_url" \
        --leg "$LEG" --swf "$E2E/client.swf" --node-dir "$NODE_DIR" --chromium "$CHROMIUM" \
        --screenshot "$E2E/$LEG.png" --timeout-ms 45000 \
        >"$E2E/$LEG.report.json" 2>"$E2E/$LEG.browser.log" ||
        { cat "$E2E/$LEG.browser.log" >&2; fail "the SWF's report is missing or wrong: $(cat "$E2E/$LEG.report.json")"; }
}

# What the server received from the SWF, from the counters it printed on shutdown: one
# WebSocket connection, both echoes (the call and the report) and the push, the report message,
# and an orderly end (no ping timeout, no refused or bad frame).
check_counters() {
    local out=$E2E/$LEG.serve.out
    for expected in \
        "connections: 1 accepted, 0 open; policy requests: 0; WebSocket connections: 1" \
        "requests: echo 2, push 1" \
        "messages: swf_report 1" \
        "connection ends: peer_closed 1"; do
        grep -qxF "$expected" "$out" || fail "the server's counters lack '$expected':
$(cat "$out")"
    done
}

leg_ws_listen() {
    start_serve --ws-listen 127.0.0.1:0
    run_swf "ws://$SERVE_WS_ADDR"
    stop_serve
    check_counters
}

leg_ws_on_tcp() {
    start_serve --ws-on-tcp
    run_swf "ws://$SERVE_ADDR"
    stop_serve
    check_counters
}

# The proxy's leg will be one more function: start_serve, then `amf-bench proxy --ws-listen`
# in front of $SERVE_ADDR, run_swf on the proxy's WebSocket address, stop both, check_counters.

install=false
legs=()
for arg in "$@"; do
    case $arg in
        --install) install=true ;;
        ws-listen | ws-on-tcp) legs+=("$arg") ;;
        *) echo "usage: tests/e2e/run.sh [--install] [ws-listen] [ws-on-tcp]" >&2; exit 2 ;;
    esac
done
[ ${#legs[@]} -gt 0 ] || legs=(ws-listen ws-on-tcp)

mkdir -p "$E2E"
if $install; then
    install_missing
    command -v npm >/dev/null || skip "npm is not installed and could not be installed"
    install_node_modules
fi
check_tools
build
started=$(date +%s)
for LEG in "${legs[@]}"; do
    HTTP_PORT=$(free_port)
    "leg_${LEG//-/_}"
    echo "e2e: $LEG: ok (screenshot $E2E/$LEG.png)"
done
echo "e2e: passed, legs: ${legs[*]} ($(($(date +%s) - started)) s)"
