#!/usr/bin/env bash
# Secret-scanning gate: detect-secrets (pinned, own venv) over every tracked file. Passes only
# when every finding is in .secrets.baseline, audited as not a secret, in a path whose reason is
# listed below. The committed baseline is not rewritten: the scan runs against a copy, so moved
# lines never fail the gate and a new finding always does.
#
#   bash scripts/secret-scan.sh           the gate (CI)
#   bash scripts/secret-scan.sh --audit   rescan into .secrets.baseline and mark the findings in
#                                         the paths below as not secrets; review the diff. A
#                                         finding anywhere else stays unaudited and fails.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$KEYWARD_ROOT"
ensure_detect_secrets

# Why the findings in these paths are not secrets (shell globs, `*` crossing `/`).
REASONS=(
  "events/*|sample events: example ARNs, ETags, digests and SQS checksums in AWS's documented shapes"
  "infra/template.yaml|IAM action names (secretsmanager:GetSecretValue, ...) and secret names, never values"
  "infra/config/manifest/*|manifest fields naming JSON keys and variables (client_secret: AUTH0_CLIENT_SECRET)"
  "infra/generated/*|projections naming secret keys (ExternalSecret secretKey, Vercel key maps), never values"
  "infra/terraform/tests/*|the Terraform test's placeholder provider credentials (\"test\")"
  "*.md|prose naming Secrets Manager APIs and workflow variables"
  "integration/*|throwaway values the fakes, moto and the test PostgreSQL cluster use"
  "*/tests.rs|unit-test fixtures: planted values that tests prove are redacted, refused or rotated"
  "shared/src/*|enum and field names (createSecret, auth0-client-secret) and planted values the redaction tests must hide"
  "functions/*|Secrets Manager event shapes, field names and planted values of unit tests"
  "cli/src/*|comments naming Secrets Manager commands"
  "drift/src/*|credentials-document fixtures of the drift tests (fake tokens)"
)

baseline=".secrets.baseline"
# The gate scans against a copy, so the committed baseline (all hashes) is excluded by name.
scan() {
  "$KEYWARD_SECRETS_VENV/bin/detect-secrets" scan --exclude-files '^\.secrets\.baseline$' --baseline "$1"
}

# check BASELINE [--mark]: every finding audited false and explained; --mark audits the
# explained ones first.
check() {
  REASONS_TEXT="$(printf '%s\n' "${REASONS[@]}")" "$KEYWARD_SECRETS_VENV/bin/python" - "$@" <<'PY'
import fnmatch, json, os, sys

path, mark = sys.argv[1], "--mark" in sys.argv[2:]
reasons = [line.split("|", 1) for line in os.environ["REASONS_TEXT"].splitlines() if line]
doc = json.load(open(path))
problems, count = [], 0
for file, results in sorted(doc["results"].items()):
    reason = next((why for glob, why in reasons if fnmatch.fnmatch(file, glob)), None)
    for result in results:
        count += 1
        if mark and reason is not None:
            result["is_secret"] = False
        where = f"{file}:{result['line_number']} ({result['type']})"
        if result.get("is_secret") is not False:
            problems.append(f"{where}: not audited as a false positive")
        elif reason is None:
            problems.append(f"{where}: audited, but no reason covers {file} (scripts/secret-scan.sh)")
if mark:
    with open(path, "w") as out:
        json.dump(doc, out, indent=2)
        out.write("\n")
for problem in problems:
    print(f"secret scan: {problem}", file=sys.stderr)
print(f"secret scan: {count} findings, {count - len(problems)} audited as not secrets", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

if [[ "${1:-}" == "--audit" ]]; then
  [[ -f "$baseline" ]] || "$KEYWARD_SECRETS_VENV/bin/detect-secrets" scan > "$baseline"
  scan "$baseline"
  check "$baseline" --mark || true
  log "rewrote $baseline; review its diff"
  exit 0
fi

[[ -f "$baseline" ]] || { echo "secret scan: no $baseline (create it with --audit)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$baseline" "$work/baseline"
log "detect-secrets $("$KEYWARD_SECRETS_VENV/bin/detect-secrets" --version) over the tracked files"
scan "$work/baseline"
check "$work/baseline"
