#!/usr/bin/env bash
# Two switchboard binaries, A and B, measured alternately in one run: the
# way to tell whether a change costs the hot path on a machine whose
# absolute figures drift by a third within an hour.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY         # 3 alternating runs each
#   RUNS=5 DURATION=10s bench/ab.sh A B
#   ONLY='fanout-*' bench/ab.sh A B           # some scenarios only
#   PROTOCOL=ws bench/ab.sh A B               # the clients over /ws, or wss, or tls
#
# Each run starts a fresh server pinned to core 0 and runs the bench pinned
# to core 1: fanout to 100 and to 1,000 receivers (deliveries/s), chat of 50
# clients x 100 msg/s (latency p99), and 10,000 idle clients (server memory
# per client). Prints the median of each figure for A and B and B's change.
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: bench/ab.sh A_BINARY B_BINARY}
B=${2:?usage: bench/ab.sh A_BINARY B_BINARY}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
OUT=${OUT:-bench/results/ab}
BENCH=${BENCH:-$B}
# The relay is measured flat out, as ncat, NATS and Redis are: no rate
# limits (set in the environment, which older binaries ignore).
export SWITCHBOARD_MAX_MESSAGES_PER_SECOND=${SWITCHBOARD_MAX_MESSAGES_PER_SECOND:-0}
export SWITCHBOARD_MAX_BYTES_PER_SECOND=${SWITCHBOARD_MAX_BYTES_PER_SECOND:-0}
ulimit -n "$(ulimit -Hn)"
rm -rf "$OUT"; mkdir -p "$OUT"
PORT=24450

run() { # run LABEL BINARY SCENARIO-NAME ARGS...
    local label=$1 bin=$2 name=$3; shift 3
    # ONLY=connect-10000 (a scenario name, or a pattern): just those.
    # shellcheck disable=SC2053
    [[ -z ${ONLY:-} || $name == $ONLY ]] || return 0
    # PROTOCOL=ws: the bench's clients are /ws clients of the HTTP
    # listener; PROTOCOL=wss: the same over HTTPS (self-signed);
    # PROTOCOL=tls: tls:// clients of a self-signed listener.
    local serve=(--listen "127.0.0.1:$PORT") client=() addr=$PORT
    case ${PROTOCOL:-text} in
        ws) serve+=(--http "127.0.0.1:$((PORT + 500))"); client=(--protocol ws); addr=$((PORT + 500)) ;;
        tls) serve=(--tls-self-signed --listen "tls://127.0.0.1:$PORT"); client=(--insecure) ;;
        wss) serve+=(--tls-self-signed --http "https://127.0.0.1:$((PORT + 500))"); client=(--protocol ws --insecure); addr=$((PORT + 500)) ;;
        text) ;;
        *) echo "PROTOCOL is text, ws, wss or tls" >&2; exit 2 ;;
    esac
    # A port another process holds (a server left behind by an
    # interrupted run) would have the bench measure that process instead.
    if (exec 3<>"/dev/tcp/127.0.0.1/$addr") 2>/dev/null; then
        echo "   $name on $label: port $addr is taken by another process (a server left by an interrupted run?): not measured" >&2
        PORT=$((PORT + 1))
        return 0
    fi
    taskset -c 0 "$bin" serve "${serve[@]}" --max-connections 25000 >"$OUT/server.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$addr") 2>/dev/null && break
        sleep 0.1
    done
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "   $name on $label: the server did not start: $(tail -1 "$OUT/server.log")" >&2
        PORT=$((PORT + 1))
        return 0
    fi
    timeout 300 taskset -c 1 "$BENCH" bench "$@" "${client[@]}" --addr "127.0.0.1:$addr" --server-pid "$pid" --json \
        >"$OUT/$name.$label.$run.json" 2>"$OUT/$name.$label.$run.err" || echo "   $name on $label failed"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PORT=$((PORT + 1))
}

for run in $(seq "$RUNS"); do
    # Which goes first alternates: on a shared VM the first of a pair is
    # measured faster often enough to bias medians by several percent.
    order="A B"; [ $((run % 2)) -eq 0 ] && order="B A"
    for label in $order; do
        bin=$A; [ "$label" = B ] && bin=$B
        echo "== run $run of $RUNS: $label ($bin)"
        run "$label" "$bin" fanout-100 fanout --clients 100 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        run "$label" "$bin" fanout-1000 fanout --clients 1000 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        run "$label" "$bin" chat-50 chat --clients 50 --rate 100 --size 64 --duration "$DURATION" --warmup "$WARMUP"
        run "$label" "$bin" connect-10000 connect --clients 10000 --duration 3s
    done
done

python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys, glob, os
out, runs = sys.argv[1], int(sys.argv[2])
def figures(name, label, pick):
    vals = []
    for path in sorted(glob.glob(os.path.join(out, f"{name}.{label}.*.json"))):
        try:
            vals.append(pick(json.load(open(path))))
        except (ValueError, KeyError, TypeError):
            pass
    return vals
rows = [
    ("fanout, 100 receivers", "fanout-100", "deliveries/s", lambda r: r["deliveries_per_s"], True),
    ("fanout, 1,000 receivers", "fanout-1000", "deliveries/s", lambda r: r["deliveries_per_s"], True),
    ("chat, 50 x 100 msg/s", "chat-50", "p50 µs", lambda r: r["latency_us"]["p50"], False),
    ("chat, 50 x 100 msg/s", "chat-50", "p99 µs", lambda r: r["latency_us"]["p99"], False),
    ("connect, 10,000 idle", "connect-10000", "bytes/client", lambda r: r["memory"]["bytes_per_client"], False),
]
print(f"| scenario | figure | A (median of {runs}) | B (median of {runs}) | B vs A |")
print("|---|---|---|---|---|")
for title, name, unit, pick, higher_better in rows:
    a, b = figures(name, "A", pick), figures(name, "B", pick)
    if not a or not b:
        print(f"| {title} | {unit} | {a} | {b} | n/a |")
        continue
    ma, mb = statistics.median(a), statistics.median(b)
    change = (mb - ma) / ma * 100
    fmt = (lambda v: f"{v/1e6:.2f}M") if unit == "deliveries/s" else (lambda v: f"{v:,.0f}")
    print(f"| {title} | {unit} | {fmt(ma)} | {fmt(mb)} | {change:+.1f}% |")
PY
