# Shared helpers for keyward's scripts. Sourced, never executed.
# Everything a fresh machine needs is installed from the package registries here, idempotently.
set -euo pipefail

KEYWARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KEYWARD_ROOT
export KEYWARD_VENV="${KEYWARD_VENV:-$KEYWARD_ROOT/.venv}"
# One target dir for every crate, script and tool (cargo-lambda included).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KEYWARD_ROOT/target}"
export PATH="$KEYWARD_VENV/bin:$PATH"

# Pinned Python tools. cfn-lint 1.51 still runs the SAM translator, so it rejects a bad
# Runtime/Architectures that 1.58's schema-only SAM check lets through (see ARCHITECTURE.md).
PY_REQUIREMENTS=(
  "moto[server]==5.2.5"
  "cfn-lint==1.51.5"
  "boto3==1.44.5"
  "cargo-lambda==1.9.2"
)

log() { printf '\033[1;34m[keyward]\033[0m %s\n' "$*" >&2; }

ensure_python_tools() {
  local stamp="$KEYWARD_VENV/.keyward-requirements"
  local wanted
  wanted="$(printf '%s\n' "${PY_REQUIREMENTS[@]}")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    return 0
  fi
  log "installing pinned Python tools into $KEYWARD_VENV"
  if [[ ! -x "$KEYWARD_VENV/bin/python" ]]; then
    python3 -m venv "$KEYWARD_VENV"
  fi
  "$KEYWARD_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$KEYWARD_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
  printf '%s\n' "$wanted" > "$stamp"
}

# PostgreSQL server binaries (initdb, postgres, pg_ctl) for the rotation tests' throwaway cluster.
ensure_postgres() {
  if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    return 0
  fi
  log "installing PostgreSQL server binaries (Debian package 'postgresql')"
  local sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
}

# libdeflate-gunzip, the decompression yardstick of the CloudTrail log-file benchmark. Optional:
# the benchmark prints "not installed" without it.
ensure_bench_tools() {
  command -v libdeflate-gunzip >/dev/null 2>&1 && return 0
  log "installing libdeflate-tools (Debian) for the log-file benchmark"
  local sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libdeflate-tools >/dev/null; } \
    || log "libdeflate-tools not installed; that benchmark row will be skipped"
}

ensure_rust_components() {
  for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
      log "adding rustup component $component"
      rustup component add "$component"
    fi
  done
  if ! command -v cargo-nextest >/dev/null 2>&1; then
    log "cargo-nextest not found; tests will run with plain cargo test"
  fi
}

ensure_all() {
  ensure_python_tools
  ensure_postgres
  ensure_rust_components
}
