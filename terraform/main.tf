# Settings shared with the local stack (localstack/src/settings.rs compiles the
# same file in): names, batch sizes, timeouts, retries, filters.
locals {
  settings = jsondecode(file("${path.module}/settings.json"))
  prefix   = coalesce(var.name_prefix, local.settings.name_prefix)
  bucket   = coalesce(var.bucket_name, "${local.prefix}-uploads-${data.aws_caller_identity.current.account_id}")
  ingest   = local.settings.ingest
  project  = local.settings.projector
  feed     = local.settings.feed
  tags     = merge({ "app" = local.prefix }, var.tags)
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}
