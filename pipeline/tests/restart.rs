//! `pipeline up` killed (SIGKILL) in the middle of an ingest, then started
//! again on the same state: the upload's notification was acknowledged by
//! the local SQS before the kill, so it is still there; the file resumes from
//! its checkpoint and completes with every line exactly once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LINES: u64 = 30_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn pipeline(state: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(repo())
        .arg("--state")
        .arg(state)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("the pipeline binary runs");
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap())
}

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn up(state: &Path) -> Up {
    let up_json = state.join("up.json");
    let _ = std::fs::remove_file(&up_json);
    let child = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(repo())
        .arg("--state")
        .arg(state)
        .args([
            "up",
            "--dynamodb-port",
            "0",
            "--s3-port",
            "0",
            "--sqs-port",
            "0",
            "--sns-port",
            "0",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !up_json.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "pipeline up did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Up(child)
}

/// The file's summary from `pipeline status FILE --json`, once it has one.
fn file(state: &Path) -> Option<serde_json::Value> {
    let (_, out) = pipeline(state, &["status", "orders/big.csv", "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).ok()?;
    rows.first().map(|r| r["file"].clone()).filter(|f| !f.is_null())
}

#[test]
fn a_killed_stack_resumes_the_ingest_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("orders")).unwrap();
    let csv = data.join("orders/big.csv");
    let (code, _) = pipeline(
        &state,
        &[
            "generate",
            "--out",
            csv.to_str().unwrap(),
            "--lines",
            &LINES.to_string(),
            "--bad-every",
            "100",
        ],
    );
    assert_eq!(code, 0);

    let mut first = up(&state);
    let (code, _) = pipeline(&state, &["upload", data.to_str().unwrap()]);
    assert_eq!(code, 0, "upload");
    // Wait until the ingest is under way, then kill the process outright.
    let start = Instant::now();
    let at_kill = loop {
        if let Some(f) = file(&state) {
            if f["status"] == "ingesting" && f["rows"].as_u64().unwrap_or(0) >= 2_000 {
                break f;
            }
            assert_ne!(
                f["status"], "complete",
                "the ingest finished before it could be interrupted"
            );
        }
        assert!(start.elapsed() < Duration::from_secs(300), "the ingest never got going");
        std::thread::sleep(Duration::from_millis(200));
    };
    first.0.kill().unwrap(); // SIGKILL: no shutdown path runs.
    first.0.wait().unwrap();
    let rows_at_kill = at_kill["rows"].as_u64().unwrap();
    assert!(rows_at_kill < LINES, "{at_kill}");
    // Between the processes, status reads the state directory and shows the
    // interrupted file as it was left: ingesting, with its lines so far.
    let between = file(&state).expect("the interrupted file has a record");
    assert_eq!(between["status"], "ingesting", "{between}");
    assert!(between["rows"].as_u64().unwrap() >= rows_at_kill, "{between}");

    let _second = up(&state);
    let start = Instant::now();
    let done = loop {
        if let Some(f) = file(&state).filter(|f| f["status"] != "ingesting") {
            break f;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the file never completed after the restart"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(done["status"], "complete", "{done}");
    let (rows, accepted, rejected) = (
        done["rows"].as_u64().unwrap(),
        done["accepted"].as_u64().unwrap(),
        done["rejected"].as_u64().unwrap(),
    );
    assert_eq!((rows, accepted + rejected), (LINES, LINES), "{done}");
    assert_eq!(rejected, LINES / 100, "{done}");

    // Every line one event, projected once: the aggregates equal a fold of
    // the events (rebuild reports no difference once the stream is drained).
    let start = Instant::now();
    loop {
        let (code, out) = pipeline(&state, &["rebuild", "--json"]);
        if code == 0 {
            let r: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(r["events"].as_u64(), Some(LINES), "every line one event: {r}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "aggregates never matched the events: {out}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}
