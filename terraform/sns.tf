# The change feed's topic: the projector publishes each change once, and
# every subscribed queue receives its own copy. Subscriptions use raw
# delivery (the body as published, the `type`, `dataset` and `id` message
# attributes carried over), so a subscriber reads exactly what the feed
# queue's consumers always have; filter policies on `type` and `dataset`
# choose what each receives.
resource "aws_sns_topic" "feed" {
  name = "${local.prefix}-feed"
  # Encrypted with the AWS managed key: its key policy lets principals of
  # this account use it through SNS, so the publisher's role needs no KMS
  # grant (a customer managed key would need kms:GenerateDataKey and
  # kms:Decrypt on it). AWS services cannot publish to such a topic; none does.
  kms_master_key_id = "alias/aws/sns"
  tags              = local.tags
}

# The feed queue, subscribed to everything: today's consumers keep working.
# A message SNS cannot deliver (after its retries) goes to the feed's
# dead-letter queue instead of being lost.
resource "aws_sns_topic_subscription" "feed" {
  topic_arn            = aws_sns_topic.feed.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.feed.arn
  raw_message_delivery = true
  redrive_policy       = jsonencode({ deadLetterTargetArn = aws_sqs_queue.feed_dlq.arn })
  # SNS may send to the queues only once their policies say so.
  depends_on = [aws_sqs_queue_policy.feed, aws_sqs_queue_policy.feed_dlq]
}

# Only the feed topic may send to the feed queue, and to the feed's
# dead-letter queue what it cannot deliver.
data "aws_iam_policy_document" "feed_queue" {
  for_each = { queue = aws_sqs_queue.feed.arn, dlq = aws_sqs_queue.feed_dlq.arn }
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
      values   = [aws_sns_topic.feed.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "feed" {
  queue_url = aws_sqs_queue.feed.id
  policy    = data.aws_iam_policy_document.feed_queue["queue"].json
  # Both write the queue's attributes: one at a time (moto drops the policy
  # when the redrive policy is written after it).
  depends_on = [aws_sqs_queue_redrive_policy.feed]
}

resource "aws_sqs_queue_policy" "feed_dlq" {
  queue_url = aws_sqs_queue.feed_dlq.id
  policy    = data.aws_iam_policy_document.feed_queue["dlq"].json
}

# The reference consumer: its own queue on the topic, filtered, a Lambda
# keeping a read model table. Off by default (`reference_consumer = true`).
module "reference_consumer" {
  source = "./modules/reference-consumer"
  count  = var.reference_consumer ? 1 : 0

  name_prefix            = local.prefix
  topic_arn              = aws_sns_topic.feed.arn
  zip                    = var.consumer_zip
  settings               = local.settings.consumer
  filter_policy          = coalesce(var.consumer_filter_policy, jsonencode(local.settings.consumer.filter_policy))
  dlq_retention_seconds  = local.settings.dlq_retention_seconds
  log_retention_days     = var.log_retention_days
  alarm_actions          = var.alarm_actions
  trusted_principal_arns = var.trusted_principal_arns
  tags                   = local.tags
}

# The topic's own policy delegates to this account's IAM: a principal may
# publish or subscribe only if its identity policy says so (the projector's
# role: sns:Publish). SNS's default policy instead allows every principal of
# the account, by the topic owner condition.
data "aws_iam_policy_document" "feed_topic" {
  statement {
    sid = "AccountIam"
    actions = [
      "sns:GetTopicAttributes",
      "sns:SetTopicAttributes",
      "sns:ListSubscriptionsByTopic",
      "sns:Subscribe",
      "sns:Publish",
    ]
    resources = [aws_sns_topic.feed.arn]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_sns_topic_policy" "feed" {
  arn    = aws_sns_topic.feed.arn
  policy = data.aws_iam_policy_document.feed_topic.json
}
