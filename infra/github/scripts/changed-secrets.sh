#!/usr/bin/env bash
# changed-secrets.sh plan|apply: which secrets the pull request (plan) or the push (apply) adds
# or changes, per environment, from the diff of infra/generated/terraform/<env>.tfvars.json
# between the base and HEAD. Run from the repository root.
#
# The base: for a pull_request, the merge commit's first parent (the checkout is the merge
# commit, fetched with depth 2); for a push, the event's `before`, or when GitHub no longer has
# it (a force push) or it is all zeros (a new branch), HEAD's parent, and failing that the empty
# tree (everything is new).
#
# Environment: GITHUB_EVENT_NAME, GITHUB_EVENT_PATH (GitHub's event payload), GITHUB_OUTPUT,
# RUNNER_TEMP (or KEYWARD_WORK). Writes to the scratch dir:
#   envs            the environments to plan (plan: every changed file) or apply (apply: those
#                   with something added or changed), one a line
#   <env>.keys      the secrets added or changed, one a line
#   <env>.removed   the secrets removed (never planned or applied by CI)
# and `any=true|false` to GITHUB_OUTPUT.
set -euo pipefail
# shellcheck source=infra/github/scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mode="${1:-}"
case "$mode" in
  plan | apply) ;;
  *) die "usage: changed-secrets.sh plan|apply" ;;
esac
require_env GITHUB_EVENT_NAME GITHUB_EVENT_PATH GITHUB_OUTPUT
[ -r "$GITHUB_EVENT_PATH" ] || die "GITHUB_EVENT_PATH $GITHUB_EVENT_PATH cannot be read"
jq -e 'type == "object"' "$GITHUB_EVENT_PATH" > /dev/null 2>&1 \
  || die "GITHUB_EVENT_PATH $GITHUB_EVENT_PATH is not a JSON object (GitHub's event payload)"

case "$GITHUB_EVENT_NAME" in
  pull_request)
    [ "$mode" = plan ] || die "apply runs on push, not $GITHUB_EVENT_NAME"
    jq -e '.pull_request.number | type == "number"' "$GITHUB_EVENT_PATH" > /dev/null \
      || die "the pull_request payload has no pull_request.number"
    base="$(git rev-parse --verify -q 'HEAD^1')" \
      || die "HEAD has no parent: check out the merge commit with fetch-depth 2"
    ;;
  push)
    [ "$mode" = apply ] || die "plan runs on pull_request, not $GITHUB_EVENT_NAME"
    before="$(jq -r '.before // empty' "$GITHUB_EVENT_PATH")"
    [[ "$before" =~ ^[0-9a-f]{40}$ ]] || die "the push payload has no 40-hex \`before\` commit"
    if [[ "$before" != 0000000000000000000000000000000000000000 ]] \
      && git cat-file -e "${before}^{commit}" 2> /dev/null; then
      base="$before"
    elif git rev-parse -q --verify 'HEAD^1' > /dev/null; then
      base="$(git rev-parse 'HEAD^1')"
    else
      base="$(git hash-object -t tree /dev/null)"
    fi
    ;;
  *) die "unsupported event $GITHUB_EVENT_NAME (pull_request for plan, push for apply)" ;;
esac
echo "base: $base"

WORK="$(keyward_work)"
mkdir -p "$WORK"
# Built aside and moved in at the end: a failure half-way leaves no list to act on.
stage="$(mktemp -d "$WORK/.changes.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
: > "$stage/envs"

mapfile -t paths < <(git diff --name-only "$base" HEAD -- 'infra/generated/terraform/*.tfvars.json')
for path in "${paths[@]}"; do
  env="$(basename "$path" .tfvars.json)"
  git show "$base:$path" > "$stage/$env.base.json" 2> /dev/null || echo '{}' > "$stage/$env.base.json"
  if [ -f "$path" ]; then
    cp "$path" "$stage/$env.head.json"
  elif [ "$mode" = apply ]; then
    echo "::warning::$path was deleted: environment $env is not applied (retire its secrets deliberately)"
    continue
  else
    echo '{}' > "$stage/$env.head.json"
  fi
  for side in base head; do
    jq -e 'type == "object" and ((.secrets // {}) | type == "object")' "$stage/$env.$side.json" > /dev/null 2>&1 \
      || die "$path ($side) is not a tfvars object with a \`secrets\` map"
  done
  # Added or changed: in the new file, and absent from or different in the old one.
  jq -r --slurpfile base "$stage/$env.base.json" \
    '($base[0].secrets // {}) as $old | (.secrets // {}) | to_entries[] | select($old[.key] != .value) | .key' \
    "$stage/$env.head.json" > "$stage/$env.keys"
  # Removed: planned and applied by no one here. Deleting a secret is a deliberate, reviewed act.
  jq -r --slurpfile base "$stage/$env.base.json" \
    '(.secrets // {}) as $new | ($base[0].secrets // {}) | keys[] | select($new[.] == null)' \
    "$stage/$env.head.json" > "$stage/$env.removed"
  if [ "$mode" = apply ]; then
    while IFS= read -r key; do
      echo "::warning::$env: $key was removed from the manifest; it is not deleted by CI"
    done < "$stage/$env.removed"
    if [ -s "$stage/$env.keys" ]; then echo "$env" >> "$stage/envs"; fi
  else
    echo "$env" >> "$stage/envs"
  fi
  echo "$env: $(wc -l < "$stage/$env.keys") added or changed, $(wc -l < "$stage/$env.removed") removed"
done

rm -f "$stage"/*.base.json "$stage"/*.head.json
# Lists of an earlier run in the same scratch dir must not survive into this one.
rm -f "$WORK/envs" "$WORK"/*.keys "$WORK"/*.removed
mv "$stage"/* "$WORK"/
if [ -s "$WORK/envs" ]; then echo "any=true" >> "$GITHUB_OUTPUT"; else echo "any=false" >> "$GITHUB_OUTPUT"; fi
