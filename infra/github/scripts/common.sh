# shellcheck shell=bash
# Helpers the workflow scripts share. Sourced, never executed.
#
# Tokens never reach a command line (where `ps` shows them to every user of the runner): curl
# reads its Authorization header from standard input (`-H @-`), fed by printf, a shell builtin.
# Nothing here prints a token.
set -euo pipefail

# die MESSAGE: a GitHub Actions error annotation, and exit 1.
die() {
  printf '::error::%s\n' "$*" >&2
  exit 1
}

# require_env NAME...: each variable set and not empty, or exit naming the missing ones.
require_env() {
  local missing=()
  local name
  for name in "$@"; do
    [ -n "${!name:-}" ] || missing+=("$name")
  done
  [ "${#missing[@]}" -eq 0 ] || die "missing environment variable(s): ${missing[*]}"
}

# The scratch directory of a job (Job-level env cannot use the runner context, so the workflow
# cannot name it once): under RUNNER_TEMP unless KEYWARD_WORK says otherwise.
keyward_work() {
  if [ -n "${KEYWARD_WORK:-}" ]; then
    printf '%s\n' "$KEYWARD_WORK"
  else
    require_env RUNNER_TEMP
    printf '%s\n' "$RUNNER_TEMP/keyward"
  fi
}

# md_list FILE: each line of FILE as a Markdown list item in a code span.
md_list() {
  local line
  while IFS= read -r line; do
    printf -- "- \`%s\`\n" "$line"
  done < "$1"
}

GITHUB_API_URL="${GITHUB_API_URL:-https://api.github.com}"
GH_SCRATCH=""

# A private directory for one script's API answers, removed when the script exits.
gh_scratch() {
  if [ -z "$GH_SCRATCH" ]; then
    GH_SCRATCH="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand now: the directory is known now
    trap "rm -rf '$GH_SCRATCH'" EXIT
  fi
}

# gh_api METHOD PATH_OR_URL [JSON_FILE]: one GitHub REST call with GH_TOKEN. The answer's body
# is left in "$GH_SCRATCH/body" and its headers in "$GH_SCRATCH/headers"; the HTTP status is
# printed. A path is taken relative to GITHUB_API_URL; a URL (a `Link` header's) as given.
gh_api() {
  local method="$1" url="$2" data="${3:-}"
  gh_scratch
  case "$url" in
    http://* | https://*) ;;
    *) url="${GITHUB_API_URL%/}/${url#/}" ;;
  esac
  local args=(-sS -X "$method" -o "$GH_SCRATCH/body" -D "$GH_SCRATCH/headers" -w '%{http_code}'
    --connect-timeout 10 --max-time 60
    -H 'Accept: application/vnd.github+json' -H 'X-GitHub-Api-Version: 2022-11-28' -H @-)
  if [ -n "$data" ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "@$data")
  fi
  printf 'Authorization: Bearer %s\n' "$GH_TOKEN" | curl "${args[@]}" "$url" \
    || die "GitHub could not be reached: $method $url"
}

# gh_fail STATUS WHAT: exit with GitHub's own words for a refused call (its message and each
# validation error).
gh_fail() {
  local status="$1" what="$2" detail
  detail="$(jq -r '[.message // empty] + [(.errors // [])[] | if type == "object" then (.message // "\(.field // "") \(.code // "")") else tostring end] | join("; ")' \
    "$GH_SCRATCH/body" 2>/dev/null || true)"
  die "GitHub answered HTTP $status to $what${detail:+: $detail}"
}

# gh_expect CODES METHOD PATH [JSON_FILE]: gh_api, failing unless the status is one of CODES
# (space-separated).
gh_expect() {
  local codes="$1"
  shift
  local status
  status="$(gh_api "$@")"
  case " $codes " in
    *" $status "*) ;;
    *) gh_fail "$status" "$1 $2" ;;
  esac
}

# gh_list PATH OUT: every element of a paginated list, one JSON value a line, into OUT,
# following the `Link` header's rel="next" as GitHub gives it.
gh_list() {
  local url="$1" out="$2" next
  : > "$out"
  case "$url" in *\?*) url="$url&per_page=100" ;; *) url="$url?per_page=100" ;; esac
  while [ -n "$url" ]; do
    gh_expect 200 GET "$url"
    jq -c '.[]' "$GH_SCRATCH/body" >> "$out" || die "GitHub's answer to GET $url is not a list"
    next="$(tr -d '\r' < "$GH_SCRATCH/headers" | sed -n 's/^[Ll]ink:.*<\([^>]*\)>; rel="next".*/\1/p')"
    url="$next"
  done
}

# oidc_token AUDIENCE: a GitHub Actions OIDC token for AUDIENCE (the job needs `id-token:
# write`), printed for capture into a variable, never to the log.
oidc_token() {
  require_env ACTIONS_ID_TOKEN_REQUEST_URL ACTIONS_ID_TOKEN_REQUEST_TOKEN
  local audience token
  audience="$(jq -rn --arg a "$1" '$a|@uri')"
  token="$(printf 'Authorization: Bearer %s\n' "$ACTIONS_ID_TOKEN_REQUEST_TOKEN" \
    | curl -fsS --connect-timeout 10 --max-time 30 -H @- \
      "${ACTIONS_ID_TOKEN_REQUEST_URL}&audience=${audience}" | jq -r '.value // empty')" \
    || die "no OIDC token: does the job have \`permissions: id-token: write\`?"
  [ -n "$token" ] || die "the OIDC token request answered without a token"
  printf '%s\n' "$token"
}

# gateway_post URL_BASE ROUTE JSON TOKEN OUT: POST JSON to keyward's CI gateway with the OIDC
# token; the answer's body in OUT, the HTTP status printed.
gateway_post() {
  local base="$1" route="$2" json="$3" token="$4" out="$5"
  printf 'Authorization: Bearer %s\n' "$token" \
    | curl -sS -o "$out" -w '%{http_code}' --connect-timeout 10 --max-time 120 -X POST \
      -H @- -H 'Content-Type: application/json' --data-binary "$json" "${base%/}$route" \
    || die "the keyward gateway could not be reached at ${base%/}$route"
}
