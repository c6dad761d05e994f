#!/usr/bin/env python3
"""A stand-in for one web console: opens /api/v1/live on a switchboard HTTP
listener, watches a room, and reads (and drops) everything it is sent, as
the page would. Standard library only.

    bench/console_watcher.py 127.0.0.1:8080 lobby
"""
import base64, json, os, socket, struct, sys

def frame(text: bytes) -> bytes:
    mask = os.urandom(4)
    head = bytes([0x81])
    n = len(text)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text))

def main():
    addr, room = sys.argv[1], sys.argv[2]
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /api/v1/live HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            sys.exit("the server closed the connection during the handshake")
        head += chunk
    status = head.split(b"\r\n")[0]
    if b" 101 " not in status:
        sys.exit(f"no upgrade: {status!r}")
    sock.sendall(frame(json.dumps({"type": "watch", "room": room}).encode()))
    while sock.recv(1 << 16):
        pass

if __name__ == "__main__":
    main()
