//! `pipeline run`: upload files and follow them through the pipeline until
//! every file is final and the stream is drained.
//!
//! On the local stack (and on a deployment with `--local-handlers`), this
//! process stands in for Lambda: the ingest queue's notifications and the
//! events stream are polled with the event source mappings' semantics
//! ([`localstack::pollers`]) and handed to the same library handlers the Lambdas
//! run; so is the reference consumer's queue, when it is deployed. On a
//! deployment without it, the Lambdas do the work and this waits for the
//! files' manifests.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ingest::{handler, Ingester};
use schema::Registry;
use serde::Serialize;

use crate::queries::{self, file_summary, AggregateRow, FileSummary};
use crate::target::Target;
use localstack::clients::{shared, Clients};
use localstack::metrics::{CallRecorder, RequestCounter};
use localstack::pollers::{queue_depth, SqsPoller, StreamPoller};
use localstack::settings::{Names, Settings};
use localstack::streams::StreamReader;
use projector::feed::Feed;
use projector::project::Projector;

/// What a run did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunSummary {
    /// Per file.
    pub files: Vec<FileSummary>,
    /// Notifications the ingest handled.
    pub ingest_messages: u64,
    /// Stream records the projector read.
    pub stream_records: u64,
    /// Events folded into aggregates by this run.
    pub events_projected: u64,
    /// Aggregate groups this run changed.
    pub aggregates_changed: u64,
    /// Messages this run published to the feed topic.
    pub feed_messages: u64,
    /// The reference consumer, when deployed and run here.
    pub consumer: Option<ConsumerSummary>,
    /// Every aggregate group, as it now stands.
    pub aggregates: Vec<AggregateRow>,
    /// DynamoDB requests of the ingest.
    pub dynamodb_requests: u64,
    /// S3 requests of the ingest (uploads excluded).
    pub s3_requests: u64,
    /// Ingest failures reported (each retried, then dead-lettered).
    pub failed_messages: Vec<String>,
    /// Messages now in the ingest dead-letter queue.
    pub ingest_dead_letters: u64,
    /// Stream records given up on (described on the on-failure queue).
    pub stream_failures: u64,
    /// Wall time of the run, uploads included.
    pub seconds: f64,
}

/// What the reference consumer did, and how its read model compares.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct ConsumerSummary {
    /// Messages its handler was given.
    pub messages: u64,
    /// Read model writes (conditional puts that wrote).
    pub writes: u64,
    /// Conditional puts refused: the table held that version or newer.
    pub refused: u64,
    /// Changes a newer one of the same group in the batch made unnecessary.
    pub superseded: u64,
    /// Messages that are not ones it reads (reported, then dead-lettered).
    pub poison: u64,
    /// Groups its read model holds.
    pub groups: u64,
    /// Whether the read model equals the aggregates table (group, version, values).
    pub equals_aggregates: bool,
    /// Messages in its dead-letter queue.
    pub dead_letters: u64,
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Files or directories of CSVs.
    pub paths: Vec<PathBuf>,
    /// Run the handlers in this process even on a deployment.
    pub local_handlers: bool,
    /// Role the ingest handler's credentials are assumed from.
    pub ingest_role: Option<String>,
    /// Role the projector handler's credentials are assumed from.
    pub projector_role: Option<String>,
    /// Role the reference consumer's credentials are assumed from.
    pub consumer_role: Option<String>,
    /// Draw progress on stderr.
    pub progress: bool,
    /// Give up waiting after this long.
    pub timeout: Option<Duration>,
    /// Never stop polling (`pipeline up`).
    pub forever: bool,
    /// Write the distinct calls each handler's clients made, with the identity
    /// they acted as, to this file (for the deployment check's IAM audit).
    pub record_calls: Option<PathBuf>,
    /// Chunk plain files larger than this, into chunks of this size, instead
    /// of what the deployment's settings say (handlers in this process only).
    pub chunk_bytes: Option<u64>,
}

/// The clients each handler (and the poller standing in for its event source
/// mapping) acts with.
struct HandlerClients {
    ingest: Clients,
    projector: Clients,
    consumer: Clients,
    recorders: Option<[CallRecorder; 3]>,
}

impl HandlerClients {
    async fn new(target: &Target, opts: &RunOptions, counter: &RequestCounter) -> Self {
        let recorders = opts.record_calls.as_ref().map(|_| {
            [
                CallRecorder::default(),
                CallRecorder::default(),
                CallRecorder::default(),
            ]
        });
        let observe = |counter: Option<&RequestCounter>, r: Option<&CallRecorder>| {
            let mut all = Vec::new();
            all.extend(counter.cloned().map(shared));
            all.extend(r.cloned().map(shared));
            all
        };
        let ingest = target
            .handler_clients(
                opts.ingest_role.as_deref(),
                &observe(Some(counter), recorders.as_ref().map(|r| &r[0])),
            )
            .await;
        let projector = target
            .handler_clients(
                opts.projector_role.as_deref(),
                &observe(None, recorders.as_ref().map(|r| &r[1])),
            )
            .await;
        let consumer = match &target.deployment.consumer {
            Some(_) => {
                target
                    .handler_clients(
                        opts.consumer_role.as_deref(),
                        &observe(None, recorders.as_ref().map(|r| &r[2])),
                    )
                    .await
            }
            None => target.clients.clone(),
        };
        HandlerClients {
            ingest,
            projector,
            consumer,
            recorders,
        }
    }

    /// Who each handler's clients act as (`GetCallerIdentity` on those very
    /// credentials) and the calls they made, written to `path`.
    async fn save_calls(&self, path: &Path, with_consumer: bool) -> Result<()> {
        let Some([ir, pr, cr]) = &self.recorders else {
            return Ok(());
        };
        let mut out = serde_json::Map::new();
        let mut roles = vec![("ingest", &self.ingest, ir), ("projector", &self.projector, pr)];
        if with_consumer {
            roles.push(("consumer", &self.consumer, cr));
        }
        for (name, clients, recorder) in roles {
            let who = clients
                .sts
                .get_caller_identity()
                .send()
                .await
                .with_context(|| format!("GetCallerIdentity with the {name} handler's credentials"))?;
            out.insert(
                name.to_owned(),
                serde_json::json!({ "identity": who.arn(), "calls": recorder.calls() }),
            );
        }
        std::fs::write(path, serde_json::to_vec_pretty(&out)?).with_context(|| format!("writing {}", path.display()))
    }
}

/// Run the event source mappings until the future is dropped (`pipeline up`).
pub async fn serve(target: &Target) -> Result<()> {
    let opts = RunOptions {
        forever: true,
        ..RunOptions::default()
    };
    let counter = RequestCounter::default();
    let handlers = HandlerClients::new(target, &opts, &counter).await;
    pump(target, &opts, &handlers).await.map(|_| ())
}

/// The CSV files under `paths`, each with its object key: the path relative to
/// the directory given (`data/orders/a.csv` under `data` is `orders/a.csv`).
pub fn collect(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, p, &mut out)?;
        } else if p.is_file() {
            let name = p
                .file_name()
                .context("a file has a name")?
                .to_string_lossy()
                .into_owned();
            out.push((p.clone(), name));
        } else {
            anyhow::bail!("{}: no such file or directory", p.display());
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if is_upload(&path) {
            let rel = path.strip_prefix(root)?;
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((path, key));
        }
    }
    Ok(())
}

/// Whether S3 would notify the pipeline of this file: it ends with one of
/// the deployment's upload suffixes (plain, gzip or zstd CSV).
fn is_upload(path: &Path) -> bool {
    // As S3 compares key names: ".CSV" is not ".csv".
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Settings::get()
        .upload_suffixes
        .iter()
        .any(|s| name.ends_with(s.as_str()))
}

fn bar(show: bool, len: u64, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    b
}

/// Upload the CSVs under `paths` under the deployment's upload prefix; returns the keys.
pub async fn upload(target: &Target, paths: &[PathBuf], progress: bool) -> Result<Vec<String>> {
    let files = collect(paths)?;
    anyhow::ensure!(!files.is_empty(), "no .csv files under {paths:?}");
    let total: u64 = files
        .iter()
        .map(|(p, _)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let pb = bar(progress, total, "upload {bar:30} {bytes}/{total_bytes} {msg}");
    let names = &target.deployment.names;
    let mut keys = Vec::new();
    for (path, rel) in files {
        let key = format!("{}{rel}", names.upload_prefix);
        pb.set_message(key.clone());
        localstack::upload::upload_file(&target.clients.s3, &names.bucket, &key, &path).await?;
        pb.inc(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0));
        keys.push(key);
    }
    pb.finish_and_clear();
    Ok(keys)
}

#[derive(Default)]
struct Totals {
    ingest_messages: u64,
    failed: Vec<String>,
    stream_records: u64,
    applied: u64,
    groups: u64,
    feed: u64,
    stream_failures: u64,
    consumer: feed::handler::Report,
}

/// Upload `opts.paths`, follow them through the pipeline, and summarise.
pub async fn run(target: &Target, opts: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let keys = upload(target, &opts.paths, opts.progress).await?;
    let counter = RequestCounter::default();
    let totals = if target.local || opts.local_handlers {
        let handlers = HandlerClients::new(target, opts, &counter).await;
        let totals = pump(target, opts, &handlers).await?;
        if let Some(path) = &opts.record_calls {
            handlers.save_calls(path, target.deployment.consumer.is_some()).await?;
        }
        totals
    } else {
        wait_final(target, &keys, opts).await?;
        Totals::default()
    };
    let d = &target.deployment;
    let mut files = Vec::new();
    for key in &keys {
        files.push(file_summary(target, key).await?);
    }
    Ok(RunSummary {
        files,
        ingest_messages: totals.ingest_messages,
        stream_records: totals.stream_records,
        events_projected: totals.applied,
        aggregates_changed: totals.groups,
        feed_messages: totals.feed,
        consumer: match &d.consumer {
            Some(c) if target.local || opts.local_handlers => Some(consumer_summary(target, c, totals.consumer).await?),
            _ => None,
        },
        aggregates: queries::read_aggregates(&target.clients.dynamodb, &d.names.aggregates_table, None).await?,
        dynamodb_requests: counter.service("DynamoDB"),
        s3_requests: counter.service("S3"),
        failed_messages: totals.failed,
        ingest_dead_letters: dlq_depth(target, &d.names.ingest_dlq).await?,
        stream_failures: totals.stream_failures,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The consumer's counts with its read model compared to the aggregates.
async fn consumer_summary(
    target: &Target,
    c: &localstack::resources::ConsumerDeployment,
    r: feed::handler::Report,
) -> Result<ConsumerSummary> {
    let mut s = ConsumerSummary {
        messages: r.records,
        writes: r.written,
        refused: r.stale,
        superseded: r.superseded,
        poison: r.poison,
        ..ConsumerSummary::default()
    };
    let ddb = &target.clients.dynamodb;
    let model = feed::DynamoReadModel::new(ddb.clone(), &c.read_model_table);
    let held = feed::ReadModel::from_iter(model.groups().await?);
    let want = feed::ReadModel::from_iter(feed::snapshot(ddb, &target.deployment.names.aggregates_table).await?);
    s.groups = held.len() as u64;
    s.equals_aggregates = held == want;
    s.dead_letters = queue_depth(&target.clients.sqs, &c.dlq_url).await?;
    Ok(s)
}

async fn dlq_depth(target: &Target, name: &str) -> Result<u64> {
    let url = target
        .clients
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .with_context(|| format!("finding queue {name}"))?
        .queue_url
        .unwrap_or_default();
    queue_depth(&target.clients.sqs, &url).await
}

/// Where the stream mapping of this process stands, per events table.
fn positions_file(target: &Target) -> PathBuf {
    target.state.join(format!(
        "stream-positions-{}.json",
        target.deployment.names.events_table
    ))
}

/// Poll the ingest queue and the events stream, as the event source mappings
/// would, until the queue is empty and the stream drained.
async fn pump(target: &Target, opts: &RunOptions, handlers: &HandlerClients) -> Result<Totals> {
    let settings = Settings::get();
    let d = &target.deployment;
    let ic = &handlers.ingest;
    let mut config = ingest_config(&settings, &d.names, &d.ingest_queue_url)?;
    if let Some(bytes) = opts.chunk_bytes {
        config.chunk_above = bytes;
        config.chunk_bytes = bytes;
    }
    let ingester = Ingester::new(ic.s3.clone(), ic.dynamodb.clone(), Registry::builtin(), config)
        .with_continuations(ic.sqs.clone());
    if let Some(stack) = &target.stack {
        // Messages in flight on the ingest queue were held by the pollers of
        // a process that stopped (or was killed): hand them back now, as AWS
        // would after the visibility timeout, and end the leases their runs
        // held, so the files resume from their checkpoints at once.
        let held = stack
            .sqs()
            .release_in_flight(&d.ingest_queue_url)
            .map_err(|e| anyhow::anyhow!("releasing the ingest queue's messages: {e}"))?;
        for body in held {
            ingest::handler::release_leases(&ingester, &body).await?;
        }
    }
    // The pollers act with the function's role, as the event source mappings do.
    let mut sqs_poller = SqsPoller::new(ic.sqs.clone(), &d.ingest_queue_url, settings.ingest.batch_size).await?;
    if opts.ingest_role.is_none() {
        // Locally a failed message comes back after a second, not the queue's
        // visibility timeout (set for a 15-minute function). Under a role the
        // poller calls only what the mapping does (no ChangeMessageVisibility).
        sqs_poller.retry_after = Some(Duration::from_secs(1));
    }

    let pc = &handlers.projector;
    let projector = Projector::new(
        pc.dynamodb.clone(),
        d.names.aggregates_table.clone(),
        &Registry::builtin(),
    );
    let feed = Feed::new(pc.sns.clone(), d.feed_topic_arn.clone());
    let cc = &handlers.consumer;
    let consumer = match &d.consumer {
        Some(c) => {
            let mut poller = SqsPoller::new(cc.sqs.clone(), &c.queue_url, settings.consumer.batch_size).await?;
            if opts.consumer_role.is_none() {
                poller.retry_after = Some(Duration::from_secs(1));
            }
            Some((
                poller,
                feed::DynamoReadModel::new(cc.dynamodb.clone(), &c.read_model_table),
            ))
        }
        None => None,
    };
    let positions_file = positions_file(target);
    let positions = std::fs::read(&positions_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    // The operator finds the stream (DescribeTable); the mapping reads it.
    let reader = StreamReader::open_after(
        &target.clients.dynamodb,
        pc.streams.clone(),
        &d.names.events_table,
        positions,
    )
    .await?;
    let mut stream = StreamPoller::new(
        reader,
        settings.projector.mapping(),
        pc.sqs.clone(),
        &d.projector_failures_url,
    );

    let totals = RefCell::new(Totals::default());
    let ingest_done = std::cell::Cell::new(false);
    let stream_done = std::cell::Cell::new(false);
    let pb = bar(opts.progress, 0, "{spinner} {elapsed} {msg}");
    pb.enable_steady_tick(Duration::from_millis(200));
    let show = |pb: &ProgressBar, t: &Totals| {
        pb.set_message(format!(
            "ingest: {} notifications, {} failed | projector: {} records, {} events folded, {} feed messages",
            t.ingest_messages,
            t.failed.len(),
            t.stream_records,
            t.applied,
            t.feed
        ))
    };
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let timed_out = || deadline.is_some_and(|d| Instant::now() > d);

    // As the mapping does: up to its maximum concurrency of invocations at
    // once, so a planned file's chunks run side by side here too.
    let concurrency = settings.ingest.maximum_concurrency.max(1) as usize;
    let ingest_worker = || async {
        loop {
            anyhow::ensure!(!timed_out(), "timed out waiting for the ingest queue to empty");
            // A long poll: ten idle workers make ten receives a second.
            let poll = sqs_poller
                .poll_once(async |event| handler::handle_batch(&ingester, event, None).await, 1)
                .await?;
            {
                let mut t = totals.borrow_mut();
                t.ingest_messages += (poll.received - poll.failed.len()) as u64;
                t.failed.extend(poll.failed);
                show(&pb, &t);
            }
            if poll.received == 0 {
                // The depth counts messages in flight: a worker stops only
                // when no other one can still send chunk tasks or continuations.
                if !opts.forever && sqs_poller.depth().await? == 0 {
                    break;
                }
            }
        }
        anyhow::Ok(())
    };
    let ingest_loop = async {
        let workers = futures::future::join_all((0..concurrency).map(|_| ingest_worker())).await;
        ingest_done.set(true);
        workers.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    };
    let stream_loop = async {
        loop {
            anyhow::ensure!(!timed_out(), "timed out waiting for the stream to drain");
            // Once the ingest is done, nothing more can arrive: no need to
            // wait out the batching window.
            let ingest_finished = ingest_done.get();
            let poll = stream
                .poll_once(
                    async |event| {
                        let (response, report) = projector::handler::handle_batch(&projector, &feed, event).await;
                        let mut t = totals.borrow_mut();
                        t.applied += report.outcome.applied;
                        t.groups += report.outcome.groups_written;
                        t.feed += report.sent.messages;
                        response
                    },
                    ingest_finished,
                )
                .await?;
            {
                let mut t = totals.borrow_mut();
                t.stream_records += poll.records;
                t.stream_failures += poll.sent_to_on_failure;
                show(&pb, &t);
            }
            if poll.invocations > 0 && opts.forever {
                std::fs::write(&positions_file, serde_json::to_vec(stream.positions())?)?;
            }
            if poll.records == 0 {
                if ingest_finished && stream.buffered() == 0 && !opts.forever {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        std::fs::write(&positions_file, serde_json::to_vec(stream.positions())?)
            .with_context(|| format!("saving {}", positions_file.display()))?;
        stream_done.set(true);
        anyhow::Ok(())
    };
    // The reference consumer's mapping: its queue, its handler.
    let consumer_loop = async {
        let Some((poller, model)) = consumer.as_ref() else {
            return anyhow::Ok(());
        };
        loop {
            anyhow::ensure!(!timed_out(), "timed out waiting for the consumer's queue to empty");
            // Only once the projector is done can no more messages come.
            let projector_finished = stream_done.get();
            let poll = poller
                .poll_once(
                    async |event| {
                        let (response, report) = feed::handler::handle_batch(model, event).await;
                        totals.borrow_mut().consumer += report;
                        response
                    },
                    1,
                )
                .await?;
            if poll.received == 0 && projector_finished && !opts.forever && poller.depth().await? == 0 {
                break;
            }
        }
        anyhow::Ok(())
    };
    let (a, b, c) = tokio::join!(ingest_loop, stream_loop, consumer_loop);
    pb.finish_and_clear();
    a?;
    b?;
    c?;
    Ok(totals.into_inner())
}

/// Wait until every key has an upload record and a final manifest (the
/// deployed Lambdas did the work).
async fn wait_final(target: &Target, keys: &[String], opts: &RunOptions) -> Result<()> {
    let deadline = Instant::now() + opts.timeout.unwrap_or(Duration::from_secs(3600));
    let pb = bar(
        opts.progress,
        keys.len() as u64,
        "waiting for the ingest {bar:30} {pos}/{len} files final",
    );
    let mut pending: Vec<&String> = keys.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for key in pending {
            match file_summary(target, key).await {
                Ok(f) if f.status.is_final() => pb.inc(1),
                _ => still.push(key),
            }
        }
        pending = still;
        if !pending.is_empty() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "timed out waiting for {} file(s), e.g. {}: see the ingest function's logs and its dead-letter queue",
                pending.len(),
                pending[0]
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// The ingest configuration the deployment runs with: the environment
/// `terraform/lambda.tf` gives the function, read as the function reads it.
pub fn ingest_config(settings: &Settings, names: &Names, ingest_queue_url: &str) -> Result<ingest::Config> {
    let env = settings.ingest_environment(names, ingest_queue_url);
    ingest::Config::from_lookup(|k| env.get(k).cloned()).context("terraform/settings.json")
}
