#!/usr/bin/env python3
"""Medians of bench/compare.sh's JSON reports, as a Markdown table.

usage: summarize.py RESULTS_DIR RUNS DURATION WARMUP
"""
import glob
import json
import os
import statistics
import sys

results, runs, duration, warmup = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
SYSTEMS = ["switchboard", "switchboard-ws", "ncat", "nats", "redis"]
TITLES = {
    "switchboard": "switchboard",
    "switchboard-ws": "switchboard /ws",
    "ncat": "ncat --broker",
    "nats": "nats-server",
    "redis": "redis-server",
}
# switchboard's own WebSocket clients are not among the peers it is compared with.
PEERS = ["ncat", "nats", "redis"]


def reports(label, system):
    out = []
    for path in sorted(glob.glob(f"{results}/{label}.{system}.*.json")):
        with open(path) as f:
            out.append(json.load(f))
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rate(n):
    if n is None:
        return None
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.0f}k"
    return f"{n:.0f}"


def cell(label, system, figure, fmt):
    rs = reports(label, system)
    if not rs:
        return "failed", None
    value = median([figure(r) for r in rs])
    text = fmt(value) if value is not None else "n/a"
    notes = []
    if len(rs) < runs:
        notes.append(f"{runs - len(rs)} of {runs} runs failed")
    heard = [r.get("heard_room") for r in rs if r.get("heard_room") is not None]
    if heard and min(heard) < rs[0]["clients"]:
        notes.append(f"only {min(heard)} of {rs[0]['clients']} receivers heard")
    lost = sum(r.get("lost", 0) for r in rs)
    if lost:
        notes.append(f"{lost:,} lost")
    if notes:
        text += " (" + "; ".join(notes) + ")"
    return text, value


def row(scenario, figure_name, label, figure, fmt, better, target):
    cells, values = [], {}
    for system in SYSTEMS:
        text, value = cell(label, system, figure, fmt)
        cells.append(text)
        values[system] = value
    ours = values["switchboard"]
    others = [v for s, v in values.items() if s in PEERS and v is not None]
    ratio = ""
    if ours is not None and others:
        best = max(others) if better == "higher" else min(others)
        if best:
            ratio = f"{ours / best:.2f}×"
    return f"| {scenario} | {figure_name} | " + " | ".join(cells) + f" | {ratio} | {target} |"


def us(v):
    return f"{v:,.0f} µs"


def per_client(v):
    return f"{v:,.0f} B"


lines = []
machine = open(f"{results}/machine.txt").read().strip().splitlines()
lines.append("Measured on " + "; ".join(machine) + ".")
lines.append("")
lines.append(
    f"Command: `RUNS={runs} DURATION={duration} WARMUP={warmup} bench/compare.sh`. "
    f"Each figure is the median of {runs} runs; relays on core 0, the bench on core 1."
)
lines.append("")
header = "| scenario | figure | " + " | ".join(TITLES[s] for s in SYSTEMS) + " | switchboard ÷ best other | target |"
lines.append(header)
lines.append("|" + "---|" * (len(SYSTEMS) + 4))
lines.append(row("fanout, 100 receivers, 64 B", "deliveries/s", "fanout-100",
                 lambda r: r["deliveries_per_s"], rate, "higher", "≥ 1.2×"))
lines.append(row("fanout, 1,000 receivers, 64 B", "deliveries/s", "fanout-1000",
                 lambda r: r["deliveries_per_s"], rate, "higher", "≥ 1.0×"))
for name, key, target in [("p50", "p50", ""), ("p99", "p99", "≤ 0.5×"), ("p99.9", "p999", "")]:
    lines.append(row("chat, 50 clients × 100 msg/s, 64 B", f"latency {name}", "chat-50",
                     lambda r, key=key: (r.get("latency_us") or {}).get(key), us, "lower", target))
lines.append(row("connect, 1,000 idle clients", "server memory per client", "connect-1000",
                 lambda r: (r.get("memory") or {}).get("bytes_per_client"), per_client, "lower", ""))
lines.append(row("connect, 10,000 idle clients", "server memory per client", "connect-10000",
                 lambda r: (r.get("memory") or {}).get("bytes_per_client"), per_client, "lower", "≤ 2,048 B, ≤ at 1,000"))
lines.append("")

# Browser-protocol clients against switchboard's own TCP text clients.
def med(label, system, figure):
    return median([figure(r) for r in reports(label, system)])
ws_parts = []
for label, title in [("fanout-100", "fanout to 100"), ("fanout-1000", "fanout to 1,000")]:
    tcp = med(label, "switchboard", lambda r: r["deliveries_per_s"])
    ws = med(label, "switchboard-ws", lambda r: r["deliveries_per_s"])
    if tcp and ws:
        ws_parts.append(f"{title} {ws / tcp:.2f}× the TCP text clients' (target ≥ 0.5×)")
mem = med("connect-10000", "switchboard-ws", lambda r: (r.get("memory") or {}).get("bytes_per_client"))
if mem:
    ws_parts.append(f"{mem:,.0f} B of server memory per idle WebSocket client at 10,000 (target ≤ 8,192 B)")
if ws_parts:
    lines.append("WebSocket (`/ws`) clients: " + "; ".join(ws_parts) + ".")
    lines.append("")

# Loss, duplication and reordering over every run.
totals = []
for system in SYSTEMS:
    rs = [r for label in ["fanout-100", "fanout-1000", "chat-50"] for r in reports(label, system)]
    lost = sum(r.get("lost", 0) for r in rs)
    dup = sum(r.get("duplicated", 0) for r in rs)
    reo = sum(r.get("reordered", 0) for r in rs)
    gar = sum(r.get("garbled", 0) for r in rs)
    delivered = sum(r.get("delivered", 0) for r in rs)
    totals.append(f"{TITLES[system]}: {delivered:,} delivered, {lost:,} lost, {dup:,} duplicated, "
                  f"{reo:,} reordered, {gar:,} garbled")
lines.append("Over all fanout and chat runs: " + "; ".join(totals) + ".")
lines.append("")

# The file-limit run.
try:
    halves = [json.load(open(f"{results}/filelimit.{i}.json")) for i in (1, 2)]
    held = sum(h["clients"] for h in halves)
    heard = sum(h.get("heard_broadcast") or 0 for h in halves)
    rss = int(open(f"{results}/filelimit.rss_kib").read().strip())
    fds = int(open(f"{results}/filelimit.fds").read().strip())
    limit = open(f"{results}/filelimit.limit").read().strip()
    lines.append(
        f"File limit: one switchboard process held {held:,} clients ({fds:,} open files of a limit of "
        f"{limit}); {heard:,} of them heard a broadcast sent to all; server RSS {rss / 1024:,.1f} MiB."
    )
except (OSError, ValueError, KeyError) as error:
    lines.append(f"File limit: the run failed ({error}); see {results}/filelimit.*.err.")
lines.append("")
print("\n".join(lines))
