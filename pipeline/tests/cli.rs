//! The `pipeline` binary end to end on `data/`, through the real local
//! stack: run, run again, the read commands, rebuild on a healthy and on a
//! damaged store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pipeline::pump::RunSummary;
use rust_decimal::Decimal;
use std::str::FromStr;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Run `pipeline --state STATE ARGS...`: (exit code, stdout).
fn pipeline(state: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(repo())
        .arg("--state")
        .arg(state)
        .args(args)
        .output()
        .expect("the pipeline binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("error:") || out.status.code() == Some(1),
        "{args:?}: {stderr}"
    );
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap())
}

fn json<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[test]
fn cli_end_to_end_on_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");

    // First run: exact counts per file (3 files fail as a whole: exit code 3).
    let (code, out) = pipeline(&state, &["run", "data", "--json"]);
    assert_eq!(code, 3, "failed files need attention: {out}");
    let first: RunSummary = json(&out);
    let expected: BTreeMap<String, serde_json::Value> =
        json(&std::fs::read_to_string(repo().join("data/expected.json")).unwrap());
    assert_eq!(first.files.len(), expected.len());
    for f in &first.files {
        let rel = f.key.strip_prefix("uploads/").expect("under the upload prefix");
        let e = &expected[rel];
        assert_eq!(f.status.as_str(), e["status"].as_str().unwrap(), "{rel}");
        assert_eq!(
            (f.rows, f.accepted, f.rejected),
            (
                e["rows"].as_u64().unwrap(),
                e["accepted"].as_u64().unwrap(),
                e["rejected"].as_u64().unwrap()
            ),
            "{rel}"
        );
        if let Some(reason) = e.get("reason") {
            assert!(
                f.reason.as_deref().unwrap().contains(reason.as_str().unwrap()),
                "{rel}: {:?}",
                f.reason
            );
        }
        assert_eq!(f.written, f.rows, "{rel}: every line written once");
    }
    let lines: u64 = first.files.iter().map(|f| f.rows).sum();
    assert_eq!(first.events_projected, lines, "every event folded once");
    assert_eq!((first.ingest_dead_letters, first.stream_failures), (0, 0));

    // Aggregates equal an independent fold of the CSVs.
    let keys: Vec<String> = expected.keys().cloned().collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let oracle = localstack::testing::oracle(&keys);
    let folded: Vec<_> = first
        .aggregates
        .iter()
        .filter(|a| a.aggregate != "file_stats")
        .collect();
    assert_eq!(folded.len(), oracle.len());
    for a in folded {
        let want = &oracle[&(a.aggregate.clone(), a.group.clone())];
        let live: BTreeMap<String, Decimal> = a
            .measures
            .iter()
            .map(|(n, v)| (n.clone(), Decimal::from_str(v).unwrap()))
            .collect();
        assert_eq!(&live, want, "{a:?}");
    }

    // The feed: one file.completed per file, and messages for the changes.
    let (code, out) = pipeline(&state, &["feed", "--json"]);
    assert_eq!(code, 0);
    let messages: Vec<serde_json::Value> = out.lines().map(json).collect();
    assert_eq!(
        messages.len() as u64,
        first.feed_messages,
        "everything sent is shown once"
    );
    let mut completed: BTreeMap<String, u32> = BTreeMap::new();
    for m in messages.iter().filter(|m| m["type"] == "file.completed") {
        *completed.entry(m["file_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(completed.len(), first.files.len(), "{completed:?}");
    assert!(completed.values().all(|n| *n == 1), "{completed:?}");
    let (_, again) = pipeline(&state, &["feed", "--json"]);
    assert_eq!(again, "", "feed deletes what it showed");

    // Second run: the same content costs nothing.
    let (_, out) = pipeline(&state, &["run", "data", "--json"]);
    let second: RunSummary = json(&out);
    assert!(second
        .files
        .iter()
        .all(|f| f.outcome == schema::items::UploadOutcome::Duplicate));
    assert_eq!(second.files.iter().map(|f| f.written).sum::<u64>(), 0, "no new events");
    assert_eq!((second.events_projected, second.aggregates_changed), (0, 0));

    // A late consumer: a snapshot of the aggregates, then the feed queue (the
    // second run's re-announced files, nothing newer): equal to the table.
    let (code, out) = pipeline(&state, &["feed", "--from-snapshot", "--json"]);
    assert_eq!(code, 0, "{out}");
    let late: serde_json::Value = json(&out);
    assert_eq!(late["equals_aggregates"], true, "{late}");
    assert!(late["snapshot_groups"].as_u64().unwrap() > 500, "{late}");
    assert_eq!(
        (late["applied"].as_u64(), late["poison"].as_u64()),
        (Some(0), Some(0)),
        "{late}"
    );
    assert_eq!(second.aggregates, first.aggregates, "no aggregate changed");

    // Read commands.
    let (code, out) = pipeline(&state, &["status", "--json"]);
    assert_eq!(code, 3, "failed files need attention");
    let rows: Vec<serde_json::Value> = json(&out);
    assert_eq!(rows.len(), expected.len());
    let (code, out) = pipeline(&state, &["status", "orders/bad-lines.csv", "--json"]);
    assert_eq!(code, 0);
    let rows: Vec<serde_json::Value> = json(&out);
    assert_eq!(rows[0]["file"]["rejected"], 11);
    let (code, out) = pipeline(&state, &["rejects", "orders/bad-lines.csv", "--json"]);
    assert_eq!(code, 0);
    let r: serde_json::Value = json(&out);
    let rejects = r["rejects"].as_array().unwrap();
    assert_eq!(rejects.len(), 11);
    assert!(rejects.iter().all(|x| !x["reason"].as_str().unwrap().is_empty()));
    let (code, _) = pipeline(&state, &["status", "orders/never-uploaded.csv"]);
    assert_eq!(code, 1, "an unknown file is an error");
    // An upload S3 never notifies the pipeline of is ignored, and says why.
    put(&state, "uploads/orders/notes.xlsx", b"not a csv");
    let (code, out) = pipeline(&state, &["status", "uploads/orders/notes.xlsx", "--json"]);
    assert_eq!(code, 0);
    let rows: Vec<serde_json::Value> = json(&out);
    assert!(rows[0]["file"].is_null(), "{rows:?}");
    assert!(rows[0]["ignored"].as_str().unwrap().contains(".csv.gz"), "{rows:?}");
    let (code, out) = pipeline(&state, &["aggregates", "orders", "--json"]);
    assert_eq!(code, 0);
    let orders: Vec<pipeline::queries::AggregateRow> = json(&out);
    let want: Vec<_> = first
        .aggregates
        .iter()
        .filter(|a| a.dataset == "orders")
        .cloned()
        .collect();
    assert_eq!(orders, want);

    // Rebuild on a healthy store: no difference.
    let (code, out) = pipeline(&state, &["rebuild", "--json"]);
    let r: serde_json::Value = json(&out);
    assert_eq!((code, r["differences"].as_array().unwrap().len()), (0, 0), "{out}");
    assert_eq!(r["events"].as_u64(), Some(lines));

    // Damage one aggregate on purpose: rebuild reports exactly it.
    let victim = want
        .iter()
        .find(|a| a.aggregate == "units_by_category")
        .unwrap()
        .clone();
    damage(&state, &victim);
    let (code, out) = pipeline(&state, &["rebuild", "--json"]);
    let r: serde_json::Value = json(&out);
    assert_eq!(code, 3, "{out}");
    let d = r["differences"].as_array().unwrap();
    assert_eq!(d.len(), 1, "{out}");
    assert_eq!(d[0]["measure"], "units");
    assert_eq!(d[0]["group"], serde_json::json!(victim.group));
    assert_eq!(d[0]["expected"], victim.measures["units"]);
    assert_eq!(d[0]["live"], "999999");
}

/// Put an object into the embedded stack's bucket, as any S3 client would.
fn put(state: &Path, key: &str, body: &[u8]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let target = pipeline::target::Target::embedded(state, Default::default(), false)
            .await
            .unwrap();
        let bucket = target.deployment.names.bucket.clone();
        localstack::upload::upload_bytes(&target.clients.s3, &bucket, key, body.to_vec())
            .await
            .unwrap();
        target.close().await;
    });
}

/// Overwrite one measure of one aggregate group in the live table.
fn damage(state: &Path, victim: &pipeline::queries::AggregateRow) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let target = pipeline::target::Target::embedded(state, Default::default(), false)
            .await
            .unwrap();
        let pk = schema::keys::group_pk(&victim.dataset, &victim.aggregate, &victim.group);
        target
            .clients
            .dynamodb
            .update_item()
            .table_name(&target.deployment.names.aggregates_table)
            .key(schema::keys::PK, aws_sdk_dynamodb::types::AttributeValue::S(pk))
            .update_expression("SET measures.#u = :v")
            .expression_attribute_names("#u", "units")
            .expression_attribute_values(":v", aws_sdk_dynamodb::types::AttributeValue::S("999999".into()))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .unwrap();
        target.close().await;
    });
}

/// `run --chunk-kib 256` on a 1 MB export: the file is planned into chunks that
/// the local mapping runs side by side; `status` shows them done, and the
/// lines, counts and aggregates equal a serial run's.
#[test]
fn a_chunked_run_equals_a_serial_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("in/orders");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big.csv");
    let (code, _) = pipeline(
        &tmp.path().join("gen"),
        &[
            "generate",
            "--out",
            file.to_str().unwrap(),
            "--size-mb",
            "3",
            "--bad-every",
            "50",
        ],
    );
    assert_eq!(code, 0);
    let input = tmp.path().join("in");
    let input = input.to_str().unwrap();

    let serial_state = tmp.path().join("serial");
    let (code, out) = pipeline(&serial_state, &["run", input, "--json"]);
    assert_eq!(code, 0, "{out}");
    let serial: RunSummary = json(&out);

    let state = tmp.path().join("chunked");
    let (code, out) = pipeline(&state, &["run", input, "--chunk-kib", "256", "--json"]);
    assert_eq!(code, 0, "{out}");
    let chunked: RunSummary = json(&out);
    let (s, c) = (&serial.files[0], &chunked.files[0]);
    assert!(s.chunks.is_none());
    let chunks = c.chunks.expect("planned into chunks");
    assert!(
        chunks.total.unwrap() >= 3 && chunks.done == chunks.total.unwrap(),
        "{chunks:?}"
    );
    assert_eq!(
        (c.status.as_str(), c.rows, c.accepted, c.rejected),
        (s.status.as_str(), s.rows, s.accepted, s.rejected)
    );
    assert!(s.rejected > 0 && s.rows > 10_000, "{s:?}");
    // The same groups and measures; a group's version counts its changes
    // (batching decides those) and file_stats' times are the stream's.
    let measures = |s: &RunSummary| {
        s.aggregates
            .iter()
            .map(|a| {
                let mut m = a.measures.clone();
                m.retain(|k, _| k != "first_seen" && k != "last_seen");
                (a.aggregate.clone(), a.group.clone(), m)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(measures(&chunked), measures(&serial));
    assert_eq!(chunked.ingest_dead_letters, 0);

    let (code, out) = pipeline(&state, &["status", "orders/big.csv"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("chunks {0}/{0} done", chunks.total.unwrap())),
        "{out}"
    );
}
