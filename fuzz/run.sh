#!/usr/bin/env bash
# Fuzzes switchboard's decoders, text encoder and names with cargo-fuzz
# (libFuzzer), one target after the other, on one core.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
#   fuzz/run.sh                  every target, 300 s each (default)
#   fuzz/run.sh 60 names         one target for a minute
#
# Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz --locked
#
# CI does not run this (.ci/run does not fuzz): run it by hand, e.g. after
# changing src/protocol or src/hub/names.rs. Each target grows its corpus in
# fuzz/corpus/TARGET (kept in git: minimise it with
# `cargo +nightly fuzz cmin TARGET` when it gets large); a crash is saved in
# fuzz/artifacts/TARGET/ (ignored by git) and can be replayed with
# `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...`.
# Exits non-zero if any target crashed (or failed to run).
set -uo pipefail
cd "$(dirname "$0")/.."

ALL_TARGETS=(line_decoder text_decoder json_decoder raw_decoder device_decoder text_encoder names)

seconds=${1:-300}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    echo "targets: ${ALL_TARGETS[*]}" >&2
    exit 2
fi
shift $(($# > 0 ? 1 : 0))
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=("${ALL_TARGETS[@]}")
fi
for target in "${targets[@]}"; do
    if [[ ! -f fuzz/fuzz_targets/$target.rs ]]; then
        echo "no such target: $target (targets: ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done

# Longest input libFuzzer tries: past the server's default line cap
# (64 KiB) for what reads lines; names and patterns are short.
max_len() {
    case $1 in
        names) echo 1024 ;;
        *) echo 70000 ;;
    esac
}

# Build once, up front, so a build error stops everything.
if ! cargo +nightly fuzz build; then
    echo "fuzz build failed" >&2
    exit 1
fi

declare -A outcome
failed=0
for target in "${targets[@]}"; do
    corpus=fuzz/corpus/$target
    artifacts=fuzz/artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    before=$(ls -1 "$artifacts" | sort)
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" \
        -max_len="$(max_len "$target")" \
        -rss_limit_mb=2048 \
        -timeout=10 \
        -print_final_stats=1
    status=$?
    new=$(comm -13 <(echo "$before") <(ls -1 "$artifacts" | sort) | grep -v '^$')
    if [[ -n $new ]]; then
        outcome[$target]="CRASH: $(echo "$new" | sed "s|^|$artifacts/|" | tr '\n' ' ')"
        failed=1
    elif ((status != 0)); then
        outcome[$target]="FAILED (exit $status, no artifact)"
        failed=1
    else
        outcome[$target]="ok"
    fi
done

echo
echo "== summary (${seconds}s per target)"
printf '%-14s %8s %10s  %s\n' target inputs size result
for target in "${targets[@]}"; do
    corpus=fuzz/corpus/$target
    count=$(find "$corpus" -type f | wc -l)
    size=$(du -sh --apparent-size "$corpus" | cut -f1)
    printf '%-14s %8s %10s  %s\n' "$target" "$count" "$size" "${outcome[$target]}"
done
exit "$failed"
