terraform {
  # strcontains() is the newest function used (1.5; startswith() 1.3, preconditions 1.2).
  # Conditions that compare two variables are preconditions in main.tf rather than `validation`
  # blocks, because a validation may refer to other variables only from Terraform 1.9 on.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.33 added `rotate_immediately` to aws_secretsmanager_secret_rotation. main.tf sets it
      # to false: a new secret has no value yet, so attaching the schedule must not rotate it.
      version = ">= 5.33"
    }
  }
}
