#!/usr/bin/env bash
# End-to-end test with a real Flash runtime: a SWF built from swf/Main.hx with Haxe runs under
# Ruffle's web build (npm @ruffle-rs/ruffle, pinned in package.json) in Debian's headless
# chromium, and talks AMF Socket RPC over WebSocket to `amf-bench serve`, directly or through
# `amf-bench proxy`. Each leg starts the server, lets the SWF call echo and push, answer pings
# and report what it decoded, then checks the SWF's report (driver.mjs) and the server's
# counters (and the proxy's log), and keeps a screenshot.
#
#   tests/e2e/run.sh [--install] [LEG...]     legs: ws-listen ws-on-tcp proxy (default: all)
#
# --install: apt-get install what is missing (haxe, chromium, npm) and `npm ci` the browser
# side into target/e2e/node. Exit status: 0 passed, 1 failed, 77 skipped (the reason printed).
# Outputs in target/e2e/: LEG.png (screenshot), LEG.report.json, LEG.serve.out (counters),
# and for the proxy leg proxy.log.jsonl (its JSON log) and proxy.out (its summary).
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

# SIGTERM to PID, then waits (at most 20 s) for what it prints on its way out.
stop_process() {
    local pid=$1 name=$2
    kill -TERM "$pid"
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "the $name did not stop within 20 s"
    wait "$pid" || fail "the $name exited with status $?"
}

stop_serve() { stop_process "$SERVE_PID" server; }

# Starts `amf-bench proxy` with a WebSocket listener in front of $SERVE_ADDR, allowing the
# page's origin and logging JSON to $PROXY_LOG; sets PROXY_PID and PROXY_WS_ADDR.
start_proxy() {
    local out=$E2E/proxy.out
    PROXY_LOG=$E2E/proxy.log.jsonl
    : >"$out"
    "$BIN" proxy --listen 127.0.0.1:0 --ws-listen 127.0.0.1:0 --upstream "$SERVE_ADDR" \
        --ws-origin "http://127.0.0.1:$HTTP_PORT" --log "$PROXY_LOG" --quiet \
        >"$out" 2>"$E2E/proxy.log" &
    PROXY_PID=$!
    STARTED+=("$PROXY_PID")
    PROXY_WS_ADDR=$(read_line "$out" "WebSocket listening on ")
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
# connection (WebSocket unless WS_CONNECTIONS, the first argument, says 0), both echoes (the
# call and the report) and the push, the report message, and an orderly end (no ping timeout,
# no refused or bad frame).
check_counters() {
    local out=$E2E/$LEG.serve.out ws_connections=${1:-1}
    for expected in \
        "connections: 1 accepted, 0 open; policy requests: 0; WebSocket connections: $ws_connections" \
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

# What the proxy logged of the SWF's connection: opened over WebSocket, the SWF's echo request
# and its report message decoded with their commands, the server's replies and pings, an
# orderly close; and its summary: one WebSocket client, closed by both sides.
check_proxy_log() {
    node -e '
        const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
        const log = lines.map((line) => JSON.parse(line));
        const has = (what, test) => { if (!log.some(test)) throw new Error("no " + what); };
        has("open over WebSocket", (e) => e.event === "open" && e.transport === "websocket");
        has("echo request from the SWF", (e) => e.event === "frame" && e.dir === "c2s" &&
            e.rpc?.type === "rpcRequest" && e.rpc.command === "echo" &&
            e.value?.request?.params?.text === "h\u00e9llo w\u00f6rld");
        has("echo reply", (e) => e.dir === "s2c" && e.rpc?.type === "rpcResponse" && e.rpc.command === "echo");
        has("push request", (e) => e.dir === "c2s" && e.rpc?.command === "push");
        has("report message", (e) => e.dir === "c2s" && e.rpc?.type === "rpcMessage" && e.rpc.command === "swf_report");
        has("server ping", (e) => e.dir === "s2c" && e.rpc?.command === "amf_socket_ping");
        has("WebSocket close", (e) => e.event === "close" && e.transport === "websocket" &&
            e.reason === "closed by both sides");
        if (log.some((e) => e.error)) throw new Error("a frame did not decode");
    ' "$PROXY_LOG" || fail "the proxy's log ($PROXY_LOG) lacks the SWF's frames"
    grep -q "^connections: 1 accepted (1 WebSocket), 0 policy answered; ended: closed 1;" \
        "$E2E/proxy.out" || fail "the proxy's summary is not as expected: $(cat "$E2E/proxy.out")"
}

# SWF -> amf-bench proxy --ws-listen -> amf-bench serve: the server sees a TCP client.
leg_proxy() {
    start_serve
    start_proxy
    run_swf "ws://$PROXY_WS_ADDR"
    stop_process "$PROXY_PID" proxy
    stop_serve
    check_counters 0
    check_proxy_log
}

install=false
legs=()
for arg in "$@"; do
    case $arg in
        --install) install=true ;;
        ws-listen | ws-on-tcp | proxy) legs+=("$arg") ;;
        *) echo "usage: tests/e2e/run.sh [--install] [ws-listen] [ws-on-tcp] [proxy]" >&2; exit 2 ;;
    esac
done
[ ${#legs[@]} -gt 0 ] || legs=(ws-listen ws-on-tcp proxy)

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
