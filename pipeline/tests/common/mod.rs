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
    let s3 = stack.s3_with(|b| b.interceptor(c2));
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
        ingester,
    }
}

/// An SQS message carrying an S3 `ObjectCreated:Put` notification, built from
/// the AWS sample event with the key encoded as S3 encodes it.
pub fn notification(id: &str, bucket: &str, key: &str) -> SqsMessage {
    let mut event: serde_json::Value =
        serde_json::from_str(include_str!("../../../ingest/tests/data/example-s3-event.json")).unwrap();
    let rec = &mut event["Records"][0];
    rec["s3"]["bucket"]["name"] = bucket.into();
    rec["s3"]["object"]["key"] = pipeline::notify::encode_key(key).into();
    rec["s3"]["object"].as_object_mut().unwrap().remove("versionId");
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.body = Some(event.to_string());
    m
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

/// An independent fold of `data/` files (csv + rust_decimal, not our code):
/// (aggregate, group) to [lines, units, revenue] or [lines, units, min, max].
#[allow(dead_code)]
pub fn oracle(keys: &[&str]) -> std::collections::BTreeMap<(String, Vec<String>), Vec<rust_decimal::Decimal>> {
    use rust_decimal::Decimal;
    use std::collections::BTreeMap;
    let mut out: BTreeMap<(String, Vec<String>), Vec<Decimal>> = BTreeMap::new();
    for key in keys.iter().filter(|k| k.starts_with("orders/")) {
        let bytes = data(key);
        let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(&bytes[..]);
        let Ok(header) = r.headers().cloned() else { continue };
        let col = |name: &str| header.iter().position(|h| h == name);
        let Some(cols) = [
            "ordered_at",
            "country",
            "currency",
            "category",
            "quantity",
            "unit_price",
            "customer_id",
        ]
        .iter()
        .map(|c| col(c))
        .collect::<Option<Vec<_>>>() else {
            continue;
        };
        if header.iter().any(|h| h == "colour") {
            continue;
        }
        for rec in r.byte_records() {
            let Ok(rec) = rec else { continue };
            if rec.len() != header.len() || rec.as_slice().len() > 65_536 {
                continue;
            }
            let Ok(fields) = rec.iter().map(std::str::from_utf8).collect::<Result<Vec<_>, _>>() else {
                continue;
            };
            let get = |i: usize| fields[cols[i]].trim();
            let ts = chrono::DateTime::parse_from_rfc3339(get(0))
                .map(|t| t.naive_utc())
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(get(0), "%Y-%m-%d %H:%M:%S"));
            let qty = get(4).parse::<i64>();
            let price = Decimal::from_str_exact(get(5))
                .ok()
                .filter(|_| get(5).bytes().all(|b| b.is_ascii_digit() || b == b'.'));
            let gift_ok = col("gift").is_none_or(|i| {
                matches!(
                    fields[i].trim().to_ascii_lowercase().as_str(),
                    "" | "true" | "false" | "yes" | "no" | "0" | "1" | "y" | "n" | "t" | "f"
                )
            });
            let (Ok(ts), Ok(qty), Some(price)) = (ts, qty, price) else {
                continue;
            };
            if get(6).is_empty() || get(3).is_empty() || !gift_ok {
                continue;
            }
            let q = Decimal::from(qty);
            let day = ts.date().format("%Y-%m-%d").to_string();
            let k1 = (
                "revenue_by_day_country".to_owned(),
                vec![day, get(1).to_owned(), get(2).to_owned()],
            );
            let k2 = ("units_by_category".to_owned(), vec![get(3).to_owned()]);
            for (k, v) in [
                (k1, vec![Decimal::ONE, q, q * price]),
                (k2, vec![Decimal::ONE, q, price, price]),
            ] {
                let Some(e) = out.get_mut(&k) else {
                    out.insert(k, v);
                    continue;
                };
                e[0] += v[0];
                e[1] += v[1];
                if k.0 == "units_by_category" {
                    e[2] = e[2].min(v[2]);
                    e[3] = e[3].max(v[3]);
                } else {
                    e[2] += v[2];
                }
            }
        }
    }
    out
}
