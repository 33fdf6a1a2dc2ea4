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
    }
}
