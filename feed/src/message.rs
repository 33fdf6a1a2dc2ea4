//! Reading a feed message's body: typed, or a clear reason why not.

use schema::feed::{FeedMessage, FEED_SCHEMA_VERSION};

/// The `type`s this kit reads.
pub const KNOWN_TYPES: &[&str] = &["aggregate.changed", "file.completed"];

/// The oldest `schema_version` this kit reads. Version 1 differs from 2 only
/// in how `file_stats` times are written (epoch seconds, not RFC 3339);
/// values are text in both, so both read into the same type.
pub const OLDEST_SCHEMA_VERSION: u32 = 1;

/// Why a body is not a message this consumer can apply. None of these gets
/// better by trying again: the message is poison, and belongs in the
/// dead-letter queue once the queue's receive limit is reached.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The body is not JSON, or not a JSON object.
    #[error("not a JSON object: {0}")]
    NotJson(String),
    /// A `type` this consumer does not know (a producer newer than it).
    #[error("unknown message type {0:?} (this consumer reads {KNOWN_TYPES:?})")]
    UnknownType(String),
    /// A layout newer than this consumer reads: upgrade the consumer.
    #[error("schema_version {found} is newer than this consumer reads (up to {FEED_SCHEMA_VERSION})")]
    NewerSchema {
        /// The message's version.
        found: u64,
    },
    /// A known type and version whose fields do not fit the contract.
    #[error("invalid {kind} message: {reason}")]
    Invalid {
        /// The message's type.
        kind: String,
        /// What does not fit.
        reason: String,
    },
}

impl MessageError {
    /// A short, stable name of the error, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageError::NotJson(_) => "not_json",
            MessageError::UnknownType(_) => "unknown_type",
            MessageError::NewerSchema { .. } => "newer_schema",
            MessageError::Invalid { .. } => "invalid",
        }
    }
}

/// Parse a feed message's body.
///
/// Checks come in the order that gives the most useful error: a message of
/// an unknown type or a newer version is named as such, not as a field
/// mismatch.
pub fn parse(body: &str) -> Result<FeedMessage, MessageError> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| MessageError::NotJson(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| MessageError::NotJson("the body is JSON but not an object".to_owned()))?;
    let kind = match obj.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(other) => return Err(MessageError::UnknownType(other.to_string())),
        None => return Err(MessageError::UnknownType(String::new())),
    };
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        return Err(MessageError::UnknownType(kind));
    }
    let invalid = |reason: String| MessageError::Invalid {
        kind: kind.clone(),
        reason,
    };
    let version = obj
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| invalid("no schema_version (a whole number)".to_owned()))?;
    if version > u64::from(FEED_SCHEMA_VERSION) {
        return Err(MessageError::NewerSchema { found: version });
    }
    if version < u64::from(OLDEST_SCHEMA_VERSION) {
        return Err(invalid(format!("schema_version {version} was never written")));
    }
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGED: &str = r#"{"type":"aggregate.changed","schema_version":2,"id":"i","dataset":"orders",
        "aggregate":"a","group":{"country":"DE"},"values":{"orders":"2"},"version":3,
        "changed_at":"2024-01-01T00:00:00.000Z"}"#;

    #[test]
    fn reads_both_layout_versions() {
        let m = parse(CHANGED).unwrap();
        assert_eq!((m.kind(), m.id()), ("aggregate.changed", "i"));
        let v1 = CHANGED.replace("\"schema_version\":2", "\"schema_version\":1");
        assert!(matches!(
            parse(&v1).unwrap(),
            FeedMessage::AggregateChanged { schema_version: 1, .. }
        ));
    }

    #[test]
    fn names_each_kind_of_poison() {
        let kind = |body: &str| parse(body).unwrap_err().kind();
        assert_eq!(kind("{not json"), "not_json");
        assert_eq!(kind("[1]"), "not_json");
        assert_eq!(kind(r#"{"type":"file.deleted","schema_version":2}"#), "unknown_type");
        assert_eq!(kind(r#"{"schema_version":2}"#), "unknown_type");
        let v3 = CHANGED.replace("\"schema_version\":2", "\"schema_version\":3");
        let e = parse(&v3).unwrap_err();
        assert!(matches!(e, MessageError::NewerSchema { found: 3 }), "{e}");
        assert!(e.to_string().contains("newer"), "{e}");
        assert_eq!(kind(&CHANGED.replace("\"version\":3", "\"version\":\"3\"")), "invalid");
        assert_eq!(
            kind(&CHANGED.replace("\"schema_version\":2", "\"schema_version\":0")),
            "invalid"
        );
        assert_eq!(kind(&CHANGED.replace("\"schema_version\":2,", "")), "invalid");
    }
}
