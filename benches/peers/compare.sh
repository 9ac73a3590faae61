#!/usr/bin/env bash
# Runs our latency tool and the peers tool (tonic, tarpc) back to back, then prints the
# issue's ratios (our p50 / tonic p50 and / tarpc p50 at 32 B, 1 in flight; our calls/s /
# tarpc calls/s at 32 in flight) with `compare`.
#
#   benches/peers/compare.sh                 # 32 B, 1 and 32 in flight, 20000 calls per case
#   benches/peers/compare.sh --quick         # a smoke run: 1000 calls per case
#   SIZES=32,4096,65536 benches/peers/compare.sh   # the peers' full size matrix too
#
# Outputs in target/compare/: ours.json, peers.json, *.svg (compare.svg: ours and theirs in
# one plot). The peers crate builds into benches/peers/target (its own workspace) unless
# CARGO_TARGET_DIR is set; the first build takes a few minutes on 2 cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

iterations=20000
if [ "${1:-}" = "--quick" ]; then
    iterations=1000
    shift
fi
sizes="${SIZES:-32}"
inflight="${INFLIGHT:-1,32}"
out=target/compare
mkdir -p "$out"
peers=(--manifest-path benches/peers/Cargo.toml)

echo "==> building (release)" >&2
cargo build --release -q -p benches --bin latency
cargo build --release -q "${peers[@]}" --bins

echo "==> ours: cargo run --release -p benches --bin latency" >&2
cargo run --release -q -p benches --bin latency -- \
    --sizes "$sizes" --inflight "$inflight" --only raw,rpc --busy-poll off \
    --iterations "$iterations" --json "$out/ours.json" --svg "$out/ours.svg" "$@"

echo "==> theirs: cargo run --release --manifest-path benches/peers/Cargo.toml --bin peers" >&2
cargo run --release -q "${peers[@]}" --bin peers -- \
    --sizes "$sizes" --inflight "$inflight" \
    --iterations "$iterations" --json "$out/peers.json" --svg "$out/peers.svg"

echo "==> ratios" >&2
n="${inflight##*,}"
cargo run --release -q "${peers[@]}" --bin compare -- \
    "$out/ours.json" "$out/peers.json" --inflight "$n" --svg "$out/compare.svg"
