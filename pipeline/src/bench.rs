//! End-to-end measurements on the local stack (`pipeline bench`): throughput,
//! requests per line and peak memory of the ingest on a generated file.
//!
//! Both sides run in this process, so the numbers include the emulators. The
//! emulator's own ceiling (dynoxide: about 1,500 `PutItem`s a second here)
//! bounds the lines per second; the `read` bench shows what the ingest itself
//! does with the same object when it is not waiting on DynamoDB.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use ingest::reader::{LineReader, Start};
use ingest::{Config, Ingester};
use schema::Registry;
use tokio_util::io::SyncIoBridge;

use localstack::clients::{shared, Clients};
use localstack::generate::{self, Spec};
use localstack::metrics::{peak_rss, Capacity, CapacityCounter, RequestCounter};
use localstack::resources::{self, Names};
use localstack::{LocalStack, Ports, State};

/// What one ingest bench measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestBench {
    /// Lines in the file.
    pub lines: u64,
    /// File size.
    pub bytes: u64,
    /// Wall time of the ingest.
    pub seconds: f64,
    /// Lines per second, end to end.
    pub lines_per_second: f64,
    /// DynamoDB requests per line (goal: 1.0).
    pub dynamodb_requests_per_line: f64,
    /// S3 requests of the first ingest.
    pub s3_requests: u64,
    /// DynamoDB requests of a re-upload under another key (goal: at most 5).
    pub reupload_dynamodb_requests: u64,
    /// S3 requests of that re-upload.
    pub reupload_s3_requests: u64,
    /// Peak RSS of the process during the ingest (emulators included), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// `serial` (one run reads the file through) or `chunked`.
    pub mode: &'static str,
    /// Chunks the file was planned into (chunked).
    pub chunks: Option<u64>,
    /// SQS requests of the first ingest (chunk tasks, polls, deletes; chunked).
    pub sqs_requests: u64,
    /// Invocations polling at once (chunked).
    pub workers: usize,
}

/// What the boundary scan bench measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanBench {
    /// File size.
    pub bytes: u64,
    /// Lines in it.
    pub lines: u64,
    /// Chunk boundaries found.
    pub boundaries: u64,
    /// Wall time of the scan (reading the file from the page cache included).
    pub seconds: f64,
    /// Decimal gigabytes a second, on one core.
    pub gb_per_second: f64,
    /// Peak RSS while scanning, bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// What one read bench measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadBench {
    /// Lines in the file.
    pub lines: u64,
    /// File size.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
    /// Lines per second through GetObject, parse, validate and item building.
    pub lines_per_second: f64,
    /// Mean size of an event item by DynamoDB's rules (1 write unit up to 1 KB).
    pub mean_item_bytes: f64,
    /// Peak RSS of the process while reading (the S3 emulator included), bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// Reset the process's peak RSS, so the next reading covers only what follows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Where the bench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Emulators in this process (their memory counts in the peak RSS).
    InProcess,
    /// Endpoints and credentials from the standard AWS environment, e.g. a
    /// `pipeline up` in another process: the peak RSS is then the ingest's alone.
    External,
}

/// Clients with a counter, the stack if in-process, and the generated file.
struct Setup {
    stack: Option<LocalStack>,
    s3: aws_sdk_s3::Client,
    ddb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    names: Names,
    stats: generate::Stats,
    path: std::path::PathBuf,
}

async fn setup(dir: &Path, spec: Spec, target: Target, counter: &RequestCounter) -> Result<Setup> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("bench.csv");
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let stats = generate::orders(&mut w, spec)?;
    std::io::Write::flush(&mut w)?;
    drop(w);
    let names = Names::local();
    let (stack, s3, ddb, sqs) = match target {
        Target::InProcess => {
            let stack = LocalStack::start(State::Dir(dir.join("state")), Ports::default()).await?;
            let c = stack.clients_with(&[shared(counter.clone())]);
            (Some(stack), c.s3, c.dynamodb, c.sqs)
        }
        Target::External => {
            let (c, _) = Clients::from_env(&[shared(counter.clone())]).await;
            (None, c.s3, c.dynamodb, c.sqs)
        }
    };
    resources::ensure_events_table(&ddb, &names.events_table).await?;
    resources::ensure_bucket(&s3, &names.bucket).await?;
    Ok(Setup {
        stack,
        s3,
        ddb,
        sqs,
        names,
        stats,
        path,
    })
}

/// How the ingest bench runs the file.
#[derive(Debug, Clone, Copy)]
pub struct Chunking {
    /// About how many bytes a chunk holds.
    pub chunk_bytes: u64,
    /// Invocations polling the ingest queue at once (the mapping's maximum concurrency).
    pub workers: usize,
}

/// Ingest a generated file of `lines` lines (serially, or planned into chunks
/// run through the ingest queue by `workers` pollers), then re-upload it
/// under another key.
pub async fn ingest(
    dir: &Path,
    lines: u64,
    concurrency: usize,
    chunking: Option<Chunking>,
    target: Target,
) -> Result<IngestBench> {
    let spec = Spec {
        shape: Default::default(),
        lines: Some(lines),
        bytes: None,
        bad_every: 100,
        seed: lines,
    };
    let counter = RequestCounter::default();
    let Setup {
        stack,
        s3,
        ddb,
        sqs,
        names,
        stats,
        path,
    } = setup(dir, spec, target, &counter).await?;
    let key = format!("orders/bench-{lines}.csv");
    let key = key.as_str();
    localstack::upload::upload_file(&s3, &names.bucket, key, &path).await?;
    let mut config = Config::new(&names.events_table);
    config.concurrency = concurrency;
    let mut ingester = Ingester::new(s3.clone(), ddb.clone(), Registry::builtin(), config.clone());
    let mut queue = None;
    if let Some(ch) = chunking {
        let url = resources::ensure_queue_with_dlq(&sqs, &names.ingest_queue, &names.ingest_dlq, 5).await?;
        config.queue_url = Some(url.clone());
        config.chunk_bytes = ch.chunk_bytes;
        config.chunk_above = ch.chunk_bytes;
        ingester = Ingester::new(s3.clone(), ddb.clone(), Registry::builtin(), config).with_continuations(sqs.clone());
        queue = Some(url);
    }
    let obj = ingest::ObjectRef {
        bucket: names.bucket.clone(),
        key: key.to_owned(),
        size: None,
        version_id: None,
        sequencer: None,
    };

    counter.reset();
    reset_peak_rss();
    let t0 = Instant::now();
    let report = ingester.ingest_object(&obj, None).await?;
    if let (Some(url), Some(ch)) = (&queue, chunking) {
        drain(&ingester, &sqs, url, ch.workers).await?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let peak = peak_rss();
    let manifest = ingester
        .store()
        .manifest(&report.file_id)
        .await?
        .context("the manifest of the bench file")?;
    anyhow::ensure!(
        manifest.status == schema::items::FileStatus::Complete && manifest.rows == stats.lines,
        "ingested {} of {} lines ({})",
        manifest.rows,
        stats.lines,
        manifest.status.as_str()
    );
    let dynamodb = counter.service("DynamoDB");
    let s3_requests = counter.service("S3");
    let sqs_requests = counter.service("SQS");

    let copy = ingest::ObjectRef {
        key: format!("orders/bench-{lines}-copy.csv"),
        ..obj
    };
    localstack::upload::upload_file(&s3, &names.bucket, &copy.key, &path).await?;
    counter.reset();
    ingester.ingest_object(&copy, None).await?;
    let result = IngestBench {
        lines: stats.lines,
        bytes: stats.bytes,
        seconds,
        lines_per_second: stats.lines as f64 / seconds,
        dynamodb_requests_per_line: dynamodb as f64 / stats.lines as f64,
        s3_requests,
        reupload_dynamodb_requests: counter.service("DynamoDB"),
        reupload_s3_requests: counter.service("S3"),
        peak_rss_bytes: peak,
        mode: if manifest.chunked { "chunked" } else { "serial" },
        chunks: manifest.chunks_total,
        sqs_requests,
        workers: chunking.map_or(1, |c| c.workers),
    };
    if let Some(stack) = stack {
        stack.stop().await;
    }
    Ok(result)
}

/// Poll the ingest queue with `workers` pollers at once, as the event source
/// mapping does with its maximum concurrency, until it is empty.
async fn drain(ingester: &Ingester, sqs: &aws_sdk_sqs::Client, url: &str, workers: usize) -> Result<()> {
    let poller = localstack::pollers::SqsPoller::new(sqs.clone(), url, 10).await?;
    let worker = || async {
        loop {
            // Long polls, as Lambda's pollers make: an idle worker costs one
            // receive a second, not a busy loop beside the emulators.
            let poll = poller
                .poll_once(
                    async |event| ingest::handler::handle_batch(ingester, event, None).await,
                    1,
                )
                .await?;
            anyhow::ensure!(poll.failed.is_empty(), "ingest messages failed: {:?}", poll.failed);
            if poll.received == 0 && poller.depth().await? == 0 {
                return anyhow::Ok(());
            }
        }
    };
    for r in futures::future::join_all((0..workers.max(1)).map(|_| worker())).await {
        r?;
    }
    Ok(())
}

/// Generate an `orders` file of about `size_mb` MB and scan it for chunk
/// boundaries (64 MiB apart) from the file, 1 MiB at a time, as the planner does.
pub fn scan(dir: &Path, size_mb: u64) -> Result<ScanBench> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("scan.csv");
    let spec = Spec {
        shape: Default::default(),
        lines: None,
        bytes: Some(size_mb * 1_000_000),
        bad_every: 100,
        seed: 44,
    };
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let stats = generate::orders(&mut w, spec)?;
    std::io::Write::flush(&mut w)?;
    drop(w);
    reset_peak_rss();
    let t0 = Instant::now();
    let mut file = std::fs::File::open(&path)?;
    let mut scanner = ingest::scan::Scanner::new(64 << 20, 64 << 10);
    let mut buf = vec![0u8; 1 << 20];
    let mut out = Vec::new();
    let mut boundaries = 0;
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        scanner.feed(&buf[..n], &mut out);
        boundaries += out.len() as u64;
        out.clear();
    }
    let lines = scanner
        .finish()
        .map_err(|s| anyhow::anyhow!("the scan stopped at line {}: {}", s.line, s.reason))?;
    let seconds = t0.elapsed().as_secs_f64();
    let peak = peak_rss();
    std::fs::remove_file(&path)?;
    anyhow::ensure!(lines == stats.lines, "scanned {lines} of {} lines", stats.lines);
    Ok(ScanBench {
        bytes: stats.bytes,
        lines,
        boundaries,
        seconds,
        gb_per_second: stats.bytes as f64 / seconds / 1e9,
        peak_rss_bytes: peak,
    })
}

/// Stream a generated file of about `size_mb` MB from the S3 emulator through
/// the ingest's reader and item building, without writing events.
pub async fn read(dir: &Path, size_mb: u64, target: Target) -> Result<ReadBench> {
    let spec = Spec {
        shape: Default::default(),
        lines: None,
        bytes: Some(size_mb * 1_000_000),
        bad_every: 100,
        seed: 43,
    };
    let counter = RequestCounter::default();
    let Setup {
        stack,
        s3,
        names,
        stats,
        path,
        ..
    } = setup(dir, spec, target, &counter).await?;
    let key = format!("orders/read-bench-{size_mb}.csv");
    let key = key.as_str();
    localstack::upload::upload_file(&s3, &names.bucket, key, &path).await?;
    std::fs::remove_file(&path)?;
    let registry = Registry::builtin();
    let dataset = registry.route(key).clone();

    reset_peak_rss();
    let t0 = Instant::now();
    let body = s3.get_object().bucket(&names.bucket).key(key).send().await?.body;
    let lines = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
        let input = SyncIoBridge::new(body.into_async_read());
        let mut r = LineReader::new(input, Start::Beginning, &dataset, schema::Limits::default())?;
        let (mut n, mut bytes) = (0, 0);
        // A real file id: the key attributes are part of the item's size.
        let id = "0".repeat(64);
        while let Some(line) = r.next_line()? {
            let (item, _) = ingest::ingest::line_item(&id, &dataset, line);
            bytes += item_bytes(&item) as u64;
            n += 1;
        }
        Ok((n, bytes))
    })
    .await??;
    let (lines, item_total) = lines;
    let seconds = t0.elapsed().as_secs_f64();
    anyhow::ensure!(lines == stats.lines, "read {lines} of {} lines", stats.lines);
    let result = ReadBench {
        lines,
        bytes: stats.bytes,
        seconds,
        lines_per_second: lines as f64 / seconds,
        mean_item_bytes: item_total as f64 / lines.max(1) as f64,
        peak_rss_bytes: peak_rss(),
    };
    if let Some(stack) = stack {
        stack.stop().await;
    }
    Ok(result)
}

/// An item's size as DynamoDB counts it for capacity: attribute names plus
/// values (numbers about one byte per two digits, plus one; maps and lists
/// three bytes, plus one per element).
fn item_bytes(item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    fn value(v: &A) -> usize {
        match v {
            A::S(s) => s.len(),
            A::N(n) => n.trim_start_matches('-').replace('.', "").len().div_ceil(2) + 1,
            A::B(b) => b.as_ref().len(),
            A::Bool(_) | A::Null(_) => 1,
            A::M(m) => 3 + m.iter().map(|(k, v)| k.len() + value(v) + 1).sum::<usize>(),
            A::L(l) => 3 + l.iter().map(|v| value(v) + 1).sum::<usize>(),
            A::Ss(v) => v.iter().map(String::len).sum(),
            A::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// What `bench project` reads: a directory of CSVs, or one file it generates.
#[derive(Debug, Clone)]
pub enum ProjectInput {
    /// The CSVs under a directory (keys relative to it).
    Data(PathBuf),
    /// `orders/<shape>.csv` of `lines` lines, written under `dir`.
    Generated {
        /// Where to write it.
        dir: PathBuf,
        /// How its lines spread over time.
        shape: localstack::generate::Shape,
        /// How many.
        lines: u64,
    },
}

/// Requests and capacity units of one side (ingest or projector), per event.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct PerEvent {
    /// DynamoDB requests.
    pub requests: f64,
    /// Write units DynamoDB reported.
    pub write_units: f64,
    /// Read units DynamoDB reported.
    pub read_units: f64,
}

impl PerEvent {
    fn of(c: &Capacity, events: u64) -> Self {
        let per = |x: f64| x / events.max(1) as f64;
        PerEvent {
            requests: per((c.requests + c.refused) as f64),
            write_units: per(c.write_units),
            read_units: per(c.read_units),
        }
    }
}

/// What the projector bench measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectBench {
    /// The generated file's shape, if it was generated.
    pub shape: Option<localstack::generate::Shape>,
    /// Stream batch size.
    pub batch_size: i32,
    /// Events folded.
    pub events: u64,
    /// Aggregate and bitmap items written.
    pub writes: u64,
    /// Aggregate groups written.
    pub group_writes: u64,
    /// Writes per event (groups and bitmaps).
    pub writes_per_event: f64,
    /// Aggregate writes per event (groups only).
    pub aggregate_writes_per_event: f64,
    /// Transactions.
    pub transactions: u64,
    /// `SendMessageBatch` requests per event.
    pub sqs_requests_per_event: f64,
    /// Feed messages per event.
    pub feed_messages_per_event: f64,
    /// The ingest's DynamoDB cost per event: event puts, the upload record,
    /// the manifest and its checkpoints.
    pub ingest: PerEvent,
    /// The projector's: bitmap and aggregate reads, transactions (two write
    /// units per item), as DynamoDB reported them.
    pub project: PerEvent,
    /// Both, per event.
    pub all_in: PerEvent,
    /// Units by side and operation (`ingest:PutItem`), totals.
    pub by_operation: BTreeMap<String, Capacity>,
    /// Events per second through projection and feed (emulators included).
    pub events_per_second: f64,
}

/// Ingest the CSVs (or a generated file) into an in-memory stack, then
/// project the whole stream in batches of `batch_size` with the feed on,
/// counting what each side asks of DynamoDB.
pub async fn project(input: ProjectInput, batch_size: i32) -> Result<ProjectBench> {
    let (data, shape) = match input {
        ProjectInput::Data(d) => (d, None),
        ProjectInput::Generated { dir, shape, lines } => {
            let path = dir.join("data/orders").join(format!(
                "{}.csv",
                serde_json::to_value(shape)?.as_str().unwrap_or("generated")
            ));
            std::fs::create_dir_all(path.parent().expect("has a parent"))?;
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
            let spec = Spec {
                shape,
                lines: Some(lines),
                bytes: None,
                bad_every: 0,
                seed: 1,
            };
            localstack::generate::orders(&mut w, spec)?;
            std::io::Write::flush(&mut w)?;
            (dir.join("data"), Some(shape))
        }
    };
    let stack = LocalStack::start(State::Memory, Ports::default()).await?;
    let names = Names::local();
    let (ingest_units, project_units) = (CapacityCounter::default(), CapacityCounter::default());
    let c = stack.clients();
    let ic = stack.clients_with(&[shared(ingest_units.clone())]);
    let pc = stack.clients_with(&[shared(project_units.clone())]);
    let (s3, ddb, sqs) = (c.s3, c.dynamodb, c.sqs);
    resources::ensure_events_table(&ddb, &names.events_table).await?;
    resources::ensure_aggregates_table(&ddb, &names.aggregates_table).await?;
    resources::ensure_bucket(&s3, &names.bucket).await?;
    let queue = resources::ensure_queue_with_dlq(&sqs, &names.feed_queue, &names.feed_dlq, 5).await?;
    let topic = resources::ensure_topic(&c.sns, &names.feed_topic).await?;
    let queue_arn = localstack::queues::queue_arn(&sqs, &queue).await?;
    resources::ensure_subscription(&c.sns, &topic, &queue_arn, None, None).await?;
    let ingester = Ingester::new(
        s3.clone(),
        ic.dynamodb.clone(),
        Registry::builtin(),
        Config::new(&names.events_table),
    );
    for (path, key) in crate::pump::collect(&[data])? {
        localstack::upload::upload_file(&s3, &names.bucket, &key, &path).await?;
        let obj = ingest::ObjectRef {
            bucket: names.bucket.clone(),
            key,
            size: None,
            version_id: None,
            sequencer: None,
        };
        ingester.ingest_object(&obj, None).await?;
    }
    let projector = projector::project::Projector::new(
        pc.dynamodb.clone(),
        names.aggregates_table.clone(),
        &Registry::builtin(),
    );
    let feed = projector::feed::Feed::new(c.sns, topic);
    let mut reader = localstack::streams::StreamReader::open(&ddb, c.streams, &names.events_table).await?;
    let batches = reader.drain(batch_size).await?;
    let (mut events, mut writes, mut groups, mut tx, mut sqs_requests, mut messages) = (0, 0, 0, 0, 0, 0);
    let t0 = Instant::now();
    for b in batches {
        let mut e = aws_lambda_events::dynamodb::Event::default();
        e.records = b;
        let (response, report) = projector::handler::handle_batch(&projector, &feed, e).await;
        anyhow::ensure!(response.batch_item_failures.is_empty(), "a batch failed");
        events += report.outcome.applied;
        writes += report.outcome.writes;
        groups += report.outcome.groups_written;
        tx += report.outcome.transactions;
        sqs_requests += report.sent.requests;
        messages += report.sent.messages;
    }
    let seconds = t0.elapsed().as_secs_f64();
    stack.stop().await;
    let per = |x: u64| x as f64 / events.max(1) as f64;
    let (i, p) = (ingest_units.total(), project_units.total());
    let both = Capacity {
        requests: i.requests + p.requests,
        write_units: i.write_units + p.write_units,
        read_units: i.read_units + p.read_units,
        refused: i.refused + p.refused,
    };
    let mut by_operation = BTreeMap::new();
    for (side, counter) in [("ingest", &ingest_units), ("project", &project_units)] {
        for (op, c) in counter.snapshot() {
            by_operation.insert(format!("{side}:{op}"), c);
        }
    }
    Ok(ProjectBench {
        shape,
        batch_size,
        events,
        writes,
        group_writes: groups,
        writes_per_event: per(writes),
        aggregate_writes_per_event: per(groups),
        transactions: tx,
        sqs_requests_per_event: per(sqs_requests),
        feed_messages_per_event: per(messages),
        ingest: PerEvent::of(&i, events),
        project: PerEvent::of(&p, events),
        all_in: PerEvent::of(&both, events),
        by_operation,
        events_per_second: events as f64 / seconds,
    })
}

/// What the queue bench measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueBench {
    /// Messages sent and left unread.
    pub messages: u64,
    /// Bytes of each body.
    pub body_bytes: usize,
    /// Messages a second through `SendMessageBatch` (10 a request, 8 requests in flight).
    pub sent_per_second: f64,
    /// Peak RSS of this process (emulators included) while the queue filled.
    pub peak_rss_mib: f64,
    /// Size of the SQS store on disk.
    pub store_mib: f64,
    /// Messages on the queue after the stack was stopped and started again.
    pub after_restart: u64,
    /// Messages a second received and deleted (batches of 10) after the restart.
    pub received_per_second: f64,
    /// How many were received and deleted to measure that.
    pub received: u64,
}

/// Fill the feed queue of a file-backed stack with `messages` feed-sized
/// messages no one reads, report the peak memory, then restart the stack on
/// the same state and check every message is still there.
pub async fn queue(dir: &Path, messages: u64) -> Result<QueueBench> {
    use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageAttributeValue, SendMessageBatchRequestEntry};
    std::fs::create_dir_all(dir)?;
    let names = Names::local();
    let state = State::Dir(dir.to_path_buf());
    // The shape of an `aggregate.changed` message, with its three attributes.
    let body = serde_json::json!({
        "type": "aggregate.changed", "schema_version": 2, "id": "5c0d".repeat(8), "dataset": "orders",
        "aggregate": "revenue_by_day_country",
        "group": {"ordered_at:day": "2024-01-01", "country": "DE", "currency": "EUR"},
        "values": {"lines": "10", "units": "53", "revenue": "8875.86"}, "version": 9,
        "changed_at": "2026-11-29T06:58:59.834Z"
    })
    .to_string();
    let attr = |v: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(v)
            .build()
    };
    reset_peak_rss();
    let stack = LocalStack::start(state.clone(), Ports::default()).await?;
    let sqs = stack.clients().sqs;
    let url = resources::ensure_queue_with_dlq(&sqs, &names.feed_queue, &names.feed_dlq, 5).await?;
    let t0 = Instant::now();
    let batches = messages.div_ceil(10);
    let mut sent = 0u64;
    let mut next = 0u64;
    while next < batches {
        let mut in_flight = Vec::new();
        for _ in 0..8 {
            if next >= batches {
                break;
            }
            let n = (messages - next * 10).min(10);
            let mut entries = Vec::with_capacity(n as usize);
            for i in 0..n {
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&body)
                        .message_attributes("type", attr("aggregate.changed")?)
                        .message_attributes("dataset", attr("orders")?)
                        .message_attributes("id", attr(&format!("{next}-{i}"))?)
                        .build()?,
                );
            }
            next += 1;
            let req = sqs.send_message_batch().queue_url(&url).set_entries(Some(entries));
            in_flight.push(tokio::spawn(req.send()));
        }
        for h in in_flight {
            let out = h.await??;
            anyhow::ensure!(out.failed().is_empty(), "entries failed: {:?}", out.failed());
            sent += out.successful().len() as u64;
        }
    }
    let sent_per_second = sent as f64 / t0.elapsed().as_secs_f64();
    let peak = peak_rss().unwrap_or(0);
    stack.stop().await;
    let store_bytes: u64 = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("sqs.sqlite"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();

    let stack = LocalStack::start(state, Ports::default()).await?;
    let sqs = stack.clients().sqs;
    let url = sqs
        .get_queue_url()
        .queue_name(&names.feed_queue)
        .send()
        .await?
        .queue_url
        .context("no feed queue after the restart")?;
    let after_restart = localstack::queues::queue_depth(&sqs, &url).await?;
    let t1 = Instant::now();
    let mut received = 0u64;
    while received < messages.min(20_000) {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await?;
        if got.messages().is_empty() {
            break;
        }
        let entries = got
            .messages()
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        sqs.delete_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await?;
        received += got.messages().len() as u64;
    }
    let received_per_second = received as f64 / t1.elapsed().as_secs_f64();
    stack.stop().await;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    Ok(QueueBench {
        messages: sent,
        body_bytes: body.len(),
        sent_per_second,
        peak_rss_mib: mib(peak),
        store_mib: mib(store_bytes),
        after_restart,
        received_per_second,
        received,
    })
}

/// What the reference consumer did with a projected feed: the first
/// delivery of every message, then every message delivered again.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsumerBench {
    /// Lines of the generated file.
    pub lines: u64,
    /// Invocations at once (the mapping's maximum concurrency).
    pub concurrency: usize,
    /// Messages the consumer's queue received (its filter: `aggregate.changed`).
    pub messages: u64,
    /// Seconds to apply them (receive, handler, delete; emulators included).
    pub seconds: f64,
    /// Messages applied per second.
    pub messages_per_second: f64,
    /// Read model writes per message, first delivery.
    pub writes_per_message: f64,
    /// Changes a newer one of the group in the same batch made unnecessary, per message.
    pub superseded_per_message: f64,
    /// Conditional puts refused (already held) per message, first delivery.
    pub refused_per_message: f64,
    /// Write units DynamoDB reported per message, first delivery.
    pub write_units_per_message: f64,
    /// Every message again (duplicates, as at-least-once delivery may bring).
    pub redelivered: u64,
    /// Read model writes per redelivered message (0: nothing changes).
    pub redelivery_writes_per_message: f64,
    /// Conditional puts refused per redelivered message.
    pub redelivery_refused_per_message: f64,
    /// Write units per redelivered message (a refused condition still costs its units on AWS).
    pub redelivery_write_units_per_message: f64,
    /// Whether the read model ends equal to the aggregates table.
    pub equals_aggregates: bool,
}

/// Project a generated file with the reference consumer subscribed, then
/// apply its queue with the consumer's handler as its mapping would, twice:
/// first delivery, then every message again.
pub async fn consumer(dir: &Path, lines: u64, shape: generate::Shape) -> Result<ConsumerBench> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    std::fs::create_dir_all(dir)?;
    let stack = LocalStack::start(State::Memory, Ports::default()).await?;
    let names = Names::local();
    let c = stack.clients();
    let d = resources::provision(&c, &names, true).await?;
    let consumer = d.consumer.clone().context("the consumer was provisioned")?;
    let path = dir.join("bench.csv");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let spec = Spec {
        shape,
        lines: Some(lines),
        bytes: None,
        bad_every: 0,
        seed: 3,
    };
    generate::orders(&mut w, spec)?;
    std::io::Write::flush(&mut w)?;
    let key = "orders/bench.csv".to_owned();
    localstack::upload::upload_file(&c.s3, &names.bucket, &key, &path).await?;
    let ingester = Ingester::new(
        c.s3.clone(),
        c.dynamodb.clone(),
        Registry::builtin(),
        Config::new(&names.events_table),
    );
    let obj = ingest::ObjectRef {
        bucket: names.bucket.clone(),
        key,
        size: None,
        version_id: None,
        sequencer: None,
    };
    ingester.ingest_object(&obj, None).await?;
    let projector =
        projector::project::Projector::new(c.dynamodb.clone(), names.aggregates_table.clone(), &Registry::builtin());
    let feed = projector::feed::Feed::new(c.sns.clone(), d.feed_topic_arn.clone());
    let mut reader =
        localstack::streams::StreamReader::open(&c.dynamodb, c.streams.clone(), &names.events_table).await?;
    for b in reader.drain(1000).await? {
        let mut e = aws_lambda_events::dynamodb::Event::default();
        e.records = b;
        let (response, _) = projector::handler::handle_batch(&projector, &feed, e).await;
        anyhow::ensure!(response.batch_item_failures.is_empty(), "a projector batch failed");
    }
    // The bodies to deliver again, kept from the feed queue (which gets every message).
    let again: Vec<String> = localstack::queues::take_all(&c.sqs, &d.feed_queue_url)
        .await?
        .into_iter()
        .filter_map(|m| m.body)
        .filter(|b| b.contains("\"aggregate.changed\""))
        .collect();

    let units = CapacityCounter::default();
    let cc = stack.clients_with(&[shared(units.clone())]);
    let model = feed::DynamoReadModel::new(cc.dynamodb.clone(), &consumer.read_model_table);
    let poller = localstack::pollers::SqsPoller::new(cc.sqs.clone(), &consumer.queue_url, 10).await?;
    let concurrency = localstack::settings::Settings::get()
        .consumer
        .maximum_concurrency
        .max(1) as usize;
    let drain = async || -> Result<(feed::handler::Report, f64)> {
        let total = std::cell::RefCell::new(feed::handler::Report::default());
        let t0 = Instant::now();
        let worker = || async {
            loop {
                let poll = poller
                    .poll_once(
                        async |event| {
                            let (response, r) = feed::handler::handle_batch(&model, event).await;
                            *total.borrow_mut() += r;
                            response
                        },
                        0,
                    )
                    .await?;
                if poll.received == 0 && poller.depth().await? == 0 {
                    return anyhow::Ok(());
                }
            }
        };
        for r in futures::future::join_all((0..concurrency).map(|_| worker())).await {
            r?;
        }
        Ok((total.into_inner(), t0.elapsed().as_secs_f64()))
    };
    let (first, seconds) = drain().await?;
    let first_units = units.total().write_units;
    for chunk in again.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(b)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        c.sqs
            .send_message_batch()
            .queue_url(&consumer.queue_url)
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    let (second, _) = drain().await?;
    let second_units = units.total().write_units - first_units;
    let held: feed::ReadModel = model.groups().await?.into_iter().collect();
    let want: feed::ReadModel = feed::snapshot(&c.dynamodb, &names.aggregates_table)
        .await?
        .into_iter()
        .collect();
    stack.stop().await;
    let per = |x: u64, n: u64| x as f64 / n.max(1) as f64;
    Ok(ConsumerBench {
        lines,
        concurrency,
        messages: first.records,
        seconds,
        messages_per_second: first.records as f64 / seconds,
        writes_per_message: per(first.written, first.records),
        superseded_per_message: per(first.superseded, first.records),
        refused_per_message: per(first.stale, first.records),
        write_units_per_message: first_units / first.records.max(1) as f64,
        redelivered: second.records,
        redelivery_writes_per_message: per(second.written, second.records),
        redelivery_refused_per_message: per(second.stale, second.records),
        redelivery_write_units_per_message: second_units / second.records.max(1) as f64,
        equals_aggregates: held == want,
    })
}
