resource "aws_s3_bucket" "uploads" {
  #checkov:skip=CKV_AWS_18:access is already recorded per object: every upload becomes an upload record and a manifest in the events table; server access logs would need a second bucket
  #checkov:skip=CKV_AWS_144:uploads are inputs the events table captures line by line (with point-in-time recovery); replicating them doubles storage for nothing
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) encrypts every object; SSE-KMS would add a kms:Decrypt grant to the ingest role and a KMS request per read
  bucket        = local.bucket
  force_destroy = var.force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_versioning" "uploads" {
  bucket = aws_s3_bucket.uploads.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "uploads" {
  bucket = aws_s3_bucket.uploads.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "uploads" {
  bucket                  = aws_s3_bucket.uploads.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Old versions of re-uploaded files are not needed: the events hold every line.
resource "aws_s3_bucket_lifecycle_configuration" "uploads" {
  bucket = aws_s3_bucket.uploads.id
  rule {
    id     = "expire-noncurrent-and-incomplete"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "uploads_tls_only" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.uploads.arn, "${aws_s3_bucket.uploads.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "uploads" {
  bucket     = aws_s3_bucket.uploads.id
  policy     = data.aws_iam_policy_document.uploads_tls_only.json
  depends_on = [aws_s3_bucket_public_access_block.uploads]
}

resource "aws_s3_bucket_notification" "uploads" {
  bucket = aws_s3_bucket.uploads.id
  # One rule per suffix (plain, gzip, zstd): a rule takes one suffix, and
  # these do not overlap (".csv" is not a suffix of "a.csv.gz").
  dynamic "queue" {
    for_each = local.settings.upload_suffixes
    content {
      id            = "ingest${replace(queue.value, ".", "-")}"
      queue_arn     = aws_sqs_queue.ingest.arn
      events        = ["s3:ObjectCreated:*"]
      filter_prefix = local.settings.upload_prefix
      filter_suffix = queue.value
    }
  }
  depends_on = [aws_sqs_queue_policy.ingest]
}
