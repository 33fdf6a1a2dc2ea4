//! Keys of the events table (DESIGN.md, "Identity, keys and idempotency").
//!
//! | item     | `pk`                      | `sk`  |
//! |----------|---------------------------|-------|
//! | event    | `E#{file_id}#{line/1000}` | line  |
//! | manifest | `F#{file_id}`             | 0     |
//! | upload   | `K#{bucket}/{key}`        | 0     |
//!
//! Events of one file are spread over pages of 1,000 lines, so one file is
//! not capped by a single partition's 1,000 writes a second.

use sha2::{Digest, Sha256};

/// Lines per event partition.
pub const PAGE_SIZE: u64 = 1000;

/// Name of the partition key attribute.
pub const PK: &str = "pk";
/// Name of the sort key attribute.
pub const SK: &str = "sk";

/// A file's identity: the lowercase hex SHA-256 of its bytes.
pub fn file_id_from_digest(digest: &[u8]) -> String {
    hex::encode(digest)
}

/// Hash a whole byte slice into a file id (tests, small files).
pub fn file_id_of(bytes: &[u8]) -> String {
    file_id_from_digest(&Sha256::digest(bytes))
}

/// Partition key of a line's event.
pub fn event_pk(file_id: &str, line: u64) -> String {
    format!("E#{file_id}#{}", line / PAGE_SIZE)
}

/// Partition key of a file's manifest (its sort key is 0).
pub fn manifest_pk(file_id: &str) -> String {
    format!("F#{file_id}")
}

/// Partition key of the upload record of an object key (its sort key is 0).
pub fn upload_pk(bucket: &str, key: &str) -> String {
    format!("K#{bucket}/{key}")
}

/// Pages a file with `lines` lines spans: every event of it is under one of these keys.
pub fn event_pages(file_id: &str, lines: u64) -> impl Iterator<Item = String> + '_ {
    let last = if lines == 0 { 0 } else { lines / PAGE_SIZE };
    (0..=last).map(move |p| format!("E#{file_id}#{p}"))
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
}
