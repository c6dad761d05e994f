#!/usr/bin/env python3
"""10,000 idle devices with heartbeats: what they cost a switchboard server.

Starts `switchboard serve` with a device listener (register=imei,
heartbeat=hex:FE) pinned to core 0, connects DEVICES fake DTUs from this
process (pinned to core 1), each registering with its own IMEI, then sends
every device's heartbeat once every EVERY seconds, spread evenly, for
DURATION seconds. Prints the server's memory per device and its CPU time
per heartbeat (the server's user+system time over the heartbeat phase,
less that of an idle phase of the same length, divided by the heartbeats).

    bench/devices.py [BINARY]                # target/release/switchboard
    DEVICES=10000 EVERY=30 DURATION=60 bench/devices.py
    PACKET=data bench/devices.py             # a data byte instead, to compare
    TRANSPORT=udp bench/devices.py           # the devices on a udp:// listener
"""

import asyncio
import os
import resource
import socket
import subprocess
import sys
import time

from procfs import cpu_seconds, rss_bytes

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/switchboard"
DEVICES = int(os.environ.get("DEVICES", "10000"))
EVERY = float(os.environ.get("EVERY", "30"))
DURATION = float(os.environ.get("DURATION", "60"))
PORT = int(os.environ.get("PORT", "24900"))
# PACKET=data sends a data byte instead of the heartbeat, for comparison:
# each device is alone in its room (room=dev-{id}), so data reaches nobody.
PACKET = os.environ.get("PACKET", "heartbeat")
# TRANSPORT=udp: the same devices send datagrams to a udp:// listener,
# each from a UDP port of its own.
TRANSPORT = os.environ.get("TRANSPORT", "tcp")


def wait_listening(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server does not listen")


class Datagrams:
    """A device over UDP: its own port, a datagram per packet."""

    def __init__(self, target):
        self.target = target
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)

    def write(self, packet):
        self.socket.sendto(packet, self.target)

    async def drain(self):
        pass

    def close(self):
        self.socket.close()


def count_clients(port):
    """How many clients the server has, from its admin API's stats."""
    import json
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/stats", timeout=5) as answer:
        return json.load(answer)["clients"]["current"]


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {1})
    scheme = "udp" if TRANSPORT == "udp" else "raw"
    listener = (f"{scheme}://127.0.0.1:{PORT}?register=imei&room=dev-{{id}}&heartbeat=hex:FE"
                f"&idle-timeout={int(EVERY * 3)}s")
    # A text listener beside it, to see that the server listens.
    probe = PORT + 1 if TRANSPORT == "udp" else PORT
    server = subprocess.Popen(
        ["taskset", "-c", "0", BINARY, "serve", "--listen", listener,
         "--listen", f"text://127.0.0.1:{PORT + 1}", "--http", f"127.0.0.1:{PORT + 2}",
         "--max-connections", "25000",
         "--max-connections-per-ip", "0", "--max-connections-per-ip-per-second", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        wait_listening(probe)
        # The probe connection above was refused as unregistered after its
        # grace, or left; it does not count.
        await asyncio.sleep(0.5)
        before = rss_bytes(server.pid)
        writers = []
        for i in range(DEVICES):
            imei = f"86{i:013d}".encode()
            if TRANSPORT == "udp":
                writer = Datagrams(("127.0.0.1", PORT))
            else:
                _, writer = await asyncio.open_connection("127.0.0.1", PORT)
            writer.write(imei)
            writers.append(writer)
            if i % 500 == 499:
                await asyncio.gather(*(w.drain() for w in writers[-500:]))
                if TRANSPORT == "udp":
                    # Datagrams in a burst past the socket's buffer are lost.
                    await asyncio.sleep(0.05)
        await asyncio.sleep(2)
        after = rss_bytes(server.pid)
        if server.poll() is not None:
            raise RuntimeError("the server exited")

        idle_start = cpu_seconds(server.pid)
        await asyncio.sleep(DURATION)
        idle_cpu = cpu_seconds(server.pid) - idle_start

        heartbeats = 0
        start = time.monotonic()
        cpu_start = cpu_seconds(server.pid)
        interval = EVERY / DEVICES
        slot = 0
        while True:
            due = start + slot * interval
            if due - start >= DURATION:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            writers[slot % DEVICES].write(b"\xfe" if PACKET == "heartbeat" else b"\x01")
            heartbeats += 1
            slot += 1
        await asyncio.sleep(0.5)
        busy_cpu = cpu_seconds(server.pid) - cpu_start
        alive = len(os.listdir(f"/proc/{server.pid}/fd"))
        clients = count_clients(PORT + 2)
        per_heartbeat_us = max(0.0, busy_cpu - idle_cpu) / heartbeats * 1e6
        print(f"devices:            {DEVICES}")
        print(f"server memory:      {before / 1e6:.1f} MB before, {after / 1e6:.1f} MB with the devices: "
              f"{(after - before) / DEVICES:,.0f} B per device")
        print(f"{PACKET + ' packets:':<20}{heartbeats} in {DURATION:.0f} s (every device every {EVERY:.0f} s: "
              f"{heartbeats / DURATION:,.0f}/s)")
        print(f"server CPU:         {busy_cpu:.2f} s sending, {idle_cpu:.2f} s idle over the same time: "
              f"{per_heartbeat_us:.1f} us per {PACKET}, {100 * busy_cpu / DURATION:.2f}% of a core")
        print(f"server descriptors: {alive} (the devices' connections, if TCP, and a few of its own)")
        print(f"clients:            {clients} (the admin API's count: the devices still there)")
        for writer in writers:
            writer.close()
    finally:
        server.terminate()
        server.wait()


asyncio.run(main())
