variable "name_prefix" {
  description = "Prefix of every resource name. Defaults to the one in settings.json, which the local stack uses too."
  type        = string
  default     = null
}

variable "bucket_name" {
  description = "Upload bucket name. Defaults to <prefix>-uploads-<account id> (bucket names are global)."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the upload bucket with every object version in it. Off by default: the uploads are the source of the events."
  type        = bool
  default     = false
}

variable "ingest_zip" {
  description = "The ingest Lambda's zip (scripts/build-lambdas.sh builds it)."
  type        = string
  default     = "../target/lambda/ingest/bootstrap.zip"
}

variable "projector_zip" {
  description = "The projector Lambda's zip (scripts/build-lambdas.sh builds it)."
  type        = string
  default     = "../target/lambda/projector/bootstrap.zip"
}

variable "log_retention_days" {
  description = "How long the functions' logs are kept."
  type        = number
  default     = 365
}

variable "alarm_actions" {
  description = "Where alarms notify (SNS topic ARNs); empty: alarms only change state."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}

variable "trusted_principal_arns" {
  description = "IAM principals (besides Lambda) allowed to assume the function roles, e.g. to run a handler locally under its role, as CI does. Empty: only Lambda."
  type        = list(string)
  default     = []
}

variable "reference_consumer" {
  description = "Deploy the reference consumer: a queue subscribed to the feed topic (filtered), a Lambda keeping a read model table, its dead-letter queue and alarms."
  type        = bool
  default     = false
}

variable "consumer_zip" {
  description = "The reference consumer Lambda's zip (scripts/build-lambdas.sh builds it); read only when reference_consumer is on."
  type        = string
  default     = "../target/lambda/consumer/bootstrap.zip"
}

variable "consumer_filter_policy" {
  description = "The reference consumer's SNS filter policy (JSON, on the type and dataset message attributes). Default: settings.json's consumer.filter_policy."
  type        = string
  default     = null
}
