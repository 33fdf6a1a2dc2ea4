//! `pipeline up` serves clients that are not ours: boto3 (PyPI, pinned in
//! scripts/requirements-checks.txt, installed by scripts/tools.sh) uploads a
//! file with its own S3 client, the stack's notification, ingest, projector
//! and feed run, and boto3's SQS client reads the result off the feed. The
//! README's Python consumer (examples/feed_consumer.py) subscribes its own
//! queue to the feed topic first, and ends with a read model equal to the
//! aggregates table.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn boto3_uploads_to_pipeline_up_and_reads_the_feed() {
    let tools = Command::new(repo().join("scripts/tools.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/tools.sh runs (it needs python3 with venv and pip)");
    assert!(tools.status.success(), "installing the pinned PyPI tools failed");
    let bin = PathBuf::from(String::from_utf8(tools.stdout).unwrap().trim());

    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let _up = Up(Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .current_dir(repo())
        .arg("--state")
        .arg(&state)
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
        .unwrap());
    let up_json = state.join("up.json");
    let start = Instant::now();
    while !up_json.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "pipeline up did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The README's consumer, configured as any boto3 program is.
    let up: serde_json::Value = serde_json::from_slice(&std::fs::read(&up_json).unwrap()).unwrap();
    let endpoint = |k: &str| up[k].as_str().unwrap().to_owned();
    let mut consumer = Command::new(bin.join("python"))
        .current_dir(repo())
        .args(["examples/feed_consumer.py", "python-consumer"])
        .args(["--until-file", "uploads/orders/from-boto3.csv"])
        .args(["--check-table", "csv-pipeline-aggregates"])
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "localsecret")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_SQS", endpoint("sqs"))
        .env("AWS_ENDPOINT_URL_SNS", endpoint("sns"))
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint("dynamodb"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(consumer.stdout.take().unwrap()));
    let first = lines.next().expect("the consumer says it subscribed").unwrap();
    assert!(first.contains("subscribed"), "{first}");

    let out = Command::new(bin.join("python"))
        .current_dir(repo())
        .arg("pipeline/tests/boto3_client.py")
        .arg(&up_json)
        .arg("data/orders/2024-q1-retail.csv")
        .arg("uploads/orders/from-boto3.csv")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the boto3 client failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let done = &v["completed"];
    assert_eq!(done["status"], "complete");
    assert_eq!(
        (done["rows"].as_u64(), done["accepted"].as_u64()),
        (Some(800), Some(800))
    );
    assert!(v["aggregate_changes"].as_u64().unwrap() > 0, "{v}");

    let last = lines.map(Result::unwrap).last().expect("the consumer's result");
    let status = consumer.wait().unwrap();
    let r: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert!(status.success(), "the Python consumer: {r}");
    assert_eq!(r["equals_table"], true, "{r}");
    assert!(r["groups"].as_u64().unwrap() > 0 && r["poison"] == 0, "{r}");
}
