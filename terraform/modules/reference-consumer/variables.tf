variable "name_prefix" {
  description = "Prefix of every resource name (the pipeline's)."
  type        = string
}

variable "topic_arn" {
  description = "The feed topic to subscribe to."
  type        = string
}

variable "zip" {
  description = "The consumer Lambda's zip."
  type        = string
}

variable "settings" {
  description = "settings.json's consumer object: function, queue and mapping settings."
  type = object({
    timeout_seconds            = number
    memory_mb                  = number
    batch_size                 = number
    batching_window_seconds    = number
    maximum_concurrency        = number
    max_receive_count          = number
    visibility_timeout_seconds = number
    filter_policy              = any
  })
}

variable "filter_policy" {
  description = "The subscription's SNS filter policy (JSON, on the message attributes)."
  type        = string
}

variable "dlq_retention_seconds" {
  description = "How long the dead-letter queue keeps a message."
  type        = number
}

variable "log_retention_days" {
  description = "How long the function's logs are kept."
  type        = number
}

variable "alarm_actions" {
  description = "Where alarms notify."
  type        = list(string)
}

variable "trusted_principal_arns" {
  description = "IAM principals (besides Lambda) allowed to assume the role."
  type        = list(string)
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
}
