//! The deployment settings, shared with Terraform: `terraform/settings.json`
//! is compiled in here and read by the module with `jsondecode(file())`, so
//! the local stack and the deployment cannot drift apart.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The file, as compiled in.
pub const SETTINGS_JSON: &str = include_str!("../../terraform/settings.json");

/// Everything both sides read.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Prefix of every resource name.
    pub name_prefix: String,
    /// Uploads are notified under this key prefix only.
    pub upload_prefix: String,
    /// ... and with one of these suffixes only: plain, gzip and zstd CSV.
    pub upload_suffixes: Vec<String>,
    /// How long a dead-letter queue keeps a message.
    pub dlq_retention_seconds: u32,
    /// The ingest function and its queue.
    pub ingest: IngestSettings,
    /// The projector function and its stream mapping.
    pub projector: ProjectorSettings,
    /// The feed queue.
    pub feed: FeedSettings,
    /// The reference consumer (optional in the module, `--consumer` locally).
    pub consumer: ConsumerSettings,
}

/// The ingest function, its queue and its event source mapping.
#[derive(Debug, Clone, Deserialize)]
pub struct IngestSettings {
    /// Function timeout.
    pub timeout_seconds: u32,
    /// Function memory.
    pub memory_mb: u32,
    /// Messages per invocation.
    pub batch_size: u32,
    /// How long the mapping gathers a batch.
    pub batching_window_seconds: u32,
    /// Concurrent invocations at most.
    pub maximum_concurrency: u32,
    /// Receives before a notification goes to the dead-letter queue.
    pub max_receive_count: u32,
    /// The queue's visibility timeout (six times the function's, as AWS advises).
    pub visibility_timeout_seconds: u32,
    /// The function's tuning variables (Terraform adds the table and prefix).
    pub environment: std::collections::BTreeMap<String, String>,
}

/// The projector function and its stream event source mapping.
#[derive(Debug, Clone, Deserialize)]
pub struct ProjectorSettings {
    /// Function timeout.
    pub timeout_seconds: u32,
    /// Function memory.
    pub memory_mb: u32,
    /// Stream records per invocation.
    pub batch_size: u32,
    /// How long the mapping gathers a batch.
    pub batching_window_seconds: u32,
    /// Retries of a failing batch before it goes to the on-failure queue.
    pub maximum_retry_attempts: u32,
    /// Records older than this go to the on-failure queue unprocessed.
    pub maximum_record_age_seconds: u32,
    /// Split a failing batch in two and retry the halves.
    pub bisect_batch_on_function_error: bool,
    /// Concurrent batches per shard.
    pub parallelization_factor: u32,
    /// Event filter patterns: a record reaches the function if any matches.
    pub filters: Vec<serde_json::Value>,
}

impl ProjectorSettings {
    /// The stream mapping's settings, for the local poller.
    pub fn mapping(&self) -> crate::pollers::StreamMapping {
        crate::pollers::StreamMapping {
            batch_size: self.batch_size,
            batching_window_seconds: self.batching_window_seconds,
            maximum_retry_attempts: self.maximum_retry_attempts,
            maximum_record_age_seconds: self.maximum_record_age_seconds,
            bisect_batch_on_function_error: self.bisect_batch_on_function_error,
            filters: self.filters.clone(),
        }
    }
}

/// The feed queue.
#[derive(Debug, Clone, Deserialize)]
pub struct FeedSettings {
    /// Receives before a feed message goes to its dead-letter queue.
    pub max_receive_count: u32,
    /// The queue's visibility timeout.
    pub visibility_timeout_seconds: u32,
}

/// The reference consumer: its function, its queue (subscribed to the feed
/// topic with `filter_policy`) and its event source mapping.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerSettings {
    /// Function timeout.
    pub timeout_seconds: u32,
    /// Function memory.
    pub memory_mb: u32,
    /// Messages per invocation.
    pub batch_size: u32,
    /// How long the mapping gathers a batch.
    pub batching_window_seconds: u32,
    /// Concurrent invocations at most.
    pub maximum_concurrency: u32,
    /// Receives before a message goes to the dead-letter queue.
    pub max_receive_count: u32,
    /// The queue's visibility timeout (six times the function's).
    pub visibility_timeout_seconds: u32,
    /// Which feed messages the subscription admits (an SNS filter policy).
    pub filter_policy: serde_json::Value,
}

impl Settings {
    /// The compiled-in settings.
    pub fn get() -> Settings {
        serde_json::from_str(SETTINGS_JSON).expect("terraform/settings.json is checked by a unit test")
    }
}

impl Settings {
    /// The environment `terraform/lambda.tf` gives the ingest function.
    pub fn ingest_environment(&self, names: &Names, ingest_queue_url: &str) -> BTreeMap<String, String> {
        let mut env = self.ingest.environment.clone();
        env.insert("INGEST_QUEUE_URL".into(), ingest_queue_url.to_owned());
        env.insert("EVENTS_TABLE".into(), names.events_table.clone());
        env.insert("UPLOAD_PREFIX".into(), names.upload_prefix.clone());
        env.insert("RUST_LOG".into(), "info".into());
        env
    }

    /// The environment `terraform/lambda.tf` gives the projector function.
    pub fn projector_environment(&self, names: &Names, feed_topic_arn: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("AGGREGATES_TABLE".into(), names.aggregates_table.clone()),
            ("FEED_TOPIC_ARN".into(), feed_topic_arn.to_owned()),
            ("RUST_LOG".into(), "info".into()),
        ])
    }
}

/// Names of the deployed resources.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Names {
    /// The upload bucket.
    pub bucket: String,
    /// Key prefix uploads go under (and notifications are filtered on).
    pub upload_prefix: String,
    /// The events table.
    pub events_table: String,
    /// The aggregates table (the projector's; no stream, so projector writes
    /// never reach the events stream).
    pub aggregates_table: String,
    /// The queue S3 notifies of uploads.
    pub ingest_queue: String,
    /// Its dead-letter queue.
    pub ingest_dlq: String,
    /// The feed topic the projector publishes to.
    pub feed_topic: String,
    /// The feed queue downstream services consume (subscribed to the topic).
    pub feed_queue: String,
    /// Its dead-letter queue.
    pub feed_dlq: String,
    /// Where the stream mapping sends batches it gave up on.
    pub projector_failures: String,
    /// The reference consumer's resources, if deployed.
    pub consumer: Option<ConsumerNames>,
}

/// Names of the reference consumer's resources.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ConsumerNames {
    /// Its queue, subscribed to the feed topic.
    pub queue: String,
    /// The queue's dead-letter queue.
    pub dlq: String,
    /// Its read model table.
    pub read_model_table: String,
}

impl Names {
    /// The names the module gives in `account` (bucket names are global on
    /// AWS, so the bucket carries the account id).
    pub fn for_account(settings: &Settings, account: &str) -> Names {
        let p = &settings.name_prefix;
        Names {
            bucket: format!("{p}-uploads-{account}"),
            upload_prefix: settings.upload_prefix.clone(),
            events_table: format!("{p}-events"),
            aggregates_table: format!("{p}-aggregates"),
            ingest_queue: format!("{p}-ingest"),
            ingest_dlq: format!("{p}-ingest-dlq"),
            feed_topic: format!("{p}-feed"),
            feed_queue: format!("{p}-feed"),
            feed_dlq: format!("{p}-feed-dlq"),
            projector_failures: format!("{p}-projector-failures"),
            consumer: Some(ConsumerNames {
                queue: format!("{p}-consumer"),
                dlq: format!("{p}-consumer-dlq"),
                read_model_table: format!("{p}-read-model"),
            }),
        }
    }

    /// The local stack's names.
    pub fn local() -> Names {
        Names::for_account(&Settings::get(), crate::identity::ACCOUNT)
    }

    /// The names in `terraform output -json`.
    pub fn from_terraform_outputs(json: &str) -> anyhow::Result<Names> {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| anyhow::anyhow!("the Terraform outputs are not JSON ({e}): pass `terraform output -json`"))?;
        let get = |k: &str| -> anyhow::Result<String> {
            v.get(k)
                .and_then(|o| o.get("value"))
                .and_then(|s| s.as_str())
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("the Terraform outputs have no string output {k:?}"))
        };
        // The reference consumer's outputs are null when it is not deployed.
        let optional = |k: &str| {
            v.get(k)
                .and_then(|o| o.get("value"))
                .and_then(|s| s.as_str())
                .map(str::to_owned)
        };
        let consumer = match optional("consumer_queue_name") {
            Some(queue) => Some(ConsumerNames {
                queue,
                dlq: get("consumer_dlq_name")?,
                read_model_table: get("read_model_table_name")?,
            }),
            None => None,
        };
        Ok(Names {
            bucket: get("bucket_name")?,
            upload_prefix: get("upload_prefix")?,
            events_table: get("events_table_name")?,
            aggregates_table: get("aggregates_table_name")?,
            ingest_queue: get("ingest_queue_name")?,
            ingest_dlq: get("ingest_dlq_name")?,
            feed_topic: get("feed_topic_name")?,
            feed_queue: get("feed_queue_name")?,
            feed_dlq: get("feed_dlq_name")?,
            projector_failures: get("projector_failures_queue_name")?,
            consumer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_are_consistent() {
        let s = Settings::get();
        assert!(
            s.ingest.visibility_timeout_seconds >= 6 * s.ingest.timeout_seconds,
            "AWS advises a visibility timeout of at least six times the function timeout"
        );
        assert!(s.feed.visibility_timeout_seconds > 0 && s.projector.batch_size <= 10_000);
        assert!(s.upload_prefix.ends_with('/') && s.upload_suffixes.iter().all(|x| x.starts_with(".csv")));
        let n = Names::local();
        assert_eq!(n.bucket, "csv-pipeline-uploads-000000000000");
        let env = s.ingest_environment(&n, "http://queue");
        assert_eq!(
            (env["EVENTS_TABLE"].as_str(), env["UPLOAD_PREFIX"].as_str()),
            ("csv-pipeline-events", "uploads/")
        );
        assert_eq!(
            env["LEASE_SECONDS"].parse::<u32>().unwrap(),
            s.ingest.timeout_seconds,
            "a lease outlives one invocation"
        );
    }

    #[test]
    fn filters_admit_line_events_and_final_manifests_only() {
        use crate::pollers::matches_any;
        let f = Settings::get().projector.filters;
        let rec = |name: &str, kind: &str, status: Option<&str>| {
            let mut image = serde_json::json!({ "kind": { "S": kind } });
            if let Some(s) = status {
                image["status"] = serde_json::json!({ "S": s });
            }
            serde_json::json!({ "eventName": name, "dynamodb": { "NewImage": image } })
        };
        assert!(matches_any(&rec("INSERT", "event", None), &f));
        assert!(matches_any(&rec("MODIFY", "manifest", Some("complete")), &f));
        assert!(matches_any(&rec("INSERT", "manifest", Some("failed")), &f));
        assert!(!matches_any(&rec("MODIFY", "manifest", Some("ingesting")), &f));
        assert!(!matches_any(&rec("INSERT", "upload", None), &f));
        assert!(!matches_any(&rec("REMOVE", "event", None), &f));
    }

    #[test]
    fn names_come_from_terraform_outputs() {
        let n = Names::local();
        let c = n.consumer.clone().unwrap();
        let mut out = serde_json::Map::new();
        for (k, v) in [
            ("feed_topic_name", &n.feed_topic),
            ("consumer_queue_name", &c.queue),
            ("consumer_dlq_name", &c.dlq),
            ("read_model_table_name", &c.read_model_table),
            ("bucket_name", &n.bucket),
            ("upload_prefix", &n.upload_prefix),
            ("events_table_name", &n.events_table),
            ("aggregates_table_name", &n.aggregates_table),
            ("ingest_queue_name", &n.ingest_queue),
            ("ingest_dlq_name", &n.ingest_dlq),
            ("feed_queue_name", &n.feed_queue),
            ("feed_dlq_name", &n.feed_dlq),
            ("projector_failures_queue_name", &n.projector_failures),
        ] {
            out.insert(
                k.into(),
                serde_json::json!({ "value": v, "type": "string", "sensitive": false }),
            );
        }
        let json = serde_json::Value::Object(out.clone()).to_string();
        assert_eq!(Names::from_terraform_outputs(&json).unwrap(), n);
        // Without the reference consumer, its outputs are null.
        for k in ["consumer_queue_name", "consumer_dlq_name", "read_model_table_name"] {
            out.insert(
                k.into(),
                serde_json::json!({ "value": null, "type": "string", "sensitive": false }),
            );
        }
        let without = Names::from_terraform_outputs(&serde_json::Value::Object(out).to_string()).unwrap();
        assert_eq!(without, Names { consumer: None, ..n });
        let e = Names::from_terraform_outputs("{}").unwrap_err().to_string();
        assert!(e.contains("bucket_name"), "{e}");
    }
}
