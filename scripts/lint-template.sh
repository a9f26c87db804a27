#!/usr/bin/env bash
# Lint the SAM template with the pinned cfn-lint, then prove the lint step can fail.
#
# cfn-lint exits with a bitmask: 2 = errors, 4 = warnings, 8 = informational.
# infra/template.yaml must exit 0: no checks are ignored (no --ignore-checks); fix the
# template instead. If a check ever has to be ignored, ignore it here by ID, with the reason.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_python_tools
cd "$KEYWARD_ROOT"

TEMPLATE="infra/template.yaml"
KNOWN_BAD="infra/lint/known-bad.yaml"

log "using $(cfn-lint --version) from $(command -v cfn-lint)"

# 1. The real template: must be clean (no errors, no warnings).
rc=0
cfn-lint "$TEMPLATE" || rc=$?
if (( rc != 0 )); then
  log "FAIL: cfn-lint $TEMPLATE exited $rc (2=errors, 4=warnings, 8=info; bits add up)"
  exit 1
fi
log "PASS: $TEMPLATE is clean (cfn-lint exit 0)"

# 2. The known-bad template: must be rejected with errors, and for each planted defect.
# Checking every defect, not just the exit bit: the undefined !Ref alone would set bit 2
# even with a cfn-lint (e.g. 1.58) that no longer runs the SAM translator and so misses a
# bad Runtime/Architectures.
rc=0
out="$(cfn-lint "$KNOWN_BAD" 2>&1)" || rc=$?
printf '%s\n' "$out" | sed 's/^/    /' >&2
if (( (rc & 2) == 0 )); then
  log "FAIL: cfn-lint $KNOWN_BAD exited $rc without the error bit (2): the lint step cannot fail"
  exit 1
fi
missing=()
for defect in "provided\.al2029" "arm65" "NoSuchEventBus"; do
  if ! grep -Eq "^E[0-9]{4} .*${defect}" <<<"$out"; then
    missing+=("${defect//\\/}")
  fi
done
if (( ${#missing[@]} > 0 )); then
  log "FAIL: cfn-lint $KNOWN_BAD exited $rc but did not report: ${missing[*]}"
  exit 1
fi
log "PASS: $KNOWN_BAD rejected as expected (cfn-lint exit $rc; bad Runtime, Architectures and Ref all reported)"
