//! The change feed's messages: what downstream consumers read from SQS.
//!
//! The contract is `schema/feed.schema.json` (JSON Schema); every message the
//! projector sends is checked against it in the tests. Delivery is at least
//! once: the same change always carries the same `id`, so a consumer drops
//! what it has seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the message layout. 2: times among the values of
/// `aggregate.changed` (`file_stats` `first_seen`, `last_seen`) are RFC 3339,
/// where 1 had epoch seconds.
pub const FEED_SCHEMA_VERSION: u32 = 2;

/// The JSON Schema of [`FeedMessage`].
pub const FEED_JSON_SCHEMA: &str = include_str!("../feed.schema.json");

/// One message of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum FeedMessage {
    /// An aggregate group has new values.
    #[serde(rename = "aggregate.changed")]
    AggregateChanged {
        /// Layout version.
        schema_version: u32,
        /// Deterministic: the same change always has the same id.
        id: String,
        /// Dataset.
        dataset: String,
        /// Aggregate.
        aggregate: String,
        /// Group-by term to value.
        group: BTreeMap<String, String>,
        /// Measure to value (counts and exact decimals, as text).
        values: BTreeMap<String, String>,
        /// Grows with each change of the group; a consumer keeps the highest.
        version: u64,
        /// When the group last changed (RFC 3339).
        changed_at: String,
    },
    /// A file reached a final status.
    #[serde(rename = "file.completed")]
    FileCompleted {
        /// Layout version.
        schema_version: u32,
        /// Deterministic.
        id: String,
        /// The content's SHA-256.
        file_id: String,
        /// Dataset.
        dataset: String,
        /// Object keys it was uploaded under (at most 100).
        keys: Vec<String>,
        /// Whether `keys` was cut to 100 to keep the message under SQS's limit.
        keys_truncated: bool,
        /// `complete` or `failed`.
        status: String,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Lines.
        rows: u64,
        /// Accepted lines.
        accepted: u64,
        /// Rejected lines.
        rejected: u64,
        /// When it became final (RFC 3339).
        completed_at: String,
    },
}

impl FeedMessage {
    /// The message's id.
    pub fn id(&self) -> &str {
        match self {
            FeedMessage::AggregateChanged { id, .. } | FeedMessage::FileCompleted { id, .. } => id,
        }
    }

    /// The message's type, also sent as the `type` message attribute.
    pub fn kind(&self) -> &'static str {
        match self {
            FeedMessage::AggregateChanged { .. } => "aggregate.changed",
            FeedMessage::FileCompleted { .. } => "file.completed",
        }
    }

    /// The dataset, also sent as the `dataset` message attribute.
    pub fn dataset(&self) -> &str {
        match self {
            FeedMessage::AggregateChanged { dataset, .. } | FeedMessage::FileCompleted { dataset, .. } => dataset,
        }
    }
}

/// A deterministic id from the parts that identify a change.
pub fn message_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}
