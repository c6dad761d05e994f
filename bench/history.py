#!/usr/bin/env python3
"""History and resume, measured: what a kept message costs in memory, how
long a client takes to resume 10,000 messages, and whether clients asking
for history in a loop slow anyone else down.

    cargo build --release
    bench/history.py                         # all four
    bench/history.py --only disk             # one: memory, resume, pest, disk
    bench/history.py --binary PATH

What runs, each against a fresh release server on loopback (pinned to
core 0 when taskset exists; the clients are this script, on core 1):
- memory: 100 rooms x 4,000 messages of 64 bytes said by one client; the
  server's resident memory before and after, and what its accounting
  (memory.history in /api/v1/stats) says, per kept message;
- resume: a JSON client resumes a room of 10,000 kept messages with
  {"type":"join","since":...}; the time from the request to the last
  message, and the messages a second;
- pest: 1,000 JSON clients each looping {"type":"history"} (100 messages)
  and leave/join with "since" on a room of 5,000 kept messages, while a
  probe client in another room pings every 10 ms: its round trips
  (p50, p99, max) with and without the pests, and the server's memory
  (PEST_MODE=history or join: the pests ask only that);
- disk: 10 text clients each say 20,000 lines of 64 bytes in a room of
  their own, as fast as the server takes them: messages a second with
  history in memory only, with --history-dir (commits every 1s) and with
  --history-sync 0 (commit after commit); the store's commits, the last
  commit's time (fsync included) and its file's size; then the time a
  restart takes to read the 200,000 messages back; then a steady room
  (a message a millisecond) committed with --history-sync 0 and 1s: the
  commits and what one costs, fsync included.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SB = os.path.join(ROOT, "target", "release", "switchboard")
MODE = os.environ.get("PEST_MODE", "both")  # both, history, join: what the pests ask


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, *args):
        self.text, self.json, self.http = free_port(), free_port(), free_port()
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        env = dict(os.environ, SWITCHBOARD_MAX_MESSAGES_PER_SECOND="0",
                   SWITCHBOARD_MAX_BYTES_PER_SECOND="0")
        self.proc = subprocess.Popen(
            pin + [binary, "serve", "--listen", f"127.0.0.1:{self.text}",
                   "--listen", f"json://127.0.0.1:{self.json}",
                   "--http", f"127.0.0.1:{self.http}", "--max-connections", "5000",
                   *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.json), 0.2).close()
                self.ready = time.perf_counter()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the server did not start")

    def stats(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/api/v1/stats") as r:
            return json.load(r)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Json:
    """A JSON client."""

    @classmethod
    async def connect(cls, port):
        self = cls()
        self.r, self.w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        await self.next()  # welcome
        return self

    def send(self, obj):
        self.w.write((json.dumps(obj) + "\n").encode())

    async def next(self):
        line = await self.r.readline()
        if not line:
            raise ConnectionError("closed")
        return json.loads(line)

    async def until(self, kind):
        while True:
            event = await self.next()
            if event["type"] == kind:
                return event

    async def skip_until(self, kind):
        """Reads lines until an event of `kind`, without parsing the rest."""
        marker = f'"type":"{kind}"'.encode()
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("closed")
            if line.startswith(b"{" + marker):
                return


async def say_in(port, room, count, size):
    """A text client says `count` lines of `size` bytes in `room`, then
    waits until the server handled them."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await r.readline()
    w.write(f"/join {room}\n".encode())
    body = ("x" * size + "\n").encode()
    for i in range(0, count, 500):
        w.write(body * min(500, count - i))
        await w.drain()
    w.write(b"/ping\n")
    await w.drain()
    while (await r.readline()).strip() != b"* pong":
        pass
    w.close()


async def memory(binary):
    rooms, per_room, size = 100, 4000, 64
    server = Server(binary, "--history", str(per_room), "--history-bytes", "1MiB")
    try:
        await asyncio.sleep(0.5)
        before = rss_kib(server.proc.pid)
        for batch in range(0, rooms, 10):
            await asyncio.gather(*(say_in(server.text, f"r{n}", per_room, size)
                                   for n in range(batch, batch + 10)))
        await asyncio.sleep(1)
        after = rss_kib(server.proc.pid)
        accounted = server.stats()["memory"]["history"]
    finally:
        server.stop()
    kept = rooms * per_room
    print(f"memory: {kept:,} messages of {size} bytes kept in {rooms} rooms")
    print(f"  resident memory {before:,} KiB -> {after:,} KiB: "
          f"{(after - before) * 1024 / kept:.0f} bytes per kept message")
    print(f"  accounted (memory.history): {accounted:,} bytes, "
          f"{accounted / kept:.0f} per message")


async def resume(binary):
    count = 10_000
    server = Server(binary, "--history", str(count), "--history-bytes", "2MiB",
                    "--queue-hard-limit", "8MiB")
    try:
        first = await Json.connect(server.json)
        first.send({"type": "join", "room": "big"})
        await first.until("joined")
        await say_in(server.text, "big", 1, 64)
        since = (await first.until("message"))["offset"]
        await say_in(server.text, "big", count, 64)
        times = []
        for _ in range(5):
            client = await Json.connect(server.json)
            start = time.perf_counter()
            client.send({"type": "join", "room": "big", "since": since})
            got = 0
            while got < count:
                event = await client.next()
                if event["type"] == "message":
                    got += 1
            times.append(time.perf_counter() - start)
            client.w.close()
    finally:
        server.stop()
    best = min(times)
    print(f"resume: {count:,} messages replayed to a JSON client: "
          f"best of 5 {best * 1000:.0f} ms ({count / best:,.0f} messages/s), "
          f"median {sorted(times)[2] * 1000:.0f} ms")


async def disk(binary):
    import tempfile
    clients, each, size = 10, 20_000, 64
    total = clients * each
    keep = ["--history", str(each), "--history-bytes", "4MiB",
            "--queue-hard-limit", "16MiB"]
    for label, extra in [("memory only", []),
                         ("--history-dir", ["--history-sync", "1s"]),
                         ("--history-dir --history-sync 0", ["--history-sync", "0"])]:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as dir:
            store = ["--history-dir", dir] if extra else []
            server = Server(binary, *keep, *store, *extra)
            try:
                start = time.perf_counter()
                await asyncio.gather(*(say_in(server.text, f"r{n}", each, size)
                                       for n in range(clients)))
                took = time.perf_counter() - start
                await asyncio.sleep(1.5)
                stats = server.stats()
            finally:
                server.stop()
            line = f"disk: {label}: {total / took:,.0f} messages/s kept"
            store_stats = stats.get("history_store")
            if store_stats:
                line += (f"; {store_stats['commits']} commits, last "
                         f"{store_stats['last_commit_us'] / 1000:.1f} ms, "
                         f"{store_stats['saved']:,} saved, file "
                         f"{store_stats['bytes'] / 2**20:.1f} MiB "
                         f"({store_stats['bytes'] / total:.0f} bytes/message)")
                started = time.perf_counter()
                again = Server(binary, *keep, *store, *extra)
                restored = again.stats()["memory"]["history"]
                again.stop()
                line += (f"; restart reads it back in "
                         f"{(again.ready - started) * 1000:.0f} ms "
                         f"({restored / 2**20:.1f} MiB of history)")
            print(line)
    # A steady room: a message every millisecond for 3 s, committed as
    # often as it can be (fsync each commit) or once a second.
    for sync in ["0", "1s"]:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as dir:
            server = Server(binary, *keep, "--history-dir", dir, "--history-sync", sync)
            try:
                r, w = await asyncio.open_connection("127.0.0.1", server.text)
                await r.readline()
                body = ("y" * size + "\n").encode()
                sent, end = 0, time.perf_counter() + 3
                while time.perf_counter() < end:
                    w.write(body)
                    await w.drain()
                    sent += 1
                    await asyncio.sleep(0.001)
                w.close()
                await asyncio.sleep(1.5)
                store_stats = server.stats()["history_store"]
            finally:
                server.stop()
            commits = store_stats["commits"]
            print(f"disk: steady, --history-sync {sync}: {sent:,} messages in 3 s, "
                  f"{commits} commits ({sent / max(commits, 1):.1f} messages each), "
                  f"last commit {store_stats['last_commit_us'] / 1000:.2f} ms")


async def probe(port, duration):
    """Pings every 10 ms for `duration` s; returns round trips, in ms."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await r.readline()
    w.write(b"/join quiet\n/ping\n")
    while (await r.readline()).strip() != b"* pong":
        pass
    rtts = []
    end = time.time() + duration
    while time.time() < end:
        start = time.perf_counter()
        w.write(b"/ping\n")
        await w.drain()
        while (await r.readline()).strip() != b"* pong":
            pass
        rtts.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(0.01)
    w.close()
    return sorted(rtts)


def figures(rtts):
    return (f"p50 {rtts[len(rtts) // 2]:.2f} ms, p99 {rtts[int(len(rtts) * 0.99)]:.2f} ms, "
            f"max {rtts[-1]:.2f} ms ({len(rtts)} pings)")


async def pest(binary):
    pests, kept = 1000, 5000
    server = Server(binary, "--history", str(kept), "--history-bytes", "1MiB")
    try:
        await say_in(server.text, "big", kept, 64)
        quiet = await probe(server.text, 5)
        clients = []
        for _ in range(pests):
            clients.append(await Json.connect(server.json))
        for client in clients:
            client.send({"type": "join", "room": "big"})
        for client in clients:
            await client.until("joined")
        since = None
        stop = asyncio.Event()
        asked = [0]

        async def loop(client, i):
            nonlocal since
            while not stop.is_set():
                if (i % 2) if MODE == "both" else MODE == "history":
                    client.send({"type": "history", "room": "big", "limit": 100})
                    await client.skip_until("history")
                else:
                    client.send({"type": "leave", "room": "big"})
                    client.send({"type": "join", "room": "big",
                                 "since": since or "0000000000000000-1"})
                    await client.skip_until("joined")
                asked[0] += 1

        # The probe in a process of its own: this one is busy with the
        # pests. Started before this one lowers its priority, so that on the
        # clients' core the probe's pings are not held up behind the pests
        # (which would measure this script, not the server).
        prober = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--probe", str(server.text), "10",
            stdout=asyncio.subprocess.PIPE)
        os.setpriority(os.PRIO_PROCESS, 0, 10)
        tasks = [asyncio.create_task(loop(c, i)) for i, c in enumerate(clients)]
        start = time.time()
        busy = json.loads((await prober.communicate())[0])
        stop.set()
        rate = asked[0] / (time.time() - start)
        rss = rss_kib(server.proc.pid)
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        server.stop()
    asking = {"both": "history (100) and join since", "history": "history (100)",
              "join": "join since"}[MODE]
    print(f"pest: {pests} JSON clients looping {asking} on "
          f"a room of {kept:,} kept messages, {rate:,.0f} requests/s")
    print(f"  a ping in another room, quiet: {figures(quiet)}")
    print(f"  the same, with the pests:      {figures(busy)}")
    print(f"  server resident memory with the pests: {rss / 1024:.0f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=SB)
    parser.add_argument("--only", choices=["memory", "resume", "pest", "disk"])
    parser.add_argument("--probe", nargs=2, metavar=("PORT", "SECONDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(asyncio.run(probe(int(args.probe[0]), float(args.probe[1])))))
        return
    for name, run in [("memory", memory), ("resume", resume), ("pest", pest),
                      ("disk", disk)]:
        if args.only in (None, name):
            asyncio.run(run(args.binary))


if __name__ == "__main__":
    sys.exit(main())
