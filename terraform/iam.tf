# One role per function, granted only the calls its code makes (and the calls
# its event source mapping makes with the function's role) on its own
# resources. CI compares these grants with the SDK calls in the crates.

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
  dynamic "statement" {
    for_each = length(var.trusted_principal_arns) > 0 ? [1] : []
    content {
      actions = ["sts:AssumeRole"]
      principals {
        type        = "AWS"
        identifiers = var.trusted_principal_arns
      }
    }
  }
}

resource "aws_iam_role" "ingest" {
  name               = "${local.prefix}-ingest"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

resource "aws_iam_role" "projector" {
  name               = "${local.prefix}-projector"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "ingest" {
  statement {
    sid = "ReadUploads"
    # HeadObject and (ranged) GetObject of the version the notification names:
    # the bucket is versioned, every notification carries `versionId`, and S3
    # authorizes a read that names a version as s3:GetObjectVersion, not
    # s3:GetObject. Reading the named version (not the key's latest) is what
    # makes the ingested content exactly the notified upload, even when the key
    # is overwritten before the ingest reads it.
    actions   = ["s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.uploads.arn}/${local.settings.upload_prefix}*"]
  }
  statement {
    sid       = "WriteEvents"
    actions   = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"]
    resources = [aws_dynamodb_table.events.arn]
  }
  statement {
    sid       = "ConsumeIngestQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.ingest.arn]
  }
  statement {
    sid = "ContinueOnIngestQueue"
    # A run that meets its deadline, or fails in a way a retry can mend, sends
    # its notification again (ingest::handler) rather than waiting out the
    # queue's visibility timeout; a planner sends its chunks' tasks
    # (SendMessageBatch, authorized as sqs:SendMessage).
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.ingest.arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.ingest.arn}:*"]
  }
  statement {
    sid       = "Traces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions.
  }
}

data "aws_iam_policy_document" "projector" {
  statement {
    sid = "WriteAggregates"
    # TransactWriteItems of conditional Puts, and BatchGetItem.
    actions   = ["dynamodb:PutItem", "dynamodb:BatchGetItem"]
    resources = [aws_dynamodb_table.aggregates.arn]
  }
  statement {
    sid       = "ReadEventsStream"
    actions   = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"]
    resources = [aws_dynamodb_table.events.stream_arn]
  }
  statement {
    sid     = "ListStreams"
    actions = ["dynamodb:ListStreams"]
    # ListStreams takes no resource (IAM's service authorization reference
    # lists none; AWSLambdaDynamoDBExecutionRole grants it on "*"): scoped to
    # a stream ARN it would match nothing.
    resources = ["*"]
  }
  statement {
    sid       = "Feed"
    actions   = ["sns:Publish"] # PublishBatch is authorized as sns:Publish
    resources = [aws_sns_topic.feed.arn]
  }
  statement {
    sid       = "OnFailure"
    actions   = ["sqs:SendMessage"] # the stream mapping's on-failure destination
    resources = [aws_sqs_queue.projector_failures.arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.projector.arn}:*"]
  }
  statement {
    sid       = "Traces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions.
  }
}

resource "aws_iam_role_policy" "ingest" {
  name   = "ingest"
  role   = aws_iam_role.ingest.id
  policy = data.aws_iam_policy_document.ingest.json
}

resource "aws_iam_role_policy" "projector" {
  name   = "projector"
  role   = aws_iam_role.projector.id
  policy = data.aws_iam_policy_document.projector.json
}

# `pipeline reingest` is an operator's repair, not a function's: attach this
# policy to the operators' role or group. What the command calls: GetItem of
# the upload record and manifest; UpdateItem resetting the manifest (only
# while it is failed); Query and BatchWriteItem (deletes only) for the chunk
# items of a planned file; HeadObject of
# the key's current version (no version named: s3:GetObject); SendMessage of
# the notification to the ingest queue (its queue policy grants S3 only; an
# identity policy of the same account is enough).
data "aws_iam_policy_document" "reingest" {
  statement {
    sid = "ReadRecords"
    # Upload records (K#) and manifests with their chunks (F#) only.
    actions   = ["dynamodb:GetItem", "dynamodb:Query"]
    resources = [aws_dynamodb_table.events.arn]
    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["F#*", "K#*"]
    }
  }
  statement {
    sid = "ResetManifest"
    # The manifest and its chunk items (F#); never an event (E#, P#).
    actions   = ["dynamodb:UpdateItem", "dynamodb:BatchWriteItem"]
    resources = [aws_dynamodb_table.events.arn]
    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["F#*"]
    }
  }
  statement {
    sid       = "HeadUpload"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.uploads.arn}/${local.settings.upload_prefix}*"]
  }
  statement {
    sid       = "NotifyIngest"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.ingest.arn]
  }
  statement {
    sid = "FindQueues"
    # `--outputs` resolves the deployment's queues by name (GetQueueUrl).
    actions = ["sqs:GetQueueUrl"]
    resources = concat(
      [aws_sqs_queue.ingest.arn, aws_sqs_queue.feed.arn, aws_sqs_queue.projector_failures.arn],
      flatten([for c in module.reference_consumer : [c.queue_arn, c.dlq_arn]]),
    )
  }
}

resource "aws_iam_policy" "reingest" {
  name        = "${local.prefix}-reingest"
  description = "What pipeline reingest needs: reset a failed file's manifest and notify the ingest again"
  policy      = data.aws_iam_policy_document.reingest.json
  tags        = local.tags
}
