# The redrive policies are separate resources: an inline redrive_policy shows
# a whitespace-only diff on every plan (seen against moto), and separate
# resources also let a DLQ be created before the queue that points at it.

resource "aws_sqs_queue" "ingest_dlq" {
  name                      = "${local.prefix}-ingest-dlq"
  message_retention_seconds = local.settings.dlq_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}

resource "aws_sqs_queue" "ingest" {
  name = "${local.prefix}-ingest"
  # The redrive policy is aws_sqs_queue_redrive_policy.ingest's to manage.
  lifecycle {
    ignore_changes = [redrive_policy]
  }
  visibility_timeout_seconds = local.ingest.visibility_timeout_seconds
  sqs_managed_sse_enabled    = true
  tags                       = local.tags
}

resource "aws_sqs_queue_redrive_policy" "ingest" {
  queue_url = aws_sqs_queue.ingest.id
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.ingest_dlq.arn
    maxReceiveCount     = local.ingest.max_receive_count
  })
}

# Only this bucket may send to the ingest queue.
data "aws_iam_policy_document" "ingest_queue" {
  statement {
    sid       = "S3Notifications"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.ingest.arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.uploads.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_sqs_queue_policy" "ingest" {
  queue_url = aws_sqs_queue.ingest.id
  policy    = data.aws_iam_policy_document.ingest_queue.json
  # Both write the queue's attributes: one at a time (moto drops the policy
  # when the redrive policy is written after it).
  depends_on = [aws_sqs_queue_redrive_policy.ingest]
}

resource "aws_sqs_queue" "feed_dlq" {
  name                      = "${local.prefix}-feed-dlq"
  message_retention_seconds = local.settings.dlq_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}

resource "aws_sqs_queue" "feed" {
  name = "${local.prefix}-feed"
  # The redrive policy is aws_sqs_queue_redrive_policy.feed's to manage.
  lifecycle {
    ignore_changes = [redrive_policy]
  }
  visibility_timeout_seconds = local.feed.visibility_timeout_seconds
  sqs_managed_sse_enabled    = true
  tags                       = local.tags
}

resource "aws_sqs_queue_redrive_policy" "feed" {
  queue_url = aws_sqs_queue.feed.id
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.feed_dlq.arn
    maxReceiveCount     = local.feed.max_receive_count
  })
}

# Where the stream mapping describes batches it gave up on.
resource "aws_sqs_queue" "projector_failures" {
  name                      = "${local.prefix}-projector-failures"
  message_retention_seconds = local.settings.dlq_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = local.tags
}
