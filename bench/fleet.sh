#!/usr/bin/env bash
# 100,000 idle devices on one server, mixed as a fleet is: 80,500 over UDP,
# 10,000 over TCP and 9,500 over TLS (the server holds a socket for each
# TCP and TLS device: they stay under the 20,000 open files a process may
# hold here). Heartbeats every EVERY seconds, then one command to the
# fleet's room: the server's memory per device of each transport, its CPU
# per heartbeat, and the time until every device had the command.
#
#   bench/fleet.sh [BINARY]                    # target/release/switchboard
#   MIX=udp=60000,tcp=10000,tls=9500 EVERY=30 DURATION=30 bench/fleet.sh
#
# bench/fleet.py does the work; see it for what each phase measures.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
export MIX=${MIX:-udp=80500,tcp=10000,tls=9500}
exec python3 bench/fleet.py "$@"
