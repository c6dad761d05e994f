#!/usr/bin/env python3
"""A fleet of idle devices on one server, over UDP, TCP and TLS: what it
costs, and how long a command to all of them takes.

Starts `switchboard serve` pinned to core 0 with three device listeners
(`register=imei&room=fleet&heartbeat=hex:FE`): `udp://`, `raw://` and
`raw+tls://` (a self-signed certificate). Then, transport by transport
as MIX says, processes of devices on core 1 (a process holds at most
about 20,000 sockets here, so at most 16,000 devices each), each device
on a socket of its own, registering with its own IMEI; the server's
memory is read after each transport's devices are in, and again after an
idle phase of DURATION seconds (settled: the work of their arrival given
back to the system). Then every device
sends its heartbeat once every EVERY seconds, spread evenly, for DURATION
seconds; then a terminal says one command in the fleet's room, and each
process reports when each of its devices had it.

Prints the server's memory per device of each transport, its CPU per
heartbeat (its CPU time over the heartbeat phase less an idle phase of
the same length), and the time until every device had the command, with
how many did.

    bench/fleet.py [BINARY]                      # target/release/switchboard
    MIX=udp=100000 bench/fleet.py                # the default: 7 processes of devices
    MIX=udp=80500,tcp=10000,tls=9500 bench/fleet.py   # what bench/fleet.sh runs

The server holds one socket per TCP or TLS device and one for all UDP
devices: TCP and TLS together stay under the file limit (20,000 here).
"""

import json
import os
import resource
import select
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

from procfs import cpu_seconds, rss_bytes

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/switchboard"
# Devices of each transport, in the order they connect.
MIX = [(t, int(n)) for t, n in (part.split("=") for part in
                                 os.environ.get("MIX", "udp=100000").split(","))]
DEVICES = sum(n for _, n in MIX)
# A process holds at most about 20,000 files here: 16,000 devices each.
PER_WORKER = int(os.environ.get("PER_WORKER", "16000"))
EVERY = float(os.environ.get("EVERY", "30"))
DURATION = float(os.environ.get("DURATION", "30"))
PORT = int(os.environ.get("PORT", "25900"))
COMMAND = b"REBOOT"


def clients(http):
    with urllib.request.urlopen(f"http://{http}/api/v1/stats", timeout=10) as answer:
        return json.load(answer)["clients"]["current"]


# Where each transport's devices go.
PORTS = {"udp": PORT, "tcp": PORT + 3, "tls": PORT + 4}


def device(transport, index, imei, tls):
    """One device, registered: a socket of its own, sending its IMEI."""
    # An address of its own per process: one holds ~28,000 ports.
    source = (f"127.0.{index + 1}.1", 0)
    target = ("127.0.0.1", PORTS[transport])
    if transport == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(source)
        s.sendto(imei, target)
    else:
        s = socket.create_connection(target, source_address=source)
        if transport == "tls":
            s = tls.wrap_socket(s)
        s.sendall(imei)
    s.setblocking(False)
    return s


def send(s, transport, data):
    """One heartbeat; a datagram or a write that cannot go now is lost."""
    try:
        if transport == "udp":
            s.sendto(data, ("127.0.0.1", PORTS[transport]))
        else:
            s.send(data)
    except (BlockingIOError, ssl.SSLWantWriteError):
        pass


def worker(transport, index, count, first):
    """One process's devices: register, heartbeat when told, then report
    when each heard the command. Talks to the main process on stdio."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    poll = select.epoll()
    sockets = {}
    for i in range(count):
        s = device(transport, index, f"86{first + i:013d}".encode(), tls)
        sockets[s.fileno()] = s
        poll.register(s.fileno(), select.EPOLLIN)
        if i % 500 == 499:
            time.sleep(0.05)  # a burst past the server's socket buffer is lost
    print("registered", flush=True)
    devices = list(sockets.values())
    heard = {}
    for line in sys.stdin:
        command = line.split()
        if command[0] == "heartbeats":
            start, every, duration = float(command[1]), float(command[2]), float(command[3])
            interval = every / count
            slot = 0
            while True:
                due = start + slot * interval
                if due - start >= duration:
                    break
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                send(devices[slot % count], transport, b"\xfe")
                slot += 1
            print(f"sent {slot}", flush=True)
        elif command[0] == "listen":
            deadline = time.time() + float(command[1])
            while len(heard) < count and time.time() < deadline:
                for fd, _ in poll.poll(0.1):
                    s = sockets[fd]
                    while True:
                        try:
                            data = s.recv(2048)
                        except (BlockingIOError, ssl.SSLWantReadError):
                            break
                        if not data:
                            break
                        if COMMAND in data and fd not in heard:
                            heard[fd] = time.time()
            last = max(heard.values()) if heard else 0
            print(f"heard {len(heard)} {last:.6f}", flush=True)
        elif command[0] == "quit":
            return


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Long enough for the slowest registrations (9,500 TLS handshakes from
    # one process) to wait for the heartbeats: a device timed out before
    # its first one is reset, and its worker fails.
    idle = max(int(EVERY * 3 + DURATION * 4), 900)
    options = f"register=imei&room=fleet&heartbeat=hex:FE&idle-timeout={idle}s"
    http = f"127.0.0.1:{PORT + 2}"
    server = subprocess.Popen(
        ["taskset", "-c", "0", BINARY, "serve",
         "--listen", f"udp://127.0.0.1:{PORTS['udp']}?{options}&max-unproven={DEVICES}",
         "--listen", f"raw://127.0.0.1:{PORTS['tcp']}?{options}",
         "--listen", f"raw+tls://127.0.0.1:{PORTS['tls']}?{options}", "--tls-self-signed",
         "--listen", f"text://127.0.0.1:{PORT + 1}", "--http", http,
         "--max-connections", str(DEVICES + 100), "--max-connections-per-ip", "0",
         "--max-connections-per-ip-per-second", "0", "--max-memory", "8GiB"],
        stdout=subprocess.DEVNULL,
        # SERVER_LOG=FILE keeps the server's warnings.
        stderr=open(os.environ["SERVER_LOG"], "w") if "SERVER_LOG" in os.environ else subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    workers = []
    try:
        for _ in range(100):
            try:
                clients(http)
                break
            except OSError:
                time.sleep(0.1)
        before = rss_bytes(server.pid)
        started = time.time()
        # Transport by transport, the server's memory after each.
        costs, total, first, rss = [], 0, 0, before
        for transport, count in MIX:
            group = []
            for start in range(0, count, PER_WORKER):
                n = min(PER_WORKER, count - start)
                group.append(subprocess.Popen(
                    ["taskset", "-c", "1", sys.executable, __file__, "--worker",
                     transport, str(len(workers) + len(group)), str(n), str(first)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                ))
                first += n
            for w in group:
                assert w.stdout.readline().strip() == "registered"
            workers.extend(group)
            total += count
            while clients(http) < total and time.time() - started < 300:
                time.sleep(0.5)
            time.sleep(2)
            now = rss_bytes(server.pid)
            costs.append((transport, count, (now - rss) / count))
            rss = now
        registered = clients(http)
        after = rss

        idle_start = cpu_seconds(server.pid)
        time.sleep(DURATION)
        idle_cpu = cpu_seconds(server.pid) - idle_start
        # What the fleet holds once the work of its arrival (each new UDP
        # peer's first task, the registrations) is given back: the
        # allocator returns freed pages over some seconds, so the reading
        # 2 s after each group counts some of that work too.
        settled = rss_bytes(server.pid)

        cpu_start = cpu_seconds(server.pid)
        start = time.time() + 0.5
        for w in workers:
            w.stdin.write(f"heartbeats {start} {EVERY} {DURATION}\n")
        heartbeats = sum(int(w.stdout.readline().split()[1]) for w in workers)
        time.sleep(0.5)
        busy_cpu = cpu_seconds(server.pid) - cpu_start

        for w in workers:
            w.stdin.write("listen 60\n")
        time.sleep(0.5)
        terminal = socket.create_connection(("127.0.0.1", PORT + 1))
        terminal.recv(4096)
        terminal.sendall(b"/join fleet\n")
        time.sleep(0.5)
        sent = time.time()
        terminal.sendall(COMMAND + b"\n")
        results = [w.stdout.readline().split() for w in workers]
        heard = sum(int(r[1]) for r in results)
        last = max(float(r[2]) for r in results)
        memory = rss_bytes(server.pid)
        per_heartbeat_us = max(0.0, busy_cpu - idle_cpu) / max(heartbeats, 1) * 1e6
        print(f"devices:             {total} ({', '.join(f'{t} {n}' for t, n in MIX)}) "
              f"from {len(workers)} processes; {registered} registered")
        print(f"server memory:       {before / 1e6:.1f} MB before, {after / 1e6:.1f} MB with the devices: "
              f"{(after - before) / max(registered, 1):,.0f} B per device; "
              + ", ".join(f"{t} {per:,.0f} B" for t, _, per in costs))
        print(f"settled:             {settled / 1e6:.1f} MB after {DURATION:.0f} s idle: "
              f"{(settled - before) / max(registered, 1):,.0f} B per device")
        print(f"heartbeats:          {heartbeats} in {DURATION:.0f} s ({heartbeats / DURATION:,.0f}/s)")
        print(f"server CPU:          {busy_cpu:.2f} s with heartbeats, {idle_cpu:.2f} s idle over the same time: "
              f"{per_heartbeat_us:.1f} us per heartbeat, {100 * busy_cpu / DURATION:.1f}% of a core")
        print(f"one command to all:  {heard} of {registered} had it, the last {1000 * (last - sent):,.0f} ms "
              f"after it was said; server memory then {memory / 1e6:.1f} MB")
    finally:
        for w in workers:
            try:
                w.stdin.write("quit\n")
                w.stdin.close()
            except OSError:
                pass
            w.wait(timeout=30)
        server.terminate()
        server.wait()


main()
