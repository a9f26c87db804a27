# keyward's governed secrets for one environment, from the manifest's Terraform projection
# (infra/generated/terraform/<environment>.tfvars.json).
#
# What this creates: the secret containers (name, description, the keyward:* tags, KMS key,
# replicas), their resource policies and their rotation schedules. What it never creates: a
# secret value. There is no aws_secretsmanager_secret_version here on purpose: a value written
# by Terraform would sit in plain text in the state file and in every plan. Values are put by
# hand (`aws secretsmanager put-secret-value`) or by keyward's rotation function.

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  create_kms_key = var.kms_key_arn == null
  kms_key_arn    = local.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn

  # Every principal that reads at least one secret of the environment: the key policy lets
  # them decrypt (below), the secret policies decide which secret each may read.
  readers = sort(distinct(flatten([for s in values(var.secrets) : s.readers])))

  with_readers = { for key, s in var.secrets : key => s if length(s.readers) > 0 }
  rotating     = { for key, s in var.secrets : key => s if s.rotation_enabled }
}

# ---------------------------------------------------------------------------- KMS key

# One customer-managed key per environment (unless the caller brings one): a key policy of our
# own is what lets a reader in another account decrypt, which the AWS-managed
# aws/secretsmanager key never allows, and CloudTrail then shows every decryption by key.
data "aws_iam_policy_document" "key" {
  count = local.create_kms_key ? 1 : 0

  # The account administers the key and IAM policies grant its use: this is KMS's default key
  # policy statement. Without it the key could become unmanageable, and keyward's rotation
  # function, whose IAM policy allows kms:Decrypt and kms:GenerateDataKey through Secrets
  # Manager, could not use the key.
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  # Readers decrypt only through Secrets Manager, never by calling KMS on their own: the
  # secret's resource policy remains the one place that says who reads what. The region is a
  # wildcard because a key is used only in its own region anyway (and aws_region's attribute
  # names differ between provider 5 and 6).
  dynamic "statement" {
    for_each = length(local.readers) > 0 ? [local.readers] : []

    content {
      sid       = "ReadersDecryptThroughSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = statement.value
      }

      condition {
        test     = "StringLike"
        variable = "kms:ViaService"
        values   = ["secretsmanager.*.${data.aws_partition.current.dns_suffix}"]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  count = local.create_kms_key ? 1 : 0

  description = "keyward: secrets of /${var.org}/${var.environment}/"
  # What the template's CI apply role (CiApplyRole) may create and manage keys by.
  tags = { "keyward:environment" = "/${var.org}/${var.environment}/" }
  # Yearly automatic rotation of the key material; old material stays available, so existing
  # secret versions remain readable.
  enable_key_rotation = true
  # The longest window KMS allows: deleting this key makes every secret of the environment
  # unreadable, so leave the most time to cancel a mistaken deletion.
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key[0].json

  lifecycle {
    # Destroying the key would schedule the loss of every secret value encrypted under it.
    # Switching to a caller-supplied kms_key_arn therefore fails here on purpose: once the
    # secrets are re-encrypted, `terraform state rm` the key and retire it deliberately.
    prevent_destroy = true
  }
}

resource "aws_kms_alias" "this" {
  count = local.create_kms_key ? 1 : 0

  name          = "alias/keyward/${var.org}/${var.environment}"
  target_key_id = aws_kms_key.this[0].key_id

  lifecycle {
    precondition {
      # Alias names allow letters, digits, '/', '_' and '-' only; keyward segments also allow '.'.
      condition     = !strcontains("${var.org}/${var.environment}", ".")
      error_message = "The alias alias/keyward/${var.org}/${var.environment} would contain '.', which KMS aliases do not allow: pass kms_key_arn instead of letting the module create the key."
    }
  }
}

# ---------------------------------------------------------------------------- secrets

resource "aws_secretsmanager_secret" "this" {
  for_each = var.secrets

  name        = each.value.name
  description = each.value.description
  kms_key_id  = local.kms_key_arn
  # The keyward:* tags are the secret's governance (strategy, interval, owner, readers, Vercel
  # mapping): the rotation function and the Vercel sync read them at run time.
  tags = each.value.tags
  # 7-30 days to undo a deletion; a deleted name cannot be reused until the window ends.
  recovery_window_in_days = var.recovery_window_in_days

  dynamic "replica" {
    for_each = toset(each.value.replica_regions)

    content {
      region = replica.value
      # No kms_key_id: a KMS key exists in one region only, and the key above lives in the
      # primary region. Encrypting the replica under a key of ours would need a multi-Region
      # replica key in each replica region, that is one AWS provider per region, which a module
      # cannot create for regions known only from a variable. The replica is therefore
      # encrypted with aws/secretsmanager of its region; it can be read by principals of this
      # account only (that key's policy admits no other account).
      # force_overwrite_replica_secret stays false: an existing secret of the same name in
      # the replica region makes the apply fail rather than be silently overwritten.
    }
  }

  lifecycle {
    precondition {
      # A variable validation cannot compare var.secrets with var.org and var.environment
      # before Terraform 1.9, so the check lives here. Every resource policy, rotation function
      # permission and drift scan is scoped to this prefix.
      condition     = startswith(each.value.name, "/${var.org}/${var.environment}/")
      error_message = "Secret ${each.key} is named ${each.value.name}, outside /${var.org}/${var.environment}/: regenerate infra/generated with `keyward render` and pass this environment's tfvars file."
    }

    precondition {
      # Without this, a rotating secret would be created with no schedule at all and keyward's
      # drift detector would only notice once its rotation is overdue.
      condition     = !each.value.rotation_enabled || var.rotation_lambda_arn != null
      error_message = "Secret ${each.key} has rotation_enabled = true but rotation_lambda_arn is null: pass the keyward stack's RotationFunctionArn output as rotation_lambda_arn (and deploy the stack with ManageRotationSchedules=false, so that only Terraform attaches schedules)."
    }
  }
}

# Who may read each secret: exactly the declared readers, nothing else. Secrets without readers
# get no policy; the account's IAM policies alone then decide (keyward's functions, operators).
data "aws_iam_policy_document" "readers" {
  for_each = local.with_readers
  # checkov:skip=CKV_AWS_356:A secret's resource policy: "*" is the secret it is attached to.
  # checkov:skip=CKV_AWS_108:GetSecretValue for the declared readers is the policy's purpose.

  statement {
    sid     = "DeclaredReaders"
    actions = ["secretsmanager:GetSecretValue"]
    # In a secret's resource policy "*" means the secret the policy is attached to.
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = sort(each.value.readers)
    }
  }
}

resource "aws_secretsmanager_secret_policy" "this" {
  for_each = local.with_readers

  secret_arn = aws_secretsmanager_secret.this[each.key].arn
  policy     = data.aws_iam_policy_document.readers[each.key].json
  # Secrets Manager refuses a policy that would grant broad access (e.g. to every principal of
  # another account): a reader list can never turn into a public secret.
  block_public_policy = true
}

# ---------------------------------------------------------------------------- rotation

# Only when the rotation function is known; the precondition on the secret turns a rotating
# secret without it into an error instead of a secret that silently never rotates.
resource "aws_secretsmanager_secret_rotation" "this" {
  for_each = var.rotation_lambda_arn == null ? {} : local.rotating
  # checkov:skip=CKV_AWS_304:rotation_days comes from var.secrets, whose validation holds it to 1-90.

  secret_id           = aws_secretsmanager_secret.this[each.key].id
  rotation_lambda_arn = var.rotation_lambda_arn
  # Every keyward strategy starts from the AWSCURRENT value (the PostgreSQL login's host and
  # user, the Auth0 client id, the previous key), and a new secret has none until someone puts
  # it. So attaching the schedule never rotates; the first rotation comes on schedule or with
  # `aws secretsmanager rotate-secret`. The SAM template's schedules do the same
  # (RotateImmediatelyOnUpdate: false).
  rotate_immediately = false

  rotation_rules {
    automatically_after_days = each.value.rotation_days
  }
}
