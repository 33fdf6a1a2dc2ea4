# Events: one immutable item per CSV line, plus manifests and upload records.
resource "aws_dynamodb_table" "events" {
  #checkov:skip=CKV_AWS_119:encrypted at rest with the AWS-owned key; a CMK adds KMS grants to both roles and per-request cost for no added control here
  name             = "${local.prefix}-events"
  billing_mode     = "PAY_PER_REQUEST"
  hash_key         = "pk"
  range_key        = "sk"
  stream_enabled   = true
  stream_view_type = "NEW_IMAGE"

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "N"
  }

  point_in_time_recovery {
    enabled = true
  }
  # AWS-owned key: encrypted at rest with no KMS grants to manage.
  server_side_encryption {
    enabled = true
  }
  deletion_protection_enabled = false
  tags                        = local.tags
}

# Aggregates and the projector's applied-event bitmaps. No stream: projector
# writes never reach the events stream.
resource "aws_dynamodb_table" "aggregates" {
  #checkov:skip=CKV_AWS_119:encrypted at rest with the AWS-owned key; a CMK adds KMS grants to both roles and per-request cost for no added control here
  name         = "${local.prefix}-aggregates"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled = true
  }
  tags = local.tags
}
