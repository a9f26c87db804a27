#!/usr/bin/env bash
# plan.sh: for each environment changed-secrets.sh listed, a terraform plan targeted at the
# secrets added or changed there, and `keyward plan` (what the live account lacks), written as
# the pull request's plan (<scratch>/comment.md, first line the marker post-plan.sh finds it
# by) and to the job summary. Nothing is applied. Run from the repository root with the plan
# role's credentials; exits 1 when a plan failed (the comment says which and why).
#
# Environment: STATE_BUCKET, STATE_REGION, HEAD_SHA (the pull request's head), VARS_JSON,
# GITHUB_STEP_SUMMARY, RUNNER_TEMP (or KEYWARD_WORK). Tools: terraform, keyward, jq.
set -euo pipefail
# shellcheck source=infra/github/scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_env STATE_BUCKET STATE_REGION HEAD_SHA GITHUB_STEP_SUMMARY
scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(pwd)"
WORK="$(keyward_work)"
[ -r "$WORK/envs" ] || die "no list of environments ($WORK/envs): run changed-secrets.sh plan first"
# Each environment's plan is cut to this many bytes: a comment holds 65,536 characters.
PLAN_BYTES="${KEYWARD_PLAN_BYTES:-20000}"

cd infra/terraform
terraform init -backend=false -no-color > /dev/null
terraform validate -no-color
body="$WORK/comment.md.partial"
failed=0
{
  echo '<!-- keyward:secret-request-plan -->'
  echo '## Secret request plan'
  echo
  echo "Targeted at the secrets this pull request adds or changes (head ${HEAD_SHA::12})."
} > "$body"
# Arrays, not `while read` loops: terraform and keyward must not swallow a loop's stdin.
mapfile -t envs < "$WORK/envs"
for env in "${envs[@]}"; do
  printf "\n### \`%s\`\n" "$env" >> "$body"
  if [ -s "$WORK/$env.removed" ]; then
    {
      echo
      echo "Removed from the manifest, **not planned or applied by CI** (delete deliberately with a targeted \`terraform destroy\` once nothing reads them):"
      md_list "$WORK/$env.removed"
    } >> "$body"
  fi
  if [ ! -s "$WORK/$env.keys" ]; then
    printf '\nNothing added or changed.\n' >> "$body"
    continue
  fi
  {
    echo
    echo "Added or changed:"
    md_list "$WORK/$env.keys"
  } >> "$body"
  mapfile -t args < <(bash "$scripts/terraform-args.sh" "$env")
  [ "${#args[@]}" -gt 0 ] || die "no terraform arguments for $env"
  tfvars="$root/infra/generated/terraform/$env.tfvars.json"
  org="$(jq -r '.org // empty' "$tfvars")"
  [ -n "$org" ] || die "$tfvars has no \`org\`"

  : > "$WORK/$env.plan.txt"
  set +e
  terraform init -reconfigure -no-color \
    -backend-config="bucket=$STATE_BUCKET" \
    -backend-config="key=keyward/$org/$env/secrets.tfstate" \
    -backend-config="region=$STATE_REGION" \
    -backend-config="encrypt=true" \
    -backend-config="use_lockfile=true" > "$WORK/$env.init.txt" 2>&1
  tf=$?
  if [ "$tf" -eq 0 ]; then
    # -lock=false: the plan role cannot write the lock file, and a plan never blocks an apply.
    terraform plan -no-color -lock=false -detailed-exitcode -var-file="$tfvars" "${args[@]}" \
      > "$WORK/$env.plan.txt" 2>&1
    tf=$?
  else
    cp "$WORK/$env.init.txt" "$WORK/$env.plan.txt"
  fi
  # keyward plan: the live account against the manifest (0 nothing to do, 2 changes, 1 error),
  # as terraform plan -detailed-exitcode.
  (cd "$root" && keyward plan --env "$env" --markdown) > "$WORK/$env.keyward.md" 2> "$WORK/$env.keyward.err"
  kw=$?
  set -e
  if [ "$tf" -ne 0 ] && [ "$tf" -ne 2 ]; then failed=1; fi
  if [ "$kw" -ne 0 ] && [ "$kw" -ne 2 ]; then failed=1; fi
  {
    echo
    case "$tf" in
      0) echo "**terraform plan**: no changes." ;;
      2) echo "**terraform plan**: changes (below)." ;;
      *) echo "**terraform plan failed** (exit $tf)." ;;
    esac
    echo
    echo '<details><summary>terraform plan</summary>'
    echo
    echo '```'
    head -c "$PLAN_BYTES" "$WORK/$env.plan.txt"
    if [ "$(wc -c < "$WORK/$env.plan.txt")" -gt "$PLAN_BYTES" ]; then
      printf '\n... (truncated; the full plan is in the job log)'
    fi
    echo
    echo '```'
    echo '</details>'
    echo
    if [ "$kw" -ne 0 ] && [ "$kw" -ne 2 ]; then
      echo "**keyward plan failed** (exit $kw): $(head -c 2000 "$WORK/$env.keyward.err")"
    else
      head -c 10000 "$WORK/$env.keyward.md"
    fi
  } >> "$body"
  echo "::group::terraform plan ($env)"
  cat "$WORK/$env.plan.txt"
  echo "::endgroup::"
done
mv "$body" "$WORK/comment.md"
cat "$WORK/comment.md" >> "$GITHUB_STEP_SUMMARY"
exit "$failed"
