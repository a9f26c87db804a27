# State lives in S3, one state object per environment. The backend is configured at init time
# (partial configuration), never here, so the same files serve every environment and no bucket
# name is committed:
#
#   terraform init -reconfigure \
#     -backend-config="bucket=<state bucket>" \
#     -backend-config="key=keyward/<org>/<environment>/secrets.tfstate" \
#     -backend-config="region=<region>" \
#     -backend-config="use_lockfile=true"
#
# The state holds no secret value (this module never writes one), but it does hold every
# secret's ARN, tags and resource policy: keep the bucket private and encrypted.
#
# Using this directory as a child module instead? Delete this file: a backend belongs to the
# root module only.
terraform {
  backend "s3" {}
}
