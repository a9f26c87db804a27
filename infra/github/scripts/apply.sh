#!/usr/bin/env bash
# apply.sh: for each environment changed-secrets.sh listed, terraform apply targeted at exactly
# the secrets the push adds or changes (their KMS key, policy and rotation schedule come along).
# Every environment is tried; exits 1 naming those that failed. Run from the repository root
# with the apply role's credentials.
#
# Environment: STATE_BUCKET, STATE_REGION, VARS_JSON, GITHUB_STEP_SUMMARY, RUNNER_TEMP (or
# KEYWARD_WORK). Tools: terraform, jq.
set -euo pipefail
# shellcheck source=infra/github/scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_env STATE_BUCKET STATE_REGION GITHUB_STEP_SUMMARY
scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(pwd)"
WORK="$(keyward_work)"
[ -r "$WORK/envs" ] || die "no list of environments ($WORK/envs): run changed-secrets.sh apply first"

cd infra/terraform
failed=()
# Arrays, not `while read` loops: terraform must not swallow a loop's stdin.
mapfile -t envs < "$WORK/envs"
for env in "${envs[@]}"; do
  mapfile -t keys < "$WORK/$env.keys"
  mapfile -t args < <(bash "$scripts/terraform-args.sh" "$env")
  tfvars="$root/infra/generated/terraform/$env.tfvars.json"
  org="$(jq -r '.org // empty' "$tfvars")"
  [ -n "$org" ] || die "$tfvars has no \`org\`"
  echo "::group::$env: ${keys[*]}"
  if terraform init -reconfigure -no-color \
    -backend-config="bucket=$STATE_BUCKET" \
    -backend-config="key=keyward/$org/$env/secrets.tfstate" \
    -backend-config="region=$STATE_REGION" \
    -backend-config="encrypt=true" \
    -backend-config="use_lockfile=true" \
    && terraform apply -auto-approve -no-color -var-file="$tfvars" "${args[@]}"; then
    echo "::endgroup::"
    {
      printf "### \`%s\`: applied\n" "$env"
      md_list "$WORK/$env.keys"
    } >> "$GITHUB_STEP_SUMMARY"
  else
    echo "::endgroup::"
    echo "::error::terraform apply failed for $env"
    printf "### \`%s\`: **apply failed** (see the job log)\n" "$env" >> "$GITHUB_STEP_SUMMARY"
    failed+=("$env")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  die "failed environments: ${failed[*]}"
fi
