# Offline: plans only, with the real provider and fake credentials; the one data source that
# would call AWS (STS) is overridden. Terraform >= 1.7. From infra/terraform:
#   terraform init -backend=false && terraform test
provider "aws" {
  region                      = "eu-west-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
}

override_data {
  target = data.aws_caller_identity.current
  values = {
    account_id = "123456789012"
  }
}

variables {
  org                 = "acme"
  environment         = "prod"
  rotation_lambda_arn = "arn:aws:lambda:eu-west-1:123456789012:function:keyward-RotationFunction-abc"
  secrets = {
    "payments/db-credentials" = {
      name             = "/acme/prod/payments/db-credentials"
      description      = "Application login"
      tags             = { "keyward:rotation" = "postgres-alternating-users", "keyward:rotation-days" = "30" }
      rotation_enabled = true
      rotation_days    = 30
      replica_regions  = ["eu-central-1"]
      readers          = ["arn:aws:iam::123456789012:role/payments-worker", "arn:aws:iam::123456789012:role/payments-api"]
    }
    "payments/stripe-api-key" = {
      name             = "/acme/prod/payments/stripe-api-key"
      description      = "Stripe key"
      tags             = { "keyward:rotation" = "manual", "keyward:rotation-days" = "90" }
      rotation_enabled = false
      rotation_days    = 90
      replica_regions  = []
      readers          = ["arn:aws:iam::210987654321:role/reporting"]
    }
    "web/session-key" = {
      name             = "/acme/prod/web/session-key"
      description      = "Signs sessions"
      tags             = { "keyward:rotation" = "random", "keyward:rotation-days" = "30" }
      rotation_enabled = true
      rotation_days    = 30
      replica_regions  = []
      readers          = []
    }
  }
}

run "projection_plans" {
  command = plan

  assert {
    condition     = length(aws_secretsmanager_secret.this) == 3
    error_message = "one secret per key"
  }
  assert {
    condition     = aws_secretsmanager_secret.this["payments/db-credentials"].tags["keyward:rotation"] == "postgres-alternating-users"
    error_message = "tags applied verbatim"
  }
  assert {
    condition     = [for r in aws_secretsmanager_secret.this["payments/db-credentials"].replica : r.region] == ["eu-central-1"]
    error_message = "one replica per region"
  }
  assert {
    condition     = aws_secretsmanager_secret.this["web/session-key"].recovery_window_in_days == 30
    error_message = "default recovery window"
  }
  assert {
    condition     = aws_kms_alias.this[0].name == "alias/keyward/acme/prod"
    error_message = "alias per environment"
  }
  assert {
    condition     = aws_kms_key.this[0].enable_key_rotation
    error_message = "key rotation on"
  }
  assert {
    condition     = toset(keys(aws_secretsmanager_secret_policy.this)) == toset(["payments/db-credentials", "payments/stripe-api-key"])
    error_message = "a policy only for secrets with readers"
  }
  assert {
    condition = toset(jsondecode(data.aws_iam_policy_document.readers["payments/db-credentials"].json).Statement[0].Principal.AWS) == toset([
      "arn:aws:iam::123456789012:role/payments-api",
      "arn:aws:iam::123456789012:role/payments-worker",
    ])
    error_message = "exactly the declared readers"
  }
  assert {
    condition     = jsondecode(data.aws_iam_policy_document.readers["payments/db-credentials"].json).Statement[0].Action == "secretsmanager:GetSecretValue"
    error_message = "GetSecretValue only"
  }
  assert {
    condition     = length(jsondecode(data.aws_iam_policy_document.key[0].json).Statement) == 2
    error_message = "key policy: account, readers"
  }
  assert {
    condition     = toset(keys(aws_secretsmanager_secret_rotation.this)) == toset(["payments/db-credentials", "web/session-key"])
    error_message = "a schedule for each rotating secret"
  }
  assert {
    condition     = aws_secretsmanager_secret_rotation.this["payments/db-credentials"].rotation_rules[0].automatically_after_days == 30
    error_message = "rotation_days"
  }
  assert {
    condition     = aws_secretsmanager_secret_rotation.this["web/session-key"].rotate_immediately == false
    error_message = "never rotates on attach"
  }
}

run "own_key" {
  command = plan

  variables {
    kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = length(aws_kms_key.this) == 0 && length(aws_kms_alias.this) == 0
    error_message = "no key created"
  }
  assert {
    condition     = aws_secretsmanager_secret.this["web/session-key"].kms_key_id == "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    error_message = "the caller's key"
  }
  assert {
    condition     = output.kms_key_arn == "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    error_message = "output"
  }
}

run "rotation_needs_the_function" {
  command = plan

  variables {
    rotation_lambda_arn = null
  }

  expect_failures = [aws_secretsmanager_secret.this]
}

run "no_lambda_needed_without_rotation" {
  command = plan

  variables {
    rotation_lambda_arn = null
    secrets = {
      "payments/stripe-api-key" = {
        name             = "/acme/prod/payments/stripe-api-key"
        description      = ""
        tags             = {}
        rotation_enabled = false
        rotation_days    = 90
        replica_regions  = []
        readers          = []
      }
    }
  }

  assert {
    condition     = length(aws_secretsmanager_secret_rotation.this) == 0 && length(aws_secretsmanager_secret_policy.this) == 0
    error_message = "no schedule, no policy"
  }
}

run "ninety_days_at_most" {
  command = plan

  variables {
    secrets = {
      "web/session-key" = {
        name             = "/acme/prod/web/session-key"
        description      = ""
        tags             = {}
        rotation_enabled = true
        rotation_days    = 91
        replica_regions  = []
        readers          = []
      }
    }
  }

  expect_failures = [var.secrets]
}

run "names_stay_in_the_environment" {
  command = plan

  variables {
    secrets = {
      "web/session-key" = {
        name             = "/acme/staging/web/session-key"
        description      = ""
        tags             = {}
        rotation_enabled = false
        rotation_days    = 30
        replica_regions  = []
        readers          = []
      }
    }
  }

  expect_failures = [aws_secretsmanager_secret.this]
}

run "environment_is_a_lowercase_segment" {
  command = plan

  variables {
    environment = "Prod"
  }

  expect_failures = [var.environment]
}

run "readers_are_principals" {
  command = plan

  variables {
    secrets = {
      "web/session-key" = {
        name             = "/acme/prod/web/session-key"
        description      = ""
        tags             = {}
        rotation_enabled = false
        rotation_days    = 30
        replica_regions  = []
        readers          = ["*"]
      }
    }
  }

  expect_failures = [var.secrets]
}

run "aliases_refuse_dots" {
  command = plan

  variables {
    org = "acme.io"
    secrets = {
      "web/session-key" = {
        name             = "/acme.io/prod/web/session-key"
        description      = ""
        tags             = {}
        rotation_enabled = false
        rotation_days    = 30
        replica_regions  = []
        readers          = []
      }
    }
  }

  expect_failures = [aws_kms_alias.this]
}
