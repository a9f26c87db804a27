#!/usr/bin/env bash
# drift-verify.sh: the post-merge verification of a drift fix. Asks keyward's CI gateway
# (`POST /v1/drift/post-merge`) with the job's OIDC token, which finds the merged pull request
# from the commit the token is for (or takes PULL_NUMBER), re-runs detection and records the
# remediation. Writes the audit record it returns to
# .artifacts/drift-audit-pr-<N>.json (whole, or not at all), then exits 0 when the drift is
# gone, 1 when it is still detected or the merge was not a governed remediation.
#
# Environment: GATEWAY_URL, AUDIENCE, PULL_NUMBER (optional; 0 or empty: found from the merge),
# ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN, ARTIFACTS_DIR (default
# .artifacts).
set -euo pipefail
# shellcheck source=infra/github/scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# The audit record's fields, every one of which the artifact must carry (jira_key may be null).
FIELDS=(pull_request drift_issue change_request_id jira_key environment cloud_provider actor
  merge_commit verification event_id audit_record_key detail_sha256)

require_env GATEWAY_URL AUDIENCE
[[ "$GATEWAY_URL" =~ ^https?:// ]] || die "GATEWAY_URL '$GATEWAY_URL' is not an http(s) URL"
pull="${PULL_NUMBER:-0}"
[[ "$pull" =~ ^[0-9]+$ ]] || die "PULL_NUMBER '$pull' is not a number"
artifacts="${ARTIFACTS_DIR:-.artifacts}"
if [ "$pull" -gt 0 ]; then request="{\"pull_number\":$pull}"; else request='{}'; fi

# shellcheck disable=SC2153 # AUDIENCE is the environment's (checked by require_env)
token="$(oidc_token "$AUDIENCE")"
response="$(mktemp)"
trap 'rm -f "$response"' EXIT
status="$(gateway_post "$GATEWAY_URL" /v1/drift/post-merge "$request" "$token" "$response")"
jq . "$response" 2> /dev/null || die "keyward drift verification: HTTP $status with a body that is not JSON"

# The audit record, kept whether or not the fix was verified.
if jq -e '.audit | type == "object"' "$response" > /dev/null; then
  absent="$(jq -r --arg fields "${FIELDS[*]}" \
    '.audit as $a | $fields | split(" ") | map(select(. as $f | $a | has($f) | not)) | join(" ")' "$response")"
  [ -z "$absent" ] || die "the gateway's audit record lacks: $absent (no artifact written)"
  number="$(jq -r '.audit.pull_request' "$response")"
  [[ "$number" =~ ^[1-9][0-9]*$ ]] || die "the audit record's pull_request '$number' is not a number (no artifact written)"
  mkdir -p "$artifacts"
  artifact="$artifacts/drift-audit-pr-$number.json"
  jq '.audit' "$response" > "$artifact.partial"
  mv "$artifact.partial" "$artifact"
  echo "keyward: audit record kept in $artifact"
fi

case "$status" in
  200)
    if jq -e '.already_verified == true' "$response" > /dev/null; then
      echo "keyward: already verified; nothing repeated"
    else
      echo "keyward: drift verified gone; issue closed and the remediation audited"
    fi
    ;;
  409)
    jq -r '.remaining[]? | "::error::still detected: \(.)"' "$response"
    exit 1
    ;;
  422)
    jq -r '.reasons[]? | "::error::\(.)"' "$response"
    exit 1
    ;;
  *) die "keyward drift verification failed (HTTP $status): $(jq -r '"\(.error.code // "?"): \(.error.message // "no message")"' "$response")" ;;
esac
