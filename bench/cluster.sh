#!/usr/bin/env bash
# What a cluster costs: the same bench against one server, against three
# nodes joined through one redis-server with the clients spread over them,
# and against the same three keeping rooms' history in Redis
# (`--history 1000`: every message goes through the append script),
# alternating. Every server process (the single one; the three nodes
# and Redis) is pinned to core 0, the bench to core 1, so the relay side
# has the same one core either way.
#
#   bench/cluster.sh [BINARY]                  # 3 alternating runs each
#   RUNS=5 DURATION=10s bench/cluster.sh
#   CONNECT=19000 bench/cluster.sh             # idle clients per node (default 19,000)
#   CONNECT_RUNS=0 ONLY=chat-50 bench/cluster.sh   # chat only
#   PIN=0 bench/cluster.sh                     # no pinning: every process on both cores
#
# Rows: chat of 50 clients x 100 msg/s (latency p50/p99), fanout from one
# publisher to 1,000 receivers (deliveries/s), Redis's CPU per message
# published (PUBLISH alone, or the history's XADD script), and CONNECT idle clients per
# node on three nodes (57,000 by default, more than one process may hold
# here), each bench process holding one node's clients and broadcasting
# once to all of them (memory per client of each node).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/release/switchboard}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECT=${CONNECT:-19000}
OUT=${OUT:-bench/results/cluster}
# The relay flat out, as the other scripts measure it: no rate limits.
export SWITCHBOARD_MAX_MESSAGES_PER_SECOND=0
export SWITCHBOARD_MAX_BYTES_PER_SECOND=0
ulimit -n "$(ulimit -Hn)"
rm -rf "$OUT"; mkdir -p "$OUT"
PORT=28450
if [ "${PIN:-1}" = 1 ]; then PIN0="taskset -c 0 "; PIN1="taskset -c 1 "; else PIN0=""; PIN1=""; fi
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

# CPU time a process used so far, in clock ticks (user + system).
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

PIDS=()
stop_all() { # the nodes first (they free their names in Redis), Redis last
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[$i]}" 2>/dev/null || true
        wait "${PIDS[$i]}" 2>/dev/null || true
    done
    PIDS=()
}
trap stop_all EXIT

# Starts the relay side: `single` (one server), `cluster` (Redis and three
# nodes) or `history` (the same, keeping rooms' history in Redis). Sets
# ADDRS (comma-separated), NODE_PIDS and REDIS_PID.
start() {
    local shape=$1 history=()
    [ "$shape" = history ] && history=(--history 1000)
    NODE_PIDS=()
    REDIS_PID=
    if [ "$shape" = single ]; then
        ${PIN0}"$BIN" serve --listen "127.0.0.1:$PORT" --max-connections 60000 \
            >"$OUT/server.log" 2>&1 &
        PIDS+=($!); NODE_PIDS+=($!)
        wait_port "$PORT"
        ADDRS=127.0.0.1:$PORT
    else
        local redis=$((PORT + 9))
        ${PIN0}redis-server --port "$redis" --bind 127.0.0.1 --save '' --appendonly no \
            --maxclients 1000 >"$OUT/redis.log" 2>&1 &
        PIDS+=($!); REDIS_PID=$!
        wait_port "$redis"
        ADDRS=""
        for i in 0 1 2; do
            local port=$((PORT + i))
            ${PIN0}"$BIN" serve --listen "127.0.0.1:$port" --max-connections 60000 \
                --cluster "redis://127.0.0.1:$redis" --node-name "n$i" "${history[@]}" \
                >"$OUT/node$i.log" 2>&1 &
            PIDS+=($!); NODE_PIDS+=($!)
            wait_port "$port"
            ADDRS=${ADDRS:+$ADDRS,}127.0.0.1:$port
        done
    fi
}

run() { # run single|cluster NAME ARGS...
    local shape=$1 name=$2; shift 2
    # ONLY=chat-50 (a scenario name, or a pattern): just those.
    # shellcheck disable=SC2053
    [[ -z ${ONLY:-} || $name == $ONLY ]] || return 0
    start "$shape"
    local before=0
    [ -n "$REDIS_PID" ] && before=$(cpu_ticks "$REDIS_PID")
    timeout 300 ${PIN1}"$BIN" bench "$@" --addr "$ADDRS" --server-pid "${NODE_PIDS[0]}" --json \
        >"$OUT/$name.$shape.$run.json" 2>"$OUT/$name.$shape.$run.err" || echo "   $name on $shape failed"
    [ -n "$REDIS_PID" ] && echo $(($(cpu_ticks "$REDIS_PID") - before)) >"$OUT/$name.$shape.$run.redis-ticks"
    stop_all
    PORT=$((PORT + 10))
}

# CONNECT idle clients on each node, one bench process per node (a process
# holds about 20,000 files here), all in one room: each broadcasts once.
run_connect() {
    start cluster
    local i=0 addr benches=()
    IFS=, read -ra addrs <<<"$ADDRS"
    for addr in "${addrs[@]}"; do
        timeout 600 ${PIN1}"$BIN" bench connect --clients "$CONNECT" --duration 5s \
            --addr "$addr" --server-pid "${NODE_PIDS[$i]}" --name-prefix "n$i-" --json \
            >"$OUT/connect.node$i.$run.json" 2>"$OUT/connect.node$i.$run.err" &
        benches+=($!)
        i=$((i + 1))
    done
    for pid in "${benches[@]}"; do wait "$pid" || echo "   a connect bench failed"; done
    stop_all
    PORT=$((PORT + 10))
}

for run in $(seq "$RUNS"); do
    for shape in single cluster history; do
        echo "== run $run of $RUNS: $shape"
        run "$shape" chat-50 chat --clients 50 --rate 100 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        run "$shape" fanout-1000 fanout --clients 1000 --size 64 --duration "$DURATION" --warmup "$WARMUP"
    done
done
# Last: closing 57,000 connections keeps the kernel busy for a while,
# which the latency runs above must not meet.
[ "${CONNECT_RUNS:-$RUNS}" -gt 0 ] && for run in $(seq "${CONNECT_RUNS:-$RUNS}"); do
    echo "== run $run: 3 nodes x $CONNECT idle clients"
    run_connect
done

python3 - "$OUT" "$RUNS" "$CONNECT" "$(getconf CLK_TCK)" <<'PY'
import json, statistics, sys, glob, os
out, runs, connect, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def figures(pattern, pick):
    vals = []
    for path in sorted(glob.glob(os.path.join(out, pattern))):
        try:
            vals.append(pick(json.load(open(path))))
        except (ValueError, KeyError, TypeError):
            pass
    return vals
def show(v):
    return f"{v/1e6:.2f}M" if v >= 1e6 else f"{v:,.0f}"
rows = [
    ("chat, 50 x 100 msg/s", "chat-50", "p50 µs", lambda r: r["latency_us"]["p50"]),
    ("chat, 50 x 100 msg/s", "chat-50", "p99 µs", lambda r: r["latency_us"]["p99"]),
    ("fanout, 1 to 1,000", "fanout-1000", "deliveries/s", lambda r: r["deliveries_per_s"]),
]
def redis_us_per_message(name, shape):
    """Redis's CPU per message published, in µs, for each run."""
    vals = []
    for path in sorted(glob.glob(os.path.join(out, f"{name}.{shape}.*.redis-ticks"))):
        try:
            ticks = int(open(path).read())
            published = json.load(open(path[: -len("redis-ticks")] + "json"))["published"]
            vals.append(ticks * 1e6 / tck / published)
        except (ValueError, KeyError, OSError, ZeroDivisionError):
            pass
    return vals
print(f"| scenario | figure | one server (median of {runs}) | 3 nodes + Redis (median of {runs}) | 3 nodes, history in Redis (median of {runs}) | cluster vs one | history vs cluster |")
print("|---|---|---|---|---|---|---|")
def median_or_none(vals):
    return statistics.median(vals) if vals else None
for title, name, unit, pick in rows:
    a, b, c = (median_or_none(figures(f"{name}.{shape}.*.json", pick)) for shape in ("single", "cluster", "history"))
    cells = [show(v) if v is not None else "n/a" for v in (a, b, c)]
    ratio = lambda x, y: f"{y/x:.2f}x ({y-x:+,.0f})" if x and y is not None else "n/a"
    print(f"| {title} | {unit} | {' | '.join(cells)} | {ratio(a, b)} | {ratio(b, c)} |")
for title, name in (("chat, 50 x 100 msg/s", "chat-50"), ("fanout, 1 to 1,000", "fanout-1000")):
    b, c = (median_or_none(redis_us_per_message(name, shape)) for shape in ("cluster", "history"))
    if b is None and c is None:
        continue
    cells = [f"{v:.1f}" if v is not None else "n/a" for v in (b, c)]
    print(f"| {title} | Redis CPU µs per message published | | {cells[0]} | {cells[1]} | | {ratio(b, c) if b and c else 'n/a'} |")
heard = figures("connect.node*.json", lambda r: r["ready"] if "ready" in r else r["receivers_ready"])
per_client = figures("connect.node*.json", lambda r: r["memory"]["bytes_per_client"])
if per_client:
    print(f"| connect, 3 x {connect:,} idle | bytes/client (each node) | | {show(statistics.median(per_client))} (min {show(min(per_client))}, max {show(max(per_client))}) | | | |")
print(f"\nraw results: {out}")
PY
