# `org`, `environment` and `secrets` are exactly what `keyward render` writes to
# infra/generated/terraform/<environment>.tfvars.json (shared/src/projections.rs): pass that file
# with -var-file and never write these by hand. integration/tests/projections.rs checks that the
# two stay in step. The other variables have defaults and come from the caller.
#
# The validations repeat the manifest's own rules (shared/src/naming.rs, governance.rs) so that
# a tfvars file edited by hand, or written by an older keyward, fails at plan time instead of
# half-way through an apply.

variable "org" {
  description = "The organisation: the first segment of every secret name (/<org>/<environment>/<service>/<name>)."
  type        = string

  validation {
    # A keyward name segment: 1-64 characters, lowercase letters, digits, `-`, `_` and `.`,
    # starting and ending with a letter or a digit.
    condition     = can(regex("^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$", var.org))
    error_message = "org must be a keyward name segment: 1-64 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or a digit."
  }
}

variable "environment" {
  description = "The environment these secrets belong to: the second segment of every secret name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$", var.environment))
    error_message = "environment must be a lowercase keyward name segment: 1-64 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or a digit."
  }
}

variable "secrets" {
  description = "The environment's governed secrets, keyed <service>/<name>, as `keyward render` projects them from the manifest."
  type = map(object({
    # The full Secrets Manager name, /<org>/<environment>/<service>/<name>.
    name        = string
    description = string
    # The keyward:* tag contract (shared/src/tags.rs): the rotation function, the Vercel sync
    # and the drift detector read governance from these tags, so they are applied verbatim.
    tags             = map(string)
    rotation_enabled = bool
    rotation_days    = number
    replica_regions  = list(string)
    # IAM principal ARNs (account root, user or role) granted secretsmanager:GetSecretValue.
    readers = list(string)
  }))

  validation {
    condition     = alltrue([for key in keys(var.secrets) : can(regex("^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?/[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$", key))])
    error_message = "Every key of secrets must be <service>/<name>, two keyward name segments."
  }

  validation {
    # Secrets Manager allows 512 characters; the four-segment shape is keyward's.
    condition = alltrue([
      for s in values(var.secrets) :
      length(s.name) <= 512 && can(regex("^(/[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?){4}$", s.name))
    ])
    error_message = "Every secret name must be /<org>/<environment>/<service>/<name> (four keyward name segments, at most 512 characters)."
  }

  validation {
    # keyward's policy: no secret goes more than 90 days unrotated (manual secrets included:
    # their rotation_days is the deadline the drift detector holds their owners to).
    condition = alltrue([
      for s in values(var.secrets) :
      s.rotation_days >= 1 && s.rotation_days <= 90 && floor(s.rotation_days) == s.rotation_days
    ])
    error_message = "Every secret's rotation_days must be a whole number of days from 1 to 90: keyward lets no secret go more than 90 days unrotated."
  }

  validation {
    condition = alltrue(flatten([
      for s in values(var.secrets) : [
        for region in s.replica_regions : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", region))
      ]
    ]))
    error_message = "Every replica region must be an AWS region code such as eu-central-1."
  }

  validation {
    # The same shapes keyward accepts for a reader (shared/src/governance.rs PrincipalArn): no
    # wildcard, no service principal, nothing a resource policy would read as "everyone".
    condition = alltrue(flatten([
      for s in values(var.secrets) : [
        for reader in s.readers :
        can(regex("^arn:aws(-us-gov|-cn)?:iam::[0-9]{12}:(root|(user|role)/[A-Za-z0-9+=,.@_/-]*[A-Za-z0-9+=,.@_-])$", reader))
      ]
    ]))
    error_message = "Every reader must be an IAM principal ARN naming an account root, a user/... or a role/... (arn:aws:iam::123456789012:role/payments-api), without wildcards."
  }

  validation {
    # Secrets Manager's limit; the keyward tag contract stays well under it.
    condition     = alltrue([for s in values(var.secrets) : length(s.tags) <= 50])
    error_message = "A secret carries at most 50 tags."
  }
}

variable "kms_key_arn" {
  description = "ARN of an existing customer-managed KMS key for this environment's secrets. Null (the default): the module creates one, with automatic key rotation and the alias alias/keyward/<org>/<environment>."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws(-us-gov|-cn)?:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), not an alias, or null."
  }
}

variable "rotation_lambda_arn" {
  description = "ARN of keyward's rotation function: the SAM stack's RotationFunctionArn output. Required as soon as one secret has rotation_enabled; null otherwise."
  type        = string
  default     = null

  validation {
    condition     = var.rotation_lambda_arn == null || can(regex("^arn:aws(-us-gov|-cn)?:lambda:[a-z0-9-]+:[0-9]{12}:function:[A-Za-z0-9_-]+(:[A-Za-z0-9_$-]+)?$", var.rotation_lambda_arn))
    error_message = "rotation_lambda_arn must be a Lambda function ARN (the keyward stack's RotationFunctionArn output), or null."
  }
}

variable "recovery_window_in_days" {
  description = "Days Secrets Manager keeps a deleted secret recoverable: 7 to 30, or 0 to delete at once."
  type        = number
  default     = 30

  validation {
    # The values DeleteSecret accepts (0 means ForceDeleteWithoutRecovery).
    condition     = var.recovery_window_in_days == 0 || (var.recovery_window_in_days >= 7 && var.recovery_window_in_days <= 30 && floor(var.recovery_window_in_days) == var.recovery_window_in_days)
    error_message = "recovery_window_in_days must be a whole number of days from 7 to 30, or 0 to delete without recovery."
  }
}
