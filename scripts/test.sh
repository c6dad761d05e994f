#!/usr/bin/env bash
# The README's test command: installs what the tests need and is missing
# (Debian packages: redis-server, chromium, chromium-driver, iproute2,
# openssl), then runs `cargo test`. Arguments go to cargo test:
#
#   scripts/test.sh                         # everything
#   scripts/test.sh --test integration tls::   # one file's stories
#
# .ci/run calls it after the format, lint and doc checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each command the tests run, and the Debian package that has it.
needed=(
    "redis-server redis-server"      # tests/integration/cluster.rs: real Redis nodes
    "redis-cli redis-server"
    "chromium chromium"              # tests/integration/console.rs: the console in headless Chromium
    "chromedriver chromium-driver"
    "ip iproute2"                    # tests/integration/dead_peers.rs: a network namespace (and ss, same package)
    "openssl openssl"                # tests/integration/tls.rs: openssl s_client
    "sh dash"                        # the tests run the binary under sh (ulimit, kill)
)
packages=()
for pair in "${needed[@]}"; do
    read -r command package <<<"$pair"
    if ! command -v "$command" >/dev/null 2>&1 && [[ " ${packages[*]} " != *" $package "* ]]; then
        packages+=("$package")
    fi
done
if [ ${#packages[@]} -gt 0 ]; then
    echo "== installing what the tests need: ${packages[*]}"
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${packages[@]}" >/dev/null
fi

echo "== cargo test $*"
exec cargo test --locked "$@"
