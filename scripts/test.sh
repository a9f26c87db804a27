#!/usr/bin/env bash
# Runs every check keyward has, on a fresh machine too: installs what is missing (scripts/lib.sh),
# then layering, format, lint, build, unit + integration tests (against moto and a real
# PostgreSQL on loopback), the local-stack scenario, the cargo-lambda smoke path, the static
# gates (template lint, checkov, workflow lint, secret scan) and the release check (sam build of
# the arm64 artifacts, run under qemu).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYWARD_ROOT"
ensure_all

log "layering (cargo metadata)"
"$KEYWARD_ROOT/scripts/check-layering.sh"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The workspace build unifies the domain crate's features across crates: a function using an
# adapter it did not turn on would compile there and fail when built alone.
log "each function crate alone, with only the domain-crate features it declares"
for manifest in functions/*/Cargo.toml; do
  cargo check --locked --quiet -p "$(basename "$(dirname "$manifest")")"
done

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

log "checkov: template and Terraform module"
"$KEYWARD_ROOT/scripts/checkov.sh"

log "workflows: actionlint and zizmor"
"$KEYWARD_ROOT/scripts/lint-workflows.sh"

log "secret scan against .secrets.baseline"
"$KEYWARD_ROOT/scripts/secret-scan.sh"

# Last: the longest step, on what ships (sam build reuses CARGO_TARGET_DIR across runs).
log "release check: sam build, the arm64 bootstraps under qemu"
"$KEYWARD_ROOT/scripts/release-check.sh"

log "all checks passed"
