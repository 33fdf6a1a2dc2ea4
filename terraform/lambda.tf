resource "aws_cloudwatch_log_group" "ingest" {
  #checkov:skip=CKV_AWS_158:logs hold no secrets or row data beyond file ids; the service key encrypts them, a CMK adds cost and grants
  name              = "/aws/lambda/${local.prefix}-ingest"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "projector" {
  #checkov:skip=CKV_AWS_158:logs hold no secrets or row data beyond file ids; the service key encrypts them, a CMK adds cost and grants
  name              = "/aws/lambda/${local.prefix}-projector"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

resource "aws_lambda_function" "ingest" {
  #checkov:skip=CKV_AWS_116:invoked only by an event source mapping; failures go to the queue DLQ / the on-failure queue, an async DLQ would never receive anything
  #checkov:skip=CKV_AWS_117:talks only to AWS APIs (S3, DynamoDB, SQS); no VPC resources to reach, and a VPC would need NAT or endpoints
  #checkov:skip=CKV_AWS_115:concurrency is bounded by the mappings (maximum_concurrency, one batch per shard), not by reserving account concurrency
  #checkov:skip=CKV_AWS_272:code signing needs a signing profile and a signed-artifact pipeline, outside this module (see README)
  #checkov:skip=CKV_AWS_173:the variables are resource names and tuning numbers, no secrets; they are encrypted with the Lambda service key
  function_name    = "${local.prefix}-ingest"
  role             = aws_iam_role.ingest.arn
  filename         = var.ingest_zip
  source_code_hash = filebase64sha256(var.ingest_zip)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  memory_size      = local.ingest.memory_mb
  timeout          = local.ingest.timeout_seconds
  # Every variable the function reads (ingest::config::ENV_VARS), set here so
  # the deployment says what it runs with; CI checks the two lists agree.
  environment {
    variables = merge(local.ingest.environment, {
      EVENTS_TABLE     = aws_dynamodb_table.events.name
      UPLOAD_PREFIX    = local.settings.upload_prefix
      INGEST_QUEUE_URL = aws_sqs_queue.ingest.id
      RUST_LOG         = "info"
    })
  }
  tracing_config {
    mode = "Active"
  }
  # Lambda logs to /aws/lambda/<name>, the group above (with its retention);
  # it must exist first. The binaries write JSON lines themselves. Lambda
  # checks the role can write traces when it creates a function with Active
  # tracing: the role's policy first.
  depends_on = [aws_cloudwatch_log_group.ingest, aws_iam_role_policy.ingest]
  tags       = local.tags
}

resource "aws_lambda_function" "projector" {
  #checkov:skip=CKV_AWS_116:invoked only by an event source mapping; failures go to the queue DLQ / the on-failure queue, an async DLQ would never receive anything
  #checkov:skip=CKV_AWS_117:talks only to AWS APIs (S3, DynamoDB, SQS); no VPC resources to reach, and a VPC would need NAT or endpoints
  #checkov:skip=CKV_AWS_115:concurrency is bounded by the mappings (maximum_concurrency, one batch per shard), not by reserving account concurrency
  #checkov:skip=CKV_AWS_272:code signing needs a signing profile and a signed-artifact pipeline, outside this module (see README)
  #checkov:skip=CKV_AWS_173:the variables are resource names and tuning numbers, no secrets; they are encrypted with the Lambda service key
  function_name    = "${local.prefix}-projector"
  role             = aws_iam_role.projector.arn
  filename         = var.projector_zip
  source_code_hash = filebase64sha256(var.projector_zip)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  memory_size      = local.project.memory_mb
  timeout          = local.project.timeout_seconds
  environment {
    variables = {
      AGGREGATES_TABLE = aws_dynamodb_table.aggregates.name
      FEED_TOPIC_ARN   = aws_sns_topic.feed.arn
      RUST_LOG         = "info"
    }
  }
  tracing_config {
    mode = "Active"
  }
  # Lambda logs to /aws/lambda/<name>, the group above (with its retention);
  # it must exist first. The binaries write JSON lines themselves. Lambda
  # checks the role can write traces when it creates a function with Active
  # tracing: the role's policy first.
  depends_on = [aws_cloudwatch_log_group.projector, aws_iam_role_policy.projector]
  tags       = local.tags
}

resource "aws_lambda_event_source_mapping" "ingest" {
  event_source_arn                   = aws_sqs_queue.ingest.arn
  function_name                      = aws_lambda_function.ingest.arn
  batch_size                         = local.ingest.batch_size
  maximum_batching_window_in_seconds = local.ingest.batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]
  scaling_config {
    maximum_concurrency = local.ingest.maximum_concurrency
  }
  # Lambda checks the function's role may receive from the queue when it
  # creates the mapping: the role's policy must exist first.
  depends_on = [aws_iam_role_policy.ingest]
}

resource "aws_lambda_event_source_mapping" "projector" {
  event_source_arn                   = aws_dynamodb_table.events.stream_arn
  function_name                      = aws_lambda_function.projector.arn
  starting_position                  = "TRIM_HORIZON"
  batch_size                         = local.project.batch_size
  maximum_batching_window_in_seconds = local.project.batching_window_seconds
  bisect_batch_on_function_error     = local.project.bisect_batch_on_function_error
  maximum_retry_attempts             = local.project.maximum_retry_attempts
  maximum_record_age_in_seconds      = local.project.maximum_record_age_seconds
  parallelization_factor             = local.project.parallelization_factor
  function_response_types            = ["ReportBatchItemFailures"]
  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.projector_failures.arn
    }
  }
  # Only line events and manifests that reached a final status: progress
  # checkpoints and upload records would invoke the projector for nothing.
  filter_criteria {
    dynamic "filter" {
      for_each = local.project.filters
      content {
        pattern = jsonencode(filter.value)
      }
    }
  }
  # Lambda checks the role may read the stream (and send to the on-failure
  # queue) when it creates the mapping: the role's policy must exist first.
  depends_on = [aws_iam_role_policy.projector]
}
