#!/usr/bin/env bash
# terraform-args.sh ENV: the arguments that aim terraform plan/apply at exactly the secrets
# changed-secrets.sh listed for ENV (<scratch>/<env>.keys), one a line: the targets, then the
# per-environment variables from the repository variables.
#
# Environment: VARS_JSON (`toJSON(vars)`: configuration variables only, never secrets; the
# per-environment names are looked up in it), RUNNER_TEMP (or KEYWARD_WORK).
set -euo pipefail
# shellcheck source=infra/github/scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

env="${1:-}"
[ -n "$env" ] || die "usage: terraform-args.sh ENV"
WORK="$(keyward_work)"
[ -r "$WORK/$env.keys" ] || die "no list of changed secrets for $env ($WORK/$env.keys): run changed-secrets.sh first"
vars_json="${VARS_JSON:-}"
[ -n "$vars_json" ] || vars_json='{}'
jq -e 'type == "object"' <<< "$vars_json" > /dev/null 2>&1 || die "VARS_JSON is not a JSON object"

# A secret's policy and rotation schedule depend on it rather than the other way round, so each
# is targeted by name; targets that do not exist (no readers, no rotation) are ignored by
# Terraform. The KMS alias depends on the key, not the key on it, so targeting a secret would
# leave it out (without a key of the module's own, it does not exist and is ignored).
echo "-target=aws_kms_alias.this"
while IFS= read -r key; do
  [ -n "$key" ] || continue
  printf -- '-target=aws_secretsmanager_secret.this["%s"]\n' "$key"
  printf -- '-target=aws_secretsmanager_secret_policy.this["%s"]\n' "$key"
  printf -- '-target=aws_secretsmanager_secret_rotation.this["%s"]\n' "$key"
done < "$WORK/$env.keys"

# KEYWARD_<NAME>_<ENV>: the environment upper-cased, `-` and `.` as `_`.
suffix="$(tr 'a-z.-' 'A-Z__' <<< "$env")"
lambda="$(jq -r --arg k "KEYWARD_ROTATION_FUNCTION_ARN_$suffix" '.[$k] // empty' <<< "$vars_json")"
[ -z "$lambda" ] || echo "-var=rotation_lambda_arn=$lambda"
key_arn="$(jq -r --arg k "KEYWARD_KMS_KEY_ARN_$suffix" '.[$k] // empty' <<< "$vars_json")"
[ -z "$key_arn" ] || echo "-var=kms_key_arn=$key_arn"
