#!/usr/bin/env bash
# Browser-protocol (WebSocket, /ws) clients against TCP text clients of the
# same server, scenario by scenario, alternating, pinned like bench/ab.sh
# (server core 0, bench core 1): the figures the WebSocket targets are
# stated in (fanout at least half the TCP text fanout; at most 8 KiB of
# server memory per idle WebSocket client at 10,000).
#
#   bench/ws.sh [BINARY]              # 3 alternating runs each
#   RUNS=5 DURATION=10s bench/ws.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/release/switchboard}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
OUT=${OUT:-bench/results/ws}
# The relay is measured flat out, as ncat, NATS and Redis are: no rate
# limits (set in the environment, which older binaries ignore).
export SWITCHBOARD_MAX_MESSAGES_PER_SECOND=${SWITCHBOARD_MAX_MESSAGES_PER_SECOND:-0}
export SWITCHBOARD_MAX_BYTES_PER_SECOND=${SWITCHBOARD_MAX_BYTES_PER_SECOND:-0}
ulimit -n "$(ulimit -Hn)"
rm -rf "$OUT"; mkdir -p "$OUT"
PORT=26450

run() { # run PROTOCOL NAME ARGS...
    local protocol=$1 name=$2; shift 2
    local http=$((PORT + 1)) addr=$PORT
    [ "$protocol" = ws ] && addr=$http
    taskset -c 0 "$BIN" serve --listen "127.0.0.1:$PORT" --http "127.0.0.1:$http" --max-connections 25000 >"$OUT/server.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null && break
        sleep 0.1
    done
    timeout 300 taskset -c 1 "$BIN" bench "$@" --protocol "$protocol" --addr "127.0.0.1:$addr" --server-pid "$pid" --json \
        >"$OUT/$name.$protocol.$run.json" 2>"$OUT/$name.$protocol.$run.err" || echo "   $name over $protocol failed"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PORT=$((PORT + 2))
}

for run in $(seq "$RUNS"); do
    for protocol in text ws; do
        echo "== run $run of $RUNS: $protocol"
        run "$protocol" fanout-100 fanout --clients 100 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        run "$protocol" fanout-1000 fanout --clients 1000 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        run "$protocol" chat-50 chat --clients 50 --rate 100 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        run "$protocol" connect-10000 connect --clients 10000 --duration 3s
    done
done

python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys, glob, os
out, runs = sys.argv[1], int(sys.argv[2])
def figures(name, protocol, pick):
    return [pick(json.load(open(p))) for p in sorted(glob.glob(os.path.join(out, f"{name}.{protocol}.*.json")))]
rows = [
    ("fanout, 100 receivers", "fanout-100", "deliveries/s", lambda r: r["deliveries_per_s"]),
    ("fanout, 1,000 receivers", "fanout-1000", "deliveries/s", lambda r: r["deliveries_per_s"]),
    ("chat, 50 x 100 msg/s", "chat-50", "p50 µs", lambda r: r["latency_us"]["p50"]),
    ("chat, 50 x 100 msg/s", "chat-50", "p99 µs", lambda r: r["latency_us"]["p99"]),
    ("connect, 10,000 idle", "connect-10000", "bytes/client", lambda r: r["memory"]["bytes_per_client"]),
]
print(f"| scenario | figure | TCP text (median of {runs}) | WebSocket /ws (median of {runs}) | WebSocket ÷ text |")
print("|---|---|---|---|---|")
for title, name, unit, pick in rows:
    a, b = figures(name, "text", pick), figures(name, "ws", pick)
    if not a or not b:
        print(f"| {title} | {unit} | {a} | {b} | n/a |")
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    fmt = (lambda v: f"{v/1e6:.2f}M") if unit == "deliveries/s" else (lambda v: f"{v:,.0f}")
    print(f"| {title} | {unit} | {fmt(ma)} | {fmt(mb)} | {mb / ma:.2f}× |")
lost = sum(json.load(open(p)).get("lost", 0) for p in glob.glob(os.path.join(out, "*.ws.*.json")))
print(f"\nWebSocket runs lost {lost} messages.")
PY
