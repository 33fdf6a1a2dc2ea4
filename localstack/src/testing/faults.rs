//! Faults and observations injected through SDK interceptors: a process
//! that dies after N writes, a reply lost after a commit, a writer held while
//! another goes first, and counters of what a client asked for. The data path
//! itself is never faked: every request still reaches the emulators.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::put_item::PutItemInput;

/// When a fault fires: armed with N, it lets N matching calls through and
/// fires on those after (until disarmed); disarmed, never.
#[derive(Debug, Clone)]
pub struct Trigger {
    after: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger {
            after: Arc::new(AtomicU64::new(u64::MAX)),
            seen: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Trigger {
    /// Let `after` matching calls through, then fire.
    pub fn arm(&self, after: u64) {
        self.seen.store(0, Ordering::SeqCst);
        self.after.store(after, Ordering::SeqCst);
    }

    /// Never fire again (until armed).
    pub fn disarm(&self) {
        self.after.store(u64::MAX, Ordering::SeqCst);
    }

    /// Count one matching call; whether the fault fires on it.
    fn fires(&self) -> bool {
        self.seen.fetch_add(1, Ordering::SeqCst) >= self.after.load(Ordering::SeqCst)
    }
}

/// Fails every DynamoDB request that `matches` after the first `after` while
/// armed: a process that died, or a store that went away, at that point.
#[derive(Clone)]
pub struct FailAfter {
    trigger: Trigger,
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
            trigger: Trigger::default(),
            matches,
            what,
        }
    }

    /// Let `after` matching requests through, then fail every one.
    pub fn arm(&self, after: u64) {
        self.trigger.arm(after);
    }

    /// Let every request through.
    pub fn disarm(&self) {
        self.trigger.disarm();
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
        if (self.matches)(ctx) && self.trigger.fires() {
            return Err(format!("injected failure: {} died here", self.what).into());
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
            .is_some_and(|pk| pk.starts_with(schema::keys::EVENT_PK_PREFIX))
    })
}

/// `TransactWriteItems`: the projector dies between two transactions of a batch.
pub fn fail_transactions() -> FailAfter {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
    FailAfter::disarmed("the projector", |ctx| {
        ctx.input().downcast_ref::<TransactWriteItemsInput>().is_some()
    })
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

/// Loses the reply of `TransactWriteItems` calls while armed: the transaction
/// reaches DynamoDB and commits, then the caller sees an error, as when the
/// connection drops or the function times out after the commit.
#[derive(Debug, Clone, Default)]
pub struct LoseReplies {
    /// When: armed with N, the reply of the transaction after the next N is lost.
    pub trigger: Trigger,
    /// Replies lost so far.
    pub lost: Arc<AtomicU64>,
}

impl LoseReplies {
    /// Losing nothing until armed.
    pub fn disarmed() -> Self {
        LoseReplies::default()
    }

    /// Lose the reply of the transaction after the next `after` ones (once).
    pub fn arm(&self, after: u64) {
        self.trigger.arm(after);
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
        let committed = op.is_some_and(|m| m.name() == "TransactWriteItems") && ctx.response().status().is_success();
        if committed && self.trigger.fires() {
            self.trigger.disarm();
            self.lost.fetch_add(1, Ordering::SeqCst);
            return Err("injected failure: the reply to a committed transaction was lost".into());
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

/// DynamoDB throttling, injected: every `every`th `PutItem` (while armed) is
/// sent to an endpoint that answers what DynamoDB answers a request over the
/// table's throughput (HTTP 400, `ThrottlingException`), so the write never
/// reaches the table and the SDK's own classifier and retry strategy see a
/// real throttling response.
#[derive(Debug, Clone)]
pub struct Throttle {
    every: u64,
    seen: Arc<AtomicU64>,
    /// Requests throttled so far.
    pub throttled: Arc<AtomicU64>,
    endpoint: String,
}

impl Throttle {
    /// Throttle every `every`th `PutItem`, from its own endpoint on 127.0.0.1.
    pub async fn start(every: u64) -> Self {
        use axum::http::{header, StatusCode};
        let app = axum::Router::new().fallback(|| async {
            (
                StatusCode::BAD_REQUEST,
                [
                    (header::CONTENT_TYPE, "application/x-amz-json-1.0"),
                    (header::HeaderName::from_static("x-amzn-errortype"), "ThrottlingException"),
                ],
                r#"{"__type":"com.amazon.coral.availability#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#,
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Throttle {
            every: every.max(1),
            seen: Arc::new(AtomicU64::new(0)),
            throttled: Arc::new(AtomicU64::new(0)),
            endpoint,
        }
    }
}

impl Intercept for Throttle {
    fn name(&self) -> &'static str {
        "Throttle"
    }

    fn modify_before_transmit(
        &self,
        ctx: &mut aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _rc: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>();
        if op.is_some_and(|m| m.name() == "PutItem")
            && (self.seen.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(self.every)
        {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            ctx.request_mut().set_uri(self.endpoint.as_str())?;
        }
        Ok(())
    }
}
