//! The SQS batch: one S3 notification (or one chunk task of a planned file)
//! per message, partial batch failures, and continuations, so that no work
//! waits for a visibility timeout.

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageAttributeValue;

use crate::error::IngestError;
use crate::ingest::{Ingester, Report};
use crate::notification::{self, Notification};

/// The message attribute that counts a notification's failed attempts
/// across continuations (SQS's receive count restarts with each).
pub const ATTEMPT_ATTRIBUTE: &str = "ingest-attempt";
/// Failed attempts sent again as continuations before the message itself
/// fails (and the queue's redrive policy takes over).
pub const MAX_ATTEMPTS: u32 = 4;

/// Handle one batch. Its messages are ingested side by side, under the same
/// deadline: a big file does not hold the others back. A message whose run
/// met the deadline, or failed in a way a retry can mend, is sent again as a
/// continuation (the first at once, a failure after a backoff) and reported
/// done, when the ingester has a queue for them; otherwise, and for a body
/// that is not a notification, the message is reported failed, so only it is
/// retried (and, after the queue's receive limit, moved to the dead-letter queue).
pub async fn handle_batch(ingester: &Ingester, event: SqsEvent, deadline: Option<Instant>) -> SqsBatchResponse {
    let runs = event.records.iter().map(|message| async move {
        let id = message.message_id.clone().unwrap_or_default();
        let result = handle_message(ingester, message, deadline).await;
        (id, message, result)
    });
    let mut response = SqsBatchResponse::default();
    for (id, message, result) in futures::future::join_all(runs).await {
        let Err(e) = result else { continue };
        match continue_later(ingester, message, &e).await {
            Ok(true) => tracing::info!(message_id = %id, error = %e, "sent on as a continuation"),
            Ok(false) => {
                tracing::error!(message_id = %id, error = %e, retryable = e.is_retryable(), "message failed");
                response.add_failure(id);
            }
            Err(send) => {
                tracing::error!(message_id = %id, error = %e, continuation = %send, "message failed; no continuation");
                response.add_failure(id);
            }
        }
    }
    response
}

/// Send `message` again to the ingest queue, if `error` is worth another
/// run and continuations are configured. `Ok(false)`: not continued.
async fn continue_later(ingester: &Ingester, message: &SqsMessage, error: &IngestError) -> Result<bool, String> {
    let Some((sqs, url)) = ingester.continuations() else {
        return Ok(false);
    };
    let attempt = attempts(message);
    let (attempt, delay) = match error {
        // Progress, not failure: go on at once, the count unchanged.
        IngestError::Deadline { .. } => (attempt, 0),
        // Not a failure either: another run holds the file (a duplicate
        // notification, or a run that died). Look again soon, or when the
        // lease ends if sooner; the count is unchanged, so waiting out a dead
        // run's lease cannot exhaust the attempts.
        // (A lease already over that still refused the run is odd: it counts
        // as a failure below, so it cannot loop for ever.)
        IngestError::Leased { lease_until_ms, .. } if *lease_until_ms > chrono::Utc::now().timestamp_millis() => (
            attempt,
            until_lease_ends(*lease_until_ms).min(backoff(attempt + 1).as_secs() as i32),
        ),
        e if e.is_retryable() && attempt < MAX_ATTEMPTS => (attempt + 1, backoff(attempt + 1).as_secs() as i32),
        _ => return Ok(false),
    };
    let attr = MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(attempt.to_string())
        .build()
        .map_err(|e| e.to_string())?;
    sqs.send_message()
        .queue_url(url)
        .message_body(message.body.clone().unwrap_or_default())
        .delay_seconds(delay)
        .message_attributes(ATTEMPT_ATTRIBUTE, attr)
        .send()
        .await
        .map(|_| true)
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

/// Seconds until a lease ending at `lease_until_ms` has ended, within SQS's
/// delays (0 to 900 s).
fn until_lease_ends(lease_until_ms: i64) -> i32 {
    let left_ms = lease_until_ms - chrono::Utc::now().timestamp_millis();
    (left_ms.max(0) / 1000 + 1).min(900) as i32
}

/// Failed attempts so far, from the message's attribute.
fn attempts(message: &SqsMessage) -> u32 {
    message
        .message_attributes
        .get(ATTEMPT_ATTRIBUTE)
        .and_then(|a| a.string_value.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The wait before failed attempt `n` (1-based) runs again: 20 s, 80 s,
/// 320 s, then SQS's longest delay, 900 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs((5u64 << (2 * n.min(8))).min(900))
}

/// Handle one message: every object it announces, in order, or the chunk
/// it names. A continuation
/// carries the original body again: the objects it finished are duplicates
/// by then, three requests each.
pub async fn handle_message(
    ingester: &Ingester,
    message: &SqsMessage,
    deadline: Option<Instant>,
) -> Result<Vec<Report>, IngestError> {
    let id = message.message_id.clone().unwrap_or_default();
    let body = message.body.as_deref().unwrap_or_default();
    let objects = match notification::parse(body) {
        Ok(Notification::Test) => {
            tracing::info!("s3:TestEvent: nothing to ingest");
            return Ok(Vec::new());
        }
        Ok(Notification::Created(objects)) => objects,
        Ok(Notification::Chunk(task)) => return Ok(vec![ingester.ingest_chunk(&task, deadline).await?]),
        Err(source) => return Err(IngestError::BadMessage { message_id: id, source }),
    };
    let mut reports = Vec::with_capacity(objects.len());
    for obj in &objects {
        reports.push(ingester.ingest_object(obj, deadline).await?);
    }
    Ok(reports)
}

/// End the leases held by the runs of a message whose handler is known to be
/// dead (its process was killed while the message was in flight), so the
/// message's next run resumes the files at once instead of waiting out a
/// lease. Returns how many leases ended. The local stack calls this on start
/// for the messages the stopped process held; on AWS a lease simply lapses.
pub async fn release_leases(ingester: &Ingester, body: &str) -> Result<usize, IngestError> {
    let store = ingester.store();
    let mut released = 0;
    match notification::parse(body) {
        Ok(Notification::Created(objects)) => {
            for o in objects {
                if let Some(u) = store.upload(&o.bucket, &o.key).await? {
                    released += usize::from(store.release_lease(&u.file_id).await?);
                }
            }
        }
        Ok(Notification::Chunk(t)) => released += usize::from(store.release_chunk_lease(&t.file_id, t.index).await?),
        Ok(Notification::Test) | Err(_) => {}
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_attempts_wait_longer_each_time_within_sqs_limit() {
        let waits: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [20, 80, 320, 900, 900, 900]);
    }

    #[test]
    fn the_attempt_count_travels_in_a_message_attribute() {
        let mut m = SqsMessage::default();
        assert_eq!(attempts(&m), 0);
        let mut a = aws_lambda_events::sqs::SqsMessageAttribute::default();
        a.string_value = Some("3".into());
        a.data_type = Some("Number".into());
        m.message_attributes.insert(ATTEMPT_ATTRIBUTE.into(), a);
        assert_eq!(attempts(&m), 3);
    }
}
