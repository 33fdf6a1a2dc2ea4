//! Shared by the integration tests: a local stack per test, with the real
//! handlers on real SDK clients, plus request counting and fault injection
//! through SDK interceptors (the data path itself is never faked).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::types::AttributeValue;
use ingest::{Config, Ingester};
use pipeline::resources::{self, Names};
use pipeline::stack::{LocalStack, Ports, State};
use schema::items::{EventItem, Manifest};
use schema::Registry;

pub use pipeline::metrics::RequestCounter as Counter;

/// Fails every DynamoDB request that `matches` after the first `after` while
/// armed: a process that died, or a store that went away, at that point.
#[derive(Clone)]
pub struct FailAfter {
    after: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
    matches: fn(&BeforeSerializationInterceptorContextRef<'_>) -> bool,
    what: &'static str,
}

impl std::fmt::Debug for FailAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailAfter").field("what", &self.what).finish()
    }
}

impl FailAfter {
    fn disarmed(what: &'static str, matches: fn(&BeforeSerializationInterceptorContextRef<'_>) -> bool) -> Self {
        FailAfter {
            after: Arc::new(AtomicU64::new(u64::MAX)),
            seen: Arc::new(AtomicU64::new(0)),
            matches,
            what,
        }
    }

    pub fn arm(&self, after: u64) {
        self.seen.store(0, Ordering::SeqCst);
        self.after.store(after, Ordering::SeqCst);
    }

    pub fn disarm(&self) {
        self.after.store(u64::MAX, Ordering::SeqCst);
    }
}

impl Intercept for FailAfter {
    fn name(&self) -> &'static str {
        "FailAfter"
    }

    fn read_before_execution(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if (self.matches)(ctx) {
            let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
            if n > self.after.load(Ordering::SeqCst) {
                return Err(format!("injected failure: {} died here", self.what).into());
            }
        }
        Ok(())
    }
}

/// Event `PutItem`s: the ingest dies in the middle of a file.
pub fn fail_event_puts() -> FailAfter {
    FailAfter::disarmed("the ingest", |ctx| {
        ctx.input()
            .downcast_ref::<PutItemInput>()
            .and_then(|i| i.item())
            .and_then(|i| i.get("pk"))
            .and_then(|v| v.as_s().ok())
            .is_some_and(|pk| pk.starts_with("E#"))
    })
}

/// `TransactWriteItems`: the projector dies between two transactions of a batch.
pub fn fail_transactions() -> FailAfter {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
    FailAfter::disarmed("the projector", |ctx| {
        ctx.input().downcast_ref::<TransactWriteItemsInput>().is_some()
    })
}

/// A fresh stack with the table and bucket, and an ingester on it.
pub struct Env {
    pub stack: LocalStack,
    pub names: Names,
    pub s3: aws_sdk_s3::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub counter: Counter,
    pub fault: FailAfter,
    pub reads: S3Reads,
    pub ingester: Ingester,
}

pub async fn env() -> Env {
    env_with(|c| c).await
}

pub async fn env_with(tune: impl FnOnce(Config) -> Config) -> Env {
    let stack = LocalStack::start(State::Memory, Ports::default())
        .await
        .expect("local stack starts");
    let names = Names::local();
    let counter = Counter::default();
    let fault = fail_event_puts();
    let (c1, c2, f) = (counter.clone(), counter.clone(), fault.clone());
    let ddb = stack.dynamodb_with(|b| b.interceptor(c1).interceptor(f));
    let reads = S3Reads::default();
    let r = reads.clone();
    let s3 = stack.s3_with(|b| b.interceptor(c2).interceptor(r));
    resources::ensure_events_table(&ddb, &names.events_table).await.unwrap();
    resources::ensure_bucket(&s3, &names.bucket).await.unwrap();
    let config = tune(Config::new(&names.events_table));
    let ingester = Ingester::new(s3.clone(), ddb.clone(), Registry::builtin(), config);
    counter.reset();
    Env {
        stack,
        names,
        s3,
        ddb,
        counter,
        fault,
        reads,
        ingester,
    }
}

/// An SQS message carrying an S3 `ObjectCreated:Put` notification exactly as
/// AWS sends it from a versioned bucket (the S3 user guide's example, with
/// `versionId` and `sequencer`), in the SQS record Lambda delivers, with the
/// key encoded as S3 encodes it. The version id is [`version_of`] the key: the
/// local S3 keeps no versions and serves the object whatever version is named,
/// so tests check the version the ingest asked for with [`S3Reads`].
pub fn notification(id: &str, bucket: &str, key: &str) -> SqsMessage {
    let mut event: serde_json::Value =
        serde_json::from_str(include_str!("../../../ingest/tests/data/s3-put-versioned.json")).unwrap();
    let rec = &mut event["Records"][0];
    rec["s3"]["bucket"]["name"] = bucket.into();
    rec["s3"]["bucket"]["arn"] = format!("arn:aws:s3:::{bucket}").into();
    rec["s3"]["object"]["key"] = pipeline::notify::encode_key(key).into();
    rec["s3"]["object"]["versionId"] = version_of(key).into();
    let body = event.to_string();
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.receipt_handle = Some(format!("AQEB{id}"));
    m.md5_of_body = Some(format!("{:x}", md5::compute(&body)));
    m.body = Some(body);
    m.attributes = [
        ("ApproximateReceiveCount", "1"),
        ("SentTimestamp", "1764437402123"),
        ("SenderId", "AIDAJDPLRKLG7UEXAMPLE"),
        ("ApproximateFirstReceiveTimestamp", "1764437402130"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    m.event_source = Some("aws:sqs".into());
    m.event_source_arn = Some("arn:aws:sqs:us-east-1:000000000000:csv-pipeline-ingest".into());
    m.aws_region = Some("us-east-1".into());
    m
}

/// The version id the test notifications name for `key`.
pub fn version_of(key: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.as_bytes());
    format!("v{}", hex_lower(&d[..12]))
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The `(operation, key, version id)` of every `HeadObject` and `GetObject`
/// an S3 client sends.
#[derive(Debug, Clone, Default)]
pub struct S3Reads(pub Arc<std::sync::Mutex<Vec<S3Read>>>);

/// Operation, key, version id.
pub type S3Read = (&'static str, String, Option<String>);

impl aws_sdk_s3::config::Intercept for S3Reads {
    fn name(&self) -> &'static str {
        "S3Reads"
    }

    fn read_before_execution(
        &self,
        ctx: &aws_sdk_s3::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        use aws_sdk_s3::operation::{get_object::GetObjectInput, head_object::HeadObjectInput};
        let input = ctx.input();
        let read = if let Some(i) = input.downcast_ref::<GetObjectInput>() {
            Some(("GetObject", i.key(), i.version_id()))
        } else {
            input
                .downcast_ref::<HeadObjectInput>()
                .map(|i| ("HeadObject", i.key(), i.version_id()))
        };
        if let Some((op, key, version)) = read {
            self.0
                .lock()
                .unwrap()
                .push((op, key.unwrap_or_default().to_owned(), version.map(str::to_owned)));
        }
        Ok(())
    }
}

pub fn batch(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = messages;
    e
}

impl Env {
    pub fn bucket(&self) -> &str {
        &self.names.bucket
    }

    pub fn object(&self, key: &str) -> ingest::ObjectRef {
        ingest::ObjectRef {
            bucket: self.names.bucket.clone(),
            key: key.to_owned(),
            size: None,
            version_id: None,
            sequencer: None,
        }
    }

    pub async fn put(&self, key: &str, bytes: &[u8]) -> String {
        pipeline::upload::upload_bytes(&self.s3, self.bucket(), key, bytes.to_vec())
            .await
            .unwrap()
    }

    pub async fn manifest(&self, file_id: &str) -> Manifest {
        self.ingester
            .store()
            .manifest(file_id)
            .await
            .unwrap()
            .expect("manifest exists")
    }

    /// Every event of a file, by line, read page by page with `Query`.
    pub async fn events(&self, file_id: &str, lines: u64) -> Vec<EventItem> {
        let mut out = Vec::new();
        for pk in schema::keys::event_pages(file_id, lines) {
            let mut start = None;
            loop {
                let page = self
                    .ddb
                    .query()
                    .table_name(&self.names.events_table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                    .set_exclusive_start_key(start)
                    .consistent_read(true)
                    .send()
                    .await
                    .unwrap();
                for item in page.items() {
                    out.push(serde_dynamo::from_item::<_, EventItem>(item.clone()).unwrap());
                }
                start = page.last_evaluated_key().cloned();
                if start.is_none() {
                    break;
                }
            }
        }
        out.sort_by_key(|e| e.sk);
        out
    }

    /// Number of items in the table (events, manifests, uploads).
    pub async fn item_count(&self) -> usize {
        let mut n = 0;
        let mut start = None;
        loop {
            let page = self
                .ddb
                .scan()
                .table_name(&self.names.events_table)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            n += page.count() as usize;
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return n;
            }
        }
    }
}

/// Read a file of the repository's `data/` directory.
pub fn data(path: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
    std::fs::read(root.join(path)).unwrap_or_else(|e| panic!("data/{path}: {e}"))
}

/// `orders` text with `n` good lines.
pub fn orders(n: u64, seed: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    pipeline::generate::orders(
        &mut buf,
        pipeline::generate::Spec {
            lines: Some(n),
            bytes: None,
            bad_every: 0,
            seed,
        },
    )
    .unwrap();
    buf
}

/// Fails every `SendMessageBatch` while armed: a projector that dies after
/// writing aggregates and before announcing them.
#[derive(Debug, Clone, Default)]
pub struct FailSends(pub Arc<std::sync::atomic::AtomicBool>);

impl aws_sdk_sqs::config::Intercept for FailSends {
    fn name(&self) -> &'static str {
        "FailSends"
    }

    fn read_before_execution(
        &self,
        _ctx: &aws_sdk_sqs::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut aws_sdk_sqs::config::ConfigBag,
    ) -> Result<(), aws_sdk_sqs::error::BoxError> {
        if self.0.load(Ordering::SeqCst) {
            return Err("injected failure: the projector died before sending".into());
        }
        Ok(())
    }
}

/// Per (aggregate, group values): measure name to value.
pub type Folded =
    std::collections::BTreeMap<(String, Vec<String>), std::collections::BTreeMap<String, rust_decimal::Decimal>>;

/// An independent fold of `data/` files, derived from the dataset definitions
/// alone: the TOML files under `schema/datasets/` read as plain TOML (not
/// through the `schema` crate), the line limits from `terraform/settings.json`,
/// the CSV read with the `csv` crate and numbers with `rust_decimal`. Every
/// rule below is the definition's or the documented contract's
/// (docs/ingest.md, "Bad input"); nothing names a file, a column or a value of
/// `data/`. Typed datasets only (the untyped fallback has no aggregates); the
/// per-file statistics are checked against `data/expected.json` elsewhere.
pub fn oracle(keys: &[&str]) -> Folded {
    let datasets: Vec<toml::Value> = std::fs::read_dir(repo("schema/datasets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap())
        .collect();
    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo("terraform/settings.json")).unwrap()).unwrap();
    let limit = |name: &str| -> usize {
        settings["ingest"]["environment"][name]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (max_line, max_columns) = (limit("MAX_LINE_BYTES"), limit("MAX_COLUMNS"));
    let mut out = Folded::new();
    for key in keys {
        let Some(ds) = datasets.iter().find(|d| key.starts_with(d["prefix"].as_str().unwrap())) else {
            continue;
        };
        fold_file(ds, &data(key), max_line, max_columns, &mut out);
    }
    out
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A typed field, as the definition's column type reads it.
#[derive(Clone, Debug)]
enum Field {
    Text(String),
    Number(rust_decimal::Decimal),
    Bool(bool),
    Date(chrono::NaiveDate),
    Time(chrono::DateTime<chrono::Utc>),
}

/// One non-empty field of a declared type; `None` if it is not one.
fn typed(kind: &str, text: &str) -> Option<Field> {
    use rust_decimal::Decimal;
    Some(match kind {
        "string" => Field::Text(text.to_owned()),
        "integer" => Field::Number(Decimal::from(text.parse::<i64>().ok()?)),
        "decimal" => {
            // Digits, one '.', an optional leading sign: no exponent, no separators.
            let plain = text
                .char_indices()
                .all(|(i, c)| c.is_ascii_digit() || c == '.' || (i == 0 && (c == '-' || c == '+')));
            if !plain {
                return None;
            }
            Field::Number(Decimal::from_str_exact(text).ok()?)
        }
        "boolean" => Field::Bool(match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" | "t" => true,
            "false" | "0" | "no" | "n" | "f" => false,
            _ => return None,
        }),
        "date" => Field::Date(chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?),
        "timestamp" => Field::Time(match chrono::DateTime::parse_from_rfc3339(text) {
            Ok(t) => t.with_timezone(&chrono::Utc),
            Err(_) => [
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f",
            ]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())?
            .and_utc(),
        }),
        other => panic!("the oracle does not know column type {other:?}: teach it"),
    })
}

fn fold_file(ds: &toml::Value, bytes: &[u8], max_line: usize, max_columns: usize, out: &mut Folded) {
    use rust_decimal::Decimal;
    let columns: Vec<(&str, &str, bool)> = ds["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let required = c.get("required").and_then(toml::Value::as_bool).unwrap_or(false);
            (c["name"].as_str().unwrap(), c["type"].as_str().unwrap(), required)
        })
        .collect();
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(bytes);
    let mut records = r.byte_records().peekable();
    // The header: names trimmed, order free; the file is refused (no events)
    // when it is blank, too wide, not UTF-8, has a blank or repeated name, an
    // undeclared column, or lacks a required one.
    let Some(Ok(header)) = records.next() else { return };
    let Ok(names) = header
        .iter()
        .map(|h| std::str::from_utf8(h).map(|s| s.trim_start_matches('\u{feff}').trim().to_owned()))
        .collect::<Result<Vec<String>, _>>()
    else {
        return;
    };
    let declared = |n: &str| columns.iter().any(|c| c.0 == n);
    let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
    if names.len() > max_columns
        || names.iter().any(|n| n.is_empty() || !declared(n))
        || distinct.len() != names.len()
        || columns.iter().any(|c| c.2 && !names.iter().any(|n| n == c.0))
    {
        return;
    }
    let aggregates = ds
        .get("aggregates")
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    while let Some(rec) = records.next() {
        let Ok(rec) = rec else { continue };
        // A line's length is its raw bytes, up to where the next one starts.
        let start = rec.position().map_or(0, |p| p.byte()) as usize;
        let end = match records.peek() {
            Some(Ok(next)) => next.position().map_or(bytes.len() as u64, |p| p.byte()) as usize,
            _ => bytes.len(),
        };
        let raw = &bytes[start..end];
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > max_line || rec.len() != names.len() || rec.len() > max_columns {
            continue;
        }
        let Ok(texts) = rec.iter().map(std::str::from_utf8).collect::<Result<Vec<_>, _>>() else {
            continue;
        };
        // Every field read by its column's type; empty (after trimming) is
        // missing, which a required column refuses.
        let mut row: std::collections::BTreeMap<&str, Field> = Default::default();
        let mut ok = true;
        for (name, text) in names.iter().zip(&texts) {
            let (_, kind, required) = columns.iter().find(|c| c.0 == name).unwrap();
            let text = text.trim();
            if text.is_empty() {
                ok &= !required;
                continue;
            }
            match typed(kind, text) {
                Some(v) => {
                    row.insert(name.as_str(), v);
                }
                None => ok = false,
            }
        }
        if !ok {
            continue;
        }
        let number = |c: &str| match row.get(c) {
            Some(Field::Number(n)) => Some(*n),
            None => None,
            Some(other) => panic!("the oracle folds numbers only, {c} is {other:?}"),
        };
        for agg in &aggregates {
            let group: Vec<String> = agg["group_by"]
                .as_array()
                .unwrap()
                .iter()
                .map(|term| {
                    let term = term.as_str().unwrap();
                    let (col, unit) = term.split_once(':').unwrap_or((term, ""));
                    match (row.get(col), unit) {
                        (Some(Field::Text(t)), "") => t.clone(),
                        (Some(Field::Date(d)), "") => d.format("%Y-%m-%d").to_string(),
                        (Some(Field::Time(t)), "day") => t.date_naive().format("%Y-%m-%d").to_string(),
                        (v, u) => panic!("the oracle cannot group by {col}:{u} of {v:?}: teach it"),
                    }
                })
                .collect();
            let measures = out
                .entry((agg["name"].as_str().unwrap().to_owned(), group))
                .or_default();
            for m in agg["measures"].as_array().unwrap() {
                let name = m["name"].as_str().unwrap().to_owned();
                let value = match (m.get("column"), m.get("product")) {
                    (Some(c), _) => number(c.as_str().unwrap()),
                    (None, Some(p)) => p
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| number(c.as_str().unwrap()))
                        .product(),
                    (None, None) => None,
                };
                match (m["op"].as_str().unwrap(), value) {
                    ("count", _) => *measures.entry(name).or_insert(Decimal::ZERO) += Decimal::ONE,
                    ("sum", Some(v)) => *measures.entry(name).or_insert(Decimal::ZERO) += v,
                    ("min", Some(v)) => {
                        let e = measures.entry(name).or_insert(v);
                        *e = (*e).min(v);
                    }
                    ("max", Some(v)) => {
                        let e = measures.entry(name).or_insert(v);
                        *e = (*e).max(v);
                    }
                    (_, None) => {}
                    (op, _) => panic!("the oracle does not know measure op {op:?}: teach it"),
                }
            }
        }
    }
}

/// Loses the reply of `TransactWriteItems` calls while armed: the transaction
/// reaches DynamoDB and commits, then the caller sees an error, as when the
/// connection drops or the function times out after the commit.
#[derive(Debug, Clone, Default)]
pub struct LoseReplies {
    /// Replies to let through before losing the next one (`u64::MAX`: disarmed).
    pub after: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
    /// Replies lost so far.
    pub lost: Arc<AtomicU64>,
}

impl LoseReplies {
    pub fn disarmed() -> Self {
        let l = LoseReplies::default();
        l.after.store(u64::MAX, Ordering::SeqCst);
        l
    }

    /// Lose the reply of the transaction after the next `after` ones.
    pub fn arm(&self, after: u64) {
        self.seen.store(0, Ordering::SeqCst);
        self.after.store(after, Ordering::SeqCst);
    }

    pub fn disarm(&self) {
        self.after.store(u64::MAX, Ordering::SeqCst);
    }
}

impl Intercept for LoseReplies {
    fn name(&self) -> &'static str {
        "LoseReplies"
    }

    fn read_before_deserialization(
        &self,
        ctx: &aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>();
        if op.is_some_and(|m| m.name() == "TransactWriteItems") && ctx.response().status().is_success() {
            let n = self.seen.fetch_add(1, Ordering::SeqCst);
            if n >= self.after.load(Ordering::SeqCst) {
                self.after.store(u64::MAX, Ordering::SeqCst);
                self.lost.fetch_add(1, Ordering::SeqCst);
                return Err("injected failure: the reply to a committed transaction was lost".into());
            }
        }
        Ok(())
    }
}

/// Holds the first `TransactWriteItems` after [`Pause::arm`] before it is
/// sent, until [`Pause::release`]: the projector has read the groups and
/// bitmaps and built its transaction, and another writer goes first. Blocks
/// the calling thread (tests run it on a multi-threaded runtime).
#[derive(Debug, Clone, Default)]
pub struct Pause {
    armed: Arc<std::sync::atomic::AtomicBool>,
    reached: Arc<std::sync::atomic::AtomicBool>,
    gate: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Pause {
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::SeqCst)
    }

    pub fn release(&self) {
        let (open, cv) = &*self.gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

impl Intercept for Pause {
    fn name(&self) -> &'static str {
        "Pause"
    }

    fn read_before_execution(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
        if ctx.input().downcast_ref::<TransactWriteItemsInput>().is_some() && self.armed.swap(false, Ordering::SeqCst) {
            self.reached.store(true, Ordering::SeqCst);
            let (open, cv) = &*self.gate;
            let guard = open.lock().unwrap();
            let _open = cv
                .wait_timeout_while(guard, std::time::Duration::from_secs(60), |open| !*open)
                .unwrap();
        }
        Ok(())
    }
}

/// Counts `TransactWriteItems` that DynamoDB cancelled (a condition failed:
/// another writer changed a group or bitmap since it was read).
#[derive(Debug, Clone, Default)]
pub struct Cancelled(pub Arc<AtomicU64>);

impl Intercept for Cancelled {
    fn name(&self) -> &'static str {
        "Cancelled"
    }

    fn read_after_transmit(
        &self,
        ctx: &aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>();
        // A 400 to a transaction: DynamoDB cancelled it (the body, which
        // names TransactionCanceledException, is still a stream here).
        let cancelled = ctx.response().status().as_u16() == 400;
        if op.is_some_and(|m| m.name() == "TransactWriteItems") && cancelled {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}
