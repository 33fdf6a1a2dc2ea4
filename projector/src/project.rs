//! Exactly-once projection of a stream batch into the aggregates table.
//!
//! # Mechanism
//!
//! Every event is written once, under `(file_id, line)`, in a page of 1,000
//! lines. The aggregates table holds, next to each aggregate group, one
//! *applied* item per event page: a 1,000-bit bitmap of the lines already
//! folded in. A batch is cut into transactions of at most 100 items; each
//! reads the bitmaps and groups it touches, folds only the events whose bit is
//! clear, and writes the new groups and bitmaps in one `TransactWriteItems`,
//! every item conditioned on the version it read. So an event's contribution
//! and its bit change together or not at all: a batch delivered twice, retried
//! after a crash between two transactions, bisected, or replayed out of order
//! adds each event exactly once. A conflict with a concurrent writer (another
//! shard's batch on the same group) cancels the transaction, which is re-read
//! and retried.
//!
//! Cost: one write per group and per page a transaction touches, not per
//! event. The per-shard high-water mark of DESIGN.md needs the shard id, which
//! Lambda's DynamoDB stream event does not carry; per-event markers would cost
//! a second write per event.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_lambda_events::dynamodb::EventRecord;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use schema::items::{EventType, Manifest};
use schema::keys::PAGE_SIZE;
use schema::Registry;

use crate::fold::{merge_into, Acc, Deltas, Folder, GroupKey};
use crate::record::{decode, Change};

/// Most items in one transaction (DynamoDB's limit).
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Re-reads after a conflict before the batch is failed (and retried by Lambda).
const MAX_CONFLICT_RETRIES: usize = 8;

/// A group's new state, for the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateChange {
    /// The group.
    pub key: GroupKey,
    /// Measure name to value (text).
    pub values: BTreeMap<String, String>,
    /// Grows by one with each change.
    pub version: u64,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
}

/// What a batch did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Events folded in now.
    pub applied: u64,
    /// Events found already folded in (a replay).
    pub skipped: u64,
    /// Items written (groups and bitmaps).
    pub writes: u64,
    /// Transactions made.
    pub transactions: u64,
    /// Aggregate groups written (changed).
    pub groups_written: u64,
    /// Every group the batch touched, at its current state (re-announced on a replay).
    pub changes: Vec<AggregateChange>,
    /// Manifests that reached a final status.
    pub completed: Vec<Manifest>,
}

/// A batch that stopped: records before `failed_at` are done; Lambda retries from there.
#[derive(Debug, thiserror::Error)]
#[error("record {failed_at} of the batch: {message}")]
pub struct BatchError {
    /// Index of the first record not done.
    pub failed_at: usize,
    /// What went wrong.
    pub message: String,
    /// What was done before it.
    pub done: Box<Outcome>,
}

/// Projects the events table's stream into the aggregates table.
#[derive(Clone)]
pub struct Projector {
    ddb: Client,
    table: String,
    folders: std::sync::Arc<HashMap<String, Folder>>,
}

struct PendingEvent {
    index: usize,
    file_id: String,
    line: u64,
    deltas: Deltas,
}

fn page_pk(file_id: &str, line: u64) -> String {
    format!("P#{file_id}#{}", line / PAGE_SIZE)
}

/// Partition key of an aggregate group.
pub fn group_pk(key: &GroupKey) -> String {
    format!(
        "G#{}#{}#{}",
        key.dataset,
        key.aggregate,
        serde_json::to_string(&key.values).expect("strings serialize")
    )
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl Projector {
    /// A projector writing to `table`.
    pub fn new(ddb: Client, table: impl Into<String>, registry: &Registry) -> Self {
        let mut folders: HashMap<String, Folder> =
            registry.datasets().map(|d| (d.name.clone(), Folder::new(d))).collect();
        let untyped = schema::Dataset::untyped();
        folders.insert(untyped.name.clone(), Folder::new(&untyped));
        Projector {
            ddb,
            table: table.into(),
            folders: std::sync::Arc::new(folders),
        }
    }

    /// Project one batch of stream records, in order.
    pub async fn project(&self, records: &[EventRecord]) -> Result<Outcome, BatchError> {
        let mut out = Outcome::default();
        let mut pending = Vec::new();
        let mut failed: Option<(usize, String)> = None;
        for (index, rec) in records.iter().enumerate() {
            match self.prepare(index, rec) {
                Ok(Some(Prepared::Event(e))) => pending.push(e),
                Ok(Some(Prepared::Completed(m))) => out.completed.push(*m),
                Ok(None) => {}
                Err(message) => {
                    tracing::error!(index, %message, "stream record refused");
                    failed = Some((index, message));
                    break;
                }
            }
        }
        // Transactions of at most 100 items: the pages and groups of their events.
        let mut start = 0;
        while start < pending.len() {
            let mut items: BTreeSet<String> = BTreeSet::new();
            let mut end = start;
            while end < pending.len() {
                let e = &pending[end];
                let mut with: BTreeSet<String> = e.deltas.keys().map(group_pk).collect();
                with.insert(page_pk(&e.file_id, e.line));
                let new = with.difference(&items).count();
                if items.len() + new > MAX_TRANSACTION_ITEMS && end > start {
                    break;
                }
                items.extend(with);
                end += 1;
            }
            if let Err(message) = self.apply(&pending[start..end], &mut out).await {
                return Err(BatchError {
                    failed_at: pending[start].index,
                    message,
                    done: Box::new(out),
                });
            }
            start = end;
        }
        match failed {
            Some((failed_at, message)) => Err(BatchError {
                failed_at,
                message,
                done: Box::new(out),
            }),
            None => Ok(out),
        }
    }

    fn prepare(&self, index: usize, rec: &EventRecord) -> Result<Option<Prepared>, String> {
        match decode(rec).map_err(|e| e.to_string())? {
            Change::Ignored => Ok(None),
            Change::Manifest(m) => Ok(m.status.is_final().then_some(Prepared::Completed(m))),
            Change::Event { event, at } => {
                let folder = self.folders.get(&event.dataset).ok_or_else(|| {
                    format!(
                        "line {} of file {}: unknown dataset {:?}",
                        event.sk, event.file_id, event.dataset
                    )
                })?;
                let mut deltas = Deltas::new();
                let accepted = event.event_type == EventType::Accepted;
                if let Some(fields) = event.fields.as_ref().filter(|_| accepted) {
                    folder
                        .apply(fields, &mut deltas)
                        .map_err(|e| format!("line {} of file {}: {e}", event.sk, event.file_id))?;
                }
                folder.file_stats(&event.file_id, accepted, at, &mut deltas);
                Ok(Some(Prepared::Event(PendingEvent {
                    index,
                    file_id: event.file_id.clone(),
                    line: event.sk,
                    deltas,
                })))
            }
        }
    }

    /// One transaction's worth of events, retried on conflicts.
    async fn apply(&self, events: &[PendingEvent], out: &mut Outcome) -> Result<(), String> {
        for attempt in 0.. {
            match self.try_apply(events).await {
                Ok(Applied::Done(o)) => {
                    out.applied += o.applied;
                    out.skipped += o.skipped;
                    out.writes += o.writes;
                    out.transactions += o.transactions;
                    out.groups_written += o.groups_written;
                    out.changes.extend(o.changes);
                    return Ok(());
                }
                Ok(Applied::Conflict) if attempt < MAX_CONFLICT_RETRIES => {
                    tracing::info!(attempt, "aggregate changed under the transaction; reading again");
                }
                Ok(Applied::Conflict) => return Err("aggregates kept changing under the transaction".into()),
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    async fn try_apply(&self, events: &[PendingEvent]) -> Result<Applied, String> {
        let pages: BTreeSet<String> = events.iter().map(|e| page_pk(&e.file_id, e.line)).collect();
        let groups: BTreeMap<String, GroupKey> = events
            .iter()
            .flat_map(|e| e.deltas.keys())
            .map(|k| (group_pk(k), k.clone()))
            .collect();
        let keys: Vec<String> = pages.iter().chain(groups.keys()).cloned().collect();
        let current = self.load(&keys).await?;

        // Bitmaps as read, and as they will be.
        let mut bitmaps: BTreeMap<String, (Vec<u8>, Option<u64>)> = pages
            .iter()
            .map(|p| {
                let item = current.get(p);
                let bits = item
                    .and_then(|i| i.get("bits"))
                    .and_then(|b| b.as_b().ok())
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_else(|| vec![0u8; (PAGE_SIZE as usize).div_ceil(8)]);
                (p.clone(), (bits, version_of(item)))
            })
            .collect();
        let mut fresh = Deltas::new();
        let mut o = Outcome::default();
        let mut changed_pages = BTreeSet::new();
        for e in events {
            let pk = page_pk(&e.file_id, e.line);
            let (bits, _) = bitmaps.get_mut(&pk).expect("every page was loaded");
            let bit = (e.line % PAGE_SIZE) as usize;
            if bits[bit / 8] & (1 << (bit % 8)) != 0 {
                o.skipped += 1;
                continue;
            }
            bits[bit / 8] |= 1 << (bit % 8);
            changed_pages.insert(pk);
            o.applied += 1;
            for (k, accs) in &e.deltas {
                merge_into(&mut fresh, k.clone(), accs.clone());
            }
        }

        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut writes = Vec::new();
        for (pk, key) in &groups {
            let item = current.get(pk);
            let folder = &self.folders[&key.dataset];
            let names = folder
                .measures(&key.aggregate)
                .ok_or_else(|| format!("unknown aggregate {key:?}"))?;
            let old = item.map(|i| read_measures(i, &names)).transpose()?;
            let version = version_of(item);
            let Some(delta) = fresh.get(key) else {
                // Touched only by events already applied: announce the state as it is.
                if let (Some(old), Some(v)) = (old, version) {
                    o.changes.push(change(key, &names, &old, v, updated_at(item)));
                }
                continue;
            };
            let new: Vec<Acc> = match old {
                Some(old) => old.into_iter().zip(delta.iter()).map(|(a, b)| a.merge(*b)).collect(),
                None => delta.clone(),
            };
            let next = version.unwrap_or(0) + 1;
            let mut values = HashMap::new();
            for ((name, _), acc) in names.iter().zip(&new) {
                values.insert(name.clone(), s(acc.text()));
            }
            let group: HashMap<String, AttributeValue> = match self.group_columns(key) {
                Some(cols) => cols
                    .into_iter()
                    .zip(key.values.iter())
                    .map(|(c, v)| (c, s(v.clone())))
                    .collect(),
                None => HashMap::new(),
            };
            let new_item = HashMap::from([
                ("pk".to_owned(), s(pk.clone())),
                ("kind".to_owned(), s("aggregate")),
                ("dataset".to_owned(), s(key.dataset.clone())),
                ("aggregate".to_owned(), s(key.aggregate.clone())),
                ("group".to_owned(), AttributeValue::M(group)),
                (
                    "group_values".to_owned(),
                    AttributeValue::L(key.values.iter().map(|v| s(v.clone())).collect()),
                ),
                ("measures".to_owned(), AttributeValue::M(values)),
                ("version".to_owned(), n(next)),
                ("updated_at".to_owned(), s(now.clone())),
            ]);
            writes.push(conditional_put(&self.table, new_item, version));
            o.changes.push(change(key, &names, &new, next, now.clone()));
        }
        for pk in &changed_pages {
            let (bits, version) = &bitmaps[pk];
            let item = HashMap::from([
                ("pk".to_owned(), s(pk.clone())),
                ("kind".to_owned(), s("applied")),
                ("bits".to_owned(), AttributeValue::B(bits.clone().into())),
                ("version".to_owned(), n(version.unwrap_or(0) + 1)),
            ]);
            writes.push(conditional_put(&self.table, item, *version));
        }
        if writes.is_empty() {
            return Ok(Applied::Done(o));
        }
        o.writes = writes.len() as u64;
        o.groups_written = (writes.len() - changed_pages.len()) as u64;
        o.transactions = 1;
        match self
            .ddb
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
        {
            Ok(_) => Ok(Applied::Done(o)),
            Err(e) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
                let conflict = match e.as_service_error() {
                    Some(E::TransactionCanceledException(c)) => c
                        .cancellation_reasons()
                        .iter()
                        .any(|r| matches!(r.code(), Some("ConditionalCheckFailed" | "TransactionConflict"))),
                    _ => false,
                };
                if conflict {
                    Ok(Applied::Conflict)
                } else {
                    Err(format!("TransactWriteItems: {}", DisplayErrorContext(&e)))
                }
            }
        }
    }

    /// The group-by terms of a group's aggregate, in value order.
    pub fn group_terms(&self, key: &GroupKey) -> Vec<String> {
        self.group_columns(key).unwrap_or_default()
    }

    fn group_columns(&self, key: &GroupKey) -> Option<Vec<String>> {
        if key.aggregate == crate::fold::FILE_STATS {
            return Some(vec!["file_id".to_owned()]);
        }
        self.folders.get(&key.dataset)?.group_columns(&key.aggregate)
    }

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, HashMap<String, AttributeValue>>, String> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(100) {
            let mut want = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(
                        chunk
                            .iter()
                            .map(|k| HashMap::from([("pk".to_owned(), s(k.clone()))]))
                            .collect(),
                    ))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
            while let Some(k) = want.take() {
                let res = self
                    .ddb
                    .batch_get_item()
                    .request_items(&self.table, k)
                    .send()
                    .await
                    .map_err(|e| format!("BatchGetItem: {}", DisplayErrorContext(&e)))?;
                for item in res
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    if let Some(pk) = item.get("pk").and_then(|v| v.as_s().ok()).cloned() {
                        found.insert(pk, item);
                    }
                }
                want = res
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
            }
        }
        Ok(found)
    }
}

enum Prepared {
    Event(PendingEvent),
    Completed(Box<Manifest>),
}

enum Applied {
    Done(Outcome),
    Conflict,
}

fn version_of(item: Option<&HashMap<String, AttributeValue>>) -> Option<u64> {
    item?.get("version")?.as_n().ok()?.parse().ok()
}

fn updated_at(item: Option<&HashMap<String, AttributeValue>>) -> String {
    item.and_then(|i| i.get("updated_at"))
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

fn read_measures(
    item: &HashMap<String, AttributeValue>,
    names: &[(String, schema::dataset::MeasureOp)],
) -> Result<Vec<Acc>, String> {
    let m = item
        .get("measures")
        .and_then(|v| v.as_m().ok())
        .ok_or("aggregate item without measures")?;
    names
        .iter()
        .map(|(name, op)| {
            let text = m
                .get(name)
                .and_then(|v| v.as_s().ok())
                .ok_or(format!("measure {name} missing"))?;
            Acc::parse(*op, text).ok_or(format!("measure {name}: {text:?} does not parse"))
        })
        .collect()
}

fn change(
    key: &GroupKey,
    names: &[(String, schema::dataset::MeasureOp)],
    accs: &[Acc],
    version: u64,
    updated_at: String,
) -> AggregateChange {
    AggregateChange {
        key: key.clone(),
        values: names
            .iter()
            .map(|(n, _)| n.clone())
            .zip(accs.iter().map(Acc::text))
            .collect(),
        version,
        updated_at,
    }
}

fn conditional_put(table: &str, item: HashMap<String, AttributeValue>, version: Option<u64>) -> TransactWriteItem {
    let put = Put::builder().table_name(table).set_item(Some(item));
    let put = match version {
        Some(v) => put
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(v)),
        None => put.condition_expression("attribute_not_exists(pk)"),
    };
    TransactWriteItem::builder()
        .put(put.build().expect("table and item are set"))
        .build()
}
