#!/usr/bin/env bash
# What TLS costs: one server with a plain and a tls:// text listener (a
# self-signed certificate), the same bench over each, alternating, pinned
# like bench/ab.sh (server core 0, bench core 1): fanout to 100 receivers,
# chat of 50 clients x 100 msg/s, and 10,000 idle clients (memory per
# client, and connections set up per second: TLS handshakes).
#
#   bench/tls.sh [BINARY]                      # 3 alternating runs each
#   RUNS=5 DURATION=10s bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/release/switchboard}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
OUT=${OUT:-bench/results/tls}
# The relay flat out, as the other scripts measure it: no rate limits.
export SWITCHBOARD_MAX_MESSAGES_PER_SECOND=0
export SWITCHBOARD_MAX_BYTES_PER_SECOND=0
ulimit -n "$(ulimit -Hn)"
rm -rf "$OUT"; mkdir -p "$OUT"
PORT=27450

run() { # run plain|tls NAME ARGS...
    local transport=$1 name=$2; shift 2
    local plain=$PORT tls=$((PORT + 1)) addr extra=()
    taskset -c 0 "$BIN" serve --listen "127.0.0.1:$plain" --listen "tls://127.0.0.1:$tls" \
        --tls-self-signed --max-connections 25000 >"$OUT/server.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$tls") 2>/dev/null && break
        sleep 0.1
    done
    addr=127.0.0.1:$plain
    if [ "$transport" = tls ]; then addr=127.0.0.1:$tls; extra=(--insecure); fi
    timeout 300 taskset -c 1 "$BIN" bench "$@" --addr "$addr" "${extra[@]}" --server-pid "$pid" --json \
        >"$OUT/$name.$transport.$run.json" 2>"$OUT/$name.$transport.$run.err" || echo "   $name over $transport failed"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PORT=$((PORT + 2))
}

for run in $(seq "$RUNS"); do
    for transport in plain tls; do
        echo "== run $run of $RUNS: $transport"
        run "$transport" fanout-100 fanout --clients 100 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        run "$transport" chat-50 chat --clients 50 --rate 100 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        run "$transport" connect-10000 connect --clients 10000 --duration 3s
    done
done

python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys, glob, os
out, runs = sys.argv[1], int(sys.argv[2])
def figures(name, transport, pick):
    vals = []
    for path in sorted(glob.glob(os.path.join(out, f"{name}.{transport}.*.json"))):
        try:
            vals.append(pick(json.load(open(path))))
        except (ValueError, KeyError, TypeError):
            pass
    return vals
rows = [
    ("fanout, 100 receivers", "fanout-100", "deliveries/s", lambda r: r["deliveries_per_s"]),
    ("chat, 50 x 100 msg/s", "chat-50", "p50 µs", lambda r: r["latency_us"]["p50"]),
    ("chat, 50 x 100 msg/s", "chat-50", "p99 µs", lambda r: r["latency_us"]["p99"]),
    ("connect, 10,000 idle", "connect-10000", "bytes/client", lambda r: r["memory"]["bytes_per_client"]),
    ("connect, 10,000 idle", "connect-10000", "connections/s", lambda r: r["connects_per_s"]),
]
def show(v):
    return f"{v/1e6:.2f}M" if v >= 1e6 else f"{v:,.0f}"
print(f"| scenario | figure | plain (median of {runs}) | TLS (median of {runs}) | TLS vs plain |")
print("|---|---|---|---|---|")
for title, name, unit, pick in rows:
    a, b = figures(name, "plain", pick), figures(name, "tls", pick)
    if not a or not b:
        print(f"| {title} | {unit} | {a} | {b} | n/a |")
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"| {title} | {unit} | {show(ma)} | {show(mb)} | {(mb - ma) / ma * 100:+.1f}% |")
PY
