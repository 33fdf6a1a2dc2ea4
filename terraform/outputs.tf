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
