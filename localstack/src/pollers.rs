//! Event source mappings, locally: pollers that hand the library handlers
//! the events Lambda would, with Lambda's semantics.
//!
//! * [`SqsPoller`]: batches of up to ten messages; a message the handler
//!   reports as failed stays on the queue and comes back after its
//!   visibility timeout, and the queue's redrive policy moves it to the
//!   dead-letter queue after its receive limit (SQS does that, not the
//!   poller, as on AWS). The others are deleted.
//! * [`StreamPoller`]: each shard in order, in batches; a batch the handler
//!   fails is retried from the first record it reports, split in two when
//!   bisecting is on, and after the last retry (or once its records are too
//!   old) described on the on-failure queue and skipped.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::streams::DynamoDbEventResponse;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
};

pub use crate::queues::queue_depth;
use crate::streams::StreamReader;

/// An SQS event source mapping.
pub struct SqsPoller {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    batch_size: i32,
    /// After a failure, make the message visible again this soon instead of
    /// after the queue's visibility timeout (local runs: minutes become seconds).
    pub retry_after: Option<Duration>,
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqsPoll {
    /// Messages received.
    pub received: usize,
    /// Messages the handler reported as failed (left on the queue).
    pub failed: Vec<String>,
}

impl SqsPoller {
    /// A poller of `queue_url`, `batch_size` messages at a time (1 to 10).
    pub async fn new(sqs: aws_sdk_sqs::Client, queue_url: &str, batch_size: u32) -> Result<Self> {
        let queue_arn = crate::queues::queue_arn(&sqs, queue_url).await?;
        Ok(SqsPoller {
            sqs,
            queue_url: queue_url.to_owned(),
            queue_arn,
            batch_size: batch_size.clamp(1, 10) as i32,
            retry_after: None,
        })
    }

    /// Receive one batch (waiting up to `wait_seconds` for one), hand it to
    /// `handler`, and delete what it did not report as failed.
    pub async fn poll_once(
        &self,
        handler: impl AsyncFn(SqsEvent) -> SqsBatchResponse,
        wait_seconds: i32,
    ) -> Result<SqsPoll> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .with_context(|| format!("receiving from {}", self.queue_url))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(SqsPoll::default());
        }
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| self.lambda_message(m)).collect();
        let response = handler(event).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        let (done, retry): (Vec<_>, Vec<_>) = messages
            .iter()
            .partition(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()));
        if !done.is_empty() {
            let entries = done
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await?;
            // A failed delete only means the message comes back: the handler is idempotent.
            for f in out.failed() {
                tracing::warn!(
                    id = f.id(),
                    code = f.code(),
                    "delete failed; the message will be handled again"
                );
            }
        }
        if let (Some(after), false) = (self.retry_after, retry.is_empty()) {
            let entries = retry
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .visibility_timeout(after.as_secs() as i32)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.sqs
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await?;
        }
        Ok(SqsPoll {
            received: messages.len(),
            failed,
        })
    }

    /// Messages on the queue, visible or in flight.
    pub async fn depth(&self) -> Result<u64> {
        queue_depth(&self.sqs, &self.queue_url).await
    }

    fn lambda_message(&self, m: &aws_sdk_sqs::types::Message) -> SqsMessage {
        let mut out = SqsMessage::default();
        out.message_id = m.message_id.clone();
        out.receipt_handle = m.receipt_handle.clone();
        out.body = m.body.clone();
        out.md5_of_body = m.md5_of_body.clone();
        out.attributes = m
            .attributes()
            .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect())
            .unwrap_or_default();
        out.message_attributes = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| {
                        let mut attr = aws_lambda_events::sqs::SqsMessageAttribute::default();
                        attr.string_value = v.string_value.clone();
                        attr.data_type = Some(v.data_type.clone());
                        (k.clone(), attr)
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.event_source_arn = Some(self.queue_arn.clone());
        out.event_source = Some("aws:sqs".into());
        out.aws_region = Some(crate::identity::REGION.into());
        out
    }
}

/// The settings of a DynamoDB stream event source mapping, as Lambda's
/// `CreateEventSourceMapping` takes them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StreamMapping {
    /// Records per invocation, at most.
    pub batch_size: u32,
    /// How long to gather records before invoking with fewer than a batch.
    pub batching_window_seconds: u32,
    /// Retries of a failing batch before its records are given up on.
    pub maximum_retry_attempts: u32,
    /// Records older than this are given up on.
    pub maximum_record_age_seconds: u32,
    /// Split a failing batch in two and retry each half.
    pub bisect_batch_on_function_error: bool,
    /// Filter patterns: a record is handed over when it matches one (none: all).
    pub filters: Vec<serde_json::Value>,
}

/// Whether a stream record (in the JSON Lambda delivers) matches one of the
/// filter patterns. Patterns as the mapping uses them: objects nest, and a
/// leaf lists the values it accepts.
pub fn matches_any(record: &serde_json::Value, patterns: &[serde_json::Value]) -> bool {
    fn matches(v: &serde_json::Value, p: &serde_json::Value) -> bool {
        match p {
            serde_json::Value::Object(fields) => {
                fields.iter().all(|(k, sub)| v.get(k).is_some_and(|x| matches(x, sub)))
            }
            serde_json::Value::Array(allowed) => allowed.contains(v),
            other => other == v,
        }
    }
    patterns.is_empty() || patterns.iter().any(|p| matches(record, p))
}

/// A DynamoDB stream event source mapping.
pub struct StreamPoller {
    reader: StreamReader,
    /// Records read but not yet handed over (the batching window), of one shard.
    buffer: Vec<EventRecord>,
    buffer_shard: Option<String>,
    buffered_since: Option<std::time::Instant>,
    /// Shard to the last sequence number handled (or given up on).
    handled: std::collections::HashMap<String, String>,
    settings: StreamMapping,
    sqs: aws_sdk_sqs::Client,
    on_failure_url: String,
    stream_arn: String,
}

/// What one stream poll did.
#[derive(Debug, Clone, Default)]
pub struct StreamPoll {
    /// Records read from the stream.
    pub records: u64,
    /// Handler invocations (retries and halves included).
    pub invocations: u64,
    /// Records given up on and described on the on-failure queue.
    pub sent_to_on_failure: u64,
}

impl StreamPoller {
    /// A poller of `reader`'s stream with the mapping's settings, giving up
    /// on records by describing them on `on_failure_url`.
    pub fn new(reader: StreamReader, settings: StreamMapping, sqs: aws_sdk_sqs::Client, on_failure_url: &str) -> Self {
        let stream_arn = reader.stream_arn().to_owned();
        StreamPoller {
            handled: reader.positions().clone(),
            reader,
            buffer: Vec::new(),
            buffer_shard: None,
            buffered_since: None,
            settings,
            sqs,
            on_failure_url: on_failure_url.to_owned(),
            stream_arn,
        }
    }

    /// Where each shard stands: the last record handled (save it to resume there).
    pub fn positions(&self) -> &std::collections::HashMap<String, String> {
        &self.handled
    }

    /// Read what the stream has, and hand one batch of one shard to the
    /// handler once it is full, or its batching window has passed, or
    /// `flush` is set. `records == 0` when nothing was read.
    pub async fn poll_once(
        &mut self,
        handler: impl AsyncFn(Event) -> DynamoDbEventResponse,
        flush: bool,
    ) -> Result<StreamPoll> {
        let size = self.settings.batch_size as usize;
        let mut poll = StreamPoll::default();
        if self.buffer.len() < size {
            let read = self.reader.next_batch((size - self.buffer.len()) as i32).await?;
            poll.records = read.len() as u64;
            let shard = self.reader.last_shard().map(str::to_owned);
            if !read.is_empty() && self.buffer_shard.is_some() && shard != self.buffer_shard {
                // A batch holds one shard: hand over the other shard's first.
                let other = std::mem::take(&mut self.buffer);
                self.invoke(&handler, other, &mut poll).await?;
            }
            if let Some(last) = read.last().and_then(|r| r.change.sequence_number.clone()) {
                // Records the filters drop never reach the function, and count as done.
                let kept: Vec<EventRecord> = read
                    .into_iter()
                    .filter(|r| {
                        serde_json::to_value(r)
                            .map(|v| matches_any(&v, &self.settings.filters))
                            .unwrap_or(true)
                    })
                    .collect();
                if kept.is_empty() && self.buffer.is_empty() {
                    if let Some(s) = shard {
                        self.handled.insert(s, last);
                    }
                } else {
                    self.buffer_shard = shard;
                    self.buffered_since.get_or_insert_with(std::time::Instant::now);
                    self.buffer.extend(kept);
                }
            }
        }
        let window = Duration::from_secs(self.settings.batching_window_seconds as u64);
        let due = self.buffer.len() >= size || flush || self.buffered_since.is_some_and(|t| t.elapsed() >= window);
        if due && !self.buffer.is_empty() {
            let take = self.buffer.len().min(size);
            let batch: Vec<EventRecord> = self.buffer.drain(..take).collect();
            if self.buffer.is_empty() {
                self.buffered_since = None;
            }
            self.invoke(&handler, batch, &mut poll).await?;
        }
        Ok(poll)
    }

    /// Whether records wait in the batching window.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    async fn invoke(
        &mut self,
        handler: &impl AsyncFn(Event) -> DynamoDbEventResponse,
        batch: Vec<EventRecord>,
        poll: &mut StreamPoll,
    ) -> Result<()> {
        let last = batch.last().and_then(|r| r.change.sequence_number.clone());
        let mut queue: VecDeque<(Vec<EventRecord>, u32)> = VecDeque::new();
        if !batch.is_empty() {
            queue.push_back((batch, 0));
        }
        while let Some((records, attempts)) = queue.pop_front() {
            if self.too_old(&records) {
                poll.sent_to_on_failure += records.len() as u64;
                self.give_up(&records, "RecordAgeExceeded").await?;
                continue;
            }
            let mut event = Event::default();
            event.records = records.clone();
            poll.invocations += 1;
            let response = handler(event).await;
            let Some(at) = failed_at(&records, &response) else {
                continue;
            };
            let rest = records[at..].to_vec();
            if attempts >= self.settings.maximum_retry_attempts {
                poll.sent_to_on_failure += rest.len() as u64;
                self.give_up(&rest, "RetryAttemptsExhausted").await?;
            } else if self.settings.bisect_batch_on_function_error && rest.len() > 1 {
                let (a, b) = rest.split_at(rest.len() / 2);
                queue.push_front((b.to_vec(), attempts + 1));
                queue.push_front((a.to_vec(), attempts + 1));
            } else {
                queue.push_front((rest, attempts + 1));
            }
        }
        if let (Some(shard), Some(seq)) = (self.buffer_shard.clone(), last) {
            self.handled.insert(shard, seq);
        }
        Ok(())
    }

    fn too_old(&self, records: &[EventRecord]) -> bool {
        let max = chrono::Duration::seconds(self.settings.maximum_record_age_seconds as i64);
        records
            .first()
            .is_some_and(|r| chrono::Utc::now() - r.change.approximate_creation_date_time > max)
    }

    /// What Lambda sends an on-failure destination for a stream batch: where
    /// the records are, not the records.
    async fn give_up(&self, records: &[EventRecord], condition: &str) -> Result<()> {
        let (first, last) = (&records[0], &records[records.len() - 1]);
        let body = serde_json::json!({
            "requestContext": { "condition": condition, "approximateInvokeCount": self.settings.maximum_retry_attempts + 1 },
            "responseContext": { "statusCode": 200, "functionError": "BatchItemFailure" },
            "version": "1.0",
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "DDBStreamBatchInfo": {
                "shardId": shard_of(first),
                "startSequenceNumber": first.change.sequence_number,
                "endSequenceNumber": last.change.sequence_number,
                "approximateArrivalOfFirstRecord": first.change.approximate_creation_date_time.to_rfc3339(),
                "approximateArrivalOfLastRecord": last.change.approximate_creation_date_time.to_rfc3339(),
                "batchSize": records.len(),
                "streamArn": self.stream_arn,
            }
        });
        tracing::error!(
            records = records.len(),
            condition,
            "stream records sent to the on-failure queue"
        );
        self.sqs
            .send_message()
            .queue_url(&self.on_failure_url)
            .message_body(body.to_string())
            .send()
            .await
            .context("sending to the stream's on-failure queue")?;
        Ok(())
    }
}

fn shard_of(r: &EventRecord) -> String {
    r.event_id.split(':').next().unwrap_or_default().to_owned()
}

/// The index of the first record the response reports, if any. A reported
/// sequence number not in the batch fails the whole batch, as Lambda treats it.
pub fn failed_at(records: &[EventRecord], response: &DynamoDbEventResponse) -> Option<usize> {
    response
        .batch_item_failures
        .iter()
        .map(|f| {
            records
                .iter()
                .position(|r| r.change.sequence_number.is_some() && r.change.sequence_number == f.item_identifier)
                .unwrap_or(0)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::streams::DynamoDbBatchItemFailure;

    fn rec(seq: &str) -> EventRecord {
        let mut r = EventRecord::default();
        r.change.sequence_number = Some(seq.into());
        r
    }

    #[test]
    fn the_first_reported_record_is_where_a_batch_resumes() {
        let records = vec![rec("1"), rec("2"), rec("3")];
        let mut resp = DynamoDbEventResponse::default();
        assert_eq!(failed_at(&records, &resp), None);
        for id in [Some("3"), Some("2")] {
            let mut f = DynamoDbBatchItemFailure::default();
            f.item_identifier = id.map(str::to_owned);
            resp.batch_item_failures.push(f);
        }
        assert_eq!(failed_at(&records, &resp), Some(1));
        let mut unknown = DynamoDbBatchItemFailure::default();
        unknown.item_identifier = Some("9".into());
        resp.batch_item_failures.push(unknown);
        assert_eq!(failed_at(&records, &resp), Some(0));
    }
}
