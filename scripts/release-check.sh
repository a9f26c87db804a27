#!/usr/bin/env bash
# Release check: the artifacts that ship are the artifacts that are tested.
#
# 1. `sam build` of infra/template.yaml (arm64, provided.al2023) with the pinned SAM CLI: one
#    `cargo lambda build --release --arm64 --bin <Binary>` per function, run at the workspace
#    root, so every function resolves the workspace's one feature set and the dependencies
#    compile once into CARGO_TARGET_DIR (aarch64-unknown-linux-gnu/release), warmed by one
#    build of all of them (below).
# 2. Each .aws-sam/build/<Function>/bootstrap: an aarch64 ELF for Linux's arm64 loader, within
#    the size budget, needing no glibc newer than provided.al2023's 2.34.
# 3. The bootstraps run under qemu-aarch64-static through the local Lambda Runtime API: the
#    smoke path (scripts/smoke.sh: audit-writer with its sample events in events/audit-writer/)
#    and the local-stack scenario (every function, its events routed by the template's rules).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYWARD_ROOT"
ensure_python_tools
ensure_sam
ensure_qemu
ensure_arm64_target

# The size target: every bootstrap under 6 MiB (the largest, the forwarder's, is about 5.8). A
# function that grows past it has pulled in something it should not, lost the release profile,
# or had another crate's features unified into it (see `default-members`).
MAX_BOOTSTRAP_BYTES=$((6 * 1024 * 1024))
# provided.al2023's glibc.
GLIBC_CEILING="2.34"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Function logical id -> binary name, from the source template (the build dirs are named by id).
python3 - "$work/functions" <<'PY'
import sys, yaml

class Loader(yaml.SafeLoader):
    pass

# CloudFormation's short-form intrinsics (!Ref, !Sub, ...) are opaque here.
Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
template = yaml.load(open("infra/template.yaml"), Loader=Loader)
with open(sys.argv[1], "w") as out:
    for name, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            out.write(f"{name} {resource['Metadata']['BuildProperties']['Binary']}\n")
PY

# sam build runs one `cargo lambda build --release --arm64 --bin <Binary>` per function, one
# after another, each ending in a single-threaded LTO link. The same build of every function in
# one cargo invocation first lets cargo link two at a time; sam build's own invocations then
# find every unit fresh (same command, same fingerprints) and only copy the bootstraps.
mapfile -t binaries < <(awk '{print $2}' "$work/functions")
bin_args=()
for binary in "${binaries[@]}"; do bin_args+=(--bin "$binary"); done
start=$SECONDS
cargo lambda build --release --arm64 --locked "${bin_args[@]}"
log "cargo lambda build of ${#binaries[@]} functions took $((SECONDS - start)) s"

# SAM CLI sends usage telemetry unless told not to; CI has no route to it anyway.
export SAM_CLI_TELEMETRY=0
log "sam build ($("$KEYWARD_SAM_VENV/bin/sam" --version))"
start=$SECONDS
"$KEYWARD_SAM_VENV/bin/sam" build --no-cached
log "sam build took $((SECONDS - start)) s"

mkdir -p "$work/bin"
failures=()
printf '%-26s %-18s %10s %8s\n' FUNCTION BINARY BYTES GLIBC >&2
while read -r function binary; do
  bootstrap="$KEYWARD_ROOT/.aws-sam/build/$function/bootstrap"
  if [[ ! -f "$bootstrap" ]]; then
    failures+=("$function: no bootstrap at $bootstrap")
    continue
  fi
  header="$(readelf -h "$bootstrap")"
  grep -q 'Class:[[:space:]]*ELF64' <<<"$header" || failures+=("$function: not a 64-bit ELF")
  grep -q 'Machine:[[:space:]]*AArch64' <<<"$header" || failures+=("$function: not an AArch64 binary")
  readelf -l "$bootstrap" | grep -q 'interpreter: /lib/ld-linux-aarch64.so.1' \
    || failures+=("$function: not loaded by /lib/ld-linux-aarch64.so.1")
  bytes="$(stat -c %s "$bootstrap")"
  (( bytes <= MAX_BOOTSTRAP_BYTES )) || failures+=("$function: $bytes bytes, over the $MAX_BOOTSTRAP_BYTES budget")
  # The newest glibc symbol version the binary needs is the oldest glibc it runs on.
  glibc="$(readelf -V --wide "$bootstrap" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)"
  if [[ -z "$glibc" ]]; then
    failures+=("$function: needs no glibc version at all (not the cargo-lambda build?)")
  elif [[ "$(printf '%s\n%s\n' "$glibc" "$GLIBC_CEILING" | sort -V | tail -n 1)" != "$GLIBC_CEILING" ]]; then
    failures+=("$function: needs glibc $glibc, newer than provided.al2023's $GLIBC_CEILING")
  fi
  printf '%-26s %-18s %10s %8s\n' "$function" "$binary" "$bytes" "$glibc" >&2
  # What the local Runtime API harness starts for this function: the shipped bootstrap, run
  # by qemu with an arm64 glibc as its sysroot.
  cat > "$work/bin/$binary" <<EOF
#!/bin/sh
exec $(command -v qemu-aarch64-static) -L $KEYWARD_ARM64_SYSROOT $bootstrap "\$@"
EOF
  chmod +x "$work/bin/$binary"
done < "$work/functions"
if (( ${#failures[@]} > 0 )); then
  printf 'release check: %s\n' "${failures[@]}" >&2
  exit 1
fi
log "every bootstrap: aarch64 ELF, at most $MAX_BOOTSTRAP_BYTES bytes, glibc <= $GLIBC_CEILING"

log "smoke: the arm64 audit-writer under qemu with events/audit-writer/"
KEYWARD_SMOKE_BINARY="$work/bin/audit-writer" timeout --kill-after=10 600 "$KEYWARD_ROOT/scripts/smoke.sh"

log "local stack scenario on the arm64 bootstraps under qemu"
local_stack="$CARGO_TARGET_DIR/debug/local-stack"
if [[ ! -x "$local_stack" ]]; then
  cargo build --locked -p keyward-integration --bin local-stack
fi
timeout --kill-after=10 1200 "$local_stack" --bin-dir "$work/bin"
log "release check passed"
