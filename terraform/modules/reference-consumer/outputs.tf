output "queue_name" {
  value = aws_sqs_queue.queue.name
}
output "queue_arn" {
  value = aws_sqs_queue.queue.arn
}
output "dlq_name" {
  value = aws_sqs_queue.dlq.name
}
output "dlq_arn" {
  value = aws_sqs_queue.dlq.arn
}
output "table_name" {
  value = aws_dynamodb_table.read_model.name
}
output "function_name" {
  value = aws_lambda_function.consumer.function_name
}
output "role_arn" {
  value = aws_iam_role.consumer.arn
}
