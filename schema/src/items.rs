//! Item layouts of the events table, read and written with `serde_dynamo`.
//!
//! Every item carries `kind` so that a stream consumer can tell events,
//! manifests and upload records apart without parsing keys.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::row::{Fields, Rejection};

/// DynamoDB's item size limit.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// What an item of the events table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// One CSV line.
    Event,
    /// One file (by content).
    Manifest,
    /// One object key that was seen.
    Upload,
    /// One planned part of a big file ([`Chunk`]).
    Chunk,
}

/// The two kinds of line event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// The line is a valid row of its dataset.
    #[serde(rename = "row.accepted")]
    Accepted,
    /// The line is not; `reason` says why.
    #[serde(rename = "row.rejected")]
    Rejected,
}

/// Version of the event layout, bumped on any change of meaning.
pub const EVENT_VERSION: u32 = 1;

/// One immutable CSV line event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventItem {
    /// `E#{file_id}#{page}`.
    pub pk: String,
    /// The line number (1-based, after the header).
    pub sk: u64,
    /// Always [`ItemKind::Event`].
    pub kind: ItemKind,
    /// Accepted or rejected.
    pub event_type: EventType,
    /// Layout version.
    pub event_version: u32,
    /// The file.
    pub file_id: String,
    /// The dataset the file belongs to.
    pub dataset: String,
    /// The dataset's definition version the line was checked against.
    pub dataset_version: u32,
    /// Accepted: the typed fields in canonical text form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Fields>,
    /// Rejected: the raw line, when it is UTF-8 (possibly truncated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// Rejected: the raw line's bytes, when it is not UTF-8 (possibly truncated).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub raw_bytes: Option<Vec<u8>>,
    /// Rejected: whether `raw`/`raw_bytes` was cut to fit an item.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_truncated: bool,
    /// Rejected: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Rejected: the column at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

/// Room left for the raw text of a rejected line, under the item limit.
const MAX_RAW_BYTES: usize = MAX_ITEM_BYTES - 8 * 1024;

impl EventItem {
    /// The event of an accepted line.
    pub fn accepted(file_id: &str, line: u64, dataset: &str, dataset_version: u32, fields: Fields) -> Self {
        EventItem {
            fields: Some(fields),
            ..Self::base(file_id, line, dataset, dataset_version, EventType::Accepted)
        }
    }

    /// The event of a rejected line, with its raw bytes (cut to fit an item).
    pub fn rejected(file_id: &str, line: u64, dataset: &str, dataset_version: u32, raw: &[u8], why: Rejection) -> Self {
        let truncated = raw.len() > MAX_RAW_BYTES;
        let raw = &raw[..raw.len().min(MAX_RAW_BYTES)];
        let (text, bytes) = match std::str::from_utf8(raw) {
            Ok(s) => (Some(s.to_owned()), None),
            // A cut may split a UTF-8 sequence: keep the valid prefix as text.
            Err(e) if truncated && e.error_len().is_none() => (
                Some(String::from_utf8_lossy(&raw[..e.valid_up_to()]).into_owned()),
                None,
            ),
            Err(_) => (None, Some(raw.to_vec())),
        };
        EventItem {
            raw: text,
            raw_bytes: bytes,
            raw_truncated: truncated,
            reason: Some(why.reason),
            column: why.column,
            ..Self::base(file_id, line, dataset, dataset_version, EventType::Rejected)
        }
    }

    fn base(file_id: &str, line: u64, dataset: &str, dataset_version: u32, event_type: EventType) -> Self {
        EventItem {
            pk: keys::event_pk(file_id, line),
            sk: line,
            kind: ItemKind::Event,
            event_type,
            event_version: EVENT_VERSION,
            file_id: file_id.to_owned(),
            dataset: dataset.to_owned(),
            dataset_version,
            fields: None,
            raw: None,
            raw_bytes: None,
            raw_truncated: false,
            reason: None,
            column: None,
        }
    }
}

/// The `fields` attribute of an accepted event: column name to canonical text.
pub type FieldMap = HashMap<String, AttributeValue>;

/// Room for the fields of an accepted line, under the item limit (the rest of
/// the item is under 1 KiB).
pub const MAX_FIELDS_BYTES: usize = MAX_ITEM_BYTES - 4 * 1024;

/// The item of an accepted line, built directly rather than through serde:
/// this is the ingest's hot path. Same layout as [`EventItem::accepted`].
pub fn accepted_item(
    file_id: &str,
    line: u64,
    dataset: &str,
    dataset_version: u32,
    fields: FieldMap,
) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::with_capacity(10);
    item.insert("pk".to_owned(), AttributeValue::S(keys::event_pk(file_id, line)));
    item.insert("sk".to_owned(), AttributeValue::N(line.to_string()));
    item.insert("kind".to_owned(), AttributeValue::S("event".to_owned()));
    item.insert("event_type".to_owned(), AttributeValue::S("row.accepted".to_owned()));
    item.insert("event_version".to_owned(), AttributeValue::N(EVENT_VERSION.to_string()));
    item.insert("file_id".to_owned(), AttributeValue::S(file_id.to_owned()));
    item.insert("dataset".to_owned(), AttributeValue::S(dataset.to_owned()));
    item.insert(
        "dataset_version".to_owned(),
        AttributeValue::N(dataset_version.to_string()),
    );
    item.insert("fields".to_owned(), AttributeValue::M(fields));
    item
}

/// Serialize any item layout.
pub fn to_item<T: Serialize>(value: &T) -> HashMap<String, AttributeValue> {
    serde_dynamo::to_item(value).expect("item layouts serialize to maps")
}

/// Status of a file (by content).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// Lines are being written; `checkpoint_*` says how far.
    Ingesting,
    /// Every line has its event.
    Complete,
    /// The file as a whole cannot be ingested; `reason` says why.
    Failed,
}

impl FileStatus {
    /// Whether the status is final (a re-upload costs O(1)).
    pub fn is_final(self) -> bool {
        !matches!(self, FileStatus::Ingesting)
    }

    /// The attribute value of this status.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Ingesting => "ingesting",
            FileStatus::Complete => "complete",
            FileStatus::Failed => "failed",
        }
    }
}

/// One file, identified by its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `F#{file_id}`.
    pub pk: String,
    /// Always 0.
    pub sk: u64,
    /// Always [`ItemKind::Manifest`].
    pub kind: ItemKind,
    /// SHA-256 of the content, hex.
    pub file_id: String,
    /// The dataset.
    pub dataset: String,
    /// Its definition version.
    pub dataset_version: u32,
    /// The bucket it was first seen in.
    pub bucket: String,
    /// Every object key it was seen under.
    #[serde(with = "serde_dynamo::string_set")]
    pub keys: BTreeSet<String>,
    /// Object size in bytes.
    pub size: u64,
    /// Where it stands.
    pub status: FileStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The header, once read: a resumed run needs it to read from the middle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Vec<String>>,
    /// Lines (records after the header) up to the checkpoint, or in all once complete.
    #[serde(default)]
    pub rows: u64,
    /// Accepted lines among them.
    #[serde(default)]
    pub accepted: u64,
    /// Rejected lines among them.
    #[serde(default)]
    pub rejected: u64,
    /// Events this file's runs wrote.
    #[serde(default)]
    pub written: u64,
    /// Events a run found already written (by an earlier, interrupted run).
    #[serde(default)]
    pub already_present: u64,
    /// Last line known written, with every line before it.
    #[serde(default)]
    pub checkpoint_line: u64,
    /// Byte offset just past that line: a resumed run reads from here.
    #[serde(default)]
    pub checkpoint_byte: u64,
    /// Runs that worked on the file.
    #[serde(default)]
    pub attempts: u32,
    /// Times the content was uploaded (any key).
    #[serde(default)]
    pub uploads: u64,
    /// Until when (epoch ms) a run holds the file; others wait.
    #[serde(default)]
    pub lease_until: i64,
    /// When first seen (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// When the status became final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The file is ingested in chunks ([`Chunk`]); its counters are the sums
    /// of its finished chunks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chunked: bool,
    /// How far the plan has come: the byte where the next chunk starts...
    #[serde(default)]
    pub plan_byte: u64,
    /// ...and the line it starts at.
    #[serde(default)]
    pub plan_line: u64,
    /// Chunks planned (and their tasks sent) so far.
    #[serde(default)]
    pub chunks_planned: u64,
    /// Chunks in all, once the plan is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks_total: Option<u64>,
    /// The chunks whose lines are written and counted here: each is added
    /// once, under a condition, so its counts are too.
    #[serde(
        default,
        with = "serde_dynamo::number_set",
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub chunks_done: BTreeSet<u64>,
}

impl Manifest {
    /// Whether a chunked file's plan is complete and every chunk done.
    pub fn all_chunks_done(&self) -> bool {
        self.chunks_total.is_some_and(|t| self.chunks_done.len() as u64 == t)
    }

    /// A manifest for content seen for the first time.
    pub fn new(
        file_id: &str,
        dataset: &str,
        dataset_version: u32,
        bucket: &str,
        key: &str,
        size: u64,
        now: &str,
    ) -> Self {
        Manifest {
            pk: keys::manifest_pk(file_id),
            sk: 0,
            kind: ItemKind::Manifest,
            file_id: file_id.to_owned(),
            dataset: dataset.to_owned(),
            dataset_version,
            bucket: bucket.to_owned(),
            keys: BTreeSet::from([key.to_owned()]),
            size,
            status: FileStatus::Ingesting,
            reason: None,
            header: None,
            rows: 0,
            accepted: 0,
            rejected: 0,
            written: 0,
            already_present: 0,
            checkpoint_line: 0,
            checkpoint_byte: 0,
            attempts: 0,
            uploads: 1,
            lease_until: 0,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            completed_at: None,
            chunked: false,
            plan_byte: 0,
            plan_line: 0,
            chunks_planned: 0,
            chunks_total: None,
            chunks_done: BTreeSet::new(),
        }
    }
}

/// Where a chunk stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkStatus {
    /// Planned; its lines are being (or will be) written.
    Pending,
    /// Every line written and counted in the manifest.
    Done,
}

impl ChunkStatus {
    /// The attribute value of this status.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkStatus::Pending => "pending",
            ChunkStatus::Done => "done",
        }
    }
}

/// One part of a big file: a byte range that starts at a record, and the
/// line number of that record, so its events have the keys a serial ingest
/// gives them. Stored beside the manifest (same `pk`, `sk` = index + 1)
/// before its task is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// `F#{file_id}`, the manifest's.
    pub pk: String,
    /// [`keys::chunk_sk`] of the index.
    pub sk: u64,
    /// Always [`ItemKind::Chunk`].
    pub kind: ItemKind,
    /// The file.
    pub file_id: String,
    /// 0-based position in the plan.
    pub index: u64,
    /// First byte (a record's first byte, or 0).
    pub start_byte: u64,
    /// Byte just past the last.
    pub end_byte: u64,
    /// Number of the first record in the range.
    pub first_line: u64,
    /// Records in the range, when the scan could count them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
    /// Where it stands.
    pub status: ChunkStatus,
    /// Lines read up to the checkpoint.
    #[serde(default)]
    pub rows: u64,
    /// Accepted among them.
    #[serde(default)]
    pub accepted: u64,
    /// Rejected among them.
    #[serde(default)]
    pub rejected: u64,
    /// Events its runs wrote.
    #[serde(default)]
    pub written: u64,
    /// Events a run found already written.
    #[serde(default)]
    pub already_present: u64,
    /// Last line known written, with every line of the chunk before it (0: none).
    #[serde(default)]
    pub checkpoint_line: u64,
    /// Byte just past that line (0: none).
    #[serde(default)]
    pub checkpoint_byte: u64,
    /// Until when (epoch ms) a run holds the chunk.
    #[serde(default)]
    pub lease_until: i64,
    /// Runs that worked on it.
    #[serde(default)]
    pub attempts: u32,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl Chunk {
    /// A planned, not yet started chunk.
    pub fn planned(
        file_id: &str,
        index: u64,
        start_byte: u64,
        end_byte: u64,
        first_line: u64,
        lines: Option<u64>,
        now: &str,
    ) -> Self {
        Chunk {
            pk: keys::manifest_pk(file_id),
            sk: keys::chunk_sk(index),
            kind: ItemKind::Chunk,
            file_id: file_id.to_owned(),
            index,
            start_byte,
            end_byte,
            first_line,
            lines,
            status: ChunkStatus::Pending,
            rows: 0,
            accepted: 0,
            rejected: 0,
            written: 0,
            already_present: 0,
            checkpoint_line: 0,
            checkpoint_byte: 0,
            lease_until: 0,
            attempts: 0,
            updated_at: now.to_owned(),
        }
    }
}

/// What became of one upload of an object key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadOutcome {
    /// New content: its lines are ingested.
    New,
    /// Content seen before (under this or another key): nothing new written.
    Duplicate,
    /// The object could not be read (gone, unreadable): see the manifest.
    Failed,
}

/// The latest upload under one object key, pointing at its content's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// `K#{bucket}/{key}`.
    pub pk: String,
    /// Always 0.
    pub sk: u64,
    /// Always [`ItemKind::Upload`].
    pub kind: ItemKind,
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// The content's identity.
    pub file_id: String,
    /// New or duplicate.
    pub outcome: UploadOutcome,
    /// When seen (RFC 3339).
    pub seen_at: String,
}

impl Upload {
    /// The upload record of `bucket/key`.
    pub fn new(bucket: &str, key: &str, file_id: &str, outcome: UploadOutcome, now: &str) -> Self {
        Upload {
            pk: keys::upload_pk(bucket, key),
            sk: 0,
            kind: ItemKind::Upload,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            file_id: file_id.to_owned(),
            outcome,
            seen_at: now.to_owned(),
        }
    }
}

/// An estimate of an item's stored size by DynamoDB's rules (names plus
/// values; numbers about half their digits; a few bytes per list/map entry),
/// erring on the large side.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len() / 2 + 2,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len() / 2 + 2).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(l) => 3 + l.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, x)| 1 + k.len() + value_size(x)).sum::<usize>(),
        _ => 0,
    }
}

mod opt_bytes {
    //! `Option<Vec<u8>>` as a DynamoDB binary (`B`), not a list of numbers.
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(|b| serde_bytes::Bytes::new(b)).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<serde_bytes::ByteBuf>::deserialize(d)?.map(|b| b.into_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_dynamodb_items() {
        let fields = Fields::from([("quantity".to_owned(), "2".to_owned())]);
        let ok = EventItem::accepted("f", 7, "orders", 1, fields.clone());
        let map: FieldMap = fields.into_iter().map(|(k, v)| (k, AttributeValue::S(v))).collect();
        let item = accepted_item("f", 7, "orders", 1, map);
        assert_eq!(item, to_item(&ok), "the direct builder and the serde layout agree");
        assert_eq!(item["pk"].as_s().unwrap(), "E#f#0");
        assert_eq!(item["sk"].as_n().unwrap(), "7");
        assert_eq!(item["event_type"].as_s().unwrap(), "row.accepted");
        let back: EventItem = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back, ok);

        let bad = EventItem::rejected("f", 1234, "orders", 1, b"a,\xff", Rejection::line("nope"));
        let item = to_item(&bad);
        assert_eq!(item["pk"].as_s().unwrap(), "E#f#1");
        assert!(item["raw_bytes"].is_b(), "non-UTF-8 raw is kept as binary: {item:?}");
        let back: EventItem = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back.raw_bytes.as_deref(), Some(&b"a,\xff"[..]));
    }

    #[test]
    fn a_huge_rejected_line_is_cut_to_fit_an_item() {
        let big = "x".repeat(MAX_ITEM_BYTES);
        let item = to_item(&EventItem::rejected(
            "f",
            1,
            "untyped",
            1,
            big.as_bytes(),
            Rejection::line("too big"),
        ));
        let ev: EventItem = serde_dynamo::from_item(item.clone()).unwrap();
        assert!(ev.raw_truncated);
        assert!(item_size(&item) <= MAX_ITEM_BYTES);
    }

    #[test]
    fn manifest_keys_are_a_string_set() {
        let m = Manifest::new("f", "orders", 1, "b", "orders/a.csv", 10, "2024-01-01T00:00:00Z");
        let item = to_item(&m);
        assert!(item["keys"].is_ss(), "{:?}", item["keys"]);
        assert_eq!(item["status"].as_s().unwrap(), "ingesting");
        let back: Manifest = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back, m);
    }
}
