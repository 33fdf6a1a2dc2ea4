//! SQS for the local stack: the JSON protocol the current SDKs speak, over
//! queues kept in SQLite.
//!
//! Built here because no embeddable emulator on crates.io is both durable and
//! bounded (docs/local-stack.md, "Why our own SQS"): every operation is
//! committed before its response, so what was acknowledged survives a killed
//! process, and messages wait on disk, not in memory. Semantics as SQS
//! documents them for standard queues: one receive count per receive,
//! redrive after exactly `maxReceiveCount` receives, retention, delays,
//! visibility timeouts and their changes, a new receipt handle per receive.

mod api;
mod error;
mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

pub use error::{Code, SqsError};
pub use store::Depth;

use crate::identity::{ACCOUNT, REGION};
use store::{Received, Store};

/// A message attribute delivered by another service (SNS's raw delivery),
/// in the JSON protocol's shape (a binary value in base64).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeliveredAttribute {
    /// `String`, `Number`, `Binary`, or one of those with a custom suffix.
    pub data_type: String,
    /// The value of a string or number attribute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// The value of a binary attribute, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<String>,
}

/// One message another service delivers to a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The queue's name.
    pub queue: String,
    /// The body.
    pub body: String,
    /// Message attributes.
    pub attributes: BTreeMap<String, DeliveredAttribute>,
}

/// The emulator: a store, and the endpoint its queue URLs name.
pub struct Sqs {
    store: Mutex<Store>,
    endpoint: String,
    /// Woken when messages may have become receivable (long polls wait on it).
    arrivals: Notify,
    stop: watch::Receiver<bool>,
}

/// Epoch milliseconds now.
fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Sqs {
    /// An emulator keeping its queues in `path` (or in memory), answering
    /// with URLs under `endpoint`; long polls end early when `stop` turns true.
    pub fn open(path: Option<&Path>, endpoint: &str, stop: watch::Receiver<bool>) -> Result<Arc<Self>, SqsError> {
        Ok(Arc::new(Sqs {
            store: Mutex::new(Store::open(path)?),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            arrivals: Notify::new(),
            stop,
        }))
    }

    /// The URL of queue `name`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{ACCOUNT}/{name}", self.endpoint)
    }

    /// The ARN of queue `name`.
    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
    }

    fn queue_name(&self, url: Option<&str>) -> Result<String, SqsError> {
        api::name_from_url(url)
    }

    fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, SqsError>) -> Result<T, SqsError> {
        // A panic while holding the lock cannot leave a half-made change:
        // each change is one SQLite transaction.
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut store)
    }

    fn wake(&self) {
        self.arrivals.notify_waiters();
    }

    /// Make every in-flight message of the queue at `url` visible now. For a
    /// restart: the consumers that held them (the stopped process's pollers)
    /// are gone, and on AWS their messages would come back after the
    /// visibility timeout (90 minutes for the ingest queue). Returns their
    /// bodies, so the caller can end what their consumers held (leases).
    pub fn release_in_flight(&self, url: &str) -> Result<Vec<String>, SqsError> {
        let name = self.queue_name(Some(url))?;
        let bodies = self.with_store(|s| s.release_in_flight(&name, now()))?;
        self.wake();
        Ok(bodies)
    }

    /// Store messages from another service (SNS) on their queues, all in one
    /// transaction; returns the names of queues that do not exist, whose
    /// messages are dropped (SNS drops a delivery to a deleted queue).
    pub fn deliver(&self, deliveries: &[Delivery]) -> Result<Vec<String>, SqsError> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let messages: Vec<(String, store::NewMessage)> = deliveries
            .iter()
            .map(|d| {
                let m = store::NewMessage {
                    md5_of_body: format!("{:x}", md5::compute(d.body.as_bytes())),
                    attributes: (!d.attributes.is_empty())
                        .then(|| serde_json::to_string(&d.attributes).expect("attributes serialize")),
                    body: d.body.clone(),
                    delay: None,
                };
                (d.queue.clone(), m)
            })
            .collect();
        let missing = self.with_store(|s| s.send_many(&messages, now()))?;
        self.wake();
        Ok(missing)
    }

    /// Counts of the messages of the queue at `url`.
    pub fn depth(&self, url: &str) -> Result<Depth, SqsError> {
        let name = self.queue_name(Some(url))?;
        self.with_store(|s| s.depth(&name, now()))
    }

    /// Receive, waiting up to `wait` seconds (the queue's default if none)
    /// for a message, as a long poll does.
    async fn receive(
        &self,
        name: &str,
        max: usize,
        visibility: Option<i64>,
        wait: Option<i64>,
    ) -> Result<Vec<Received>, SqsError> {
        let wait = match wait {
            Some(w) => w,
            None => self.with_store(|s| s.queue(name))?.receive_wait(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.max(0) as u64);
        let mut stop = self.stop.clone();
        loop {
            // Registered before looking, so a send in between still wakes us.
            let arrived = self.arrivals.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let t = now();
            let got = self.with_store(|s| s.receive(name, max, visibility, t))?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !got.is_empty() || left.is_zero() || *stop.borrow() {
                return Ok(got);
            }
            // A hidden message may become visible before anything is sent.
            let next = self.with_store(|s| s.next_visible(name, t))?;
            let until_visible = next.map_or(left, |v| Duration::from_millis((v - t).max(1) as u64));
            tokio::select! {
                _ = &mut arrived => {}
                _ = tokio::time::sleep(left.min(until_visible)) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// Serve `sqs` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, sqs: Arc<Sqs>, mut stop: watch::Receiver<bool>) {
    // A 1 MiB message grows when JSON escapes it (and binary attributes in
    // base64): room for that above axum's 2 MB default.
    let app = axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(8 << 20))
        .with_state(sqs);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!("sqs emulator stopped: {e}");
    }
}

const JSON: &str = "application/x-amz-json-1.0";

async fn handle(State(sqs): State<Arc<Sqs>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("AmazonSQS."));
    let result = match target {
        Some(op) => api::dispatch(&sqs, op, &body).await,
        None => Err(SqsError::new(
            Code::UnknownOperation,
            "This SQS emulator speaks the JSON protocol (X-Amz-Target: AmazonSQS.<Operation>) that \
             current AWS SDKs and CLIs use; the query protocol (Action=...) is not served.",
        )),
    };
    let mut response = match result {
        Ok(v) => ([(axum::http::header::CONTENT_TYPE, JSON)], v.to_string()).into_response(),
        Err(e) => error_response(&e),
    };
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

fn error_response(e: &SqsError) -> Response {
    if e.code == Code::InternalError {
        tracing::error!("sqs emulator: {e}");
    }
    let body = serde_json::json!({
        "__type": e.code.type_name(),
        "message": e.message,
    });
    let mut r = (
        StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::BAD_REQUEST),
        [(axum::http::header::CONTENT_TYPE, JSON)],
        body.to_string(),
    )
        .into_response();
    // The SDKs pick the error from this header (aws-sdk-rust ignores `__type` when it is there).
    if let Ok(v) = HeaderValue::from_str(&format!("{};{}", e.code.query_code(), e.code.fault())) {
        r.headers_mut().insert("x-amzn-query-error", v);
    }
    r
}
