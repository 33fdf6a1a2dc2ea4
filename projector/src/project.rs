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
//! and retried after a jittered backoff.
//!
//! Cost: one write per group and per page a transaction touches, not per
//! event. A per-shard high-water mark (docs/projector.md) needs the shard id, which
//! Lambda's DynamoDB stream event does not carry; per-event markers would cost
//! a second write per event.
//!
//! # Steps
//!
//! The decisions are pure functions, tested without a table; the
//! [`Projector`] only reads, calls them, and writes:
//!
//! 1. records to pending events (decode, fold into deltas), and the cut of
//!    those into transactions of at most 100 items;
//! 2. per transaction, the items to read, and what was read decoded
//!    ([`schema::AppliedPage`], [`schema::AggregateItem`]);
//! 3. which events of each page are not yet applied (their bits set now);
//! 4. the fold of their deltas into each group's next item;
//! 5. the transaction: every new item conditioned on the version read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::dynamodb::EventRecord;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use schema::aggregates::{AggregateItem, AppliedPage};
use schema::dataset::MeasureOp;
use schema::items::{EventType, Manifest};
use schema::{keys, Registry};

use crate::error::{chain, ProjectError, RetryClass};
use crate::fold::{merge_into, Acc, Deltas, Folder, GroupKey, FILE_STATS};
use crate::record::{decode, Change};
use crate::retry::Policy;

/// Most items in one transaction (DynamoDB's limit).
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Most keys in one `BatchGetItem` (DynamoDB's limit).
const MAX_BATCH_GET_KEYS: usize = 100;
/// A transaction cancelled by a concurrent writer: nine attempts in all, then
/// the batch fails (and Lambda retries it). Short waits: the other writer has
/// already committed when the cancellation arrives.
const CONFLICTS: Policy = Policy::new(Duration::from_millis(10), Duration::from_millis(500), 9);
/// Keys `BatchGetItem` left unprocessed (the table throttled): AWS advises
/// backing off before asking for them again.
const UNPROCESSED: Policy = Policy::new(Duration::from_millis(50), Duration::from_secs(2), 10);

/// One item as DynamoDB returns it.
type Item = HashMap<String, AttributeValue>;

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

impl Outcome {
    /// Add what one transaction did.
    fn absorb(&mut self, o: Outcome) {
        self.applied += o.applied;
        self.skipped += o.skipped;
        self.writes += o.writes;
        self.transactions += o.transactions;
        self.groups_written += o.groups_written;
        self.changes.extend(o.changes);
        self.completed.extend(o.completed);
    }
}

/// A batch that stopped: records before `failed_at` are done; Lambda retries
/// from there.
#[derive(Debug, thiserror::Error)]
#[error("record {failed_at} of the batch")]
pub struct BatchError {
    /// Index of the first record not done.
    pub failed_at: usize,
    /// What went wrong there.
    #[source]
    pub error: ProjectError,
    /// What was done before it.
    pub done: Box<Outcome>,
}

impl BatchError {
    /// What went wrong, every cause included (`TransactWriteItems: dispatch
    /// failure: ...`), for logs and assertions.
    pub fn message(&self) -> String {
        chain(&self.error)
    }

    /// Whether trying again can succeed.
    pub fn retry_class(&self) -> RetryClass {
        self.error.retry_class()
    }
}

/// Projects the events table's stream into the aggregates table.
#[derive(Clone)]
pub struct Projector {
    ddb: Client,
    table: String,
    folders: Arc<Folders>,
}

impl Projector {
    /// A projector writing to `table`, folding the datasets of `registry`
    /// (and the untyped fallback).
    pub fn new(ddb: Client, table: impl Into<String>, registry: &Registry) -> Self {
        Projector {
            ddb,
            table: table.into(),
            folders: Arc::new(Folders::new(registry)),
        }
    }

    /// Project one batch of stream records, in order.
    pub async fn project(&self, records: &[EventRecord]) -> Result<Outcome, BatchError> {
        let mut out = Outcome::default();
        let mut pending = Vec::new();
        let mut failed: Option<(usize, ProjectError)> = None;
        for (index, rec) in records.iter().enumerate() {
            match self.folders.prepare(index, rec) {
                Ok(Some(Prepared::Event(e))) => pending.push(e),
                Ok(Some(Prepared::Completed(m))) => out.completed.push(*m),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(index, error = %chain(&error), "stream record refused");
                    failed = Some((index, error));
                    break;
                }
            }
        }
        // The records before a refused one are still projected: Lambda
        // retries from the refused one, and they need not wait for it.
        for range in transactions(&pending, MAX_TRANSACTION_ITEMS) {
            let events = &pending[range];
            if let Err(error) = self.apply(events, &mut out).await {
                return Err(BatchError {
                    failed_at: events[0].index,
                    error,
                    done: Box::new(out),
                });
            }
        }
        match failed {
            Some((failed_at, error)) => Err(BatchError {
                failed_at,
                error,
                done: Box::new(out),
            }),
            None => Ok(out),
        }
    }

    /// The group-by terms of a group's aggregate, in value order.
    pub fn group_terms(&self, key: &GroupKey) -> Vec<String> {
        self.folders.group_columns(key).unwrap_or_default()
    }

    /// One transaction's worth of events, retried on conflicts.
    async fn apply(&self, events: &[PendingEvent], out: &mut Outcome) -> Result<(), ProjectError> {
        let mut attempts = CONFLICTS.start();
        loop {
            match self.try_apply(events).await? {
                Applied::Done(o) => {
                    out.absorb(o);
                    return Ok(());
                }
                Applied::Conflict => {
                    let Some(delay) = attempts.next_delay() else {
                        return Err(ProjectError::Conflicts {
                            attempts: attempts.made(),
                        });
                    };
                    tracing::info!(
                        attempt = attempts.made(),
                        ?delay,
                        "aggregate changed under the transaction; reading again"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One attempt: read, decide (pure), write.
    async fn try_apply(&self, events: &[PendingEvent]) -> Result<Applied, ProjectError> {
        let wanted = Wanted::of(events);
        let stored = self.load(&wanted.keys()).await?;
        let read = wanted.read(stored)?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let planned = plan_transaction(&self.folders, events, read, &now)?;
        let writes = transaction(&self.table, &planned);
        if writes.is_empty() {
            return Ok(Applied::Done(planned.outcome));
        }
        match self
            .ddb
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
        {
            Ok(_) => Ok(Applied::Done(planned.outcome)),
            Err(e) if is_conflict(&e) => Ok(Applied::Conflict),
            Err(e) => Err(ProjectError::Transact(Box::new(e))),
        }
    }

    /// Read items by key, consistently; keys not found are absent from the map.
    async fn load(&self, pks: &[String]) -> Result<HashMap<String, Item>, ProjectError> {
        let mut found = HashMap::new();
        for chunk in pks.chunks(MAX_BATCH_GET_KEYS) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(
                    chunk
                        .iter()
                        .map(|pk| HashMap::from([(keys::PK.to_owned(), AttributeValue::S(pk.clone()))]))
                        .collect(),
                ))
                .consistent_read(true)
                .build()
                .expect("keys are set");
            let mut attempts = UNPROCESSED.start();
            let mut want = Some(request);
            while let Some(k) = want.take() {
                let res = self
                    .ddb
                    .batch_get_item()
                    .request_items(&self.table, k)
                    .send()
                    .await
                    .map_err(|e| ProjectError::BatchGet(Box::new(e)))?;
                for item in res
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    if let Some(pk) = item.get(keys::PK).and_then(|v| v.as_s().ok()).cloned() {
                        found.insert(pk, item);
                    }
                }
                want = res
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
                if let Some(left) = &want {
                    tracing::debug!(keys = left.keys().len(), "BatchGetItem left keys unprocessed");
                    if !attempts.pause().await {
                        return Err(ProjectError::Unprocessed {
                            keys: left.keys().len(),
                            attempts: attempts.made(),
                        });
                    }
                }
            }
        }
        Ok(found)
    }
}

/// Whether a failed transaction was cancelled by a concurrent writer (a
/// version condition failed, or another transaction held an item): re-read
/// and try again.
fn is_conflict(e: &SdkError<TransactWriteItemsError>) -> bool {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .any(|r| matches!(r.code(), Some("ConditionalCheckFailed" | "TransactionConflict"))),
        _ => false,
    }
}

/// The fold plans of every dataset the projector knows, the untyped fallback
/// included.
struct Folders(HashMap<String, Folder>);

impl Folders {
    fn new(registry: &Registry) -> Self {
        let mut folders: HashMap<String, Folder> =
            registry.datasets().map(|d| (d.name.clone(), Folder::new(d))).collect();
        let untyped = schema::Dataset::untyped();
        folders.insert(untyped.name.clone(), Folder::new(&untyped));
        Folders(folders)
    }

    /// Step 1: one stream record to what the batch does with it.
    fn prepare(&self, index: usize, rec: &EventRecord) -> Result<Option<Prepared>, ProjectError> {
        match decode(rec)? {
            Change::Ignored => Ok(None),
            Change::Manifest(m) => Ok(m.status.is_final().then_some(Prepared::Completed(m))),
            Change::Event { event, at } => {
                let folder = self.0.get(&event.dataset).ok_or_else(|| ProjectError::UnknownDataset {
                    file_id: event.file_id.clone(),
                    line: event.sk,
                    dataset: event.dataset.clone(),
                })?;
                let mut deltas = Deltas::new();
                let accepted = event.event_type == EventType::Accepted;
                if let Some(fields) = event.fields.as_ref().filter(|_| accepted) {
                    folder.apply(fields, &mut deltas).map_err(|source| ProjectError::Fold {
                        file_id: event.file_id.clone(),
                        line: event.sk,
                        source: Box::new(source),
                    })?;
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

    /// The measures of a group's aggregate (name and op), in stored order.
    fn measures(&self, key: &GroupKey) -> Result<Vec<(String, MeasureOp)>, ProjectError> {
        self.0
            .get(&key.dataset)
            .and_then(|f| f.measures(&key.aggregate))
            .ok_or_else(|| ProjectError::UnknownAggregate(key.clone()))
    }

    /// The group-by terms of a group's aggregate, in value order.
    fn group_columns(&self, key: &GroupKey) -> Option<Vec<String>> {
        if key.aggregate == FILE_STATS {
            return Some(vec!["file_id".to_owned()]);
        }
        self.0.get(&key.dataset)?.group_columns(&key.aggregate)
    }
}

/// One event ready to apply: where it is in the batch, its line, and what it adds.
#[derive(Debug, Clone)]
struct PendingEvent {
    index: usize,
    file_id: String,
    line: u64,
    deltas: Deltas,
}

impl PendingEvent {
    /// The key of the applied page that holds this event's bit.
    fn page_pk(&self) -> String {
        keys::page_pk(&self.file_id, keys::page_of(self.line))
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

/// Step 1: cut events into consecutive transactions of at most `max_items`
/// items (the pages and groups they touch, each counted once). An event that
/// alone exceeds the limit still gets a transaction of its own, which
/// DynamoDB then refuses loudly.
fn transactions(events: &[PendingEvent], max_items: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < events.len() {
        let mut items: BTreeSet<String> = BTreeSet::new();
        let mut end = start;
        while end < events.len() {
            let e = &events[end];
            let mut with: BTreeSet<String> = e.deltas.keys().map(GroupKey::pk).collect();
            with.insert(e.page_pk());
            let new = with.difference(&items).count();
            if items.len() + new > max_items && end > start {
                break;
            }
            items.extend(with);
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// Step 2: the items one transaction reads, by key: the pages of its events
/// (with their file and page number) and the groups they touch.
struct Wanted {
    pages: BTreeMap<String, (String, u64)>,
    groups: BTreeMap<String, GroupKey>,
}

impl Wanted {
    fn of(events: &[PendingEvent]) -> Self {
        let mut pages = BTreeMap::new();
        let mut groups = BTreeMap::new();
        for e in events {
            pages
                .entry(e.page_pk())
                .or_insert_with(|| (e.file_id.clone(), keys::page_of(e.line)));
            for key in e.deltas.keys() {
                groups.entry(key.pk()).or_insert_with(|| key.clone());
            }
        }
        Wanted { pages, groups }
    }

    fn keys(&self) -> Vec<String> {
        self.pages.keys().chain(self.groups.keys()).cloned().collect()
    }

    /// Decode what was found; a page not found is empty, a group not found new.
    fn read(self, mut stored: HashMap<String, Item>) -> Result<Read, ProjectError> {
        let mut pages = BTreeMap::new();
        for (pk, (file_id, page)) in self.pages {
            let versioned = match stored.remove(&pk) {
                Some(item) => {
                    let stored_page = AppliedPage::from_item(item)?;
                    let read = Some(stored_page.version);
                    Versioned {
                        item: stored_page,
                        read,
                    }
                }
                None => Versioned {
                    item: AppliedPage::new(&file_id, page),
                    read: None,
                },
            };
            pages.insert(pk, versioned);
        }
        let mut groups = BTreeMap::new();
        for (pk, key) in self.groups {
            let item = stored.remove(&pk).map(AggregateItem::from_item).transpose()?;
            groups.insert(pk, (key, item));
        }
        Ok(Read { pages, groups })
    }
}

/// An item and the version it was read at (`None`: absent), which its write
/// is conditioned on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Versioned<T> {
    item: T,
    read: Option<u64>,
}

/// What one transaction read, decoded, by key.
struct Read {
    pages: BTreeMap<String, Versioned<AppliedPage>>,
    groups: BTreeMap<String, (GroupKey, Option<AggregateItem>)>,
}

/// What step 3 found: the deltas of the events not yet applied, and the pages
/// whose bits it set.
#[derive(Debug, Default)]
struct Marked {
    fresh: Deltas,
    applied: u64,
    skipped: u64,
    changed: BTreeSet<String>,
}

/// Step 3: which events are not yet applied. Their bits are set in `pages`
/// (a page missing from it is taken as empty) and their deltas merged; an
/// event whose bit is set, or that came earlier in the same events, is
/// skipped.
fn mark_unapplied(events: &[PendingEvent], pages: &mut BTreeMap<String, Versioned<AppliedPage>>) -> Marked {
    let mut m = Marked::default();
    for e in events {
        let pk = e.page_pk();
        let page = pages.entry(pk.clone()).or_insert_with(|| Versioned {
            item: AppliedPage::new(&e.file_id, keys::page_of(e.line)),
            read: None,
        });
        if !page.item.mark(e.line) {
            m.skipped += 1;
            continue;
        }
        m.changed.insert(pk);
        m.applied += 1;
        for (k, accs) in &e.deltas {
            merge_into(&mut m.fresh, k.clone(), accs.clone());
        }
    }
    m
}

/// What step 4 decides for one group.
// One per group, consumed at once: boxing the larger variant would only add
// an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
enum GroupStep {
    /// Touched only by events already applied: nothing to write; announce the
    /// state as stored (if it ever was).
    Unchanged(Option<AggregateChange>),
    /// Its next state, written if it still has the version read.
    Write {
        item: AggregateItem,
        read: Option<u64>,
        change: AggregateChange,
    },
}

/// Step 4: one group's next state from its stored item (if any) and the
/// deltas of its newly applied events (if any).
fn next_group(
    key: &GroupKey,
    stored: Option<&AggregateItem>,
    delta: Option<&[Acc]>,
    measures: &[(String, MeasureOp)],
    terms: &[String],
    now: &str,
) -> Result<GroupStep, ProjectError> {
    // Read even when unchanged: a stored group that no longer reads is
    // reported, not announced as it is.
    let old = stored.map(|item| read_measures(item, measures)).transpose()?;
    let Some(delta) = delta else {
        let change = stored
            .zip(old)
            .map(|(item, old)| aggregate_change(key, measures, &old, item.version, item.updated_at.clone()));
        return Ok(GroupStep::Unchanged(change));
    };
    let new: Vec<Acc> = match old {
        Some(old) => old.into_iter().zip(delta).map(|(a, b)| a.merge(*b)).collect(),
        None => delta.to_vec(),
    };
    let read = stored.map(|item| item.version);
    let version = read.unwrap_or(0) + 1;
    let change = aggregate_change(key, measures, &new, version, now.to_owned());
    let item = AggregateItem::new(
        &key.dataset,
        &key.aggregate,
        terms,
        key.values.clone(),
        change.values.clone(),
        version,
        now.to_owned(),
    );
    Ok(GroupStep::Write { item, read, change })
}

/// Steps 3 and 4 over one transaction's events: what to write and what the
/// transaction did.
struct Plan {
    outcome: Outcome,
    groups: Vec<Versioned<AggregateItem>>,
    pages: Vec<Versioned<AppliedPage>>,
}

fn plan_transaction(folders: &Folders, events: &[PendingEvent], read: Read, now: &str) -> Result<Plan, ProjectError> {
    let Read { mut pages, groups } = read;
    let marked = mark_unapplied(events, &mut pages);
    let mut outcome = Outcome {
        applied: marked.applied,
        skipped: marked.skipped,
        ..Outcome::default()
    };
    let mut group_writes = Vec::new();
    for (key, stored) in groups.values() {
        let measures = folders.measures(key)?;
        let terms = folders.group_columns(key).unwrap_or_default();
        let delta = marked.fresh.get(key).map(Vec::as_slice);
        match next_group(key, stored.as_ref(), delta, &measures, &terms, now)? {
            GroupStep::Unchanged(change) => outcome.changes.extend(change),
            GroupStep::Write { item, read, change } => {
                group_writes.push(Versioned { item, read });
                outcome.changes.push(change);
            }
        }
    }
    let page_writes: Vec<Versioned<AppliedPage>> = pages
        .into_iter()
        .filter(|(pk, _)| marked.changed.contains(pk))
        .map(|(_, mut page)| {
            page.item.version = page.read.unwrap_or(0) + 1;
            page
        })
        .collect();
    let writes = group_writes.len() + page_writes.len();
    if writes > 0 {
        outcome.writes = writes as u64;
        outcome.groups_written = group_writes.len() as u64;
        outcome.transactions = 1;
    }
    Ok(Plan {
        outcome,
        groups: group_writes,
        pages: page_writes,
    })
}

/// Step 5: the transaction's items, groups then pages, each conditioned on
/// the version read (or on being absent).
fn transaction(table: &str, plan: &Plan) -> Vec<TransactWriteItem> {
    let groups = plan
        .groups
        .iter()
        .map(|g| conditional_put(table, g.item.to_item(), g.read));
    let pages = plan
        .pages
        .iter()
        .map(|p| conditional_put(table, p.item.to_item(), p.read));
    groups.chain(pages).collect()
}

/// A stored group's measures, in the order of its definition.
fn read_measures(item: &AggregateItem, measures: &[(String, MeasureOp)]) -> Result<Vec<Acc>, ProjectError> {
    let problem = |measure: &str, problem: String| ProjectError::Measure {
        pk: item.pk.clone(),
        measure: measure.to_owned(),
        problem,
    };
    measures
        .iter()
        .map(|(name, op)| {
            let text = item
                .measures
                .get(name)
                .ok_or_else(|| problem(name, "missing".to_owned()))?;
            Acc::parse(*op, text).ok_or_else(|| problem(name, format!("{text:?} does not parse")))
        })
        .collect()
}

fn aggregate_change(
    key: &GroupKey,
    measures: &[(String, MeasureOp)],
    accs: &[Acc],
    version: u64,
    updated_at: String,
) -> AggregateChange {
    AggregateChange {
        key: key.clone(),
        values: measures
            .iter()
            .map(|(n, _)| n.clone())
            .zip(accs.iter().map(Acc::text))
            .collect(),
        version,
        updated_at,
    }
}

fn conditional_put(table: &str, item: Item, version: Option<u64>) -> TransactWriteItem {
    let put = Put::builder().table_name(table).set_item(Some(item));
    let put = match version {
        Some(v) => put
            .condition_expression("version = :v")
            .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        None => put.condition_expression("attribute_not_exists(pk)"),
    };
    TransactWriteItem::builder()
        .put(put.build().expect("table and item are set"))
        .build()
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use schema::Fields;

    use super::*;

    fn folders() -> Folders {
        Folders::new(&Registry::builtin())
    }

    /// An accepted `orders` line of `file_id`: its two typed groups and its
    /// file's statistics.
    fn order(folders: &Folders, index: usize, file_id: &str, line: u64) -> PendingEvent {
        let fields: Fields = [
            ("ordered_at", "2024-01-01T10:00:00Z"),
            ("country", "DE"),
            ("currency", "EUR"),
            ("category", "books"),
            ("quantity", "2"),
            ("unit_price", "12.50"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let folder = &folders.0["orders"];
        let mut deltas = Deltas::new();
        folder.apply(&fields, &mut deltas).unwrap();
        folder.file_stats(file_id, true, 5, &mut deltas);
        PendingEvent {
            index,
            file_id: file_id.to_owned(),
            line,
            deltas,
        }
    }

    /// A rejected line: its file's statistics only (one group).
    fn rejected(folders: &Folders, index: usize, file_id: &str, line: u64) -> PendingEvent {
        let mut deltas = Deltas::new();
        folders.0["orders"].file_stats(file_id, false, 7, &mut deltas);
        PendingEvent {
            index,
            file_id: file_id.to_owned(),
            line,
            deltas,
        }
    }

    fn stats_key(file_id: &str) -> GroupKey {
        GroupKey {
            dataset: "orders".into(),
            aggregate: FILE_STATS.into(),
            values: vec![file_id.into()],
        }
    }

    #[test]
    fn transactions_hold_at_most_the_item_limit() {
        let f = folders();
        // Each rejected line of its own file: one group and one page.
        let lone: Vec<_> = (0..5).map(|i| rejected(&f, i, &format!("f{i}"), 1)).collect();
        assert_eq!(transactions(&lone, 4), [0..2, 2..4, 4..5]);
        // Lines of one page of one file share both items.
        let shared: Vec<_> = (0..5).map(|i| rejected(&f, i, "f", i as u64 + 1)).collect();
        assert_eq!(transactions(&shared, 2), vec![0..5]);
        // An event over the limit alone still goes, alone (three groups and a page).
        let big = vec![order(&f, 0, "f", 1), rejected(&f, 1, "g", 1)];
        assert_eq!(transactions(&big, 2), [0..1, 1..2]);
        assert!(transactions(&[], 100).is_empty());
        // A new page is a new item: line 1000 opens page 1.
        let pages = vec![rejected(&f, 0, "f", 999), rejected(&f, 1, "f", 1000)];
        assert_eq!(transactions(&pages, 2), [0..1, 1..2]);
        assert_eq!(transactions(&pages, 3), vec![0..2]);
    }

    #[test]
    fn only_unapplied_events_are_folded_and_marked() {
        let f = folders();
        let mut first = AppliedPage::new("f", 0);
        first.mark(2);
        first.version = 1;
        let mut pages = BTreeMap::from([(
            keys::page_pk("f", 0),
            Versioned {
                item: first,
                read: Some(1),
            },
        )]);
        let events = [
            rejected(&f, 0, "f", 1),
            rejected(&f, 1, "f", 2),    // already applied
            rejected(&f, 2, "f", 1),    // the same line again in the batch
            rejected(&f, 3, "f", 1000), // page 1, never written
        ];
        let m = mark_unapplied(&events, &mut pages);
        assert_eq!((m.applied, m.skipped), (2, 2));
        assert_eq!(
            m.changed,
            BTreeSet::from([keys::page_pk("f", 0), keys::page_pk("f", 1)])
        );
        assert_eq!(
            m.fresh[&stats_key("f")],
            [
                Acc::Sum(Decimal::ZERO),
                Acc::Sum(Decimal::from(2)),
                Acc::Earliest(7),
                Acc::Latest(7)
            ],
            "two rejected lines counted once each"
        );
        let p0 = &pages[&keys::page_pk("f", 0)];
        assert!(p0.item.is_applied(1) && p0.item.is_applied(2) && !p0.item.is_applied(3));
        assert_eq!(p0.read, Some(1), "the version read is kept for the condition");
        let p1 = &pages[&keys::page_pk("f", 1)];
        assert!(p1.item.is_applied(1000) && p1.read.is_none());

        let again = mark_unapplied(&events, &mut pages);
        assert_eq!((again.applied, again.skipped), (0, 4), "a replay applies nothing");
        assert!(again.fresh.is_empty() && again.changed.is_empty());
    }

    fn stats_measures() -> Vec<(String, MeasureOp)> {
        folders().measures(&stats_key("f")).unwrap()
    }

    fn stored_stats(version: u64, accepted: &str) -> AggregateItem {
        AggregateItem::new(
            "orders",
            FILE_STATS,
            &["file_id".to_owned()],
            vec!["f".to_owned()],
            BTreeMap::from([
                ("accepted".to_owned(), accepted.to_owned()),
                ("rejected".to_owned(), "1".to_owned()),
                // Epoch seconds, as aggregates written before feed schema 2 hold them.
                ("first_seen".to_owned(), "1".to_owned()),
                ("last_seen".to_owned(), "4".to_owned()),
            ]),
            version,
            "2024-01-01T00:00:00.000Z".to_owned(),
        )
    }

    #[test]
    fn a_group_folds_its_new_deltas_into_the_next_version() {
        let (key, measures, terms) = (stats_key("f"), stats_measures(), vec!["file_id".to_owned()]);
        let delta = [
            Acc::Sum(Decimal::ONE),
            Acc::Sum(Decimal::ZERO),
            Acc::Earliest(5),
            Acc::Latest(5),
        ];
        let now = "2024-02-02T00:00:00.000Z";
        let text = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };

        // New: version 1, written only if still absent.
        let GroupStep::Write { item, read, change } =
            next_group(&key, None, Some(&delta[..]), &measures, &terms, now).unwrap()
        else {
            panic!("a new group is written")
        };
        assert_eq!(read, None);
        assert_eq!((item.version, change.version), (1, 1));
        assert_eq!(item.pk, key.pk());
        assert_eq!(item.group, text(&[("file_id", "f")]));
        assert_eq!(
            item.measures,
            text(&[
                ("accepted", "1"),
                ("rejected", "0"),
                ("first_seen", "1970-01-01T00:00:05Z"),
                ("last_seen", "1970-01-01T00:00:05Z")
            ])
        );
        assert_eq!(
            (change.values, change.updated_at.as_str()),
            (item.measures.clone(), now)
        );

        // Stored at version 3: merged, version 4, conditioned on 3.
        let stored = stored_stats(3, "2");
        let GroupStep::Write { item, read, change } =
            next_group(&key, Some(&stored), Some(&delta[..]), &measures, &terms, now).unwrap()
        else {
            panic!("a changed group is written")
        };
        assert_eq!((read, item.version, change.version), (Some(3), 4, 4));
        assert_eq!(
            item.measures,
            text(&[
                ("accepted", "3"),
                ("rejected", "1"),
                ("first_seen", "1970-01-01T00:00:01Z"),
                ("last_seen", "1970-01-01T00:00:05Z")
            ])
        );
        assert_eq!(item.updated_at, now);

        // Touched only by applied events: announced as stored, nothing written.
        let step = next_group(&key, Some(&stored), None, &measures, &terms, now).unwrap();
        let GroupStep::Unchanged(Some(change)) = step else {
            panic!("a group touched only by applied events is announced as stored")
        };
        assert_eq!(
            (change.version, change.updated_at.as_str()),
            (3, "2024-01-01T00:00:00.000Z")
        );
        assert_eq!(
            change.values,
            text(&[
                ("accepted", "2"),
                ("rejected", "1"),
                ("first_seen", "1970-01-01T00:00:01Z"),
                ("last_seen", "1970-01-01T00:00:04Z")
            ]),
            "announced as stored, times in today's format (feed schema 2)"
        );
        assert_eq!(
            next_group(&key, None, None, &measures, &terms, now).unwrap(),
            GroupStep::Unchanged(None),
            "never written and nothing new: nothing to announce"
        );
    }

    #[test]
    fn a_stored_group_that_does_not_read_is_an_error() {
        let (key, measures) = (stats_key("f"), stats_measures());
        let bad = stored_stats(3, "many");
        let e = next_group(&key, Some(&bad), None, &measures, &[], "now").unwrap_err();
        assert!(
            matches!(&e, ProjectError::Measure { measure, .. } if measure == "accepted"),
            "{e}"
        );
        assert!(e.to_string().contains("\"many\" does not parse"), "{e}");
        let mut missing = stored_stats(3, "2");
        missing.measures.remove("last_seen");
        let e = next_group(&key, Some(&missing), None, &measures, &[], "now").unwrap_err();
        assert!(e.to_string().contains("last_seen: missing"), "{e}");
        assert_eq!(e.retry_class(), crate::error::RetryClass::Permanent);
    }

    #[test]
    fn the_transaction_conditions_each_item_on_the_version_read() {
        let group = stored_stats(1, "1");
        let mut page = AppliedPage::new("f", 0);
        page.mark(1);
        page.version = 3;
        let plan = Plan {
            outcome: Outcome::default(),
            groups: vec![Versioned {
                item: group.clone(),
                read: None,
            }],
            pages: vec![Versioned {
                item: page.clone(),
                read: Some(2),
            }],
        };
        let writes = transaction("aggregates", &plan);
        assert_eq!(writes.len(), 2);
        let put = |i: usize| writes[i].put().expect("every write is a put");
        assert_eq!(put(0).table_name(), "aggregates");
        assert_eq!(put(0).item(), &group.to_item());
        assert_eq!(put(0).condition_expression(), Some("attribute_not_exists(pk)"));
        assert!(put(0).expression_attribute_values().is_none());
        assert_eq!(put(1).item(), &page.to_item());
        assert_eq!(put(1).condition_expression(), Some("version = :v"));
        assert_eq!(
            put(1).expression_attribute_values(),
            Some(&HashMap::from([(":v".to_owned(), AttributeValue::N("2".to_owned()))]))
        );
    }

    /// The pure steps end to end: a fresh table, then the same events again
    /// against what the first pass wrote (a replay).
    #[test]
    fn a_plan_writes_once_and_a_replay_writes_nothing() {
        let f = folders();
        let events = [order(&f, 0, "f", 1), order(&f, 1, "f", 2), rejected(&f, 2, "f", 3)];
        let wanted = Wanted::of(&events);
        assert_eq!(wanted.keys().len(), 1 + 3, "one page, three groups");
        let first = plan_transaction(&f, &events, wanted.read(HashMap::new()).unwrap(), "t1").unwrap();
        let o = &first.outcome;
        assert_eq!((o.applied, o.skipped), (3, 0));
        assert_eq!((o.writes, o.groups_written, o.transactions), (4, 3, 1));
        assert_eq!(o.changes.len(), 3);
        assert!(o.changes.iter().all(|c| c.version == 1 && c.updated_at == "t1"));
        let stats = o.changes.iter().find(|c| c.key == stats_key("f")).unwrap();
        assert_eq!(
            (stats.values["accepted"].as_str(), stats.values["rejected"].as_str()),
            ("2", "1")
        );
        assert_eq!(first.pages.len(), 1);
        assert_eq!((first.pages[0].read, first.pages[0].item.version), (None, 1));
        assert!((1..=3).all(|l| first.pages[0].item.is_applied(l)));

        // What the transaction wrote, read back through the item layouts.
        let stored: HashMap<String, Item> = first
            .groups
            .iter()
            .map(|g| (g.item.pk.clone(), g.item.to_item()))
            .chain(first.pages.iter().map(|p| (p.item.pk.clone(), p.item.to_item())))
            .collect();
        let read = Wanted::of(&events).read(stored).unwrap();
        let replay = plan_transaction(&f, &events, read, "t2").unwrap();
        let o = &replay.outcome;
        assert_eq!((o.applied, o.skipped), (0, 3));
        assert_eq!((o.writes, o.groups_written, o.transactions), (0, 0, 0));
        assert!(replay.groups.is_empty() && replay.pages.is_empty());
        assert!(transaction("t", &replay).is_empty());
        let mut announced = o.changes.clone();
        let mut written = first.outcome.changes.clone();
        announced.sort_by(|a, b| a.key.cmp(&b.key));
        written.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(announced, written, "a replay re-announces the groups as they are");
    }

    #[test]
    fn an_unknown_aggregate_is_refused() {
        let f = folders();
        let mut e = rejected(&f, 0, "f", 1);
        let key = GroupKey {
            dataset: "orders".into(),
            aggregate: "no_such_aggregate".into(),
            values: vec![],
        };
        e.deltas.insert(key, vec![Acc::Count(1)]);
        let events = [e];
        let read = Wanted::of(&events).read(HashMap::new()).unwrap();
        let err = plan_transaction(&f, &events, read, "t").err().expect("refused");
        assert!(matches!(err, ProjectError::UnknownAggregate(_)), "{err}");
    }
}
