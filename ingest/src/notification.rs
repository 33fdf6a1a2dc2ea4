//! S3 notifications, as delivered in SQS message bodies, to the objects to ingest.

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

/// An object an S3 notification says was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Bucket name.
    pub bucket: String,
    /// Object key, decoded (`+` and `%xx` as S3 encodes them in notifications).
    pub key: String,
    /// Size the notification reports.
    pub size: Option<u64>,
    /// Version, on a versioned bucket.
    pub version_id: Option<String>,
    /// S3's ordering token for events on one key.
    pub sequencer: Option<String>,
}

/// What one message body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Objects created (possibly none, if every record was another event type).
    Created(Vec<ObjectRef>),
    /// `s3:TestEvent`, sent when a notification configuration is saved.
    Test,
    /// One chunk of a planned file, sent by its planner (`chunk`).
    Chunk(ChunkTask),
}

/// The task of one chunk of a big file: which object, which file, which
/// chunk. The range and the line it starts at are in the chunk's item,
/// stored before the task was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkTask {
    /// Bucket.
    pub bucket: String,
    /// Key (decoded).
    pub key: String,
    /// The version the notification named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The file (content) the chunk belongs to.
    pub file_id: String,
    /// The chunk's index in the plan.
    pub index: u64,
}

impl ChunkTask {
    /// The object the chunk reads, at the notified version.
    pub fn object(&self) -> ObjectRef {
        ObjectRef {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            size: None,
            version_id: self.version_id.clone(),
            sequencer: None,
        }
    }

    /// The message body that carries the task.
    pub fn body(&self) -> String {
        serde_json::json!({ "chunk": self }).to_string()
    }
}

#[derive(Deserialize)]
struct ChunkBody {
    chunk: ChunkTask,
}

/// The body is not an S3 notification.
#[derive(Debug, thiserror::Error)]
#[error("not an S3 event notification: {0}")]
pub struct NotANotification(String);

// The fields the ingest reads, and no more: aws_lambda_events' S3Event also
// requires ones that emulators omit (moto sends no `userIdentity`), and a
// notification must not be refused for a field nobody reads.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: Option<String>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: BucketEntity,
    object: ObjectEntity,
}

#[derive(Deserialize)]
struct BucketEntity {
    name: Option<String>,
}

#[derive(Deserialize)]
struct ObjectEntity {
    key: Option<String>,
    size: Option<i64>,
    #[serde(rename = "versionId")]
    version_id: Option<String>,
    sequencer: Option<String>,
}

#[derive(Deserialize)]
struct TestEvent {
    #[serde(rename = "Event")]
    event: String,
}

/// Parse an SQS message body. Records other than `ObjectCreated:*` are skipped
/// (and logged); a body that is not a notification is an error, so the message
/// is retried and ends in the dead-letter queue.
pub fn parse(body: &str) -> Result<Notification, NotANotification> {
    if let Ok(t) = serde_json::from_str::<TestEvent>(body) {
        if t.event == "s3:TestEvent" {
            return Ok(Notification::Test);
        }
    }
    if let Ok(t) = serde_json::from_str::<ChunkBody>(body) {
        return Ok(Notification::Chunk(t.chunk));
    }
    let event: Event = serde_json::from_str(body).map_err(|e| NotANotification(e.to_string()))?;
    if event.records.is_empty() {
        return Err(NotANotification("no Records".into()));
    }
    let mut objects = Vec::new();
    for r in event.records {
        let name = r.event_name.unwrap_or_default();
        if !name.starts_with("ObjectCreated:") {
            tracing::info!(event_name = %name, "skipping an S3 event that is not ObjectCreated");
            continue;
        }
        let bucket =
            r.s3.bucket
                .name
                .ok_or_else(|| NotANotification("record without bucket name".into()))?;
        let raw_key =
            r.s3.object
                .key
                .ok_or_else(|| NotANotification("record without object key".into()))?;
        objects.push(ObjectRef {
            bucket,
            key: decode_key(&raw_key).map_err(|e| NotANotification(format!("object key {raw_key:?}: {e}")))?,
            size: r.s3.object.size.and_then(|s| u64::try_from(s).ok()),
            // Kept even when "null" (a bucket whose versioning is suspended):
            // reading the named version is reading exactly the notified
            // content, and it is what the role is granted (s3:GetObjectVersion).
            version_id: r.s3.object.version_id.filter(|v| !v.is_empty()),
            sequencer: r.s3.object.sequencer,
        });
    }
    Ok(Notification::Created(objects))
}

/// Decode a key as S3 writes it in notifications: form encoding, where `+` is
/// a space and a literal `+` is `%2B`.
pub fn decode_key(raw: &str) -> Result<String, std::str::Utf8Error> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8().map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_task_reads_back_from_its_body() {
        let t = ChunkTask {
            bucket: "b".into(),
            key: "uploads/orders/big file.csv".into(),
            version_id: Some("v1".into()),
            file_id: "f".into(),
            index: 7,
        };
        assert_eq!(parse(&t.body()).unwrap(), Notification::Chunk(t.clone()));
        assert!(parse(r#"{"chunk": {"bucket": "b"}}"#).is_err());
    }

    #[test]
    fn decodes_keys_like_s3_encodes_them() {
        let cases = [
            ("Happy%20Face.jpg", "Happy Face.jpg"),
            ("orders/jan+2024.csv", "orders/jan 2024.csv"),
            ("a%2Bb.csv", "a+b.csv"),
            ("caf%C3%A9/%E2%82%AC+report.csv", "café/€ report.csv"),
            ("plain", "plain"),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_key(raw).unwrap(), want, "{raw}");
        }
        assert!(decode_key("%FF").is_err());
    }

    #[test]
    fn test_events_and_garbage() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-01-01T00:00:00.000Z","Bucket":"b","RequestId":"r","HostId":"h"}"#;
        assert_eq!(parse(test).unwrap(), Notification::Test);
        for bad in ["", "not json", "{}", r#"{"Records":[]}"#, r#"{"Records":[{"x":1}]}"#] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn only_the_fields_read_are_required() {
        // As moto sends it: no userIdentity, requestParameters or eTag.
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
            "eventTime":"2026-11-29T09:03:03.000Z","eventName":"ObjectCreated:Put",
            "s3":{"s3SchemaVersion":"1.0","configurationId":"ingest","bucket":{"name":"b","arn":"arn:aws:s3:::b"},
            "object":{"key":"uploads/a%20b.csv","size":3,"versionId":"v1"}}}]}"#;
        let Notification::Created(objects) = parse(body).unwrap() else {
            panic!("not a creation")
        };
        assert_eq!(
            (
                objects[0].key.as_str(),
                objects[0].size,
                objects[0].version_id.as_deref()
            ),
            ("uploads/a b.csv", Some(3), Some("v1"))
        );
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use aws_lambda_events::sqs::SqsEvent;

    #[test]
    fn the_aws_sample_s3_event() {
        let body = include_str!("../tests/data/example-s3-event.json");
        let Notification::Created(objs) = parse(body).unwrap() else {
            panic!("sample is an ObjectCreated event")
        };
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].bucket, "sourcebucket");
        assert_eq!(objs[0].key, "Happy Face.jpg");
        assert_eq!(objs[0].size, Some(1024));
        assert_eq!(objs[0].version_id.as_deref(), Some("version"));
    }

    #[test]
    fn an_sqs_batch_of_notifications() {
        let event: SqsEvent = serde_json::from_str(include_str!("../tests/data/sqs-s3-notifications.json")).unwrap();
        assert_eq!(event.records.len(), 2);
        let first = parse(event.records[0].body.as_deref().unwrap()).unwrap();
        let Notification::Created(objs) = first else {
            panic!("first message announces objects")
        };
        // The ObjectRemoved record is skipped; the key is decoded (`+` space, `%2B` plus, UTF-8).
        assert_eq!(objs.len(), 1, "{objs:?}");
        assert_eq!(objs[0].key, "orders/café 2024/€ report + notes.csv");
        assert_eq!(objs[0].version_id, None);
        assert_eq!(
            parse(event.records[1].body.as_deref().unwrap()).unwrap(),
            Notification::Test
        );
    }
}
