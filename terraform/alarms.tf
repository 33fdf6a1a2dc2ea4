locals {
  dlqs = {
    ingest-dlq         = aws_sqs_queue.ingest_dlq.name
    feed-dlq           = aws_sqs_queue.feed_dlq.name
    projector-failures = aws_sqs_queue.projector_failures.name
  }
  functions = {
    ingest    = aws_lambda_function.ingest.function_name
    projector = aws_lambda_function.projector.function_name
  }
}

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  for_each            = local.dlqs
  alarm_name          = "${local.prefix}-${each.key}-not-empty"
  alarm_description   = "Messages in ${each.value}: something failed for good. Inspect them, fix the cause, redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each            = local.functions
  alarm_name          = "${local.prefix}-${each.key}-errors"
  alarm_description   = "The ${each.key} function failed invocations; see its log group."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "iterator_age" {
  alarm_name          = "${local.prefix}-projector-iterator-age"
  alarm_description   = "The projector is more than 5 minutes behind the events stream."
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = aws_lambda_function.projector.function_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = 300000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "feed_deliveries_failed" {
  alarm_name          = "${local.prefix}-feed-deliveries-failed"
  alarm_description   = "SNS could not deliver feed messages to a subscribed queue (a queue policy, a deleted queue): those subscribers miss changes."
  namespace           = "AWS/SNS"
  metric_name         = "NumberOfNotificationsFailed"
  dimensions          = { TopicName = aws_sns_topic.feed.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  tags                = local.tags
}
