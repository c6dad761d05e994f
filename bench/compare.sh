#!/usr/bin/env bash
# switchboard side by side with ncat --broker, nats-server and redis-server.
#
# Installs the peers from Debian packages if missing, starts each relay on
# loopback pinned to core 0, runs `switchboard bench` pinned to core 1 (the
# same scenarios, RUNS times each), and writes the medians as a Markdown
# table into docs/performance.md (between the results markers) and
# bench/results/latest.md, with the raw JSON reports in bench/results/.
#
#   bench/compare.sh                 # everything, 3 runs each
#   RUNS=1 DURATION=3s bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
RESULTS=bench/results
SERVER_CORE=${SERVER_CORE:-0}
BENCH_CORE=${BENCH_CORE:-1}
SB=target/release/switchboard

need() { command -v "$1" >/dev/null 2>&1; }
if ! need ncat || ! need nats-server || ! need redis-server || ! need taskset; then
    echo "== installing ncat, nats-server, redis-server"
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq ncat nats-server redis-server util-linux >/dev/null
fi
echo "== building switchboard (release)"
cargo build --release --quiet
# The relay is measured flat out, as ncat, NATS and Redis are: no rate
# limits (set in the environment, which older binaries ignore).
export SWITCHBOARD_MAX_MESSAGES_PER_SECOND=${SWITCHBOARD_MAX_MESSAGES_PER_SECOND:-0}
export SWITCHBOARD_MAX_BYTES_PER_SECOND=${SWITCHBOARD_MAX_BYTES_PER_SECOND:-0}
# Servers and the bench hold many sockets: take the whole file limit.
ulimit -n "$(ulimit -Hn)"

rm -rf "$RESULTS"; mkdir -p "$RESULTS"
PORT=23450
SERVER_PID=

start() { # start NAME: the relay NAME on $PORT, pinned to the server core
    local name=$1
    case $name in
        switchboard) taskset -c "$SERVER_CORE" "$SB" serve --listen "127.0.0.1:$PORT" --max-connections 25000 >"$RESULTS/$name.log" 2>&1 & ;;
        # Browser-protocol clients: the bench speaks to the --http listener's /ws.
        # (The TCP listener it must have takes any free port: a fixed one
        # can be an ephemeral port a client of an earlier run holds.)
        switchboard-ws) taskset -c "$SERVER_CORE" "$SB" serve --listen "127.0.0.1:0" --http "127.0.0.1:$PORT" \
            --max-connections 25000 >"$RESULTS/$name.log" 2>&1 & ;;
        ncat) taskset -c "$SERVER_CORE" ncat --broker --max-conns 25000 -l 127.0.0.1 "$PORT" >"$RESULTS/$name.log" 2>&1 & ;;
        nats) taskset -c "$SERVER_CORE" nats-server -a 127.0.0.1 -p "$PORT" >"$RESULTS/$name.log" 2>&1 & ;;
        redis) taskset -c "$SERVER_CORE" redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no --maxclients 25000 >"$RESULTS/$name.log" 2>&1 & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$name did not start; see $RESULTS/$name.log" >&2
    return 1
}

stop() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    PORT=$((PORT + 1)) # no waiting for TIME_WAIT on the old port
}

protocol_of() {
    case $1 in switchboard) echo text ;; switchboard-ws) echo ws ;; ncat) echo line ;; nats) echo nats ;; redis) echo redis ;; esac
}

bench() { # bench NAME LABEL ARGS...: one run, JSON into results (a failed run leaves an error file)
    local name=$1 label=$2; shift 2
    local out="$RESULTS/$label.$name.$run.json"
    if ! timeout 600 taskset -c "$BENCH_CORE" "$SB" bench "$@" --protocol "$(protocol_of "$name")" \
        --addr "127.0.0.1:$PORT" --json >"$out" 2>"$out.err"; then
        echo "   $label on $name failed: $(tail -n 1 "$out.err")"
        rm -f "$out"
    fi
}

SYSTEMS=(switchboard switchboard-ws ncat nats redis)
for run in $(seq "$RUNS"); do
    for name in "${SYSTEMS[@]}"; do
        echo "== run $run of $RUNS: $name"
        # Every scenario on a fresh relay: one's backlog (or crash) must not
        # weigh on the next.
        start "$name"
        bench "$name" fanout-100 fanout --clients 100 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        stop
        start "$name"
        bench "$name" fanout-1000 fanout --clients 1000 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        stop
        start "$name"
        bench "$name" chat-50 chat --clients 50 --rate 100 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        stop
        for clients in 1000 10000; do
            start "$name"
            bench "$name" "connect-$clients" connect --clients "$clients" --duration 3s --server-pid "$SERVER_PID"
            stop
        done
    done
done

# As many clients as the file limit allows, in one switchboard process. The
# bench itself cannot hold that many sockets in one process, so two share them.
echo "== switchboard: clients up to the file limit"
LIMIT=$(ulimit -Hn)
MAX=$((LIMIT - 100))
start switchboard
for half in 1 2; do
    timeout 600 taskset -c "$BENCH_CORE" "$SB" bench connect --clients $((MAX / 2)) --duration 20s \
        --addr "127.0.0.1:$PORT" --json >"$RESULTS/filelimit.$half.json" 2>"$RESULTS/filelimit.$half.err" &
done
sleep 15
grep VmRSS "/proc/$SERVER_PID/status" | awk '{print $2}' >"$RESULTS/filelimit.rss_kib"
ls "/proc/$SERVER_PID/fd" | wc -l >"$RESULTS/filelimit.fds"
wait %2 %3 2>/dev/null || wait
stop
echo "$LIMIT" >"$RESULTS/filelimit.limit"

# The machine, for the record.
{
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
    echo "kernel: $(uname -r)"
    echo "switchboard: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "ncat: $(ncat --version 2>&1 | head -n1)"
    echo "nats-server: $(nats-server --version 2>&1 | head -n1)"
    echo "redis-server: $(redis-server --version 2>&1 | head -n1)"
    echo "date: $(date -u +%Y-%m-%d)"
} >"$RESULTS/machine.txt"

python3 bench/summarize.py "$RESULTS" "$RUNS" "$DURATION" "$WARMUP" >"$RESULTS/latest.md"
python3 - "$RESULTS/latest.md" docs/performance.md <<'PY'
import sys, re
table = open(sys.argv[1]).read()
doc_path = sys.argv[2]
doc = open(doc_path).read()
start, end = "<!-- results:start -->", "<!-- results:end -->"
if start in doc and end in doc:
    doc = doc.split(start)[0] + start + "\n" + table + end + doc.split(end, 1)[1]
    open(doc_path, "w").write(doc)
    print(f"== results written to {doc_path}")
else:
    print(f"== {doc_path} has no results markers; the table is in {sys.argv[1]}")
PY
cat "$RESULTS/latest.md"
