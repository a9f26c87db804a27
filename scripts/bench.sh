#!/usr/bin/env bash
# Prints keyward's benchmark table: release binary sizes and cold starts against a Python +
# boto3 baseline. Builds the release binaries first (slow on 2 cores: full LTO).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYWARD_ROOT"
ensure_python_tools
ensure_bench_tools
log "building release binaries"
# The bare reference is built alone: it turns on the SDK's default HTTPS client, and built with
# the functions that feature would be unified into their SDK crates, and their binaries.
cargo build --release --workspace --exclude bare-reference --bins --locked
cargo build --release -p bare-reference --locked
exec "$CARGO_TARGET_DIR/release/keyward-bench" "$@"
