//! The operator's read commands: `status`, `rejects`, `aggregates`, `feed`
//! and `rebuild`. Each returns data; the CLI prints it as a table or JSON.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use projector::fold::{Deltas, Folder, GroupKey, FILE_STATS};
use schema::items::{EventItem, EventType};
use schema::Registry;
use serde::Serialize;

use crate::run::{file_summary, FileSummary};
use crate::target::Target;

type Item = HashMap<String, AttributeValue>;

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
    Ok(ddb
        .get_item()
        .table_name(table)
        .key(schema::keys::PK, AttributeValue::S(pk))
        .key(schema::keys::SK, AttributeValue::N("0".into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))
        .with_context(|| format!("reading table {table}"))?
        .item)
}

async fn scan(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    filter: (&str, &str, &str),
    mut each: impl FnMut(Item) -> Result<()>,
) -> Result<()> {
    let mut start = None;
    loop {
        let page = ddb
            .scan()
            .table_name(table)
            .filter_expression("#k = :v")
            .expression_attribute_names("#k", filter.0)
            .expression_attribute_values(":v", AttributeValue::S(filter.1.into()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))
            .with_context(|| format!("scanning {table} for {}", filter.2))?;
        for item in page.items.unwrap_or_default() {
            each(item)?;
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return Ok(());
        }
    }
}

/// Every aggregate group of the aggregates table (of one dataset, if given), sorted.
pub async fn read_aggregates(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    dataset: Option<&str>,
) -> Result<Vec<AggregateRow>> {
    let mut out = Vec::new();
    scan(ddb, table, ("kind", "aggregate", "aggregates"), |item| {
        let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let row = AggregateRow {
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
        };
        if dataset.is_none_or(|d| d == row.dataset) {
            out.push(row);
        }
        Ok(())
    })
    .await?;
    out.sort_by(|a, b| (&a.dataset, &a.aggregate, &a.group).cmp(&(&b.dataset, &b.aggregate, &b.group)));
    Ok(out)
}

/// One object's state in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// Object key.
    pub key: String,
    /// Its ingest, once it has begun; `None` while the notification waits.
    pub file: Option<FileSummary>,
}

/// The key of `file`: as given if it exists in the bucket, else under the upload prefix.
async fn resolve_key(target: &Target, file: &str) -> String {
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
                let page = page
                    .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
                    .with_context(|| format!("listing s3://{}/{}", names.bucket, names.upload_prefix))?;
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
        out.push(StatusRow { key, file });
    }
    if let (Some(f), [row]) = (file, out.as_slice()) {
        anyhow::ensure!(
            row.file.is_some(),
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
        let mut start = None;
        loop {
            let resp = target
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
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))
                .context("reading rejected lines")?;
            for item in resp.items.unwrap_or_default() {
                let e: EventItem = serde_dynamo::from_item(item)?;
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
            start = resp.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
    }
    out.sort_by_key(|r| r.line);
    Ok((summary, out))
}

/// Receive feed messages, hand each to `show`, then delete it. Without
/// `follow`, stops at the first empty receive; with it, waits for more
/// until `max` messages (if given). Returns how many were shown.
pub async fn feed(
    target: &Target,
    follow: bool,
    max: Option<u64>,
    mut show: impl FnMut(&serde_json::Value),
) -> Result<u64> {
    let sqs = &target.clients.sqs;
    let url = &target.deployment.feed_queue_url;
    let mut shown = 0;
    loop {
        let want = max.map(|m| m.saturating_sub(shown).min(10)).unwrap_or(10) as i32;
        if want == 0 {
            return Ok(shown);
        }
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(want)
            .wait_time_seconds(if follow { 10 } else { 1 })
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))
            .with_context(|| format!("receiving from the feed queue {url}"))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() && !follow {
            return Ok(shown);
        }
        for m in messages {
            let body = m.body().unwrap_or_default();
            let v = serde_json::from_str(body).unwrap_or_else(|_| serde_json::Value::String(body.to_owned()));
            show(&v);
            shown += 1;
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .context("deleting a feed message after showing it")?;
        }
    }
}

/// One difference between the live aggregates and a rebuild from the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Dataset.
    pub dataset: String,
    /// Aggregate.
    pub aggregate: String,
    /// Group-by values.
    pub group: Vec<String>,
    /// Measure (`None`: the whole group is missing on one side).
    pub measure: Option<String>,
    /// What the events say.
    pub expected: Option<String>,
    /// What the aggregates table holds.
    pub live: Option<String>,
}

/// What `rebuild` found.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuild {
    /// Events read from the events table.
    pub events: u64,
    /// Groups recomputed.
    pub groups: u64,
    /// Groups in the aggregates table.
    pub live_groups: u64,
    /// Every difference.
    pub differences: Vec<Difference>,
}

/// Measures of `file_stats` that record arrival times on the stream, which
/// the events table does not keep: a rebuild cannot recompute them.
const ARRIVAL_MEASURES: [&str; 2] = ["first_seen", "last_seen"];

/// Recompute every aggregate from the events table alone (a full scan) and
/// compare it with the live aggregates table.
pub async fn rebuild(target: &Target) -> Result<Rebuild> {
    let names = &target.deployment.names;
    let registry = Registry::builtin();
    let mut folders: HashMap<String, Folder> = HashMap::new();
    let mut deltas = Deltas::new();
    let mut events = 0u64;
    scan(
        &target.clients.dynamodb,
        &names.events_table,
        ("kind", "event", "events"),
        |item| {
            let e: EventItem = serde_dynamo::from_item(item)?;
            events += 1;
            let folder = match folders.get(&e.dataset) {
                Some(f) => f,
                None => {
                    let ds = registry
                        .get(&e.dataset)
                        .with_context(|| format!("event {}/{} names unknown dataset {:?}", e.pk, e.sk, e.dataset))?;
                    folders.entry(e.dataset.clone()).or_insert_with(|| Folder::new(ds))
                }
            };
            let accepted = e.event_type == EventType::Accepted;
            folder.file_stats(&e.file_id, accepted, 0, &mut deltas);
            if accepted {
                let fields = e.fields.unwrap_or_default();
                folder
                    .apply(&fields, &mut deltas)
                    .map_err(|err| anyhow::anyhow!("event {}/{}: {err}", e.pk, e.sk))?;
            }
            Ok(())
        },
    )
    .await?;
    let live = read_aggregates(&target.clients.dynamodb, &names.aggregates_table, None).await?;
    Ok(Rebuild {
        events,
        groups: deltas.len() as u64,
        live_groups: live.len() as u64,
        differences: compare(&folders, &deltas, &live),
    })
}

/// Differences between recomputed deltas and live rows (arrival-time measures excepted).
pub fn compare(folders: &HashMap<String, Folder>, deltas: &Deltas, live: &[AggregateRow]) -> Vec<Difference> {
    let mut live_by: BTreeMap<GroupKey, &AggregateRow> = live
        .iter()
        .map(|r| {
            (
                GroupKey {
                    dataset: r.dataset.clone(),
                    aggregate: r.aggregate.clone(),
                    values: r.group.clone(),
                },
                r,
            )
        })
        .collect();
    let mut out = Vec::new();
    let diff = |k: &GroupKey, measure: Option<String>, expected: Option<String>, live: Option<String>| Difference {
        dataset: k.dataset.clone(),
        aggregate: k.aggregate.clone(),
        group: k.values.clone(),
        measure,
        expected,
        live,
    };
    let mut keys: Vec<&GroupKey> = deltas.keys().collect();
    keys.sort();
    for key in keys {
        let accs = &deltas[key];
        let Some(row) = live_by.remove(key) else {
            out.push(diff(key, None, Some("group".into()), None));
            continue;
        };
        let names = folders
            .get(&key.dataset)
            .and_then(|f| f.measures(&key.aggregate))
            .unwrap_or_default();
        for ((name, _), acc) in names.iter().zip(accs) {
            if key.aggregate == FILE_STATS && ARRIVAL_MEASURES.contains(&name.as_str()) {
                continue;
            }
            let expected = acc.text();
            let got = row.measures.get(name);
            if got != Some(&expected) {
                out.push(diff(key, Some(name.clone()), Some(expected), got.cloned()));
            }
        }
    }
    for (key, _) in live_by {
        out.push(diff(&key, None, None, Some("group".into())));
    }
    out
}
