#!/usr/bin/env python3
"""What an idle UDP client costs the server: PEERS raw UDP peers (by
default 100,000), each a socket of its own that sends one empty datagram
(which makes it a client and says nothing) and then nothing.

Starts `switchboard serve` with one `udp://` listener, then processes of
peers (a process holds at most about 20,000 sockets here: PER_WORKER,
16,000, each process from an address of its own, 127.0.N.1). Reads the
server's resident memory (VmRSS) before, once every peer is a client, and
again after SETTLE seconds (the work of their arrival given back to the
system), and prints it per peer.

    bench/udp_idle.py [BINARY]          # target/release/switchboard
    PEERS=10000 bench/udp_idle.py       # fewer
"""

import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request

from procfs import rss_bytes

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/switchboard"
PEERS = int(os.environ.get("PEERS", "100000"))
PER_WORKER = int(os.environ.get("PER_WORKER", "16000"))
SETTLE = float(os.environ.get("SETTLE", "15"))
PORT = int(os.environ.get("PORT", "25950"))
HTTP = f"127.0.0.1:{PORT + 1}"


def clients():
    with urllib.request.urlopen(f"http://{HTTP}/api/v1/stats", timeout=10) as answer:
        return json.load(answer)["clients"]["current"]


def worker(index, count):
    """One process's peers: each sends its empty datagram, then all wait
    (their sockets open) until told to go."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    peers = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.{index + 1}.1", 0))
        s.sendto(b"", ("127.0.0.1", PORT))
        peers.append(s)
        if i % 500 == 499:
            time.sleep(0.05)  # a burst past the server's socket buffer is lost
    print("sent", flush=True)
    sys.stdin.readline()


def wait_for(what, check, timeout):
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.2)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        return worker(int(sys.argv[2]), int(sys.argv[3]))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = subprocess.Popen(
        [BINARY, "serve", "--max-connections", str(PEERS + 1000), "--http", HTTP,
         "--listen", f"udp://127.0.0.1:{PORT}?max-unproven={PEERS}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        wait_for("the server", lambda: _up(), 10)
        time.sleep(1)
        before = rss_bytes(server.pid)
        left, index = PEERS, 0
        while left > 0:
            count = min(left, PER_WORKER)
            workers.append(subprocess.Popen(
                [sys.executable, __file__, "--worker", str(index), str(count)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            left, index = left - count, index + 1
        for w in workers:
            w.stdout.readline()
        wait_for(f"{PEERS} clients", lambda: clients() >= PEERS, 60)
        joined = rss_bytes(server.pid)
        time.sleep(SETTLE)
        settled = rss_bytes(server.pid)
        now = clients()
        print(f"{BINARY}: {now} idle UDP peers")
        print(f"server memory: {before / 1e6:.1f} MB before, {settled / 1e6:.1f} MB with them")
        print(f"per peer: {(joined - before) / PEERS:,.0f} B as they joined, "
              f"settled: {(settled - before) / PEERS:,.0f} B")
    finally:
        for w in workers:
            w.stdin.close()
            w.wait()
        server.terminate()
        server.wait()


def _up():
    try:
        clients()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
