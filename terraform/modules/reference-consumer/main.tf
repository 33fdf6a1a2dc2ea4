# The reference consumer of the change feed: its own queue subscribed to the
# feed topic (raw delivery, filtered), a Lambda that keeps one item per
# aggregate group in a read model table, written only when the message's
# version is newer (crate `consumer`), a dead-letter queue for poison
# messages, and alarms.

terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

locals {
  name = "${var.name_prefix}-consumer"
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${local.name}-dlq"
  message_retention_seconds = var.dlq_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_sqs_queue" "queue" {
  name = local.name
  # The redrive policy is aws_sqs_queue_redrive_policy.queue's to manage.
  lifecycle {
    ignore_changes = [redrive_policy]
  }
  visibility_timeout_seconds = var.settings.visibility_timeout_seconds
  sqs_managed_sse_enabled    = true
  tags                       = var.tags
}

resource "aws_sqs_queue_redrive_policy" "queue" {
  queue_url = aws_sqs_queue.queue.id
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.settings.max_receive_count
  })
}

# Only the feed topic may send to the queue (and, what it cannot deliver, to
# the dead-letter queue).
data "aws_iam_policy_document" "queue" {
  for_each = { queue = aws_sqs_queue.queue.arn, dlq = aws_sqs_queue.dlq.arn }
  statement {
    sid       = "FeedTopic"
    actions   = ["sqs:SendMessage"]
    resources = [each.value]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [var.topic_arn]
    }
  }
}

resource "aws_sqs_queue_policy" "queue" {
  queue_url = aws_sqs_queue.queue.id
  policy    = data.aws_iam_policy_document.queue["queue"].json
  # One writer of the queue's attributes at a time.
  depends_on = [aws_sqs_queue_redrive_policy.queue]
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.queue["dlq"].json
}

resource "aws_sns_topic_subscription" "queue" {
  topic_arn            = var.topic_arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.queue.arn
  raw_message_delivery = true
  filter_policy        = var.filter_policy
  filter_policy_scope  = "MessageAttributes"
  # What SNS cannot deliver (after its retries) waits in the dead-letter queue.
  redrive_policy = jsonencode({ deadLetterTargetArn = aws_sqs_queue.dlq.arn })
  depends_on     = [aws_sqs_queue_policy.queue, aws_sqs_queue_policy.dlq]
}

# One item per aggregate group (pk: dataset#aggregate#group JSON).
resource "aws_dynamodb_table" "read_model" {
  #checkov:skip=CKV_AWS_119:encrypted at rest with the AWS-owned key; a CMK adds KMS grants and per-request cost for no added control here
  name         = "${var.name_prefix}-read-model"
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
  tags = var.tags
}

data "aws_iam_policy_document" "assume" {
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

resource "aws_iam_role" "consumer" {
  name               = local.name
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

# What the function calls (conditional PutItem on its table) and what its
# event source mapping calls with its role (receive and delete on its queue).
data "aws_iam_policy_document" "consumer" {
  statement {
    sid       = "WriteReadModel"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.read_model.arn]
  }
  statement {
    sid       = "ConsumeQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.queue.arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.consumer.arn}:*"]
  }
  statement {
    sid       = "Traces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions.
  }
}

resource "aws_iam_role_policy" "consumer" {
  name   = "consumer"
  role   = aws_iam_role.consumer.id
  policy = data.aws_iam_policy_document.consumer.json
}

resource "aws_cloudwatch_log_group" "consumer" {
  #checkov:skip=CKV_AWS_158:logs hold group keys and counts, no secrets; the service key encrypts them, a CMK adds cost and grants
  name              = "/aws/lambda/${local.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_lambda_function" "consumer" {
  #checkov:skip=CKV_AWS_116:invoked only by its event source mapping; failures go to the queue's DLQ, an async DLQ would never receive anything
  #checkov:skip=CKV_AWS_117:talks only to AWS APIs (DynamoDB); no VPC resources to reach, and a VPC would need NAT or endpoints
  #checkov:skip=CKV_AWS_115:concurrency is bounded by the mapping's maximum_concurrency, not by reserving account concurrency
  #checkov:skip=CKV_AWS_272:code signing needs a signing profile and a signed-artifact pipeline, outside this module (see README)
  #checkov:skip=CKV_AWS_173:the one variable is a table name, no secret; encrypted with the Lambda service key
  function_name    = local.name
  role             = aws_iam_role.consumer.arn
  filename         = var.zip
  source_code_hash = filebase64sha256(var.zip)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  memory_size      = var.settings.memory_mb
  timeout          = var.settings.timeout_seconds
  # Every variable the function reads (feed::handler::ENV_VARS).
  environment {
    variables = {
      READ_MODEL_TABLE = aws_dynamodb_table.read_model.name
      RUST_LOG         = "info"
    }
  }
  tracing_config {
    mode = "Active"
  }
  depends_on = [aws_cloudwatch_log_group.consumer, aws_iam_role_policy.consumer]
  tags       = var.tags
}

resource "aws_lambda_event_source_mapping" "consumer" {
  event_source_arn                   = aws_sqs_queue.queue.arn
  function_name                      = aws_lambda_function.consumer.arn
  batch_size                         = var.settings.batch_size
  maximum_batching_window_in_seconds = var.settings.batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]
  scaling_config {
    maximum_concurrency = var.settings.maximum_concurrency
  }
  depends_on = [aws_iam_role_policy.consumer]
}

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  alarm_name          = "${local.name}-dlq-not-empty"
  alarm_description   = "Poison feed messages in ${aws_sqs_queue.dlq.name}: the consumer could not read them. Inspect, fix, redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  alarm_name          = "${local.name}-errors"
  alarm_description   = "The consumer function failed invocations; see its log group."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.consumer.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "age" {
  alarm_name          = "${local.name}-behind"
  alarm_description   = "The consumer is more than 5 minutes behind its queue."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.queue.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = 300
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  tags                = var.tags
}
