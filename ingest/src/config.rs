//! Runtime configuration, read once from the environment.

use std::time::Duration;

use schema::Limits;

/// How the ingest runs. Every field has an environment variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// `EVENTS_TABLE`: the events table (events, manifests, uploads).
    pub events_table: String,
    /// `INGEST_CONCURRENCY`: conditional puts in flight per file (default 64).
    pub concurrency: usize,
    /// `CHECKPOINT_EVERY`: lines between checkpoints of the manifest (default 1000).
    pub checkpoint_every: u64,
    /// `MAX_LINE_BYTES` and `MAX_COLUMNS`: per-line limits (default 64 KiB, 256).
    pub limits: Limits,
    /// `LEASE_SECONDS`: how long a run holds a file before another may take it
    /// over (default 900, Lambda's longest timeout).
    pub lease: Duration,
    /// `DEADLINE_MARGIN_MS`: stop this long before the Lambda deadline to
    /// drain writes and checkpoint (default 10000).
    pub deadline_margin: Duration,
    /// `INGEST_QUEUE_URL`: the queue the notifications arrive on. When set, a
    /// run that meets its deadline, or fails in a way a retry can mend, sends
    /// the notification again as a continuation and reports its message done,
    /// instead of waiting out the queue's visibility timeout (default none:
    /// the message fails, and the queue retries it).
    pub queue_url: Option<String>,
    /// `UPLOAD_PREFIX`: the key prefix uploads arrive under (default none);
    /// datasets are routed on the key after it, so `uploads/orders/a.csv`
    /// belongs to `orders`.
    pub upload_prefix: String,
    /// `CHUNK_ABOVE_BYTES`: a plain object larger than this is planned and
    /// ingested in chunks side by side (default 32 MiB); smaller ones, and
    /// compressed ones, are read through by one run. Chunks need the queue
    /// (`INGEST_QUEUE_URL`) their tasks go to.
    pub chunk_above: u64,
    /// `CHUNK_BYTES`: about how many bytes one chunk holds (default 16 MiB).
    pub chunk_bytes: u64,
}

/// A variable that is missing or malformed.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {problem}")]
pub struct ConfigError {
    name: &'static str,
    problem: String,
}

impl Config {
    /// Defaults for everything but the table.
    pub fn new(events_table: impl Into<String>) -> Self {
        Config {
            events_table: events_table.into(),
            concurrency: 64,
            checkpoint_every: 1000,
            limits: Limits::default(),
            lease: Duration::from_secs(900),
            deadline_margin: Duration::from_secs(10),
            upload_prefix: String::new(),
            queue_url: None,
            chunk_above: 32 << 20,
            chunk_bytes: 16 << 20,
        }
    }

    /// The part of an object key that routes it to a dataset.
    pub fn dataset_key<'k>(&self, key: &'k str) -> &'k str {
        key.strip_prefix(self.upload_prefix.as_str()).unwrap_or(key)
    }

    /// Read from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read from any lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let table = get("EVENTS_TABLE").filter(|t| !t.is_empty()).ok_or(ConfigError {
            name: "EVENTS_TABLE",
            problem: "not set".into(),
        })?;
        let mut c = Config::new(table);
        let num = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or(ConfigError {
                    name,
                    problem: format!("{v:?} is not a positive whole number"),
                }),
            }
        };
        c.concurrency = num("INGEST_CONCURRENCY", c.concurrency as u64)? as usize;
        c.checkpoint_every = num("CHECKPOINT_EVERY", c.checkpoint_every)?;
        c.limits.max_line_bytes = num("MAX_LINE_BYTES", c.limits.max_line_bytes as u64)? as usize;
        c.limits.max_columns = num("MAX_COLUMNS", c.limits.max_columns as u64)? as usize;
        c.lease = Duration::from_secs(num("LEASE_SECONDS", c.lease.as_secs())?);
        c.deadline_margin = Duration::from_millis(num("DEADLINE_MARGIN_MS", c.deadline_margin.as_millis() as u64)?);
        c.upload_prefix = get("UPLOAD_PREFIX").unwrap_or_default();
        c.queue_url = get("INGEST_QUEUE_URL").filter(|u| !u.is_empty());
        c.chunk_above = num("CHUNK_ABOVE_BYTES", c.chunk_above)?;
        c.chunk_bytes = num("CHUNK_BYTES", c.chunk_bytes)?;
        Ok(c)
    }
}

/// The environment variables the ingest Lambda reads (besides those Lambda
/// itself sets): what [`Config::from_env`] reads, and the log filter.
pub const ENV_VARS: &[&str] = &[
    "RUST_LOG",
    "EVENTS_TABLE",
    "INGEST_CONCURRENCY",
    "CHECKPOINT_EVERY",
    "MAX_LINE_BYTES",
    "MAX_COLUMNS",
    "LEASE_SECONDS",
    "DEADLINE_MARGIN_MS",
    "UPLOAD_PREFIX",
    "INGEST_QUEUE_URL",
    "CHUNK_ABOVE_BYTES",
    "CHUNK_BYTES",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_checks_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        let c = Config::from_lookup(env(&[("EVENTS_TABLE", "t"), ("INGEST_CONCURRENCY", "8")])).unwrap();
        assert_eq!(
            (c.events_table.as_str(), c.concurrency, c.checkpoint_every),
            ("t", 8, 1000)
        );
        assert_eq!(c.dataset_key("orders/a.csv"), "orders/a.csv");
        let c = Config::from_lookup(env(&[("EVENTS_TABLE", "t"), ("UPLOAD_PREFIX", "uploads/")])).unwrap();
        assert_eq!(c.dataset_key("uploads/orders/a.csv"), "orders/a.csv");
        assert_eq!(c.dataset_key("elsewhere/a.csv"), "elsewhere/a.csv");
        let e = Config::from_lookup(env(&[])).unwrap_err().to_string();
        assert!(e.contains("EVENTS_TABLE"), "{e}");
        let e = Config::from_lookup(env(&[("EVENTS_TABLE", "t"), ("MAX_LINE_BYTES", "-1")])).unwrap_err();
        assert!(e.to_string().contains("MAX_LINE_BYTES"), "{e}");
    }
}
