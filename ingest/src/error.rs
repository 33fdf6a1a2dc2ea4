//! Errors of the ingest, with the context needed to act on them.

use thiserror::Error;

/// Why an object (and so its SQS message) could not be ingested this time.
///
/// Every variant fails the message: SQS makes it visible again, the retry
/// resumes from the manifest's checkpoint, and after the queue's receive limit
/// the message goes to the dead-letter queue.
#[derive(Debug, Error)]
pub enum IngestError {
    /// The SQS body is not an S3 notification.
    #[error("message {message_id}: {source}")]
    BadMessage {
        /// The SQS message id.
        message_id: String,
        /// What was wrong with it.
        source: crate::notification::NotANotification,
    },
    /// An S3 call failed.
    #[error("s3://{bucket}/{key}: {operation}: {message}")]
    S3 {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// The S3 operation.
        operation: &'static str,
        /// The SDK's error with its context.
        message: String,
    },
    /// A DynamoDB call failed (after the SDK's own retries).
    #[error("file {file_id}: DynamoDB {operation}: {message}")]
    Dynamo {
        /// The file being ingested.
        file_id: String,
        /// The DynamoDB operation.
        operation: &'static str,
        /// The SDK's error with its context.
        message: String,
    },
    /// An SQS call failed (chunk tasks).
    #[error("SQS {operation}: {message}")]
    Sqs {
        /// The SQS operation.
        operation: &'static str,
        /// The SDK's error with its context.
        message: String,
    },
    /// Another run holds the file's lease.
    #[error("file {file_id} is being ingested by another run (lease until {lease_until_ms} ms since epoch)")]
    Leased {
        /// The file.
        file_id: String,
        /// Until when.
        lease_until_ms: i64,
    },
    /// The run stopped before the Lambda deadline; the checkpoint is saved.
    #[error("s3://{bucket}/{key}: stopped at line {line} to meet the deadline; a retry resumes there")]
    Deadline {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Last line written.
        line: u64,
    },
    /// The reading thread died.
    #[error("reader thread: {0}")]
    Reader(String),
}

impl IngestError {
    /// Whether trying again can succeed. A malformed message cannot; it still
    /// fails (rather than being dropped) so it is kept in the dead-letter queue.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, IngestError::BadMessage { .. })
    }
}
