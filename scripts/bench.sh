#!/usr/bin/env bash
# Prints keyward's benchmark table: release binary sizes and cold starts against a Python +
# boto3 baseline. Builds the release binaries first (slow on 2 cores: full LTO).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYWARD_ROOT"
ensure_python_tools
ensure_bench_tools
log "building release binaries"
# Three builds, so that no crate's features reach another's binaries: the functions as they ship
# (the workspace's default members, as SAM builds them), the harness (bench, local stack, the
# scan tool) with the CLI it times, and the bare reference, which turns on the SDK's default
# HTTPS client.
cargo build --release --bins --locked
cargo build --release -p keyward-integration -p keyward-cli --bins --locked
cargo build --release -p bare-reference --locked
exec "$CARGO_TARGET_DIR/release/keyward-bench" "$@"
