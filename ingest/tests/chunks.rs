//! Big files in chunks, on the local stack with real SDK clients: a chunked
//! ingest is item for item the serial one, and stays so when its tasks are
//! duplicated, reordered, killed mid-way, re-driven by a re-upload, or its
//! planner fails after storing part of the plan.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use common::{env, env_intercepted, notification, orders, Env};
use ingest::handler;
use ingest::notification::ChunkTask;
use localstack::pollers::{queue_depth, SqsPoller};
use schema::items::{Chunk, ChunkStatus, FileStatus, Manifest};

type Item = std::collections::HashMap<String, AttributeValue>;

/// A file with everything that matters at a chunk edge: quoted line breaks,
/// escaped quotes, CRLF and lone CR endings, blank lines, bad lines, a BOM,
/// and no line break at the end.
fn tricky(lines: u64) -> Vec<u8> {
    let mut out = b"\xef\xbb\xbfid,note,amount\r\n".to_vec();
    for i in 1..=lines {
        let row = match i % 9 {
            0 => format!("{i},\"two\nlines, \"\"quoted\"\"\",{i}.5\r\n"),
            1 => format!("{i},plain,{i}\n"),
            2 => format!("{i},\"crlf\r\ninside\",1\r\n"),
            3 => format!("{i},ragged\n"),
            4 => format!("{i},\"\",\"\"\n\n"),
            5 => format!("{i},lone cr,2\r"),
            6 => format!("{i},ab\"c,3\n"),
            7 => format!("{i},\"a,b\",\"c\"\"\"\n"),
            _ => format!("{i},x,{}\n", "y".repeat((i % 50) as usize)),
        };
        out.extend_from_slice(row.as_bytes());
    }
    while matches!(out.last(), Some(b'\n' | b'\r')) {
        out.pop();
    }
    out
}

/// Chunk settings small enough to cut test files into dozens of chunks.
fn chunking(mut c: ingest::Config, url: &str) -> ingest::Config {
    c.queue_url = Some(url.to_owned());
    c.chunk_above = 1024;
    c.chunk_bytes = 2048;
    c.checkpoint_every = 50;
    // The tests' invocations last a fraction of a second.
    c.deadline_margin = Duration::ZERO;
    c
}

struct Chunked {
    env: Env,
    sqs: aws_sdk_sqs::Client,
    url: String,
    dlq: String,
    ingester: ingest::Ingester,
}

async fn chunked_env(tune: impl FnOnce(ingest::Config) -> ingest::Config, extra: Vec<SharedInterceptor>) -> Chunked {
    let env = env_intercepted(|c| c, extra).await;
    let sqs = env.stack.clients().sqs;
    let url = localstack::resources::ensure_queue_with_dlq(&sqs, "ingest", "ingest-dlq", 5)
        .await
        .unwrap();
    let dlq = sqs
        .get_queue_url()
        .queue_name("ingest-dlq")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let config = tune(chunking(ingest::Config::new(&env.names.events_table), &url));
    let ingester = ingest::Ingester::new(env.s3.clone(), env.ddb.clone(), schema::Registry::builtin(), config)
        .with_continuations(sqs.clone());
    Chunked {
        env,
        sqs,
        url,
        dlq,
        ingester,
    }
}

impl Chunked {
    async fn notify(&self, key: &str) {
        let body = notification("n", self.env.bucket(), key).body.unwrap();
        self.sqs
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Poll the ingest queue as the event source mapping does until it is
    /// empty; each invocation gets `invocation` before its deadline. Returns
    /// every message's receive count.
    async fn drain(&self, invocation: Option<Duration>) -> Vec<String> {
        let poller = SqsPoller::new(self.sqs.clone(), &self.url, 10).await.unwrap();
        let counts = std::sync::Mutex::new(Vec::new());
        let mut polls = 0;
        while queue_depth(&self.sqs, &self.url).await.unwrap() > 0 {
            polls += 1;
            assert!(polls < 2000, "the queue never emptied");
            let poll = poller
                .poll_once(
                    async |event| {
                        for m in &event.records {
                            counts
                                .lock()
                                .unwrap()
                                .push(m.attributes["ApproximateReceiveCount"].clone());
                        }
                        handler::handle_batch(&self.ingester, event, invocation.map(|d| Instant::now() + d)).await
                    },
                    0,
                )
                .await
                .unwrap();
            if poll.received == 0 {
                // Delayed continuations (a backoff) are counted but not yet visible.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        counts.into_inner().unwrap()
    }

    async fn chunks(&self, file_id: &str) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut items = self
            .env
            .ddb
            .query()
            .table_name(&self.env.names.events_table)
            .key_condition_expression("pk = :pk AND sk > :zero")
            .expression_attribute_values(":pk", AttributeValue::S(schema::keys::manifest_pk(file_id)))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            out.push(serde_dynamo::from_item::<_, Chunk>(item.unwrap()).unwrap());
        }
        out
    }

    fn task(&self, key: &str, file_id: &str, index: u64) -> ChunkTask {
        ChunkTask {
            bucket: self.env.bucket().to_owned(),
            key: key.to_owned(),
            version_id: None,
            file_id: file_id.to_owned(),
            index,
        }
    }

    /// Receive and delete every message on the queue (tasks the test runs itself).
    async fn take_all(&self) -> usize {
        let mut n = 0;
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                return n;
            }
            for m in msgs {
                n += 1;
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

/// Every event item of a file, as stored (all attributes), by line.
async fn items(env: &Env, file_id: &str, lines: u64) -> Vec<Item> {
    let mut out = Vec::new();
    for pk in schema::keys::event_pages(file_id, lines) {
        let mut pages = env
            .ddb
            .query()
            .table_name(&env.names.events_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            out.push(item.unwrap());
        }
    }
    out.sort_by_key(|i| i["sk"].as_n().unwrap().parse::<u64>().unwrap());
    out
}

/// The file ingested serially, by one run: its manifest and its event items.
async fn serial(key: &str, bytes: &[u8], lines: u64) -> (Manifest, Vec<Item>) {
    let env = env().await;
    let id = env.put(key, bytes).await;
    let report = env.ingester.ingest_object(&env.object(key), None).await.unwrap();
    assert_eq!(report.status, FileStatus::Complete);
    (env.manifest(&id).await, items(&env, &id, lines).await)
}

fn counters(m: &Manifest) -> (FileStatus, u64, u64, u64) {
    (m.status, m.rows, m.accepted, m.rejected)
}

/// A chunked ingest is item for item the serial one: same keys, same
/// attributes, same counts, for a file with every awkward byte at chunk
/// edges; and with a deadline every few hundred lines, every message
/// (notification, chunk task, continuation) is received once and nothing
/// is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_file_is_item_for_item_the_serial_one() {
    let bytes = tricky(1500);
    let key = "misc/tricky.csv";
    let (want_manifest, want) = serial(key, &bytes, 1500).await;
    assert_eq!(want.len(), 1500);

    let c = chunked_env(|c| c, Vec::new()).await;
    let id = c.env.put(key, &bytes).await;
    c.notify(key).await;
    let counts = c.drain(Some(Duration::from_millis(150))).await;
    let chunks = c.chunks(&id).await;
    assert!(chunks.len() > 10, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|ch| ch.status == ChunkStatus::Done));
    assert!(counts.len() > chunks.len(), "tasks and continuations: {}", counts.len());
    assert!(
        counts.iter().all(|n| n == "1"),
        "every message received once: {counts:?}"
    );
    assert_eq!(queue_depth(&c.sqs, &c.dlq).await.unwrap(), 0);

    let m = c.env.manifest(&id).await;
    assert_eq!(counters(&m), counters(&want_manifest));
    assert_eq!(
        (m.chunks_total, m.chunks_done.len() as u64),
        (Some(chunks.len() as u64), chunks.len() as u64)
    );
    assert_eq!(m.written, 1500);
    let got = items(&c.env, &id, 1500).await;
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    // The plan covers the file without gaps, and counted its lines exactly.
    let mut at = 0;
    for ch in &chunks {
        assert_eq!(ch.start_byte, at);
        at = ch.end_byte;
        assert_eq!(ch.lines, Some(ch.rows));
    }
    assert_eq!(at, bytes.len() as u64);
}

/// Chaos on the chunks: their tasks run duplicated, reversed and side by
/// side; one is killed mid-way (its lease held) and redelivered; a re-upload
/// of the same content re-drives the chunks not done. Every line is written
/// once, the counts are exact, and the file completes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_reordered_and_killed_chunks_write_every_line_once() {
    let bytes = orders(3000, 41);
    let key = "orders/big.csv";
    let (want_manifest, want) = serial(key, &bytes, 3000).await;
    let c = chunked_env(
        |mut cfg| {
            cfg.chunk_bytes = 8192;
            cfg.lease = Duration::from_secs(1);
            cfg
        },
        Vec::new(),
    )
    .await;
    let id = c.env.put(key, &bytes).await;

    // The planner: chunks stored, tasks sent (and taken off the queue here).
    let report = c.ingester.ingest_object(&c.env.object(key), None).await.unwrap();
    assert_eq!(report.status, FileStatus::Ingesting);
    let m = c.env.manifest(&id).await;
    let total = m.chunks_total.expect("the plan is complete");
    assert!(total >= 10, "{total} chunks");
    assert_eq!(c.take_all().await as u64, total);
    // The key already points at its file while the chunks are to run, so
    // `status` shows it ingesting, not waiting.
    let upload = c
        .env
        .ddb
        .get_item()
        .table_name(&c.env.names.events_table)
        .key("pk", AttributeValue::S(schema::keys::upload_pk(c.env.bucket(), key)))
        .key("sk", AttributeValue::N("0".into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the upload record is written before the lines");
    assert_eq!(upload["file_id"].as_s().unwrap(), &id);

    // Chunk 3 is killed mid-way: its future dropped while writing.
    let killed = c.task(key, &id, 3);
    let _ = tokio::time::timeout(Duration::from_millis(30), c.ingester.ingest_chunk(&killed, None)).await;
    let held = c.chunks(&id).await.into_iter().find(|ch| ch.index == 3).unwrap();
    assert_eq!(held.status, ChunkStatus::Pending, "killed before it finished");
    // Its redelivery, while the lease holds, is sent on for later.
    let early = c.ingester.ingest_chunk(&killed, None).await;
    assert!(matches!(early, Err(ingest::IngestError::Leased { .. })), "{early:?}");

    // Every task twice, last first, side by side.
    let tasks: Vec<ChunkTask> = (0..total)
        .rev()
        .flat_map(|i| [c.task(key, &id, i), c.task(key, &id, i)])
        .collect();
    let runs = futures::future::join_all(tasks.iter().map(|t| c.ingester.ingest_chunk(t, None))).await;
    let leased = runs
        .iter()
        .filter(|r| matches!(r, Err(ingest::IngestError::Leased { .. })))
        .count();
    assert!(
        runs.iter()
            .all(|r| r.is_ok() || matches!(r, Err(ingest::IngestError::Leased { .. }))),
        "{runs:?}"
    );
    assert!(leased >= 1, "duplicates running side by side meet the lease");

    // A re-upload of the same content re-drives what is not done yet.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = "orders/big-again.csv";
    assert_eq!(c.env.put(again, &bytes).await, id);
    c.ingester.ingest_object(&c.env.object(again), None).await.unwrap();
    let counts = c.drain(None).await;
    assert!(!counts.is_empty() || c.env.manifest(&id).await.status == FileStatus::Complete);

    let m = c.env.manifest(&id).await;
    assert_eq!(counters(&m), counters(&want_manifest));
    assert_eq!(m.written + m.already_present, 3000);
    assert_eq!(m.chunks_done.len() as u64, total);
    let got = items(&c.env, &id, 3000).await;
    assert_eq!(got, want);
    // Completion happened once: every later task sees the final manifest.
    let late = c.ingester.ingest_chunk(&c.task(key, &id, 0), None).await.unwrap();
    assert_eq!(late.status, FileStatus::Complete);
    assert_eq!(c.env.manifest(&id).await.completed_at, m.completed_at);
}

/// The planner fails after storing chunks and before sending their tasks
/// (SQS refuses): the retry plans on from what it stored, sends every task,
/// and the file completes with every line once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planner_that_fails_before_sending_plans_again_without_loss() {
    let fail = localstack::testing::FailSends::default();
    let c = chunked_env(|c| c, Vec::new()).await;
    let sqs = aws_sdk_sqs::Client::from_conf(c.sqs.config().to_builder().interceptor(fail.clone()).build());
    let mut config = chunking(ingest::Config::new(&c.env.names.events_table), &c.url);
    config.lease = Duration::from_secs(1);
    let flaky = ingest::Ingester::new(c.env.s3.clone(), c.env.ddb.clone(), schema::Registry::builtin(), config)
        .with_continuations(sqs);
    let bytes = orders(800, 5);
    let key = "orders/planned-twice.csv";
    let id = c.env.put(key, &bytes).await;
    fail.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = flaky.ingest_object(&c.env.object(key), None).await.unwrap_err();
    assert!(err.to_string().contains("SendMessageBatch"), "{err}");
    let m = c.env.manifest(&id).await;
    assert!(m.chunked && m.chunks_total.is_none() && m.lease_until == 0, "{m:?}");
    let stored = c.chunks(&id).await.len();
    assert!(stored > 0, "chunks were stored before the send failed");
    assert_eq!(queue_depth(&c.sqs, &c.url).await.unwrap(), 0);

    fail.0.store(false, std::sync::atomic::Ordering::SeqCst);
    flaky.ingest_object(&c.env.object(key), None).await.unwrap();
    c.drain(None).await;
    let m = c.env.manifest(&id).await;
    assert_eq!((m.status, m.rows, m.written), (FileStatus::Complete, 800, 800));
    assert_eq!(c.chunks(&id).await.len() as u64, m.chunks_total.unwrap());
    assert_eq!(items(&c.env, &id, 800).await.len(), 800);
}

/// Throttling on one write in ten, across chunks running side by side: the
/// SDK's retries absorb it, and the file completes with every line once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_chunks_still_complete() {
    let throttle = localstack::testing::Throttle::start(10).await;
    let c = chunked_env(|c| c, vec![localstack::clients::shared(throttle.clone())]).await;
    let key = "orders/throttled-chunks.csv";
    let id = c.env.put(key, &orders(600, 3)).await;
    c.notify(key).await;
    c.drain(None).await;
    assert!(throttle.throttled.load(std::sync::atomic::Ordering::SeqCst) >= 60);
    let m = c.env.manifest(&id).await;
    assert_eq!(
        (m.status, m.rows, m.written, m.already_present),
        (FileStatus::Complete, 600, 600, 0)
    );
    assert!(m.chunks_total.unwrap() > 5);
    assert_eq!(queue_depth(&c.sqs, &c.dlq).await.unwrap(), 0);
}

/// Compressed uploads above the threshold (gzip and zstd, named like plain
/// files: told by their bytes) are read through by one run, since a
/// compressed stream has no offsets to cut at, and equal their plain twin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_compressed_files_are_read_through_and_equal_the_plain_one() {
    let plain = orders(600, 9);
    let (want_manifest, want) = serial("orders/plain.csv", &plain, 600).await;
    let c = chunked_env(|c| c, Vec::new()).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    for (key, packed) in [
        ("orders/packed-gz.csv", gz.finish().unwrap()),
        ("orders/packed-zst.csv", zst),
    ] {
        assert!(packed.len() > 1024, "above the chunking threshold");
        let id = c.env.put(key, &packed).await;
        c.notify(key).await;
        c.drain(None).await;
        let m = c.env.manifest(&id).await;
        assert!(!m.chunked, "{key}");
        assert_eq!(counters(&m), counters(&want_manifest), "{key}");
        let got = items(&c.env, &id, 600).await;
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            // Same lines under another file id.
            let strip = |i: &Item| {
                let mut i = i.clone();
                i.remove("pk");
                i.remove("file_id");
                i
            };
            assert_eq!(strip(g), strip(w), "{key}");
        }
    }
}
