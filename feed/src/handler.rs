//! The reference consumer Lambda's batch: SQS records of the feed into a
//! read model table, reporting the records not applied so that only they
//! come back (`ReportBatchItemFailures`).

use std::collections::BTreeMap;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

use crate::dynamo::DynamoReadModel;
use crate::message::parse;
use crate::model::{newest_per_group, Applied, GroupKey, GroupState};

/// The environment variables the reference consumer Lambda reads (besides
/// those Lambda sets), for the deployment check: its table and the log filter.
pub const ENV_VARS: &[&str] = &["READ_MODEL_TABLE", "RUST_LOG"];

/// The read model table the Lambda writes, from `READ_MODEL_TABLE`.
pub fn read_model_table(get: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    get("READ_MODEL_TABLE")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "environment variable READ_MODEL_TABLE: not set".to_owned())
}

/// What one batch did, for logs and measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Records in the batch.
    pub records: u64,
    /// `aggregate.changed` records.
    pub changes: u64,
    /// `file.completed` records (acknowledged; this read model keeps groups only).
    pub files: u64,
    /// Records that are not a message this consumer reads (reported failed).
    pub poison: u64,
    /// Conditional puts that wrote.
    pub written: u64,
    /// Conditional puts the table refused: it held that version or newer.
    pub stale: u64,
    /// Changes not sent to the table because the batch had a newer one of the group.
    pub superseded: u64,
    /// Records reported failed because their group's write failed.
    pub failed: u64,
}

impl std::ops::AddAssign for Report {
    fn add_assign(&mut self, o: Report) {
        self.records += o.records;
        self.changes += o.changes;
        self.files += o.files;
        self.poison += o.poison;
        self.written += o.written;
        self.stale += o.stale;
        self.superseded += o.superseded;
        self.failed += o.failed;
    }
}

/// Apply a batch: each group's newest state once, under the version
/// condition; report poison records and the records of groups whose write
/// failed.
pub async fn handle_batch(model: &DynamoReadModel, event: SqsEvent) -> (SqsBatchResponse, Report) {
    let mut report = Report {
        records: event.records.len() as u64,
        ..Report::default()
    };
    let mut failures = Vec::new();
    let mut states = Vec::new();
    let mut records_of: BTreeMap<GroupKey, Vec<String>> = BTreeMap::new();
    for r in event.records {
        let id = r.message_id.unwrap_or_default();
        match parse(r.body.as_deref().unwrap_or_default()) {
            Ok(m) => match GroupState::of_message(&m) {
                Some(g) => {
                    report.changes += 1;
                    records_of.entry(g.key.clone()).or_default().push(id);
                    states.push(g);
                }
                None => report.files += 1,
            },
            Err(e) => {
                report.poison += 1;
                tracing::warn!(message_id = id, kind = e.kind(), error = %e, "poison message");
                failures.push(id);
            }
        }
    }
    let newest = newest_per_group(states);
    report.superseded = report.changes - newest.len() as u64;
    for g in &newest {
        match model.apply(g).await {
            Ok(Applied::Written) => report.written += 1,
            Ok(Applied::Stale) => report.stale += 1,
            Err(e) => {
                let ids = records_of.remove(&g.key).unwrap_or_default();
                report.failed += ids.len() as u64;
                tracing::error!(group = g.key.id(), error = %error_chain(&e), "read model write failed");
                failures.extend(ids);
            }
        }
    }
    tracing::info!(?report, "batch applied");
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    (response, report)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
