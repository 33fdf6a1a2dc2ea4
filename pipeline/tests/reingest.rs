//! `pipeline reingest` on the local stack: refused for a file unknown,
//! complete or being ingested, each with its reason; a failed file reset,
//! notified and ingested again by the next run of the mappings.

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_dynamodb::types::AttributeValue;

const FAILED: &str = "orders/bad-header-unknown-column.csv";
const GOOD: &str = "orders/2024-q1-retail.csv";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Exit code, stdout, stderr.
fn pipeline(state: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(repo())
        .arg("--state")
        .arg(state)
        .args(args)
        .output()
        .expect("the pipeline binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn status(state: &Path, key: &str) -> serde_json::Value {
    let (_, out, err) = pipeline(state, &["status", key, "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    rows[0]["file"].clone()
}

/// The manifest of `key`'s content, read through the library on the same state.
async fn manifest(state: &Path, key: &str) -> schema::items::Manifest {
    let t = pipeline::target::Target::embedded(state, Default::default(), false)
        .await
        .unwrap();
    let names = &t.deployment.names;
    let upload = pipeline::queries::get_item(
        &t.clients.dynamodb,
        &names.events_table,
        schema::keys::upload_pk(&names.bucket, &format!("{}{key}", names.upload_prefix)),
    )
    .await
    .unwrap()
    .unwrap();
    let upload: schema::Upload = serde_dynamo::from_item(upload).unwrap();
    let m = pipeline::queries::get_item(
        &t.clients.dynamodb,
        &names.events_table,
        schema::keys::manifest_pk(&upload.file_id),
    )
    .await
    .unwrap()
    .unwrap();
    t.close().await;
    serde_dynamo::from_item(m).unwrap()
}

/// Set the status of `key`'s manifest behind the pipeline's back.
async fn set_status(state: &Path, key: &str, status: &str) {
    let m = manifest(state, key).await;
    let t = pipeline::target::Target::embedded(state, Default::default(), false)
        .await
        .unwrap();
    t.clients
        .dynamodb
        .update_item()
        .table_name(&t.deployment.names.events_table)
        .key(schema::keys::PK, AttributeValue::S(m.pk.clone()))
        .key(schema::keys::SK, AttributeValue::N("0".into()))
        .update_expression("SET #s = :s")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":s", AttributeValue::S(status.into()))
        .send()
        .await
        .unwrap();
    t.close().await;
}

#[tokio::test]
async fn a_failed_file_is_ingested_again_and_the_others_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (state, data, again) = (
        tmp.path().join("state"),
        tmp.path().join("data"),
        tmp.path().join("again"),
    );
    std::fs::create_dir_all(data.join("orders")).unwrap();
    std::fs::create_dir_all(again.join("orders")).unwrap();
    for f in [FAILED, GOOD] {
        std::fs::copy(repo().join("data").join(f), data.join(f)).unwrap();
    }
    std::fs::copy(repo().join("data").join(GOOD), again.join(GOOD)).unwrap();
    let (code, _, err) = pipeline(&state, &["run", data.to_str().unwrap(), "--json"]);
    assert_eq!(code, 3, "a failed file needs attention: {err}");
    let before = manifest(&state, FAILED).await;
    assert_eq!(before.status, schema::items::FileStatus::Failed);

    // Refusals, each with its reason and exit code 1.
    let (code, _, err) = pipeline(&state, &["reingest", "orders/never-uploaded.csv"]);
    assert_eq!(code, 1);
    assert!(err.contains("no upload record"), "{err}");
    let (code, _, err) = pipeline(&state, &["reingest", GOOD]);
    assert_eq!(code, 1);
    assert!(err.contains("is complete") && err.contains("800 lines"), "{err}");
    set_status(&state, GOOD, "ingesting").await;
    let (code, _, err) = pipeline(&state, &["reingest", GOOD]);
    assert_eq!(code, 1);
    assert!(err.contains("is being ingested"), "{err}");
    set_status(&state, GOOD, "complete").await;

    // The failed file: reset and notified.
    let (code, out, err) = pipeline(&state, &["reingest", FAILED, "--json"]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["file_id"], before.file_id.as_str());
    assert!(r["previous_reason"].as_str().unwrap().contains("colour"), "{r}");
    let reset = status(&state, FAILED);
    assert_eq!(
        (reset["status"].as_str(), reset["rows"].as_u64()),
        (Some("ingesting"), Some(0)),
        "{reset}"
    );
    assert!(reset["reason"].is_null(), "{reset}");
    // A second reingest while it waits is refused: it is no longer failed.
    let (code, _, err) = pipeline(&state, &["reingest", FAILED]);
    assert_eq!(code, 1);
    assert!(err.contains("is being ingested"), "{err}");

    // The mappings run (the good file uploaded again, a duplicate): the
    // notification is handled, and the failed file is read again by a new
    // run of the ingest, and fails again (its definition is unchanged).
    let (code, _, err) = pipeline(&state, &["run", again.to_str().unwrap(), "--json"]);
    assert!(code == 0 || code == 3, "{code}: {err}");
    let after = manifest(&state, FAILED).await;
    assert_eq!(after.status, schema::items::FileStatus::Failed);
    assert_eq!(after.reason, before.reason, "the same definition fails it the same way");
    assert!(
        after.attempts > before.attempts,
        "read again: {} > {}",
        after.attempts,
        before.attempts
    );
    assert!(after.updated_at > before.updated_at);
    assert_eq!(
        status(&state, GOOD)["status"],
        "complete",
        "the other file is untouched"
    );
}
