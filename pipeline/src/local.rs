//! `pipeline run`: the ingest end to end on the embedded local stack.
//!
//! Files are uploaded to the S3 emulator with their SHA-256; each upload's
//! `ObjectCreated:Put` notification (the JSON S3 sends, keys encoded as S3
//! encodes them) is handed to the ingest handler in SQS batches of ten, as the
//! event source mapping would. The ingest queue is not used yet: neither S3
//! emulator delivers notifications, so they are bridged in-process. Then the
//! events table's stream is read through the Streams API from where the last
//! run stopped, projected, and announced on the feed queue.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use ingest::{handler, Config, Ingester};
use schema::items::{FileStatus, Manifest, UploadOutcome};
use schema::Registry;
use serde::Serialize;

use crate::metrics::RequestCounter;
use crate::resources::{self, Names};
use crate::stack::{LocalStack, Ports, State};
use crate::streams::StreamReader;
use projector::feed::Feed;
use projector::project::Projector;

/// One file's outcome in a run.
#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    /// Object key.
    pub key: String,
    /// Content id.
    pub file_id: String,
    /// New content or a duplicate of content seen before.
    pub outcome: UploadOutcome,
    /// The manifest's status.
    pub status: FileStatus,
    /// Lines.
    pub rows: u64,
    /// Accepted lines.
    pub accepted: u64,
    /// Rejected lines.
    pub rejected: u64,
    /// Events this upload wrote.
    pub written: u64,
    /// Why the file failed.
    pub reason: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Per file.
    pub files: Vec<FileSummary>,
    /// Stream records the projector read.
    pub stream_records: u64,
    /// Events folded into aggregates by this run.
    pub events_projected: u64,
    /// Aggregate groups this run changed.
    pub aggregates_changed: u64,
    /// Messages this run sent to the feed queue.
    pub feed_messages: u64,
    /// Every aggregate group, as it now stands.
    pub aggregates: Vec<AggregateRow>,
    /// DynamoDB requests of the ingest.
    pub dynamodb_requests: u64,
    /// S3 requests of the ingest (uploads excluded).
    pub s3_requests: u64,
    /// Messages the handler reported as failed (retried, then dead-lettered).
    pub failed_messages: Vec<String>,
}

/// One aggregate group, for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct AggregateRow {
    /// Dataset.
    pub dataset: String,
    /// Aggregate.
    pub aggregate: String,
    /// Group-by values.
    pub group: Vec<String>,
    /// Measure name to value.
    pub measures: std::collections::BTreeMap<String, String>,
    /// Changes so far.
    pub version: u64,
}

/// The CSV files under `paths`, each with its object key: the path relative to
/// the directory given (`data/orders/a.csv` under `data` is `orders/a.csv`).
pub fn collect(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, p, &mut out)?;
        } else if p.is_file() {
            let name = p
                .file_name()
                .context("a file has a name")?
                .to_string_lossy()
                .into_owned();
            out.push((p.clone(), name));
        } else {
            anyhow::bail!("{}: no such file or directory", p.display());
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            let rel = path.strip_prefix(root)?;
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((path, key));
        }
    }
    Ok(())
}

/// S3's notification encoding of a key: form-style, a space as `+`.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The body S3 sends for an `ObjectCreated:Put` of `bucket/key`.
pub fn notification_body(bucket: &str, key: &str, size: u64, sequencer: &str) -> String {
    serde_json::json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": crate::stack::REGION,
            "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "eventName": "ObjectCreated:Put",
            "userIdentity": { "principalId": "local" },
            "requestParameters": { "sourceIPAddress": "127.0.0.1" },
            "responseElements": {},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "ingest",
                "bucket": { "name": bucket, "ownerIdentity": { "principalId": "local" }, "arn": format!("arn:aws:s3:::{bucket}") },
                "object": { "key": encode_key(key), "size": size, "sequencer": sequencer }
            }
        }]
    })
    .to_string()
}

/// An SQS message with that body.
pub fn sqs_message(id: &str, body: String) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.body = Some(body);
    m
}

/// Upload `paths` to a local stack whose state lives in `state_dir`, ingest
/// them, and summarise.
pub async fn run(state_dir: &Path, paths: &[PathBuf]) -> Result<RunSummary> {
    let files = collect(paths)?;
    anyhow::ensure!(!files.is_empty(), "no .csv files under {paths:?}");
    let stack = LocalStack::start(State::Dir(state_dir.to_path_buf()), Ports::default()).await?;
    let names = Names::default();
    let s3 = stack.s3();
    resources::ensure_events_table(&stack.dynamodb(), &names.events_table).await?;
    resources::ensure_bucket(&s3, &names.bucket).await?;

    let mut messages = Vec::new();
    for (i, (path, key)) in files.iter().enumerate() {
        crate::upload::upload_file(&s3, &names.bucket, key, path).await?;
        let size = std::fs::metadata(path)?.len();
        let seq = format!(
            "{:016X}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64 + i as u64
        );
        messages.push(sqs_message(
            &format!("local-{i}"),
            notification_body(&names.bucket, key, size, &seq),
        ));
    }

    let counter = RequestCounter::default();
    let ingester = Ingester::new(
        stack.s3_with(|b| b.interceptor(counter.clone())),
        stack.dynamodb_with(|b| b.interceptor(counter.clone())),
        Registry::builtin(),
        Config::new(&names.events_table),
    );
    let mut failed_messages = Vec::new();
    for chunk in messages.chunks(10) {
        let mut event = SqsEvent::default();
        event.records = chunk.to_vec();
        let response = handler::handle_batch(&ingester, event, None).await;
        failed_messages.extend(response.batch_item_failures.into_iter().map(|f| f.item_identifier));
    }
    let (dynamodb_requests, s3_requests) = (counter.service("DynamoDB"), counter.service("S3"));

    // The projector: the events stream, from where the last run stopped, in
    // batches of 1,000 as the stream event source mapping would deliver them.
    let ddb = stack.dynamodb();
    resources::ensure_aggregates_table(&ddb, &names.aggregates_table).await?;
    let sqs = stack.sqs();
    let queue = resources::ensure_queue_with_dlq(
        &sqs,
        &names.feed_queue,
        &names.feed_dlq,
        resources::FEED_MAX_RECEIVE_COUNT,
    )
    .await?;
    let projector = Projector::new(ddb.clone(), names.aggregates_table.clone(), &Registry::builtin());
    let feed = Feed::new(sqs, queue);
    let positions_file = state_dir.join("stream-positions.json");
    let positions = std::fs::read(&positions_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut reader = StreamReader::open_after(&ddb, stack.dynamodb_streams(), &names.events_table, positions).await?;
    let (mut stream_records, mut events_projected, mut aggregates_changed, mut feed_messages) = (0, 0, 0, 0);
    loop {
        let batch = reader.next_batch(1000).await?;
        if batch.is_empty() {
            break;
        }
        stream_records += batch.len() as u64;
        let mut event = aws_lambda_events::dynamodb::Event::default();
        event.records = batch;
        let (response, report) = projector::handler::handle_batch(&projector, &feed, event).await;
        anyhow::ensure!(
            response.batch_item_failures.is_empty(),
            "the projector failed a stream batch at {:?}; see the log above",
            response.batch_item_failures
        );
        events_projected += report.outcome.applied;
        aggregates_changed += report.outcome.groups_written;
        feed_messages += report.sent.messages;
    }
    std::fs::write(&positions_file, serde_json::to_vec(reader.positions())?)?;

    let mut summaries = Vec::new();
    for (_, key) in &files {
        summaries.push(summarise(&ddb, &names, key).await?);
    }
    let aggregates = read_aggregates(&ddb, &names.aggregates_table).await?;
    stack.stop().await;
    Ok(RunSummary {
        files: summaries,
        stream_records,
        events_projected,
        aggregates_changed,
        feed_messages,
        aggregates,
        dynamodb_requests,
        s3_requests,
        failed_messages,
    })
}

/// Every aggregate group of the aggregates table.
pub async fn read_aggregates(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<Vec<AggregateRow>> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = ddb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        for item in page.items() {
            if item.get("kind").and_then(|k| k.as_s().ok()).map(String::as_str) != Some("aggregate") {
                continue;
            }
            let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            out.push(AggregateRow {
                dataset: s("dataset"),
                aggregate: s("aggregate"),
                group: item
                    .get("group_values")
                    .and_then(|v| v.as_l().ok())
                    .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
                    .unwrap_or_default(),
                measures: item
                    .get("measures")
                    .and_then(|v| v.as_m().ok())
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_s().cloned().unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default(),
                version: item
                    .get("version")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            });
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    out.sort_by(|a, b| (&a.dataset, &a.aggregate, &a.group).cmp(&(&b.dataset, &b.aggregate, &b.group)));
    Ok(out)
}

async fn summarise(ddb: &aws_sdk_dynamodb::Client, names: &Names, key: &str) -> Result<FileSummary> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let get = |pk: String| {
        ddb.get_item()
            .table_name(&names.events_table)
            .key(schema::keys::PK, AttributeValue::S(pk))
            .key(schema::keys::SK, AttributeValue::N("0".into()))
            .consistent_read(true)
            .send()
    };
    let upload = get(schema::keys::upload_pk(&names.bucket, key))
        .await?
        .item
        .with_context(|| format!("no upload record for {key}: was it ingested?"))?;
    let upload: schema::Upload = serde_dynamo::from_item(upload)?;
    let manifest = get(schema::keys::manifest_pk(&upload.file_id))
        .await?
        .item
        .with_context(|| format!("no manifest for {key}"))?;
    let m: Manifest = serde_dynamo::from_item(manifest)?;
    Ok(FileSummary {
        key: key.to_owned(),
        file_id: m.file_id,
        outcome: upload.outcome,
        status: m.status,
        rows: m.rows,
        accepted: m.accepted,
        rejected: m.rejected,
        written: if upload.outcome == UploadOutcome::Duplicate {
            0
        } else {
            m.written
        },
        reason: m.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_like_s3_does() {
        assert_eq!(
            encode_key("orders/café 2024/a+b.csv"),
            "orders/caf%C3%A9+2024/a%2Bb.csv"
        );
        assert_eq!(
            ingest::notification::decode_key(&encode_key("x y+z/€.csv")).unwrap(),
            "x y+z/€.csv"
        );
    }
}
