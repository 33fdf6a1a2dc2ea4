//! The change feed: aggregate changes and completed files, published to an
//! SNS topic. Every subscriber (the feed queue, and any consumer's own
//! queue, filtered on the `type` and `dataset` attributes) gets each message
//! as sent: subscriptions use raw delivery.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_sns::error::SdkError;
use aws_sdk_sns::operation::publish_batch::PublishBatchError;
use aws_sdk_sns::types::{BatchResultErrorEntry, MessageAttributeValue, PublishBatchRequestEntry};
use schema::feed::{message_id, FeedMessage, FEED_SCHEMA_VERSION};
use schema::items::Manifest;

use crate::error::RetryClass;
use crate::project::AggregateChange;
use crate::retry::Policy;

/// SNS's limit on a message with its attributes, and on a whole
/// `PublishBatch` (the sum of its messages).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most keys a `file.completed` message lists.
const MAX_KEYS: usize = 100;
/// Most entries in one `PublishBatch` (SNS's limit).
const MAX_BATCH_ENTRIES: usize = 10;
/// Entries SNS refused (throttled, or failed inside): four rounds in all,
/// then the batch is retried by Lambda.
const SEND_ROUNDS: Policy = Policy::new(Duration::from_millis(50), Duration::from_secs(1), 4);

/// Why the feed could not take a batch's messages. Every message is sent
/// again when Lambda retries the batch (with the same ids).
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A message over SNS's size limit: no retry makes it fit.
    #[error("message {id} is {bytes} bytes with its attributes, over SNS's limit")]
    TooLarge {
        /// The message's id.
        id: String,
        /// Its body's size.
        bytes: usize,
    },
    /// `PublishBatch` failed (after the SDK's own retries).
    #[error("PublishBatch")]
    PublishBatch(#[source] Box<SdkError<PublishBatchError>>),
    /// SNS refused entries as the sender's fault (`SenderFault`): the
    /// request itself is wrong, so no retry can succeed.
    #[error("SNS refused {count} message(s) as malformed: {failed:?}")]
    Malformed {
        /// Entries refused so.
        count: usize,
        /// SNS's reasons.
        failed: Vec<BatchResultErrorEntry>,
    },
    /// SNS refused some entries in every round.
    #[error("SNS refused {count} message(s) {rounds} times: {failed:?}")]
    Refused {
        /// Entries refused in the last round.
        count: usize,
        /// Rounds made.
        rounds: u32,
        /// SNS's reasons, last round.
        failed: Vec<BatchResultErrorEntry>,
    },
}

impl FeedError {
    /// Whether trying again can succeed.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            FeedError::TooLarge { .. } | FeedError::Malformed { .. } => RetryClass::Permanent,
            FeedError::PublishBatch(_) | FeedError::Refused { .. } => RetryClass::Transient,
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
/// than 100 keys lists the first 100 and says so, to stay under SNS's limit.
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

/// The feed topic.
#[derive(Debug, Clone)]
pub struct Feed {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
}

/// What sending took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Messages published.
    pub messages: u64,
    /// `PublishBatch` requests.
    pub requests: u64,
}

impl Feed {
    /// A feed on the topic `topic_arn`.
    pub fn new(sns: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        Feed {
            sns,
            topic_arn: topic_arn.into(),
        }
    }

    /// Publish messages in batches of at most ten and 256 KiB; entries SNS
    /// refuses are published again after a backoff. Duplicate ids within one
    /// call are published once.
    pub async fn send(&self, messages: &[FeedMessage]) -> Result<Sent, FeedError> {
        let mut seen = HashSet::new();
        let unique: Vec<&FeedMessage> = messages.iter().filter(|m| seen.insert(m.id().to_owned())).collect();
        let entries = unique
            .iter()
            .map(|m| Entry::of(m))
            .collect::<Result<Vec<_>, FeedError>>()?;
        let mut sent = Sent::default();
        for batch in batches(&entries) {
            // Entry ids are positions in the batch, so a refused entry is
            // found again whatever SNS returns in its reason.
            let mut pending: Vec<(usize, &Entry)> = batch.iter().copied().enumerate().collect();
            let mut rounds = SEND_ROUNDS.start();
            loop {
                let request: Vec<PublishBatchRequestEntry> = pending.iter().map(|(i, e)| e.request(*i)).collect();
                let out = self
                    .sns
                    .publish_batch()
                    .topic_arn(&self.topic_arn)
                    .set_publish_batch_request_entries(Some(request))
                    .send()
                    .await
                    .map_err(|e| FeedError::PublishBatch(Box::new(e)))?;
                sent.requests += 1;
                let failed: Vec<String> = out.failed().iter().map(|f| f.id().to_owned()).collect();
                sent.messages += (pending.len() - failed.len()) as u64;
                if failed.is_empty() {
                    break;
                }
                let malformed: Vec<BatchResultErrorEntry> =
                    out.failed().iter().filter(|f| f.sender_fault()).cloned().collect();
                if !malformed.is_empty() {
                    return Err(FeedError::Malformed {
                        count: malformed.len(),
                        failed: malformed,
                    });
                }
                tracing::info!(
                    refused = failed.len(),
                    round = rounds.made(),
                    "SNS refused feed entries"
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

/// One message ready to publish: its body, attributes and their size as SNS
/// counts it (body, attribute names, types and values).
#[derive(Debug, Clone)]
struct Entry {
    body: String,
    attributes: [(&'static str, String); 3],
    bytes: usize,
}

impl Entry {
    fn of(m: &FeedMessage) -> Result<Entry, FeedError> {
        let body = serde_json::to_string(m).expect("feed messages serialize");
        let attributes = [
            ("type", m.kind().to_owned()),
            ("dataset", m.dataset().to_owned()),
            ("id", m.id().to_owned()),
        ];
        let bytes = body.len()
            + attributes
                .iter()
                .map(|(k, v)| k.len() + "String".len() + v.len())
                .sum::<usize>();
        if bytes > MAX_MESSAGE_BYTES {
            // Aggregate values and file messages are bounded above; refusing
            // loudly beats dropping a change.
            return Err(FeedError::TooLarge {
                id: m.id().to_owned(),
                bytes,
            });
        }
        Ok(Entry {
            body,
            attributes,
            bytes,
        })
    }

    fn request(&self, index: usize) -> PublishBatchRequestEntry {
        let mut b = PublishBatchRequestEntry::builder()
            .id(index.to_string())
            .message(&self.body);
        for (name, value) in &self.attributes {
            b = b.message_attributes(
                *name,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .expect("data type is set"),
            );
        }
        b.build().expect("id and message are set")
    }
}

/// Consecutive runs of at most ten entries and 256 KiB in all.
fn batches(entries: &[Entry]) -> Vec<Vec<&Entry>> {
    let mut out: Vec<Vec<&Entry>> = Vec::new();
    let mut bytes = 0;
    for e in entries {
        match out.last_mut() {
            Some(b) if b.len() < MAX_BATCH_ENTRIES && bytes + e.bytes <= MAX_MESSAGE_BYTES => {
                b.push(e);
                bytes += e.bytes;
            }
            _ => {
                out.push(vec![e]);
                bytes = e.bytes;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use schema::items::FileStatus;

    use super::*;

    #[test]
    fn a_message_over_the_limit_is_refused_for_good() {
        let mut m = Manifest::new("f", "orders", 1, "b", "orders/a.csv", 10, "2024-01-01T00:00:00Z");
        m.status = FileStatus::Failed;
        assert!(Entry::of(&file_completed(&m)).is_ok());
        m.reason = Some("x".repeat(MAX_MESSAGE_BYTES));
        let e = Entry::of(&file_completed(&m)).unwrap_err();
        assert!(
            matches!(e, FeedError::TooLarge { bytes, .. } if bytes > MAX_MESSAGE_BYTES),
            "{e}"
        );
        assert_eq!(e.retry_class(), RetryClass::Permanent);
    }

    #[test]
    fn batches_hold_ten_entries_and_256_kib_at_most() {
        let mut m = Manifest::new("f", "orders", 1, "b", "orders/a.csv", 10, "2024-01-01T00:00:00Z");
        m.status = FileStatus::Failed;
        let small = Entry::of(&file_completed(&m)).unwrap();
        m.reason = Some("x".repeat(100 * 1024));
        let big = Entry::of(&file_completed(&m)).unwrap();
        let entries: Vec<Entry> = (0..23).map(|_| small.clone()).collect();
        let sizes: Vec<usize> = batches(&entries).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);
        let entries = vec![big.clone(), big.clone(), big.clone(), small.clone()];
        let sizes: Vec<usize> = batches(&entries).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2], "two 100 KiB messages fill a batch");
        for b in batches(&entries) {
            assert!(b.iter().map(|e| e.bytes).sum::<usize>() <= MAX_MESSAGE_BYTES);
        }
    }
}
