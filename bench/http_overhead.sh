#!/usr/bin/env bash
# What the HTTP listener costs the TCP relay, measured the way operators run
# it: A serves TCP only; B also has --http, /metrics scraped every second,
# and one console watching the benchmark's room. Alternating runs of one
# binary, pinned like bench/ab.sh (server core 0, bench core 1).
#
#   bench/http_overhead.sh [BINARY]            # 3 alternating runs each
#   RUNS=5 DURATION=10s bench/http_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/release/switchboard}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
OUT=${OUT:-bench/results/http}
# The relay is measured flat out, as ncat, NATS and Redis are: no rate
# limits (set in the environment, which older binaries ignore).
export SWITCHBOARD_MAX_MESSAGES_PER_SECOND=${SWITCHBOARD_MAX_MESSAGES_PER_SECOND:-0}
export SWITCHBOARD_MAX_BYTES_PER_SECOND=${SWITCHBOARD_MAX_BYTES_PER_SECOND:-0}
ulimit -n "$(ulimit -Hn)"
rm -rf "$OUT"; mkdir -p "$OUT"
PORT=25450

run() { # run LABEL NAME ARGS...
    local label=$1 name=$2; shift 2
    local http=$((PORT + 1)) extra=() helpers=()
    [ "$label" = B ] && extra=(--http "127.0.0.1:$http")
    taskset -c 0 "$BIN" serve --listen "127.0.0.1:$PORT" --max-connections 25000 "${extra[@]}" >"$OUT/server.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    if [ "$label" = B ]; then
        # The scraper and the console stand in for programs on other
        # machines: kept off the server's core and scheduled only when the
        # bench's core is otherwise idle (SCHED_IDLE), so what is measured is
        # the server's cost of answering them, not their own CPU. The scraper
        # keeps one connection, as Prometheus does.
        taskset -c 1 chrt -i 0 python3 - "127.0.0.1:$http" <<'SCRAPE' &
import http.client, sys, time
host, port = sys.argv[1].rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port))
while True:
    time.sleep(1)
    conn.request("GET", "/metrics")
    conn.getresponse().read()
SCRAPE
        helpers+=($!)
        taskset -c 1 chrt -i 0 python3 bench/console_watcher.py "127.0.0.1:$http" lobby &
        helpers+=($!)
    fi
    timeout 300 taskset -c 1 "$BIN" bench "$@" --addr "127.0.0.1:$PORT" --json \
        >"$OUT/$name.$label.$run.json" 2>"$OUT/$name.$label.$run.err" || echo "   $name on $label failed"
    for helper in "${helpers[@]}"; do kill "$helper" 2>/dev/null || true; done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PORT=$((PORT + 2))
}

for run in $(seq "$RUNS"); do
    for label in A B; do
        echo "== run $run of $RUNS: $label"
        run "$label" fanout-100 fanout --clients 100 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        run "$label" chat-50 chat --clients 50 --rate 100 --size 64 --duration "$DURATION" --warmup "$WARMUP"
    done
done

python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys, glob, os
out, runs = sys.argv[1], int(sys.argv[2])
def figures(name, label, pick):
    return [pick(json.load(open(p))) for p in sorted(glob.glob(os.path.join(out, f"{name}.{label}.*.json")))]
rows = [
    ("fanout, 100 receivers", "fanout-100", "deliveries/s", lambda r: r["deliveries_per_s"]),
    ("chat, 50 x 100 msg/s", "chat-50", "p99 µs", lambda r: r["latency_us"]["p99"]),
]
print(f"| scenario | figure | TCP only (median of {runs}) | + --http, /metrics every 1 s, a console watching (median of {runs}) | change |")
print("|---|---|---|---|---|")
for title, name, unit, pick in rows:
    a, b = figures(name, "A", pick), figures(name, "B", pick)
    ma, mb = statistics.median(a), statistics.median(b)
    fmt = (lambda v: f"{v/1e6:.2f}M") if unit == "deliveries/s" else (lambda v: f"{v:,.0f}")
    print(f"| {title} | {unit} | {fmt(ma)} | {fmt(mb)} | {(mb - ma) / ma * 100:+.1f}% |")
PY
