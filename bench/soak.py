#!/usr/bin/env python3
"""Soak run: a switchboard server under steady chat load, with hostile and
unlucky clients around it, for a long time. Reports the server's memory over
time (it must be flat after warm-up), the chat's latency percentiles and
losses (from `switchboard bench chat`), and who was cut off and why.

    cargo build --release
    bench/soak.py                      # 10 minutes
    bench/soak.py --duration 60        # a quick look

What runs, all against one release server on loopback:
- chat: `switchboard bench chat`, 23 clients x 100 msg/s in #chat, each
  hearing the 22 others: 50,600 deliveries/s, latency and loss measured;
- churn: clients that connect, join #chat, say a line and quit, 20 a second;
- slow readers: 3 clients in #chat reading 1 KB/s (the room talks at about
  230 KB/s): cut off at the slow timeout, then they come back;
- stalled readers: 3 clients in #chat that never read: cut off at the stall
  timeout, then they come back;
- a flooder: sends 1 KB lines as fast as it can into #flood, where one
  reader keeps up and one reads 1 KB/s;
- a pest: loops /rooms, /who and /nick in the lobby.
"""

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SB = os.path.join(ROOT, "target", "release", "switchboard")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def connect(port):
    return await asyncio.open_connection("127.0.0.1", port)


async def churn(port, stop, stats):
    while not stop.is_set():
        try:
            r, w = await connect(port)
            w.write(b"/join chat\nchurning by\n/quit\n")
            await w.drain()
            await r.read()  # until the server's bye and close
            w.close()
            stats["churned"] += 1
        except OSError:
            stats["churn_errors"] += 1
        await asyncio.sleep(0.05)


async def reader(port, stop, stats, room, pace, name):
    """A client in `room` reading `pace` bytes a second (None: as fast as it
    can); comes back when cut off."""
    while not stop.is_set():
        try:
            r, w = await connect(port)
            w.write(f"/join {room}\n".encode())
            await w.drain()
            while not stop.is_set():
                chunk = await r.read(pace // 10 if pace else 1 << 16)
                if not chunk:
                    break
                if pace:
                    await asyncio.sleep(0.1)
            w.close()
            stats[f"{name}_sessions"] += 1
        except OSError:
            stats[f"{name}_errors"] += 1
        if not stop.is_set():
            await asyncio.sleep(0.2)


async def stalled(port, stop, stats):
    """Joins #chat and never reads: the stall timeout cuts it off; again."""
    while not stop.is_set():
        try:
            _, w = await connect(port)
            w.write(b"/join chat\n")
            await w.drain()
            sock = w.get_extra_info("socket")
            # Never read; look at the TCP state until the server has closed
            # its side (the state leaves ESTABLISHED).
            while not stop.is_set():
                await asyncio.sleep(0.5)
                if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0] != 1:
                    break
            w.close()
            stats["stalled_sessions"] += 1
        except OSError:
            stats["stalled_errors"] += 1


async def flooder(port, stop, stats):
    while not stop.is_set():
        try:
            r, w = await connect(port)
            w.write(b"/join flood\n")
            line = b"f" * 1023 + b"\n"
            drain_answers = asyncio.ensure_future(r.read(-1))
            while not stop.is_set():
                w.write(line * 64)
                await w.drain()
                stats["flooded_kb"] += 64
            drain_answers.cancel()
            w.close()
        except OSError:
            stats["flooder_errors"] += 1
            await asyncio.sleep(0.5)


async def pest(port, stop, stats):
    while not stop.is_set():
        try:
            r, w = await connect(port)
            i = 0
            while not stop.is_set():
                w.write(f"/rooms\n/who chat\n/rooms c*\n/nick pest{i % 2}\n/ping\n".encode())
                await w.drain()
                while True:
                    line = await r.readline()
                    if not line:
                        raise OSError("closed")
                    if line == b"* pong\n":
                        break
                stats["pest_rounds"] += 1
                i += 1
                await asyncio.sleep(0.01)
        except OSError:
            stats["pest_errors"] += 1
            await asyncio.sleep(0.5)


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=600, help="seconds of load (default 600)")
    ap.add_argument("--port", type=int, default=23499)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "soak.json"))
    args = ap.parse_args()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)

    log_path = os.path.join(os.path.dirname(args.out), "soak-server.log")
    log = open(log_path, "w")
    server = subprocess.Popen(
        ["taskset", "-c", "0", SB, "serve", "--listen", f"127.0.0.1:{args.port}"],
        stderr=log, stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            r, w = await connect(args.port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.1)

    stop = asyncio.Event()
    stats = {k: 0 for k in [
        "churned", "churn_errors", "slow_sessions", "slow_errors", "fast_sessions", "fast_errors",
        "stalled_sessions", "stalled_errors", "flooded_kb", "flooder_errors", "pest_rounds",
        "pest_errors", "floodslow_sessions", "floodslow_errors"]}
    bench = await asyncio.create_subprocess_exec(
        "taskset", "-c", "1", SB, "bench", "chat", "--clients", "23", "--rate", "100",
        "--room", "chat", "--duration", f"{args.duration}s", "--warmup", "10s",
        "--addr", f"127.0.0.1:{args.port}", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    tasks = [asyncio.ensure_future(churn(args.port, stop, stats))]
    tasks += [asyncio.ensure_future(reader(args.port, stop, stats, "chat", 1024, "slow")) for _ in range(3)]
    tasks += [asyncio.ensure_future(stalled(args.port, stop, stats)) for _ in range(3)]
    tasks += [asyncio.ensure_future(flooder(args.port, stop, stats))]
    tasks += [asyncio.ensure_future(reader(args.port, stop, stats, "flood", None, "fast"))]
    tasks += [asyncio.ensure_future(reader(args.port, stop, stats, "flood", 1024, "floodslow"))]
    tasks += [asyncio.ensure_future(pest(args.port, stop, stats))]

    samples = []
    started = time.monotonic()
    bench_done = asyncio.ensure_future(bench.communicate())
    while not bench_done.done():
        await asyncio.wait([bench_done], timeout=10)
        samples.append((round(time.monotonic() - started), rss_kib(server.pid)))
        print(f"{samples[-1][0]:5d} s  server RSS {samples[-1][1] / 1024:7.1f} MiB  {dict(stats)}", flush=True)
    out, err = bench_done.result()
    stop.set()
    await asyncio.sleep(1)
    for t in tasks:
        t.cancel()
    server.terminate()
    server.wait(timeout=30)
    log.close()

    try:
        report = json.loads(out)
    except ValueError:
        print("bench failed:", err.decode(), file=sys.stderr)
        report = None
    reasons = {}
    with open(log_path) as f:
        for line in f:
            if "client disconnected" in line:
                m = re.search(r"reason=(.*)$", line)
                reason = (m.group(1) if m else "?").split(":")[0].strip('"')
                reasons[reason] = reasons.get(reason, 0) + 1
    result = {"duration_s": args.duration, "rss_kib": samples, "stats": stats,
              "disconnects": reasons, "chat": report}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "rss_kib"}, indent=1))
    print(f"written to {args.out}; server log in {log_path}")


if __name__ == "__main__":
    asyncio.run(main())
