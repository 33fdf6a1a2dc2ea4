# Test-only root module: the production module (..) applied to moto on
# 127.0.0.1. Endpoints and fake credentials live here, never in the module.

variable "endpoint" {
  description = "moto's URL"
  type        = string
}

variable "operator_arn" {
  description = "The IAM user CI runs as; it assumes the function roles to run the handlers."
  type        = string
}

provider "aws" {
  region                      = "us-east-1"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true
  endpoints {
    cloudwatch = var.endpoint
    dynamodb   = var.endpoint
    iam        = var.endpoint
    lambda     = var.endpoint
    logs       = var.endpoint
    s3         = var.endpoint
    sns        = var.endpoint
    sqs        = var.endpoint
    sts        = var.endpoint
  }
}

module "pipeline" {
  source        = "../"
  ingest_zip    = "${path.root}/../../target/lambda/ingest/bootstrap.zip"
  projector_zip = "${path.root}/../../target/lambda/projector/bootstrap.zip"
  consumer_zip  = "${path.root}/../../target/lambda/consumer/bootstrap.zip"

  reference_consumer = true # the optional module, applied and checked too

  trusted_principal_arns = [var.operator_arn]
  force_destroy          = true # the check destroys what it made, uploads included
}

output "bucket_name" { value = module.pipeline.bucket_name }
output "upload_prefix" { value = module.pipeline.upload_prefix }
output "events_table_name" { value = module.pipeline.events_table_name }
output "events_stream_arn" { value = module.pipeline.events_stream_arn }
output "aggregates_table_name" { value = module.pipeline.aggregates_table_name }
output "ingest_queue_name" { value = module.pipeline.ingest_queue_name }
output "ingest_dlq_name" { value = module.pipeline.ingest_dlq_name }
output "feed_topic_name" { value = module.pipeline.feed_topic_name }
output "feed_topic_arn" { value = module.pipeline.feed_topic_arn }
output "feed_queue_name" { value = module.pipeline.feed_queue_name }
output "feed_queue_url" { value = module.pipeline.feed_queue_url }
output "feed_dlq_name" { value = module.pipeline.feed_dlq_name }
output "projector_failures_queue_name" { value = module.pipeline.projector_failures_queue_name }
output "ingest_function_name" { value = module.pipeline.ingest_function_name }
output "projector_function_name" { value = module.pipeline.projector_function_name }
output "ingest_role_arn" { value = module.pipeline.ingest_role_arn }
output "projector_role_arn" { value = module.pipeline.projector_role_arn }
output "consumer_queue_name" { value = module.pipeline.consumer_queue_name }
output "consumer_dlq_name" { value = module.pipeline.consumer_dlq_name }
output "read_model_table_name" { value = module.pipeline.read_model_table_name }
output "consumer_function_name" { value = module.pipeline.consumer_function_name }
output "consumer_role_arn" { value = module.pipeline.consumer_role_arn }
