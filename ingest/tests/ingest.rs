//! The ingest on the local stack: real handlers, real SDK clients, emulators
//! speaking the AWS wire protocols.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{batch, data, env, env_with, notification, orders, Env};
use ingest::handler;
use schema::items::{EventItem, EventType, FileStatus, UploadOutcome};

#[derive(Debug, serde::Deserialize)]
struct Expected {
    status: String,
    rows: u64,
    accepted: u64,
    rejected: u64,
    #[serde(default)]
    reason: Option<String>,
}

fn expected() -> BTreeMap<String, Expected> {
    serde_json::from_slice(&data("expected.json")).unwrap()
}

/// Every file of `data/`, through the SQS handler as Lambda would call it.
#[tokio::test]
async fn data_dir_every_line_is_exactly_one_event() {
    let env = env().await;
    let expected = expected();
    let mut messages = Vec::new();
    let mut ids = BTreeMap::new();
    for key in expected.keys() {
        let id = env.put(key, &data(key)).await;
        ids.insert(key.clone(), id);
        messages.push(notification(&format!("m-{key}"), env.bucket(), key));
    }
    let response = handler::handle_batch(&env.ingester, batch(messages), None).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "no message fails: {:?}",
        response.batch_item_failures
    );

    let mut total_events = 0;
    for (key, want) in &expected {
        let m = env.manifest(&ids[key]).await;
        assert_eq!(m.status.as_str(), want.status, "{key}: {m:?}");
        assert_eq!(
            (m.rows, m.accepted, m.rejected),
            (want.rows, want.accepted, want.rejected),
            "{key}"
        );
        if let Some(reason) = &want.reason {
            assert!(
                m.reason.as_deref().unwrap_or("").contains(reason.as_str()),
                "{key}: {:?}",
                m.reason
            );
        }
        let events = env.events(&ids[key], m.rows).await;
        assert_eq!(events.len() as u64, want.rows, "{key}: one event per line");
        let lines: Vec<u64> = events.iter().map(|e| e.sk).collect();
        assert_eq!(
            lines,
            (1..=want.rows).collect::<Vec<_>>(),
            "{key}: lines 1..=n, no gap, no duplicate"
        );
        let accepted = events.iter().filter(|e| e.event_type == EventType::Accepted).count() as u64;
        assert_eq!(accepted, want.accepted, "{key}");
        for e in events.iter().filter(|e| e.event_type == EventType::Rejected) {
            assert!(
                e.reason.as_deref().is_some_and(|r| !r.is_empty()),
                "{key} line {}: a reason",
                e.sk
            );
            assert!(
                e.raw.is_some() || e.raw_bytes.is_some(),
                "{key} line {}: the raw line",
                e.sk
            );
        }
        total_events += events.len();
    }
    // Events, one manifest per file and one upload record per key: nothing else.
    assert_eq!(env.item_count().await, total_events + 2 * expected.len());
}

/// Each kind of bad line in `data/orders/bad-lines.csv`, with its reason.
#[tokio::test]
async fn bad_lines_each_get_their_reason() {
    let env = env().await;
    let key = "orders/bad-lines.csv";
    let id = env.put(key, &data(key)).await;
    let report = env.ingester.ingest_object(&env.object(key), None).await.unwrap();
    assert_eq!(report.status, FileStatus::Complete);
    let events = env.events(&id, report.progress.rows).await;
    let got: Vec<(u64, Option<&str>, String)> = events
        .iter()
        .map(|e| {
            (
                e.sk,
                e.column.as_deref(),
                e.reason.clone().unwrap_or_else(|| "accepted".into()),
            )
        })
        .collect();
    let want: &[(u64, Option<&str>, &str)] = &[
        (1, None, "accepted"),
        (2, Some("quantity"), "\"three\" is not an integer"),
        (3, Some("unit_price"), "\"1e3\" is not a decimal"),
        (4, Some("ordered_at"), "is not a timestamp"),
        (5, Some("customer_id"), "required column \"customer_id\" is empty"),
        (6, None, "ragged line: 7 fields where the header has 11"),
        (7, None, "ragged line: 12 fields where the header has 11"),
        (8, None, "accepted"),
        (9, None, "accepted"),
        (10, Some("gift"), "\"maybe\" is not a boolean"),
        (11, Some("quantity"), "is not an integer"),
        (12, Some("category"), "invalid UTF-8"),
        (13, None, "longer than the limit of 65536 bytes"),
        (14, None, "accepted"),
        (15, None, "unbalanced quote: ragged line"),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((line, col, reason), (wl, wc, wr)) in got.iter().zip(want) {
        assert_eq!((line, col), (wl, wc), "line {line}: {reason}");
        assert!(reason.contains(wr), "line {line}: {reason:?} should contain {wr:?}");
    }
    // Kept as written: the quoted comma and escaped quotes of line 8, the quoted
    // line break of line 9; the unbalanced quote of the last line alone.
    assert_eq!(events[7].fields.as_ref().unwrap()["sku"], "SKU-9, the \"deluxe\" one");
    assert_eq!(events[8].fields.as_ref().unwrap()["category"], "multi\nline category");
    assert!(events[14].raw.as_deref().unwrap().starts_with("b-8,"));
    assert_eq!(
        events[11].raw_bytes.as_deref().map(|b| b.contains(&0xe9)),
        Some(true),
        "non-UTF-8 kept as bytes"
    );
    let long_line = data("orders/bad-lines.csv")
        .split(|&b| b == b'\n')
        .nth(14)
        .unwrap()
        .len();
    assert_eq!(
        events[12].raw.as_deref().map(str::len),
        Some(long_line),
        "over-long line kept whole"
    );
    assert_eq!(
        events[13].fields.as_ref().unwrap()["ordered_at"],
        "2024-02-01T10:10:00Z"
    );
}

/// Files the ingest refuses as a whole get a failed manifest with the reason.
#[tokio::test]
async fn bad_files_fail_with_a_reason_and_lose_nothing() {
    let env = env().await;
    let cases: &[(&str, &[u8], &str)] = &[
        ("orders/empty.csv", b"", "empty file: no header line"),
        ("orders/blank.csv", b"\n\n", "empty file: no header line"),
        (
            "orders/missing.csv",
            b"order_id,ordered_at\no-1,2024-01-01T00:00:00Z\n",
            "missing required column",
        ),
        (
            "orders/unknown.csv",
            b"order_id,ordered_at,customer_id,country,sku,category,quantity,unit_price,currency,colour\n",
            "unknown column \"colour\"",
        ),
        ("orders/dup.csv", b"order_id,order_id\n", "twice"),
        // Latin-1 ("ordér_id"): not UTF-8, and no byte-order mark to name it.
        ("orders/bin.csv", b"ord\xe9r_id,x\n1,2\n", "not valid UTF-8"),
    ];
    for (key, bytes, reason) in cases {
        let id = env.put(key, bytes).await;
        let report = env.ingester.ingest_object(&env.object(key), None).await.unwrap();
        assert_eq!(report.status, FileStatus::Failed, "{key}");
        let m = env.manifest(&id).await;
        assert_eq!(m.status, FileStatus::Failed, "{key}");
        assert!(m.reason.as_deref().unwrap().contains(reason), "{key}: {:?}", m.reason);
        assert_eq!(m.keys.iter().collect::<Vec<_>>(), [key], "{key}");
    }
    // Header only: a complete file with no lines.
    let key = "orders/header-only.csv";
    let id = env.put(key, &data(key)).await;
    let report = env.ingester.ingest_object(&env.object(key), None).await.unwrap();
    assert_eq!((report.status, report.progress.rows), (FileStatus::Complete, 0));
    assert_eq!(env.manifest(&id).await.status, FileStatus::Complete);
}

/// Re-uploads, under the same key and another one: no new events, and a
/// number of requests that does not depend on the size of the file.
#[tokio::test]
async fn re_uploads_write_nothing_and_cost_o1_requests() {
    let env = env().await;
    let mut costs = Vec::new();
    for (n, seed) in [(50u64, 1u64), (3000, 2)] {
        let body = orders(n, seed);
        let key = format!("orders/size-{n}.csv");
        let id = env.put(&key, &body).await;
        env.counter.reset();
        let first = env.ingester.ingest_object(&env.object(&key), None).await.unwrap();
        assert_eq!(
            (first.outcome, first.progress.rows, first.progress.written),
            (UploadOutcome::New, n, n)
        );
        let first_cost = env.counter.snapshot();
        println!("first ingest of {n} lines: {first_cost:?}");
        let puts = first_cost["DynamoDB:PutItem"];
        // One PutItem per line, plus the manifest and the upload record.
        assert_eq!(puts, n + 2, "{first_cost:?}");
        let items = env.item_count().await;

        for again in [key.clone(), format!("orders/copy-of-size-{n}.csv")] {
            env.put(&again, &body).await;
            env.counter.reset();
            let r = env.ingester.ingest_object(&env.object(&again), None).await.unwrap();
            assert_eq!(r.outcome, UploadOutcome::Duplicate, "{again}");
            assert_eq!(
                (r.progress.rows, r.progress.accepted),
                (n, n),
                "{again}: the file's counts"
            );
            costs.push((n, env.counter.snapshot()));
        }
        let m = env.manifest(&id).await;
        assert_eq!(m.uploads, 3);
        assert!(m.keys.contains(&format!("orders/copy-of-size-{n}.csv")) && m.keys.contains(&key));
        // No new events: only the upload record of the new key.
        assert_eq!(env.item_count().await, items + 1);
    }
    println!("re-upload costs: {costs:?}");
    for (n, cost) in &costs {
        let ddb: u64 = cost
            .iter()
            .filter(|(k, _)| k.starts_with("DynamoDB:"))
            .map(|(_, v)| v)
            .sum();
        assert!(ddb <= 5, "re-upload of {n} lines: {ddb} DynamoDB requests: {cost:?}");
    }
    assert!(
        costs.windows(2).all(|w| w[0].1 == w[1].1),
        "same cost whatever the size: {costs:?}"
    );
}

/// A failure after N writes, then the retry: the same events and counts as a clean run.
#[tokio::test]
async fn a_crash_after_n_writes_then_the_retry_equals_a_clean_run() {
    let body = orders(2600, 9);
    let key = "orders/crash.csv";

    let clean = env().await;
    let id = clean.put(key, &body).await;
    let clean_report = clean.ingester.ingest_object(&clean.object(key), None).await.unwrap();
    let clean_events = clean.events(&id, 2600).await;

    let env = env_with(|mut c| {
        c.checkpoint_every = 500;
        c
    })
    .await;
    env.put(key, &body).await;
    env.fault.arm(1234);
    let err = env.ingester.ingest_object(&env.object(key), None).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    let m = env.manifest(&id).await;
    assert_eq!(m.status, FileStatus::Ingesting);
    assert!(
        m.checkpoint_line >= 1000 && m.checkpoint_line <= 1234,
        "checkpoint at {}",
        m.checkpoint_line
    );
    assert_eq!(m.checkpoint_line, m.rows);
    assert!(m.checkpoint_byte > 0);
    assert_eq!(m.lease_until, 0, "a stopped run releases its lease");

    env.fault.disarm();
    env.counter.reset();
    let retry = env.ingester.ingest_object(&env.object(key), None).await.unwrap();
    assert_eq!(retry.status, FileStatus::Complete);
    // The retry read from the checkpoint: one ranged GET, and no puts for lines before it.
    let cost = env.counter.snapshot();
    assert_eq!(cost["S3:GetObject"], 1, "{cost:?}");
    assert!(cost["DynamoDB:PutItem"] <= 2600 - m.checkpoint_line + 2, "{cost:?}");

    let events = env.events(&id, 2600).await;
    assert_eq!(events, clean_events, "the same events as a clean run");
    let (a, b) = (retry.progress, clean_report.progress);
    assert_eq!((a.rows, a.accepted, a.rejected), (b.rows, b.accepted, b.rejected));
    assert_eq!(
        a.written + a.already_present,
        a.rows,
        "each line written once or found present"
    );
    assert_eq!(a.written, 2600, "every event written exactly once across both runs");
}

/// The Lambda deadline: stop in time, keep the checkpoint, fail the message; the retry resumes.
#[tokio::test]
async fn the_deadline_stops_the_run_and_the_retry_resumes() {
    let env = env_with(|mut c| {
        c.deadline_margin = Duration::from_millis(200);
        c.checkpoint_every = 100;
        c.concurrency = 4;
        c
    })
    .await;
    let body = orders(3000, 3);
    let key = "orders/slow.csv";
    let id = env.put(key, &body).await;
    let deadline = Instant::now() + Duration::from_millis(700);
    let message = notification("m-1", env.bucket(), key);
    let response = handler::handle_batch(&env.ingester, common::batch(vec![message.clone()]), Some(deadline)).await;
    assert!(Instant::now() < deadline, "returned before the deadline");
    assert_eq!(response.batch_item_failures.len(), 1, "the message is retried");
    let m = env.manifest(&id).await;
    assert_eq!(m.status, FileStatus::Ingesting);
    assert!(
        m.checkpoint_line > 0 && m.checkpoint_line < 3000,
        "stopped part way: {}",
        m.checkpoint_line
    );

    let response = handler::handle_batch(&env.ingester, common::batch(vec![message]), None).await;
    assert!(response.batch_item_failures.is_empty());
    let m = env.manifest(&id).await;
    assert_eq!((m.status, m.rows, m.accepted), (FileStatus::Complete, 3000, 3000));
    assert_eq!(env.events(&id, 3000).await.len(), 3000);
}

/// A batch with good and bad messages: only the bad ones are reported.
#[tokio::test]
async fn only_failed_messages_are_retried() {
    let env = env().await;
    let key = "orders/good file.csv";
    env.put(key, &orders(10, 4)).await;
    let mut garbage = aws_lambda_events::sqs::SqsMessage::default();
    garbage.message_id = Some("garbage".into());
    garbage.body = Some("this is not json".into());
    let mut test_event = aws_lambda_events::sqs::SqsMessage::default();
    test_event.message_id = Some("test".into());
    test_event.body = Some(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#.into());
    let good = notification("good", env.bucket(), key);
    let vanished = notification("vanished", env.bucket(), "orders/never-uploaded.csv");
    let response = handler::handle_batch(&env.ingester, batch(vec![garbage, good, test_event, vanished]), None).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["garbage"],
        "only the unparseable message fails (and ends in the DLQ)"
    );
}

/// An object deleted before it was read: a failed manifest, not a poison message.
#[tokio::test]
async fn a_vanished_object_gets_a_failed_manifest() {
    let env = env().await;
    let report = env
        .ingester
        .ingest_object(&env.object("orders/gone.csv"), None)
        .await
        .unwrap();
    assert_eq!(
        (report.outcome, report.status),
        (UploadOutcome::Failed, FileStatus::Failed)
    );
    let m = env.manifest(&report.file_id).await;
    assert!(m.reason.unwrap().contains("no longer exists"));
    // The same notification again is idempotent.
    let again = env
        .ingester
        .ingest_object(&env.object("orders/gone.csv"), None)
        .await
        .unwrap();
    assert_eq!(again.file_id, report.file_id);
}

/// A key with spaces, unicode and a plus, delivered as S3 encodes it.
#[tokio::test]
async fn encoded_keys_reach_the_right_object() {
    let env = env().await;
    let key = "orders/café 2024/€ report + notes.csv";
    let id = env.put(key, &orders(5, 5)).await;
    let msg = notification("m", env.bucket(), key);
    assert!(msg
        .body
        .as_deref()
        .unwrap()
        .contains("caf%C3%A9+2024/%E2%82%AC+report+%2B+notes.csv"));
    let reports = handler::handle_message(&env.ingester, &msg, None).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        (reports[0].file_id.as_str(), reports[0].progress.rows),
        (id.as_str(), 5)
    );
}

/// Content uploaded without a SHA-256 checksum is hashed by reading it once.
#[tokio::test]
async fn objects_without_a_checksum_are_hashed() {
    let env: Env = env().await;
    let body = orders(20, 6);
    env.s3
        .put_object()
        .bucket(env.bucket())
        .key("orders/plain.csv")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let report = env
        .ingester
        .ingest_object(&env.object("orders/plain.csv"), None)
        .await
        .unwrap();
    assert_eq!(report.file_id, schema::keys::file_id_of(&body));
    assert_eq!(report.progress.rows, 20);
    let events: Vec<EventItem> = env.events(&report.file_id, 20).await;
    assert_eq!(events.len(), 20);
}

/// On a versioned bucket the ingest reads the version the notification names
/// (`HeadObject` and every `GetObject`, ranged resumes included), never the
/// key's latest: that is the notified content even if the key is overwritten
/// before the read, and what the role is granted (`s3:GetObjectVersion`).
#[tokio::test]
async fn the_notified_version_is_the_one_read() {
    let env = env_with(|mut c| {
        c.checkpoint_every = 10;
        c
    })
    .await;
    let key = "orders/versioned.csv";
    env.put(key, &orders(40, 9)).await;
    let msg = notification("m", env.bucket(), key);
    // Die after 25 event writes, so the retry resumes with a ranged GetObject.
    env.fault.arm(25);
    assert!(handler::handle_message(&env.ingester, &msg, None).await.is_err());
    env.fault.disarm();
    let reports = handler::handle_message(&env.ingester, &msg, None).await.unwrap();
    assert_eq!(reports[0].progress.rows, 40);
    let reads = env.reads.0.lock().unwrap().clone();
    let ops: std::collections::BTreeSet<&str> = reads.iter().map(|r| r.0).collect();
    assert_eq!(ops, ["GetObject", "HeadObject"].into(), "{reads:?}");
    let version = common::version_of(key);
    for (op, k, v) in &reads {
        assert_eq!((k.as_str(), v.as_deref()), (key, Some(version.as_str())), "{op}");
    }
}

/// DynamoDB throttling on one event write in ten (the request never reaches
/// the table) is absorbed by the store's retry policy: the file completes,
/// every line exactly once, nothing fails.
#[tokio::test]
async fn throttled_writes_never_fail_a_file() {
    let throttle = localstack::testing::Throttle::start(10).await;
    let env = common::env_intercepted(|c| c, vec![localstack::clients::shared(throttle.clone())]).await;
    let key = "orders/throttled.csv";
    let id = env.put(key, &orders(400, 12)).await;
    let reports = handler::handle_message(&env.ingester, &notification("m", env.bucket(), key), None)
        .await
        .unwrap();
    let throttled = throttle.throttled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(throttled >= 40, "{throttled} writes throttled");
    assert_eq!(reports[0].progress.rows, 400);
    let m = env.manifest(&id).await;
    assert_eq!(
        (m.status, m.rows, m.written, m.already_present),
        (FileStatus::Complete, 400, 400, 0),
        "throttled writes were retried, not lost or doubled"
    );
    assert_eq!(env.events(&id, 400).await.len(), 400);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, bytes).unwrap();
    gz.finish().unwrap()
}

/// What an event says, whatever file it belongs to.
fn content(events: &[EventItem]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap();
            for k in ["pk", "file_id", "ingested_at"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v.to_string()
        })
        .collect()
}

/// gzip and zstd uploads (compressed by the reference tools' libraries, read
/// by ours) are ingested like the plain file, event for event, good and bad
/// lines alike; by their magic bytes, whatever the key says.
#[tokio::test]
async fn gzip_and_zstd_files_equal_their_plain_version() {
    let env = env().await;
    let mut plain = Vec::new();
    localstack::generate::orders(
        &mut plain,
        localstack::generate::Spec {
            shape: Default::default(),
            lines: Some(1500),
            bytes: None,
            bad_every: 13,
            seed: 21,
        },
    )
    .unwrap();
    let id = env.put("orders/day.csv", &plain).await;
    env.ingester
        .ingest_object(&env.object("orders/day.csv"), None)
        .await
        .unwrap();
    let want = content(&env.events(&id, 1500).await);
    assert_eq!(want.len(), 1500);
    for (key, bytes) in [
        ("orders/day.csv.gz", gzip(&plain)),
        ("orders/day.csv.zst", zstd::encode_all(&plain[..], 3).unwrap()),
        ("orders/no-suffix-but-gzip.csv", gzip(&plain)),
    ] {
        let id = env.put(key, &bytes).await;
        let report = env.ingester.ingest_object(&env.object(key), None).await.unwrap();
        assert_eq!(
            (report.status, report.progress.rows),
            (FileStatus::Complete, 1500),
            "{key}"
        );
        assert_eq!(content(&env.events(&id, 1500).await), want, "{key}");
    }
}

/// A compressed file cannot be read from a byte offset: a retry after a crash
/// reads it from the start, skips the lines its checkpoint counted without a
/// request, and the result is still every line exactly once.
#[tokio::test]
async fn a_compressed_file_interrupted_then_retried_is_exact() {
    let env = env_with(|mut c| {
        c.checkpoint_every = 200;
        c
    })
    .await;
    let body = gzip(&orders(1200, 4));
    let key = "orders/crash.csv.gz";
    let id = env.put(key, &body).await;
    env.fault.arm(700);
    assert!(env.ingester.ingest_object(&env.object(key), None).await.is_err());
    let m = env.manifest(&id).await;
    assert_eq!(
        (m.status, m.checkpoint_byte),
        (FileStatus::Ingesting, 0),
        "no byte to resume at"
    );
    assert!(m.checkpoint_line >= 600, "checkpointed at {}", m.checkpoint_line);
    env.fault.disarm();
    env.counter.reset();
    let retry = env.ingester.ingest_object(&env.object(key), None).await.unwrap();
    let p = retry.progress;
    assert_eq!(
        (retry.status, p.rows, p.written + p.already_present),
        (FileStatus::Complete, 1200, 1200)
    );
    let puts = env.counter.snapshot()["DynamoDB:PutItem"];
    assert!(
        puts <= 1200 - m.checkpoint_line + 2,
        "no put for the lines the checkpoint counted: {puts} puts"
    );
    let clean = env_with(|c| c).await;
    let clean_id = clean.put(key, &body).await;
    clean.ingester.ingest_object(&clean.object(key), None).await.unwrap();
    assert_eq!(env.events(&id, 1200).await, clean.events(&clean_id, 1200).await);
}

/// Text in another encoding than UTF-8, plain or compressed, fails the file
/// with a reason that names the encoding and what to do; no event is written.
#[tokio::test]
async fn utf16_files_fail_naming_their_encoding() {
    let env = env().await;
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(
            "order_id,ordered_at\n1,2024-01-01\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    for (key, bytes) in [
        ("orders/excel.csv", utf16.clone()),
        ("orders/excel.csv.gz", gzip(&utf16)),
    ] {
        let id = env.put(key, &bytes).await;
        let report = env.ingester.ingest_object(&env.object(key), None).await.unwrap();
        let reason = report.reason.clone().unwrap_or_default();
        assert_eq!(report.status, FileStatus::Failed, "{key}");
        assert!(
            reason.contains("UTF-16 (little-endian)") && reason.contains("UTF-8"),
            "{key}: {reason}"
        );
        assert_eq!(env.manifest(&id).await.reason.as_deref(), Some(reason.as_str()));
        assert!(env.events(&id, 2).await.is_empty());
    }
}

/// A deadline met every few hundred lines: each run checkpoints, sends its
/// notification on as a continuation and reports its message done. The file
/// completes with every line once; every message was received once (the
/// receive count means failed attempts, not progress); nothing reaches the
/// dead-letter queue; nothing waited for a visibility timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuations_carry_a_file_across_deadlines() {
    use localstack::pollers::{queue_depth, SqsPoller};
    let env = env().await;
    let c = env.stack.clients();
    let url = localstack::resources::ensure_queue_with_dlq(&c.sqs, "ingest", "ingest-dlq", 5)
        .await
        .unwrap();
    let dlq = c.sqs.get_queue_url().queue_name("ingest-dlq").send().await.unwrap();
    let mut config = ingest::Config::new(&env.names.events_table);
    config.deadline_margin = Duration::ZERO;
    config.checkpoint_every = 100;
    config.queue_url = Some(url.clone());
    let ingester = ingest::Ingester::new(env.s3.clone(), env.ddb.clone(), schema::Registry::builtin(), config)
        .with_continuations(c.sqs.clone());
    let key = "orders/long.csv";
    let id = env.put(key, &orders(3000, 31)).await;
    let body = notification("first", env.bucket(), key).body.unwrap();
    c.sqs
        .send_message()
        .queue_url(&url)
        .message_body(body)
        .send()
        .await
        .unwrap();

    let poller = SqsPoller::new(c.sqs.clone(), &url, 10).await.unwrap();
    let receive_counts = std::sync::Mutex::new(Vec::new());
    let mut polls = 0;
    while queue_depth(&c.sqs, &url).await.unwrap() > 0 {
        polls += 1;
        assert!(polls < 200, "the file never finished");
        poller
            .poll_once(
                async |event| {
                    for m in &event.records {
                        receive_counts
                            .lock()
                            .unwrap()
                            .push(m.attributes["ApproximateReceiveCount"].clone());
                    }
                    // A short invocation: a few hundred lines, then the deadline.
                    handler::handle_batch(&ingester, event, Some(Instant::now() + Duration::from_millis(150))).await
                },
                1,
            )
            .await
            .unwrap();
    }
    let counts = receive_counts.into_inner().unwrap();
    assert!(counts.len() > 2, "several runs carried the file: {counts:?}");
    assert!(
        counts.iter().all(|c| c == "1"),
        "every message received once: {counts:?}"
    );
    assert_eq!(queue_depth(&c.sqs, dlq.queue_url().unwrap()).await.unwrap(), 0);
    let m = env.manifest(&id).await;
    assert_eq!((m.status, m.rows), (FileStatus::Complete, 3000));
    assert_eq!(env.events(&id, 3000).await.len(), 3000);
}

/// A compressed file that stops decompressing part-way (truncated, or
/// corrupt) fails with that reason: the file's fault, not a read to retry.
#[tokio::test]
async fn a_truncated_gzip_fails_the_file_with_the_reason() {
    let env = env().await;
    let mut body = gzip(&orders(3000, 8));
    body.truncate(body.len() * 2 / 3);
    let key = "orders/cut.csv.gz";
    let id = env.put(key, &body).await;
    let report = env.ingester.ingest_object(&env.object(key), None).await.unwrap();
    let reason = report.reason.unwrap_or_default();
    assert_eq!(report.status, FileStatus::Failed);
    assert!(reason.contains("does not decompress"), "{reason}");
    assert_eq!(env.manifest(&id).await.status, FileStatus::Failed);
}
