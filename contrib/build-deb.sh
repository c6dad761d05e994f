#!/usr/bin/env bash
# Builds the .deb in target/debian/: the binary, the systemd unit, the
# example config, man pages and shell completions (made by running the
# binary: `switchboard manpage`, `switchboard completions SHELL`).
#
#   contrib/build-deb.sh           from a release build: the package to ship
#   contrib/build-deb.sh --debug   from the debug binary `cargo test` already
#                                  built (built only if there is none): checks
#                                  the packaging without a second compile;
#                                  what CI does
#
# Needs cargo-deb: cargo install cargo-deb --locked
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
    "") profile=release; cargo build --release --locked ;;
    # `cargo build` would build every dependency again: without the tests'
    # dev-dependencies, tokio and what depends on it have other features
    # (4 minutes of a cold CI run).
    --debug) profile=dev; [ -x target/debug/switchboard ] || cargo build --locked ;;
    *) echo "usage: $0 [--debug]" >&2; exit 2 ;;
esac
bin_dir=target/$([ "$profile" = dev ] && echo debug || echo release)
bin=$bin_dir/switchboard

# Generated files go to target/assets/, where Cargo.toml's deb assets expect them.
assets=target/assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$bin" manpage --out-dir "$assets/man"
gzip -9n "$assets"/man/*.1
"$bin" completions bash > "$assets/completions/switchboard.bash"
"$bin" completions zsh > "$assets/completions/_switchboard"
"$bin" completions fish > "$assets/completions/switchboard.fish"

# --no-build: the binary above is the one packaged (cargo deb would otherwise
# build again); --profile tells it which target/ directory holds it (cargo-deb
# warns about packaging a dev build: fine for checking the packaging, not for
# shipping). It strips the binary either way.
cargo deb --no-build --locked --profile "$profile"
