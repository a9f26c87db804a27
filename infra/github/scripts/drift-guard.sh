#!/usr/bin/env bash
# drift-guard.sh: the pre-merge guard of a drift fix. Asks keyward's CI gateway
# (`POST /v1/drift/pre-merge`) with the job's OIDC token whether the pull request may merge;
# exits 0 when it may, 1 with each of the gateway's reasons as an error annotation when not.
#
# Environment: GATEWAY_URL, AUDIENCE, GITHUB_EVENT_PATH (the pull_request payload: the number
# is read from it), ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN (set by
# the runner with `id-token: write`).
set -euo pipefail
# shellcheck source=infra/github/scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_env GATEWAY_URL AUDIENCE GITHUB_EVENT_PATH
[[ "$GATEWAY_URL" =~ ^https?:// ]] || die "GATEWAY_URL '$GATEWAY_URL' is not an http(s) URL"
[ -r "$GITHUB_EVENT_PATH" ] || die "GITHUB_EVENT_PATH $GITHUB_EVENT_PATH cannot be read"
# pull_request and pull_request_review payloads both carry the pull request.
pull="$(jq -r '.pull_request.number // empty | select(type == "number") | tostring' "$GITHUB_EVENT_PATH" 2> /dev/null)" \
  || die "GITHUB_EVENT_PATH $GITHUB_EVENT_PATH is not JSON (GitHub's event payload)"
[ -n "$pull" ] || die "the event payload has no pull_request.number: run the guard on pull_request or pull_request_review"

# shellcheck disable=SC2153 # AUDIENCE is the environment's (checked by require_env)
token="$(oidc_token "$AUDIENCE")"
response="$(mktemp)"
trap 'rm -f "$response"' EXIT
status="$(gateway_post "$GATEWAY_URL" /v1/drift/pre-merge "{\"pull_number\":$pull}" "$token" "$response")"
jq . "$response" 2> /dev/null || die "keyward drift guard: HTTP $status with a body that is not JSON"
case "$status" in
  200) echo "keyward: the drift fix #$pull may merge ($(jq -r '.approvals | length' "$response") approvals)" ;;
  422)
    jq -r '.reasons[]? | "::error::\(.)"' "$response"
    exit 1
    ;;
  *) die "keyward drift guard failed (HTTP $status): $(jq -r '"\(.error.code // "?"): \(.error.message // "no message")"' "$response")" ;;
esac
