output "secret_arns" {
  description = "Each secret's ARN, keyed <service>/<name> as in var.secrets (Secrets Manager appends a random suffix to the name, so the ARN cannot be derived from it)."
  value       = { for key, secret in aws_secretsmanager_secret.this : key => secret.arn }
}

output "kms_key_arn" {
  description = "The KMS key that encrypts the environment's secrets: the one the module created, or var.kms_key_arn."
  value       = local.kms_key_arn
}
