//! The change feed: aggregate changes and completed files as SQS messages.

use std::collections::BTreeMap;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use schema::feed::{message_id, FeedMessage, FEED_SCHEMA_VERSION};
use schema::items::Manifest;

use crate::project::AggregateChange;

/// SQS's limit on a message body.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most keys a `file.completed` message lists.
const MAX_KEYS: usize = 100;
/// Rounds of re-sending the entries SQS refused.
const MAX_SEND_ROUNDS: usize = 4;

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

    /// Send messages in batches of ten; entries SQS refuses are sent again.
    /// Duplicate ids within one call are sent once.
    pub async fn send(&self, messages: &[FeedMessage]) -> Result<Sent, String> {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&FeedMessage> = messages.iter().filter(|m| seen.insert(m.id().to_owned())).collect();
        let mut sent = Sent::default();
        for chunk in unique.chunks(10) {
            let mut pending: Vec<(usize, &FeedMessage)> = chunk.iter().copied().enumerate().collect();
            for round in 0.. {
                let entries = pending
                    .iter()
                    .map(|(i, m)| entry(*i, m))
                    .collect::<Result<Vec<_>, String>>()?;
                let out = self
                    .sqs
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| format!("SendMessageBatch: {}", DisplayErrorContext(&e)))?;
                sent.requests += 1;
                let failed: Vec<String> = out.failed().iter().map(|f| f.id().to_owned()).collect();
                sent.messages += (pending.len() - failed.len()) as u64;
                if failed.is_empty() {
                    break;
                }
                if round + 1 >= MAX_SEND_ROUNDS {
                    return Err(format!(
                        "SQS refused {} message(s) {MAX_SEND_ROUNDS} times: {:?}",
                        failed.len(),
                        out.failed()
                    ));
                }
                pending.retain(|(i, _)| failed.contains(&i.to_string()));
            }
        }
        Ok(sent)
    }
}

fn entry(index: usize, m: &FeedMessage) -> Result<SendMessageBatchRequestEntry, String> {
    let body = serde_json::to_string(m).expect("feed messages serialize");
    if body.len() > MAX_MESSAGE_BYTES {
        // Aggregate values and file messages are bounded above; refusing loudly
        // beats dropping a change.
        return Err(format!("message {} is {} bytes, over SQS's limit", m.id(), body.len()));
    }
    let attr = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
            .expect("data type is set")
    };
    SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(body)
        .message_attributes("type", attr(m.kind()))
        .message_attributes("dataset", attr(m.dataset()))
        .message_attributes("id", attr(m.id()))
        .build()
        .map_err(|e| e.to_string())
}
