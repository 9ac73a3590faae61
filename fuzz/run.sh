#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer on stable Rust (coverage through LLVM's
# sanitizer-coverage pass, no sanitizer) and runs each for a bounded time over a copy
# of its committed seed corpus. Exits non-zero on the first crash, leaving the
# reproducer in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [seconds-per-target] [target...]      (default: 20 s, every target)
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH="${1:-20}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(xdr_types procedures frame tcp_decoder udp_packet udp_endpoint idl_text idl_grammar proto)
fi

TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
# The flags `cargo fuzz build --sanitizer none` passes, all of them stable.
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing"
# `--target` keeps the flags off build scripts and proc-macros, as cargo-fuzz does.
cargo build --release --target "$TRIPLE" $(printf -- '--bin %s ' "${TARGETS[@]}")

for t in "${TARGETS[@]}"; do
    work="work/$t"
    mkdir -p "$work" "artifacts/$t"
    if [ -d "corpus/$t" ]; then
        cp -n corpus/"$t"/* "$work"/ 2>/dev/null || true
    fi
    printf '\n==> fuzz %s for %s s\n' "$t" "$SECONDS_EACH"
    "target/$TRIPLE/release/$t" "$work" \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>&1 \
        | grep -E '^(#[0-9]+[[:space:]]+DONE|Done|stat::|==|SUMMARY|.*(panicked|ERROR|deadly|crash|leak|timeout))' || true
    if ls "artifacts/$t"/* >/dev/null 2>&1; then
        echo "error: fuzz target $t crashed; reproducer(s): $(ls artifacts/"$t"/)" >&2
        exit 1
    fi
done
