#!/usr/bin/env bash
# publish-manifest.sh: the merged manifest to the keyward stack's ConfigBucket (stack output
# ConfigBucketName), where the drift detector, rotation and the Vercel sync read it: every
# `*.yaml` of infra/config/manifest under manifest/, and manifest files no longer in the
# repository removed. Run from the repository root with credentials that may write there.
#
# Environment: CONFIG_BUCKET; the AWS CLI's own (region, credentials, AWS_ENDPOINT_URL).
set -euo pipefail
# shellcheck source=infra/github/scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_env CONFIG_BUCKET
[[ "$CONFIG_BUCKET" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] \
  || die "CONFIG_BUCKET '$CONFIG_BUCKET' is not an S3 bucket name (the stack's ConfigBucketName)"
manifest="infra/config/manifest"
[ -d "$manifest" ] || die "$manifest not found: run from the repository root"
compgen -G "$manifest/*.yaml" > /dev/null || die "$manifest holds no *.yaml: refusing to empty the bucket's manifest/"
command -v aws > /dev/null || die "the AWS CLI (aws) is not installed"
aws s3 sync "$manifest" "s3://${CONFIG_BUCKET}/manifest/" --delete --no-progress --exclude "*" --include "*.yaml"
echo "published $(compgen -G "$manifest/*.yaml" | wc -l) manifest file(s) to s3://${CONFIG_BUCKET}/manifest/"
