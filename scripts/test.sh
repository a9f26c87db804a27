#!/usr/bin/env bash
# Runs every check keyward has, on a fresh machine too: installs what is missing (project
# virtualenv with pinned moto/cfn-lint/cargo-lambda, PostgreSQL server binaries), then layering, format,
# lint, build, unit + integration tests (against moto and a real PostgreSQL on loopback), the
# local-stack scenario, the cargo-lambda smoke path and the SAM template lint.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYWARD_ROOT"
ensure_all

log "layering (cargo metadata)"
"$KEYWARD_ROOT/scripts/check-layering.sh"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building the function binaries (the local stack and its test run them)"
cargo build --workspace --bins --locked

log "unit and integration tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

# Bounded, so a hang fails the run with its output instead of eating CI's time limit.
log "local stack scenario"
timeout --kill-after=10 900 "$CARGO_TARGET_DIR/debug/local-stack"

log "smoke: the real binaries under cargo lambda"
timeout --kill-after=10 300 "$KEYWARD_ROOT/scripts/smoke.sh"

log "SAM template lint"
"$KEYWARD_ROOT/scripts/lint-template.sh"

log "all checks passed"
