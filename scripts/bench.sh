#!/usr/bin/env bash
# Prints keyward's benchmark table: release binary sizes and cold starts against a Python +
# boto3 baseline. Builds the release binaries first (slow on 2 cores: full LTO).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYWARD_ROOT"
ensure_python_tools
ensure_bench_tools
log "building release binaries"
cargo build --release --workspace --bins --locked
cargo build --release -p keyward-integration --bin keyward-bench --locked
exec "$CARGO_TARGET_DIR/release/keyward-bench" "$@"
