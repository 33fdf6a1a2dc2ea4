//! Counting the AWS requests the pipeline makes, through an SDK interceptor:
//! requests per line are a design goal, so they are measured, not estimated.

use std::collections::BTreeMap;
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
