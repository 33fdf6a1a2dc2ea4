//! `pipeline run` as a library call: state persists across stacks, and a
//! second run of the same files writes nothing.

mod common;

use std::path::PathBuf;

use schema::items::{FileStatus, UploadOutcome};

#[tokio::test]
async fn run_twice_then_everything_is_a_duplicate() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(input.join("orders/sub dir")).unwrap();
    std::fs::write(input.join("orders/a.csv"), common::orders(30, 1)).unwrap();
    std::fs::write(input.join("orders/sub dir/b.csv"), common::data("orders/bad-lines.csv")).unwrap();
    std::fs::write(input.join("notes.txt"), "not a csv").unwrap();
    let state = tmp.path().join("state");
    let paths: Vec<PathBuf> = vec![input.clone()];

    let first = pipeline::local::run(&state, &paths).await.unwrap();
    let keys: Vec<&str> = first.files.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["orders/a.csv", "orders/sub dir/b.csv"]);
    assert!(first.failed_messages.is_empty());
    let b = &first.files[1];
    assert_eq!(
        (b.outcome, b.status, b.rows, b.accepted, b.rejected),
        (UploadOutcome::New, FileStatus::Complete, 15, 4, 11)
    );
    assert_eq!(first.files.iter().map(|f| f.written).sum::<u64>(), 45);
    assert_eq!(first.events_projected, 45, "every line folded once");
    assert!(first.aggregates_changed > 0 && first.feed_messages > 0);
    let stats: Vec<_> = first
        .aggregates
        .iter()
        .filter(|a| a.aggregate == "file_stats")
        .collect();
    assert_eq!(stats.len(), 2, "one statistics group per file");
    let lines: u64 = first
        .aggregates
        .iter()
        .filter(|a| a.aggregate == "units_by_category")
        .map(|a| a.measures["lines"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(lines, 30 + 4, "accepted lines of both files, by category");

    // A new stack on the same state directory: the files are known by content.
    let second = pipeline::local::run(&state, &paths).await.unwrap();
    assert!(
        second.files.iter().all(|f| f.outcome == UploadOutcome::Duplicate),
        "{:?}",
        second.files
    );
    assert_eq!(second.files.iter().map(|f| f.written).sum::<u64>(), 0);
    assert_eq!((second.files[1].rows, second.files[1].rejected), (15, 11));
    assert!(
        second.dynamodb_requests <= 5 * 2,
        "{} requests",
        second.dynamodb_requests
    );
}
