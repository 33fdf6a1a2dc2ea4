//! Keys of both tables (docs/architecture.md, "Identity, keys and idempotency"). Every
//! key string is built here and nowhere else: stored items are found again by
//! these exact formats, so changing one orphans the data already written.
//!
//! The events table (`pk`, `sk`):
//!
//! | item     | `pk`                      | `sk`  |
//! |----------|---------------------------|-------|
//! | event    | `E#{file_id}#{line/1000}` | line  |
//! | manifest | `F#{file_id}`             | 0     |
//! | chunk    | `F#{file_id}`             | index + 1 |
//! | upload   | `K#{bucket}/{key}`        | 0     |
//!
//! The aggregates table (`pk` only):
//!
//! | item         | `pk`                                          |
//! |--------------|-----------------------------------------------|
//! | group        | `G#{dataset}#{aggregate}#{values as JSON}`    |
//! | applied page | `P#{file_id}#{line/1000}`                     |
//!
//! Events of one file are spread over pages of 1,000 lines, so one file is
//! not capped by a single partition's 1,000 writes a second; the applied
//! bitmaps of the projector use the same pages, one bit per line. A group's
//! values are a JSON array so that any value (one holding `#` included) gives
//! a distinct key.

use sha2::{Digest, Sha256};

/// Lines per event partition (and per applied bitmap).
pub const PAGE_SIZE: u64 = 1000;

/// Name of the partition key attribute (both tables).
pub const PK: &str = "pk";
/// Name of the sort key attribute (events table).
pub const SK: &str = "sk";

/// A file's identity: the lowercase hex SHA-256 of its bytes.
pub fn file_id_from_digest(digest: &[u8]) -> String {
    hex::encode(digest)
}

/// Hash a whole byte slice into a file id (tests, small files).
pub fn file_id_of(bytes: &[u8]) -> String {
    file_id_from_digest(&Sha256::digest(bytes))
}

/// The page a line belongs to.
pub fn page_of(line: u64) -> u64 {
    line / PAGE_SIZE
}

/// What every event's partition key starts with.
pub const EVENT_PK_PREFIX: &str = "E#";

/// Partition key of a line's event.
pub fn event_pk(file_id: &str, line: u64) -> String {
    format!("{EVENT_PK_PREFIX}{file_id}#{}", page_of(line))
}

/// Partition key of a file's manifest (its sort key is 0).
pub fn manifest_pk(file_id: &str) -> String {
    format!("F#{file_id}")
}

/// Sort key of a file's chunk `index` (0-based), beside its manifest (sort key 0).
pub fn chunk_sk(index: u64) -> u64 {
    index + 1
}

/// Partition key of the upload record of an object key (its sort key is 0).
pub fn upload_pk(bucket: &str, key: &str) -> String {
    format!("K#{bucket}/{key}")
}

/// Pages a file with `lines` lines spans: every event of it is under one of these keys.
pub fn event_pages(file_id: &str, lines: u64) -> impl Iterator<Item = String> + '_ {
    let last = if lines == 0 { 0 } else { page_of(lines) };
    (0..=last).map(move |p| format!("E#{file_id}#{p}"))
}

/// Partition key of the applied bitmap of one page of a file, in the
/// aggregates table (`page` as [`page_of`] gives it).
pub fn page_pk(file_id: &str, page: u64) -> String {
    format!("P#{file_id}#{page}")
}

/// Partition key of one group of one aggregate, in the aggregates table:
/// `values` are the group-by values in the order the definition lists them.
pub fn group_pk<S: AsRef<str>>(dataset: &str, aggregate: &str, values: &[S]) -> String {
    let values: Vec<&str> = values.iter().map(|v| v.as_ref()).collect();
    format!(
        "G#{dataset}#{aggregate}#{}",
        serde_json::to_string(&values).expect("strings serialize")
    )
}

/// The prefix shared by the group keys of a dataset (`aggregate: None`) or of
/// one of its aggregates, for scans and filters over the aggregates table.
pub fn group_pk_prefix(dataset: &str, aggregate: Option<&str>) -> String {
    match aggregate {
        Some(a) => format!("G#{dataset}#{a}#"),
        None => format!("G#{dataset}#"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_hold_a_thousand_lines() {
        assert_eq!(event_pk("ab", 1), "E#ab#0");
        assert_eq!(event_pk("ab", 999), "E#ab#0");
        assert_eq!(event_pk("ab", 1000), "E#ab#1");
        let pages: Vec<_> = event_pages("ab", 2500).collect();
        assert_eq!(pages, ["E#ab#0", "E#ab#1", "E#ab#2"]);
        assert!(event_pages("ab", 2500).any(|p| p == event_pk("ab", 2500)));
    }

    #[test]
    fn file_id_is_sha256_hex() {
        assert_eq!(
            file_id_of(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// The formats below are what the aggregates table already holds.
    #[test]
    fn aggregates_table_keys_keep_their_stored_format() {
        assert_eq!(page_pk("ab", 0), "P#ab#0");
        assert_eq!(page_pk("ab", page_of(999)), "P#ab#0");
        assert_eq!(page_pk("ab", page_of(1000)), "P#ab#1");
        assert_eq!(
            group_pk("orders", "revenue_by_day_country", &["2024-01-01", "DE", "EUR"]),
            r#"G#orders#revenue_by_day_country#["2024-01-01","DE","EUR"]"#
        );
        let owned = vec!["a#b".to_owned(), "c\"d".to_owned()];
        assert_eq!(
            group_pk("untyped", "file_stats", &owned),
            r#"G#untyped#file_stats#["a#b","c\"d"]"#
        );
        assert_eq!(group_pk::<&str>("orders", "total", &[]), "G#orders#total#[]");
        // Borrowed and owned values give the same key.
        let refs: Vec<&String> = owned.iter().collect();
        assert_eq!(
            group_pk("untyped", "file_stats", &refs),
            group_pk("untyped", "file_stats", &owned)
        );
    }

    #[test]
    fn group_prefixes_select_a_dataset_or_an_aggregate() {
        let pk = group_pk("orders", "file_stats", &["f"]);
        assert!(pk.starts_with(&group_pk_prefix("orders", None)));
        assert!(pk.starts_with(&group_pk_prefix("orders", Some("file_stats"))));
        assert!(!pk.starts_with(&group_pk_prefix("orders", Some("file"))));
        assert!(!group_pk("orders_eu", "x", &["f"]).starts_with(&group_pk_prefix("orders", None)));
    }
}
