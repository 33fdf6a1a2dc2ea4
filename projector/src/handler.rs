//! A stream batch as Lambda delivers it: project, announce, and report the
//! first record not done, so Lambda retries from there (and bisects, and
//! finally sends it to the on-failure destination).

use aws_lambda_events::dynamodb::Event;
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use schema::feed::FeedMessage;

use crate::error::chain;
use crate::feed::{aggregate_changed, file_completed, Feed, Sent};
use crate::project::{Outcome, Projector};

/// What one batch did, for logs and measurements.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The projection.
    pub outcome: Outcome,
    /// The feed.
    pub sent: Sent,
    /// The messages sent (tests check them against the schema).
    pub messages: Vec<FeedMessage>,
}

/// Handle one batch of stream records.
pub async fn handle_batch(projector: &Projector, feed: &Feed, event: Event) -> (DynamoDbEventResponse, Report) {
    let records = event.records;
    let mut response = DynamoDbEventResponse::default();
    let seq = |i: usize| records.get(i).and_then(|r| r.change.sequence_number.clone());
    let (outcome, failed_at) = match projector.project(&records).await {
        Ok(o) => (o, None),
        Err(e) => {
            tracing::error!(
                failed_at = e.failed_at,
                sequence_number = ?seq(e.failed_at),
                retry = ?e.retry_class(),
                error = %e.message(),
                "batch stopped"
            );
            (*e.done, Some(e.failed_at))
        }
    };
    let messages = messages(projector, &outcome);
    let (sent, failed_at) = match feed.send(&messages).await {
        Ok(s) => (s, failed_at),
        Err(e) => {
            // Aggregates are written but not all announced: retry the whole batch;
            // the replay writes nothing and announces the same changes again.
            tracing::error!(
                retry = ?e.retry_class(),
                error = %chain(&e),
                "feed send failed; the batch is retried from its first record"
            );
            (Sent::default(), Some(0))
        }
    };
    if let Some(i) = failed_at {
        let mut f = DynamoDbBatchItemFailure::default();
        f.item_identifier = seq(i);
        response.batch_item_failures.push(f);
    }
    tracing::info!(
        applied = outcome.applied,
        skipped = outcome.skipped,
        writes = outcome.writes,
        messages = sent.messages,
        "batch projected"
    );
    (
        response,
        Report {
            outcome,
            sent,
            messages,
        },
    )
}

fn messages(projector: &Projector, o: &Outcome) -> Vec<FeedMessage> {
    let mut out: Vec<FeedMessage> = o
        .changes
        .iter()
        .map(|c| aggregate_changed(c, &projector.group_terms(&c.key)))
        .collect();
    out.extend(o.completed.iter().map(file_completed));
    out
}
