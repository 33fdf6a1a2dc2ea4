//! Counting the AWS requests the pipeline makes, through an SDK interceptor:
//! requests per line are a design goal, so they are measured, not estimated.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// Counts HTTP requests (retries included) by `Service:Operation`. Cheap to
/// clone; every clone shares the counts. Works on any SDK client.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl RequestCounter {
    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().expect("counter lock").clone()
    }

    /// All requests so far.
    pub fn total(&self) -> u64 {
        self.0.lock().expect("counter lock").values().sum()
    }

    /// Requests to one service (`DynamoDB`, `S3`).
    pub fn service(&self, service: &str) -> u64 {
        let prefix = format!("{service}:");
        self.0
            .lock()
            .expect("counter lock")
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum()
    }

    /// Start again from zero.
    pub fn reset(&self) {
        self.0.lock().expect("counter lock").clear();
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(m) = cfg.load::<Metadata>() {
            *self
                .0
                .lock()
                .expect("counter lock")
                .entry(format!("{}:{}", m.service(), m.name()))
                .or_default() += 1;
        }
        Ok(())
    }
}

/// Sums the capacity units DynamoDB reports (`ConsumedCapacity`) by
/// operation: it asks for them on every request (`ReturnConsumedCapacity:
/// TOTAL`) and reads them off every response, so write and read units are
/// the service's own count per request (item sizes, the larger of the before
/// and after images, two units per transactional item), not an estimate.
/// A write refused by its condition also consumes units on AWS, but its error
/// reports none: `refused` counts those requests. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct CapacityCounter(Arc<Mutex<BTreeMap<String, Capacity>>>);

/// Units and requests of one DynamoDB operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Capacity {
    /// Requests answered.
    pub requests: u64,
    /// Write units consumed.
    pub write_units: f64,
    /// Read units consumed.
    pub read_units: f64,
    /// Requests refused (a condition, a cancelled transaction): units unreported.
    pub refused: u64,
}

impl CapacityCounter {
    /// Per operation, so far.
    pub fn snapshot(&self) -> BTreeMap<String, Capacity> {
        self.0.lock().expect("capacity lock").clone()
    }

    /// All operations together.
    pub fn total(&self) -> Capacity {
        self.snapshot().values().fold(Capacity::default(), |a, c| Capacity {
            requests: a.requests + c.requests,
            write_units: a.write_units + c.write_units,
            read_units: a.read_units + c.read_units,
            refused: a.refused + c.refused,
        })
    }
}

impl Intercept for CapacityCounter {
    fn name(&self) -> &'static str {
        "CapacityCounter"
    }

    fn modify_before_serialization(
        &self,
        ctx: &mut aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation as op;
        use aws_sdk_dynamodb::types::ReturnConsumedCapacity as R;
        let input = ctx.input_mut();
        macro_rules! total {
            ($($t:ty),*) => {
                $(if let Some(i) = input.downcast_mut::<$t>() {
                    i.return_consumed_capacity = Some(R::Total);
                    return Ok(());
                })*
            };
        }
        total!(
            op::put_item::PutItemInput,
            op::update_item::UpdateItemInput,
            op::delete_item::DeleteItemInput,
            op::get_item::GetItemInput,
            op::batch_get_item::BatchGetItemInput,
            op::batch_write_item::BatchWriteItemInput,
            op::transact_write_items::TransactWriteItemsInput,
            op::transact_get_items::TransactGetItemsInput,
            op::query::QueryInput,
            op::scan::ScanInput
        );
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        ctx: &aws_sdk_dynamodb::config::interceptors::AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation as op;
        use aws_sdk_dynamodb::types::ConsumedCapacity;
        let Some(m) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let mut units: Option<Vec<ConsumedCapacity>> = None;
        let refused = match ctx.output_or_error() {
            Ok(out) => {
                macro_rules! one {
                    ($($t:ty),*) => {
                        $(if let Some(o) = out.downcast_ref::<$t>() {
                            units = Some(o.consumed_capacity.iter().cloned().collect());
                        })*
                    };
                }
                macro_rules! many {
                    ($($t:ty),*) => {
                        $(if let Some(o) = out.downcast_ref::<$t>() {
                            units = Some(o.consumed_capacity.clone().unwrap_or_default());
                        })*
                    };
                }
                one!(
                    op::put_item::PutItemOutput,
                    op::update_item::UpdateItemOutput,
                    op::delete_item::DeleteItemOutput,
                    op::get_item::GetItemOutput,
                    op::query::QueryOutput,
                    op::scan::ScanOutput
                );
                many!(
                    op::batch_get_item::BatchGetItemOutput,
                    op::batch_write_item::BatchWriteItemOutput,
                    op::transact_write_items::TransactWriteItemsOutput,
                    op::transact_get_items::TransactGetItemsOutput
                );
                false
            }
            Err(_) => true,
        };
        if units.is_none() && !refused {
            return Ok(()); // not an operation that reports units (CreateTable, streams)
        }
        let write = matches!(
            m.name(),
            "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
        );
        let total: f64 = units.iter().flatten().filter_map(|c| c.capacity_units).sum();
        let mut all = self.0.lock().expect("capacity lock");
        let c = all.entry(m.name().to_owned()).or_default();
        if refused {
            c.refused += 1;
        } else {
            c.requests += 1;
            if write {
                c.write_units += total;
            } else {
                c.read_units += total;
            }
        }
        Ok(())
    }
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Records every distinct request shape a set of clients sends: the service,
/// the operation, and the resources it names (tables, queue, stream, bucket,
/// key, the query parameters that change what IAM checks, such as
/// `versionId`). The deployment check evaluates each against the role's
/// policy, so the grants are compared with what the code really asked for, not
/// with operation names found in the source. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct CallRecorder(Arc<Mutex<BTreeSet<String>>>);

impl CallRecorder {
    /// The distinct calls so far, as JSON objects `{service, operation, params}`.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        self.0
            .lock()
            .expect("recorder lock")
            .iter()
            .filter_map(|c| serde_json::from_str(c).ok())
            .collect()
    }
}

impl Intercept for CallRecorder {
    fn name(&self) -> &'static str {
        "CallRecorder"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(m) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let req = ctx.request();
        let params = if m.service().eq_ignore_ascii_case("s3") {
            let headers: Vec<(&str, &str)> = req.headers().iter().collect();
            s3_params(req.uri(), &headers)
        } else if m.service().eq_ignore_ascii_case("sns") {
            query_params(req.body().bytes().unwrap_or_default())
        } else {
            json_params(req.body().bytes().unwrap_or_default())
        };
        let call = serde_json::json!({ "service": m.service(), "operation": m.name(), "params": params });
        self.0.lock().expect("recorder lock").insert(call.to_string());
        Ok(())
    }
}

/// The resources a JSON-protocol request (DynamoDB, DynamoDB Streams, SQS)
/// names: its top-level resource members, the tables of a batch, and each
/// part of a transaction with its table.
fn json_params(body: &[u8]) -> serde_json::Value {
    use serde_json::{Map, Value};
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    for name in ["TableName", "IndexName", "QueueUrl", "StreamArn"] {
        if let Some(v) = body.get(name) {
            out.insert(name.to_owned(), v.clone());
        }
    }
    if let Some(Value::Object(items)) = body.get("RequestItems") {
        out.insert("RequestItems".to_owned(), items.keys().cloned().collect());
    }
    if let Some(Value::Array(items)) = body.get("TransactItems") {
        let parts: BTreeSet<(String, String)> = items
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|item| item.iter())
            .map(|(kind, op)| {
                let table = op.get("TableName").and_then(Value::as_str).unwrap_or_default();
                (kind.clone(), table.to_owned())
            })
            .collect();
        out.insert(
            "TransactItems".to_owned(),
            parts.into_iter().map(|(k, t)| serde_json::json!([k, t])).collect(),
        );
    }
    Value::Object(out)
}

/// The resource a query-protocol request (SNS) names: its topic.
fn query_params(body: &[u8]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (k, v) in form_urlencoded::parse(body) {
        if k == "TopicArn" || k == "TargetArn" {
            out.insert(k.into_owned(), v.into_owned().into());
        }
    }
    serde_json::Value::Object(out)
}

/// Bucket, key, query parameter names and the headers that matter to IAM
/// of an S3 request, path-style (`/bucket/key`, what an endpoint override
/// uses) or virtual-hosted (`bucket.s3.region.amazonaws.com/key`).
fn s3_params(uri: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let (host, path_query) = rest.split_once('/').unwrap_or((rest, ""));
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let (bucket, key) = match host.split_once(".s3.") {
        Some((bucket, _)) => (bucket, path),
        None => path.split_once('/').unwrap_or((path, "")),
    };
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    // `x-id` names the operation for routing; it is not a parameter.
    let query: BTreeSet<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or(p, |(n, _)| n).to_owned())
        .filter(|n| n != "x-id")
        .collect();
    let notable: BTreeSet<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| matches!(n.as_str(), "range" | "x-amz-checksum-mode" | "x-amz-copy-source"))
        .collect();
    let mut out = serde_json::json!({ "Bucket": decode(bucket), "query": query, "headers": notable });
    if !key.is_empty() {
        out["Key"] = decode(key).into();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_path_style_and_virtual_hosted() {
        let p = s3_params(
            "http://127.0.0.1:4568/uploads-bucket/uploads/orders/a%20b.csv?versionId=v1&x-id=GetObject",
            &[("Range", "bytes=5-"), ("host", "x")],
        );
        assert_eq!(p["Bucket"], "uploads-bucket");
        assert_eq!(p["Key"], "uploads/orders/a b.csv");
        assert_eq!(p["query"], serde_json::json!(["versionId"]));
        assert_eq!(p["headers"], serde_json::json!(["range"]));
        let v = s3_params("https://b.s3.us-east-1.amazonaws.com/k/x.csv", &[]);
        assert_eq!((v["Bucket"].as_str(), v["Key"].as_str()), (Some("b"), Some("k/x.csv")));
        let bucket_only = s3_params("http://127.0.0.1:1/b?notification", &[]);
        assert!(bucket_only.get("Key").is_none());
        assert_eq!(bucket_only["query"], serde_json::json!(["notification"]));
    }

    #[test]
    fn json_resources_of_batches_and_transactions() {
        let t = json_params(
            br#"{"TransactItems":[{"Put":{"TableName":"agg","Item":{}}},{"Put":{"TableName":"agg"}},
                {"ConditionCheck":{"TableName":"ev"}}]}"#,
        );
        assert_eq!(
            t["TransactItems"],
            serde_json::json!([["ConditionCheck", "ev"], ["Put", "agg"]])
        );
        let b = json_params(br#"{"RequestItems":{"a":{},"b":{}},"ReturnConsumedCapacity":"NONE"}"#);
        assert_eq!(b, serde_json::json!({"RequestItems": ["a", "b"]}));
        let q = json_params(br#"{"QueueUrl":"http://q/1/feed","MaxNumberOfMessages":10}"#);
        assert_eq!(q, serde_json::json!({"QueueUrl": "http://q/1/feed"}));
        assert_eq!(json_params(b"not json"), serde_json::json!({}));
        let sns =
            query_params(b"Action=PublishBatch&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A1%3Afeed&Version=2010-03-31");
        assert_eq!(sns, serde_json::json!({"TopicArn": "arn:aws:sns:us-east-1:1:feed"}));
    }
}
