#!/usr/bin/env python3
"""The playground in use: PORTS ports, each with a client sending RATE
messages a second and a page watching it; what that costs the server, and
the relay's chat p99 beside it.

Starts `switchboard serve --playground` pinned to core 0, with a text
listener for the chat bench. First `switchboard bench chat` alone (the
baseline); then this script, on core 1, opens PORTS ports through the
playground's API, a live feed (a WebSocket, as the page opens) on each,
and a TCP client on each sending "reading N" lines at RATE a second;
once they run, it reads the server's CPU over DURATION seconds and its
memory, runs the chat bench again beside them, and counts what the feeds
showed.

    bench/playground.py [BINARY]                 # target/release/switchboard
    PORTS=500 RATE=10 DURATION=10 bench/playground.py

Prints the server's memory and CPU per port in use, the chat bench's p50
and p99 without and with the playground busy, and how many of the
messages the clients sent the pages were shown.
"""

import base64
import json
import os
import resource
import select
import socket
import subprocess
import sys
import time
import urllib.request

from procfs import cpu_seconds, rss_bytes

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/switchboard"
PORTS = int(os.environ.get("PORTS", "500"))
RATE = float(os.environ.get("RATE", "10"))
DURATION = float(os.environ.get("DURATION", "10"))
BASE = int(os.environ.get("PORT", "26900"))
RANGE = (31000, 31999)


def api(http, method, path, cookie=None, body=None):
    request = urllib.request.Request(f"http://{http}{path}", method=method)
    request.add_header("Content-Type", "application/json")
    if cookie:
        request.add_header("Cookie", cookie)
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(request, data=data, timeout=10) as answer:
        return answer.headers.get("Set-Cookie"), json.load(answer)


def live_feed(http, port, cookie):
    """A WebSocket to the port's live feed, as the page opens it."""
    host, number = http.split(":")
    s = socket.create_connection((host, int(number)))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /play/api/ports/{port}/live HTTP/1.1\r\nHost: {http}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    s.setblocking(False)
    return s, head.split(b"\r\n\r\n", 1)[1]


def frames(buffer):
    """Whole frames in `buffer` (server to client: not masked); the rest."""
    out = []
    while len(buffer) >= 2:
        length, at = buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                break
            length, at = int.from_bytes(buffer[2:4], "big"), 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length, at = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < at + length:
            break
        out.append((buffer[0] & 0x0F, buffer[at:at + length]))
        buffer = buffer[at + length:]
    return out, buffer


def chat(http_text, server_pid):
    out = subprocess.run(
        ["taskset", "-c", "1", BINARY, "bench", "chat", "--clients", "50", "--rate", "100",
         "--size", "64", "--duration", f"{int(DURATION)}s", "--warmup", "2s",
         "--addr", http_text, "--server-pid", str(server_pid), "--json"],
        capture_output=True, text=True, timeout=300)
    result = json.loads(out.stdout)
    latency = result.get("latency_us") or result.get("latency") or {}
    return latency.get("p50"), latency.get("p99")


def main():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    text, http = f"127.0.0.1:{BASE}", f"127.0.0.1:{BASE + 1}"
    server = subprocess.Popen(
        ["taskset", "-c", "0", BINARY, "serve", "--listen", f"text://{text}", "--http", http,
         "--playground", "--playground-ports", f"{RANGE[0]}-{RANGE[1]}",
         "--playground-max-ports-per-ip", str(PORTS), "--max-connections", "5000",
         "--max-connections-per-ip", "0", "--max-connections-per-ip-per-second", "0",
         "--max-messages-per-second", "0", "--max-bytes-per-second", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"})
    sockets = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{http}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        base_p50, base_p99 = chat(text, server.pid)
        before = rss_bytes(server.pid)

        cookie, ports = None, []
        for _ in range(PORTS):
            set_cookie, view = api(http, "POST", "/play/api/ports", cookie, {"mode": "text"})
            cookie = cookie or set_cookie.split(";")[0]
            ports.append(view["port"])
        feeds, buffers = {}, {}
        for port in ports:
            ws, rest = live_feed(http, port, cookie)
            feeds[ws.fileno()] = ws
            buffers[ws.fileno()] = rest
        clients = [socket.create_connection(("127.0.0.1", port)) for port in ports]
        sockets = list(feeds.values()) + clients
        poll = select.epoll()
        for fd in feeds:
            poll.register(fd, select.EPOLLIN)

        shown = sent = 0
        def drain(timeout):
            nonlocal shown
            for fd, _ in poll.poll(timeout):
                try:
                    data = feeds[fd].recv(1 << 16)
                except BlockingIOError:
                    continue
                got, buffers[fd] = frames(buffers[fd] + data)
                for opcode, payload in got:
                    if opcode == 1 and payload.startswith(b'{"type":"traffic"'):
                        shown += len(json.loads(payload)["items"])

        def run(seconds):
            nonlocal sent
            interval = 1.0 / (RATE * len(clients))
            start, slot = time.time(), 0
            while time.time() - start < seconds:
                due = start + slot * interval
                wait = due - time.time()
                if wait > 0:
                    drain(min(wait, 0.05))
                    continue
                clients[slot % len(clients)].sendall(f"reading {slot}\n".encode())
                sent += 1
                slot += 1
            return start

        run(3)  # warm up: every page watching, every client sending
        during = rss_bytes(server.pid)
        cpu0 = cpu_seconds(server.pid)
        run(DURATION)
        cpu = cpu_seconds(server.pid) - cpu0
        # The chat bench beside it (the load keeps going from a thread).
        import threading
        stop = threading.Event()
        def keep_going():
            while not stop.is_set():
                run(1)
        loader = threading.Thread(target=keep_going)
        loader.start()
        busy_p50, busy_p99 = chat(text, server.pid)
        stop.set()
        loader.join()
        end = time.time() + 2
        while time.time() < end:
            drain(0.1)

        print(f"ports in use:        {len(ports)}, each with a client sending {RATE:g} msg/s and a page watching")
        print(f"server memory:       {before / 1e6:.1f} MB before, {during / 1e6:.1f} MB with them: "
              f"{(during - before) / len(ports):,.0f} B per port")
        print(f"server CPU:          {cpu:.2f} s in {DURATION:g} s ({100 * cpu / DURATION:.1f}% of a core): "
              f"{1e6 * cpu / DURATION / len(ports):,.0f} us a second per port, "
              f"{1e6 * cpu / (DURATION * RATE * len(ports)):.1f} us per message")
        print(f"pages shown:         {shown:,} of {sent:,} messages sent")
        print(f"chat p50 / p99:      {base_p50} / {base_p99} us alone; {busy_p50} / {busy_p99} us beside the playground")
    finally:
        for s in sockets:
            s.close()
        server.terminate()
        server.wait()


main()
