#!/usr/bin/env bash
# The local stack: every keyward function working together on loopback against moto (and the
# fakes of third-party services), driven by the rules in infra/template.yaml. Installs what is
# missing on a fresh machine, builds, runs the scenario and prints the timeline.
# Extra arguments go to the local-stack binary (e.g. --manifest path/to/manifest).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYWARD_ROOT"
ensure_all
log "building the workspace"
cargo build --workspace --bins --locked
exec "$CARGO_TARGET_DIR/debug/local-stack" "$@"
