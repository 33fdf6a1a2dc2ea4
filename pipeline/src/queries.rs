//! What the operator reads, and every command that reads uses: a file's
//! upload and manifest, the state of the uploads, a file's rejected lines,
//! the aggregates. Each returns data; `render` prints it.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use schema::items::{EventItem, FileStatus, Manifest, UploadOutcome};
use serde::Serialize;

use crate::target::Target;

type Item = HashMap<String, AttributeValue>;

/// One file's upload and manifest.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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
    /// Events the ingest of this content wrote (0 for a duplicate upload).
    pub written: u64,
    /// Lines whose event was already in the store when the ingest reached
    /// them (a retried or resumed ingest).
    pub already_present: u64,
    /// Why the file failed.
    pub reason: Option<String>,
    /// A file ingested in chunks: how far they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<ChunkProgress>,
}

/// The chunks of a planned file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChunkProgress {
    /// Chunks whose lines are all written and counted.
    pub done: u64,
    /// Chunks planned so far.
    pub planned: u64,
    /// Chunks in all, once the plan reached the end of the file.
    pub total: Option<u64>,
}

/// Lines read so far by the chunks of a file still ingesting (the manifest
/// counts only finished chunks): the sum over its chunk items.
async fn chunk_rows(ddb: &aws_sdk_dynamodb::Client, table: &str, file_id: &str) -> Result<(u64, u64, u64)> {
    let mut items = ddb
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND sk > :zero")
        .expression_attribute_values(":pk", AttributeValue::S(schema::keys::manifest_pk(file_id)))
        .expression_attribute_values(":zero", AttributeValue::N("0".into()))
        .consistent_read(true)
        .into_paginator()
        .items()
        .send();
    let (mut rows, mut accepted, mut rejected) = (0, 0, 0);
    while let Some(item) = items.next().await {
        let chunk: schema::items::Chunk = serde_dynamo::from_item(item.context("reading chunks")?)?;
        rows += chunk.rows;
        accepted += chunk.accepted;
        rejected += chunk.rejected;
    }
    Ok((rows, accepted, rejected))
}

/// One aggregate group, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AggregateRow {
    /// Dataset.
    pub dataset: String,
    /// Aggregate.
    pub aggregate: String,
    /// Group-by values.
    pub group: Vec<String>,
    /// Measure name to value.
    pub measures: BTreeMap<String, String>,
    /// Changes so far.
    pub version: u64,
}

/// One item of the events table by partition key (sort key 0), read consistently.
pub async fn get_item(ddb: &aws_sdk_dynamodb::Client, table: &str, pk: String) -> Result<Option<Item>> {
    let out = ddb
        .get_item()
        .table_name(table)
        .key(schema::keys::PK, AttributeValue::S(pk))
        .key(schema::keys::SK, AttributeValue::N("0".into()))
        .consistent_read(true)
        .send()
        .await
        .with_context(|| format!("reading table {table}"))?;
    Ok(out.item)
}

/// Every item of `table` whose attribute `filter.0` is `filter.1`, page by
/// page (the SDK's paginator), handed to `each`; `filter.2` names them in errors.
pub async fn scan(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    filter: (&str, &str, &str),
    mut each: impl FnMut(Item) -> Result<()>,
) -> Result<()> {
    let mut pages = ddb
        .scan()
        .table_name(table)
        .filter_expression("#k = :v")
        .expression_attribute_names("#k", filter.0)
        .expression_attribute_values(":v", AttributeValue::S(filter.1.into()))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.with_context(|| format!("scanning {table} for {}", filter.2))?;
        for item in page.items.unwrap_or_default() {
            each(item)?;
        }
    }
    Ok(())
}

/// The upload record and manifest of `key`.
pub async fn file_summary(target: &Target, key: &str) -> Result<FileSummary> {
    let names = &target.deployment.names;
    let upload = get_item(
        &target.clients.dynamodb,
        &names.events_table,
        schema::keys::upload_pk(&names.bucket, key),
    )
    .await?
    .with_context(|| format!("no upload record for {key}: it has not been ingested (yet)"))?;
    let upload: schema::Upload = serde_dynamo::from_item(upload)?;
    let manifest = get_item(
        &target.clients.dynamodb,
        &names.events_table,
        schema::keys::manifest_pk(&upload.file_id),
    )
    .await?
    .with_context(|| format!("no manifest for {key}"))?;
    let m: Manifest = serde_dynamo::from_item(manifest)?;
    let dup = upload.outcome == UploadOutcome::Duplicate;
    let chunks = m.chunked.then_some(ChunkProgress {
        done: m.chunks_done.len() as u64,
        planned: m.chunks_planned,
        total: m.chunks_total,
    });
    let (rows, accepted, rejected) = if m.chunked && m.status == FileStatus::Ingesting {
        chunk_rows(&target.clients.dynamodb, &names.events_table, &m.file_id).await?
    } else {
        (m.rows, m.accepted, m.rejected)
    };
    Ok(FileSummary {
        key: key.to_owned(),
        file_id: m.file_id,
        outcome: upload.outcome,
        status: m.status,
        rows,
        accepted,
        rejected,
        chunks,
        written: if dup { 0 } else { m.written },
        already_present: if dup { 0 } else { m.already_present },
        reason: m.reason,
    })
}

/// Every aggregate group of the aggregates table (of one dataset, if given), sorted.
pub async fn read_aggregates(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    dataset: Option<&str>,
) -> Result<Vec<AggregateRow>> {
    let mut out = Vec::new();
    let kind = schema::AggregatesKind::Aggregate.as_str();
    scan(ddb, table, ("kind", kind, "aggregates"), |item| {
        let row = aggregate_row(item)?;
        if dataset.is_none_or(|d| d == row.dataset) {
            out.push(row);
        }
        Ok(())
    })
    .await?;
    out.sort_by(|a, b| (&a.dataset, &a.aggregate, &a.group).cmp(&(&b.dataset, &b.aggregate, &b.group)));
    Ok(out)
}

fn aggregate_row(item: Item) -> Result<AggregateRow> {
    let a = schema::AggregateItem::from_item(item)?;
    Ok(AggregateRow {
        dataset: a.dataset,
        aggregate: a.aggregate,
        group: a.group_values,
        measures: a.measures,
        version: a.version,
    })
}

/// One object's state in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// Object key.
    pub key: String,
    /// Its ingest, once it has begun; `None` while the notification waits
    /// (or when the pipeline ignores the key).
    pub file: Option<FileSummary>,
    /// Why the pipeline will never ingest this key (S3 sends no notification
    /// for it), when it will not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

/// Why S3 sends the pipeline no notification of `key`, if it sends none:
/// the notification rules take the upload prefix and the upload suffixes only.
pub fn ignored(key: &str, prefix: &str, suffixes: &[String]) -> Option<String> {
    if !key.starts_with(prefix) {
        return Some(format!(
            "outside the upload prefix {prefix:?}: S3 notifies the pipeline of nothing else"
        ));
    }
    // S3 compares key names as they are: ".CSV" is not ".csv".
    if !suffixes.iter().any(|s| key.ends_with(s.as_str())) {
        return Some(format!(
            "not {}: S3 notifies the pipeline of those only; rename it",
            suffixes.join(", ")
        ));
    }
    None
}

/// Whether `key` is an object of the upload bucket.
async fn exists(target: &Target, key: &str) -> bool {
    let names = &target.deployment.names;
    target
        .clients
        .s3
        .head_object()
        .bucket(&names.bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

/// The key of `file`: as given if it exists in the bucket, else under the upload prefix.
pub(crate) async fn resolve_key(target: &Target, file: &str) -> String {
    let names = &target.deployment.names;
    if file.starts_with(&names.upload_prefix) {
        return file.to_owned();
    }
    let prefixed = format!("{}{file}", names.upload_prefix);
    let exists = target
        .clients
        .s3
        .head_object()
        .bucket(&names.bucket)
        .key(&prefixed)
        .send()
        .await
        .is_ok();
    if exists {
        prefixed
    } else {
        file.to_owned()
    }
}

/// The state of one uploaded object, or of every object under the upload prefix.
pub async fn status(target: &Target, file: Option<&str>) -> Result<Vec<StatusRow>> {
    let names = &target.deployment.names;
    let listed = file.is_none();
    let keys = match file {
        Some(f) => vec![resolve_key(target, f).await],
        None => {
            let mut keys = Vec::new();
            let mut pages = target
                .clients
                .s3
                .list_objects_v2()
                .bucket(&names.bucket)
                .prefix(&names.upload_prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.with_context(|| format!("listing s3://{}/{}", names.bucket, names.upload_prefix))?;
                keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            }
            keys
        }
    };
    let mut out = Vec::new();
    for key in keys {
        let has_record = get_item(
            &target.clients.dynamodb,
            &names.events_table,
            schema::keys::upload_pk(&names.bucket, &key),
        )
        .await?
        .is_some();
        let file = if has_record {
            Some(file_summary(target, &key).await?)
        } else {
            None
        };
        // Ignored: in the bucket (listed, or found by name), never notified.
        let suffixes = localstack::settings::Settings::get().upload_suffixes;
        let ignored = match (&file, ignored(&key, &names.upload_prefix, &suffixes)) {
            (None, Some(why)) if listed || exists(target, &key).await => Some(why),
            _ => None,
        };
        out.push(StatusRow { key, file, ignored });
    }
    if let (Some(f), [row]) = (file, out.as_slice()) {
        anyhow::ensure!(
            row.file.is_some() || row.ignored.is_some(),
            "no record of {f:?}: not uploaded, not yet ingested, or its notification is in the ingest dead-letter queue ({})",
            names.ingest_dlq
        );
    }
    Ok(out)
}

/// One rejected line.
#[derive(Debug, Clone, Serialize)]
pub struct Reject {
    /// Line number (1-based, after the header).
    pub line: u64,
    /// The column at fault, if one is.
    pub column: Option<String>,
    /// Why.
    pub reason: String,
    /// The line as uploaded (lossy if it was not UTF-8).
    pub raw: String,
}

/// The rejected lines of one uploaded file, in line order.
pub async fn rejects(target: &Target, file: &str) -> Result<(FileSummary, Vec<Reject>)> {
    let names = &target.deployment.names;
    let key = resolve_key(target, file).await;
    let summary = file_summary(target, &key).await?;
    let mut out = Vec::new();
    let pages = summary.rows.div_ceil(schema::keys::PAGE_SIZE) + 1;
    for page in 0..pages {
        let mut items = target
            .clients
            .dynamodb
            .query()
            .table_name(&names.events_table)
            .key_condition_expression("pk = :pk")
            .filter_expression("event_type = :r")
            .expression_attribute_values(
                ":pk",
                AttributeValue::S(schema::keys::event_pk(&summary.file_id, page * schema::keys::PAGE_SIZE)),
            )
            .expression_attribute_values(":r", AttributeValue::S("row.rejected".into()))
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            let e: EventItem = serde_dynamo::from_item(item.context("reading rejected lines")?)?;
            out.push(Reject {
                line: e.sk,
                column: e.column,
                reason: e.reason.unwrap_or_default(),
                raw: e
                    .raw
                    .or_else(|| e.raw_bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
                    .unwrap_or_default(),
            });
        }
    }
    out.sort_by_key(|r| r.line);
    Ok((summary, out))
}

#[cfg(test)]
mod tests {
    use super::ignored;

    #[test]
    fn keys_s3_never_notifies_are_ignored_with_the_reason() {
        let suffixes = [".csv".to_owned(), ".csv.gz".to_owned(), ".csv.zst".to_owned()];
        for key in ["uploads/orders/a.csv", "uploads/a.csv.gz", "uploads/a.csv.zst"] {
            assert_eq!(ignored(key, "uploads/", &suffixes), None, "{key}");
        }
        for key in ["uploads/orders/a.xlsx", "uploads/orders/a.CSV", "uploads/a.csv.bz2"] {
            let why = ignored(key, "uploads/", &suffixes).unwrap();
            assert!(why.contains(".csv, .csv.gz, .csv.zst"), "{key}: {why}");
        }
        let why = ignored("elsewhere/a.csv", "uploads/", &suffixes).unwrap();
        assert!(why.contains("outside the upload prefix"), "{why}");
    }
}
