//! S3 object-created notifications for the embedded S3 emulator.
//!
//! Neither S3 emulator that embeds (s3s-fs, awsim-s3) delivers bucket
//! notifications, so the local stack bridges them: a layer in front of the S3
//! service sees each successful `PutObject`, `CopyObject` and
//! `CompleteMultipartUpload`, and for each matching rule (bucket, key prefix
//! and suffix, as `terraform/` filters them) sends the JSON S3 would send to
//! the rule's queue. Delivery happens before the upload's response returns,
//! so it is ordered and never lost while the process runs; S3 delivers
//! asynchronously, which the pipeline does not depend on.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use hyper::{Method, Request};
use percent_encoding::percent_decode_str;

/// Where a bucket's object-created notifications go.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Bucket.
    pub bucket: String,
    /// Only keys with this prefix.
    pub prefix: String,
    /// ... and this suffix.
    pub suffix: String,
    /// The queue's URL.
    pub queue_url: String,
}

/// The stack's notification configuration and the clients that deliver it.
#[derive(Default)]
pub struct Notifier {
    rules: RwLock<Vec<Rule>>,
    clients: OnceLock<(aws_sdk_s3::Client, aws_sdk_sqs::Client)>,
    sequence: AtomicU64,
}

impl Notifier {
    /// The clients used to read object metadata and send notifications.
    pub fn set_clients(&self, s3: aws_sdk_s3::Client, sqs: aws_sdk_sqs::Client) {
        let _ = self.clients.set((s3, sqs));
    }

    /// Add a rule (an identical one is not added twice).
    pub fn add(&self, rule: Rule) {
        let mut rules = self.rules.write().expect("rules lock");
        if !rules
            .iter()
            .any(|r| r.bucket == rule.bucket && r.prefix == rule.prefix && r.suffix == rule.suffix)
        {
            rules.push(rule);
        }
    }

    /// The rules, for comparison with a deployment.
    pub fn rules(&self) -> Vec<Rule> {
        self.rules.read().expect("rules lock").clone()
    }

    async fn object_created(&self, bucket: &str, key: &str, event: &str) {
        let matching: Vec<Rule> = self
            .rules
            .read()
            .expect("rules lock")
            .iter()
            .filter(|r| r.bucket == bucket && key.starts_with(&r.prefix) && key.ends_with(&r.suffix))
            .cloned()
            .collect();
        let Some((s3, sqs)) = self.clients.get().filter(|_| !matching.is_empty()) else {
            return;
        };
        let head = match s3.head_object().bucket(bucket).key(key).send().await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(
                    bucket,
                    key,
                    "notification: HeadObject failed: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                );
                return;
            }
        };
        // S3's sequencer orders events of one key: a hex string that only grows.
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
        let seq = self.sequence.fetch_max(now, Ordering::SeqCst).max(now) + 1;
        self.sequence.fetch_max(seq, Ordering::SeqCst);
        let body = notification_body(
            bucket,
            key,
            event,
            head.content_length().unwrap_or(0).max(0) as u64,
            head.e_tag().unwrap_or_default().trim_matches('"'),
            &format!("{seq:016X}"),
            None,
        );
        for rule in matching {
            if let Err(e) = sqs
                .send_message()
                .queue_url(&rule.queue_url)
                .message_body(&body)
                .send()
                .await
            {
                tracing::error!(
                    bucket,
                    key,
                    queue = rule.queue_url,
                    "notification not delivered: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                );
            }
        }
    }
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

/// The body S3 sends for an object-created event (`ObjectCreated:Put`, ...)
/// of `bucket/key`; a versioned bucket's names the version.
pub fn notification_body(
    bucket: &str,
    key: &str,
    event: &str,
    size: u64,
    etag: &str,
    sequencer: &str,
    version_id: Option<&str>,
) -> String {
    let mut object = serde_json::json!({ "key": encode_key(key), "size": size, "eTag": etag, "sequencer": sequencer });
    if let Some(v) = version_id {
        object["versionId"] = serde_json::Value::String(v.to_owned());
    }
    serde_json::json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": crate::identity::REGION,
            "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "eventName": event,
            "userIdentity": { "principalId": "local" },
            "requestParameters": { "sourceIPAddress": "127.0.0.1" },
            "responseElements": {},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "ingest",
                "bucket": { "name": bucket, "ownerIdentity": { "principalId": "local" }, "arn": format!("arn:aws:s3:::{bucket}") },
                "object": object
            }
        }]
    })
    .to_string()
}

/// Which object-created event a request is, if any: `(bucket, key, event name)`.
/// Path-style requests only (the local stack's clients use path style).
pub fn object_created<B>(req: &Request<B>) -> Option<(String, String, &'static str)> {
    let path = req.uri().path().strip_prefix('/')?;
    let (bucket, key) = path.split_once('/')?;
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    let query = req.uri().query().unwrap_or("");
    let has = |name: &str| query.split('&').any(|kv| kv.split('=').next() == Some(name));
    let event = if req.method() == Method::PUT {
        // Sub-resources (parts, tags, ACLs, ...) are not new objects.
        if !query.is_empty() && !has("x-id") {
            return None;
        }
        if req.headers().contains_key("x-amz-copy-source") {
            "ObjectCreated:Copy"
        } else {
            "ObjectCreated:Put"
        }
    } else if req.method() == Method::POST && has("uploadId") {
        "ObjectCreated:CompleteMultipartUpload"
    } else {
        return None;
    };
    let key = percent_decode_str(key).decode_utf8().ok()?.into_owned();
    Some((bucket.to_owned(), key, event))
}

/// The S3 service with notifications.
#[derive(Clone)]
pub struct NotifyingS3 {
    /// The emulator.
    pub inner: s3s::service::S3Service,
    /// The rules and their delivery.
    pub notifier: Arc<Notifier>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl hyper::service::Service<Request<hyper::body::Incoming>> for NotifyingS3 {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn call(&self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let created = object_created(&req);
        let response = hyper::service::Service::call(&self.inner, req);
        let notifier = self.notifier.clone();
        Box::pin(async move {
            let res = response.await?;
            if let Some((bucket, key, event)) = created.filter(|_| res.status().is_success()) {
                notifier.object_created(&bucket, &key, event).await;
            }
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str, copy: bool) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        if copy {
            b = b.header("x-amz-copy-source", "/b/src");
        }
        b.body(()).unwrap()
    }

    #[test]
    fn recognises_object_creations_only() {
        let put = req(Method::PUT, "/bkt/uploads/a%20b%2Bc.csv?x-id=PutObject", false);
        assert_eq!(
            object_created(&put),
            Some(("bkt".into(), "uploads/a b+c.csv".into(), "ObjectCreated:Put"))
        );
        assert_eq!(
            object_created(&req(Method::PUT, "/bkt/k.csv", true)).unwrap().2,
            "ObjectCreated:Copy"
        );
        assert_eq!(
            object_created(&req(Method::POST, "/bkt/k.csv?uploadId=1", false))
                .unwrap()
                .2,
            "ObjectCreated:CompleteMultipartUpload"
        );
        for (m, uri) in [
            (Method::PUT, "/bkt"),
            (Method::PUT, "/bkt/k.csv?partNumber=1&uploadId=1"),
            (Method::PUT, "/bkt/k.csv?tagging"),
            (Method::POST, "/bkt/k.csv?uploads"),
            (Method::GET, "/bkt/k.csv"),
            (Method::DELETE, "/bkt/k.csv"),
        ] {
            assert_eq!(object_created(&req(m.clone(), uri, false)), None, "{m} {uri}");
        }
    }

    #[test]
    fn keys_are_encoded_like_s3_does() {
        assert_eq!(
            encode_key("orders/café 2024/a+b.csv"),
            "orders/caf%C3%A9+2024/a%2Bb.csv"
        );
        // Form decoding ('+' is a space, then %xx) gives the key back.
        let encoded = encode_key("x y+z/€.csv").replace('+', " ");
        assert_eq!(percent_decode_str(&encoded).decode_utf8().unwrap(), "x y+z/€.csv");
    }
}
