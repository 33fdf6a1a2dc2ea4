//! The change feed: aggregate changes and completed files as SQS messages.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_sdk_sqs::types::{BatchResultErrorEntry, MessageAttributeValue, SendMessageBatchRequestEntry};
use schema::feed::{message_id, FeedMessage, FEED_SCHEMA_VERSION};
use schema::items::Manifest;

use crate::error::RetryClass;
use crate::project::AggregateChange;
use crate::retry::Policy;

/// SQS's limit on a message body.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most keys a `file.completed` message lists.
const MAX_KEYS: usize = 100;
/// Most entries in one `SendMessageBatch` (SQS's limit).
const MAX_BATCH_ENTRIES: usize = 10;
/// Entries SQS refused (throttled, or failed inside): four rounds in all,
/// then the batch is retried by Lambda.
const SEND_ROUNDS: Policy = Policy::new(Duration::from_millis(50), Duration::from_secs(1), 4);

/// Why the feed could not take a batch's messages. Every message is sent
/// again when Lambda retries the batch (with the same ids).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A message over SQS's size limit: no retry makes it fit.
    #[error("message {id} is {bytes} bytes, over SQS's limit")]
    TooLarge {
        /// The message's id.
        id: String,
        /// Its body's size.
        bytes: usize,
    },
    /// `SendMessageBatch` failed (after the SDK's own retries).
    #[error("SendMessageBatch")]
    SendBatch(#[source] Box<SdkError<SendMessageBatchError>>),
    /// SQS refused some entries in every round.
    #[error("SQS refused {count} message(s) {rounds} times: {failed:?}")]
    Refused {
        /// Entries refused in the last round.
        count: usize,
        /// Rounds made.
        rounds: u32,
        /// SQS's reasons, last round.
        failed: Vec<BatchResultErrorEntry>,
    },
}

impl FeedError {
    /// Whether trying again can succeed.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            FeedError::TooLarge { .. } => RetryClass::Permanent,
            FeedError::SendBatch(_) | FeedError::Refused { .. } => RetryClass::Transient,
        }
    }
}

/// The message of an aggregate change.
pub fn aggregate_changed(c: &AggregateChange, group_terms: &[String]) -> FeedMessage {
    let values_json = serde_json::to_string(&c.key.values).expect("strings serialize");
    let version = c.version.to_string();
    FeedMessage::AggregateChanged {
        schema_version: FEED_SCHEMA_VERSION,
        id: message_id(&[
            "aggregate.changed",
            &c.key.dataset,
            &c.key.aggregate,
            &values_json,
            &version,
        ]),
        dataset: c.key.dataset.clone(),
        aggregate: c.key.aggregate.clone(),
        group: group_terms
            .iter()
            .cloned()
            .zip(c.key.values.iter().cloned())
            .collect::<BTreeMap<_, _>>(),
        values: c.values.clone(),
        version: c.version,
        changed_at: c.updated_at.clone(),
    }
}

/// The message of a file that reached a final status. A file seen under more
/// than 100 keys lists the first 100 and says so, to stay under SQS's limit.
pub fn file_completed(m: &Manifest) -> FeedMessage {
    let completed_at = m.completed_at.clone().unwrap_or_else(|| m.updated_at.clone());
    FeedMessage::FileCompleted {
        schema_version: FEED_SCHEMA_VERSION,
        id: message_id(&["file.completed", &m.file_id, m.status.as_str(), &completed_at]),
        file_id: m.file_id.clone(),
        dataset: m.dataset.clone(),
        keys: m.keys.iter().take(MAX_KEYS).cloned().collect(),
        keys_truncated: m.keys.len() > MAX_KEYS,
        status: m.status.as_str().to_owned(),
        reason: m.reason.clone(),
        rows: m.rows,
        accepted: m.accepted,
        rejected: m.rejected,
        completed_at,
    }
}

/// The feed queue.
#[derive(Debug, Clone)]
pub struct Feed {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

/// What sending took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Messages sent.
    pub messages: u64,
    /// `SendMessageBatch` requests.
    pub requests: u64,
}

impl Feed {
    /// A feed on `queue_url`.
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Feed {
            sqs,
            queue_url: queue_url.into(),
        }
    }

    /// Send messages in batches of ten; entries SQS refuses are sent again
    /// after a backoff. Duplicate ids within one call are sent once.
    pub async fn send(&self, messages: &[FeedMessage]) -> Result<Sent, FeedError> {
        let mut seen = HashSet::new();
        let unique: Vec<&FeedMessage> = messages.iter().filter(|m| seen.insert(m.id().to_owned())).collect();
        let mut sent = Sent::default();
        for chunk in unique.chunks(MAX_BATCH_ENTRIES) {
            // Entry ids are positions in the chunk, so a refused entry is
            // found again whatever SQS returns in its reason.
            let mut pending: Vec<(usize, &FeedMessage)> = chunk.iter().copied().enumerate().collect();
            let mut rounds = SEND_ROUNDS.start();
            loop {
                let entries = pending
                    .iter()
                    .map(|(i, m)| entry(*i, m))
                    .collect::<Result<Vec<_>, FeedError>>()?;
                let out = self
                    .sqs
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| FeedError::SendBatch(Box::new(e)))?;
                sent.requests += 1;
                let failed: Vec<String> = out.failed().iter().map(|f| f.id().to_owned()).collect();
                sent.messages += (pending.len() - failed.len()) as u64;
                if failed.is_empty() {
                    break;
                }
                tracing::info!(
                    refused = failed.len(),
                    round = rounds.made(),
                    "SQS refused feed entries"
                );
                if !rounds.pause().await {
                    return Err(FeedError::Refused {
                        count: failed.len(),
                        rounds: rounds.made(),
                        failed: out.failed().to_vec(),
                    });
                }
                pending.retain(|(i, _)| failed.contains(&i.to_string()));
            }
        }
        Ok(sent)
    }
}

fn entry(index: usize, m: &FeedMessage) -> Result<SendMessageBatchRequestEntry, FeedError> {
    let body = serde_json::to_string(m).expect("feed messages serialize");
    if body.len() > MAX_MESSAGE_BYTES {
        // Aggregate values and file messages are bounded above; refusing loudly
        // beats dropping a change.
        return Err(FeedError::TooLarge {
            id: m.id().to_owned(),
            bytes: body.len(),
        });
    }
    let attr = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .expect("data type is set")
    };
    Ok(SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(body)
        .message_attributes("type", attr(m.kind()))
        .message_attributes("dataset", attr(m.dataset()))
        .message_attributes("id", attr(m.id()))
        .build()
        .expect("id and body are set"))
}

#[cfg(test)]
mod tests {
    use schema::items::FileStatus;

    use super::*;

    #[test]
    fn a_message_over_the_limit_is_refused_for_good() {
        let mut m = Manifest::new("f", "orders", 1, "b", "orders/a.csv", 10, "2024-01-01T00:00:00Z");
        m.status = FileStatus::Failed;
        assert!(entry(3, &file_completed(&m)).is_ok());
        m.reason = Some("x".repeat(MAX_MESSAGE_BYTES));
        let e = entry(3, &file_completed(&m)).unwrap_err();
        assert!(
            matches!(e, FeedError::TooLarge { bytes, .. } if bytes > MAX_MESSAGE_BYTES),
            "{e}"
        );
        assert_eq!(e.retry_class(), RetryClass::Permanent);
    }
}
