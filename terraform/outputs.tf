# Every name `pipeline --outputs` reads (terraform output -json > outputs.json).
output "bucket_name" {
  value = aws_s3_bucket.uploads.bucket
}
output "upload_prefix" {
  value = local.settings.upload_prefix
}
output "events_table_name" {
  value = aws_dynamodb_table.events.name
}
output "events_stream_arn" {
  value = aws_dynamodb_table.events.stream_arn
}
output "aggregates_table_name" {
  value = aws_dynamodb_table.aggregates.name
}
output "ingest_queue_name" {
  value = aws_sqs_queue.ingest.name
}
output "ingest_dlq_name" {
  value = aws_sqs_queue.ingest_dlq.name
}
output "feed_topic_name" {
  value = aws_sns_topic.feed.name
}
output "feed_topic_arn" {
  value = aws_sns_topic.feed.arn
}
output "feed_queue_name" {
  value = aws_sqs_queue.feed.name
}
output "feed_queue_url" {
  value = aws_sqs_queue.feed.id
}
output "feed_dlq_name" {
  value = aws_sqs_queue.feed_dlq.name
}
output "projector_failures_queue_name" {
  value = aws_sqs_queue.projector_failures.name
}
output "ingest_function_name" {
  value = aws_lambda_function.ingest.function_name
}
output "projector_function_name" {
  value = aws_lambda_function.projector.function_name
}
output "ingest_role_arn" {
  value = aws_iam_role.ingest.arn
}
output "projector_role_arn" {
  value = aws_iam_role.projector.arn
}
output "reingest_policy_arn" {
  value = aws_iam_policy.reingest.arn
}
# The reference consumer's: null when it is not deployed.
output "consumer_queue_name" {
  value = one(module.reference_consumer[*].queue_name)
}
output "consumer_dlq_name" {
  value = one(module.reference_consumer[*].dlq_name)
}
output "read_model_table_name" {
  value = one(module.reference_consumer[*].table_name)
}
output "consumer_function_name" {
  value = one(module.reference_consumer[*].function_name)
}
output "consumer_role_arn" {
  value = one(module.reference_consumer[*].role_arn)
}
