//! `pipeline`: the operator CLI.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pipeline::stack::Ports;
use pipeline::target::{Target, TargetArgs};

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Run and operate the CSV pipeline: on the embedded local stack by default, on AWS with --aws",
    after_help = "Exit codes: 0 done; 1 error; 2 bad usage; 3 done, but something needs attention \
                  (a failed file, a dead-lettered message, a rebuild difference)."
)]
struct Cli {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload CSVs and follow them through the pipeline until every file is
    /// final and the stream is drained; print a summary.
    Run {
        /// Files or directories of CSVs (keys are paths relative to each directory).
        #[arg(default_value = "data")]
        paths: Vec<PathBuf>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// On a deployment: run the handlers in this process, standing in for
        /// the Lambdas (the local stack always does).
        #[arg(long)]
        local_handlers: bool,
        /// Role to assume for the ingest handler's AWS calls.
        #[arg(long)]
        ingest_role: Option<String>,
        /// Role to assume for the projector handler's AWS calls.
        #[arg(long)]
        projector_role: Option<String>,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Write each handler's identity and distinct AWS calls (service,
        /// operation, resources) to this JSON file, for the IAM audit.
        #[arg(long)]
        record_calls: Option<PathBuf>,
    },
    /// Upload CSVs (the pipeline ingests them on its own).
    Upload {
        /// Files or directories of CSVs.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The state of every uploaded file, or of one.
    Status {
        /// Object key (with or without the upload prefix).
        file: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The rejected lines of a file, with the reason for each.
    Rejects {
        /// Object key (with or without the upload prefix).
        file: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The aggregates, of every dataset or of one.
    Aggregates {
        /// Dataset.
        dataset: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read the change feed: show each message, then delete it.
    Feed {
        /// Keep waiting for new messages (Ctrl-C stops).
        #[arg(long)]
        follow: bool,
        /// Stop after this many messages.
        #[arg(long)]
        max: Option<u64>,
        /// Print each message as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Recompute the aggregates from the events alone and report any
    /// difference from the live ones.
    Rebuild {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure the ingest end to end on the local stack.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        /// Working directory (state and generated file); removed afterwards.
        #[arg(long, global = true, default_value = "target/pipeline-bench")]
        dir: PathBuf,
        /// Use the endpoints of the standard AWS environment (e.g. a `pipeline up`
        /// in another shell) instead of emulators in this process.
        #[arg(long, global = true)]
        external: bool,
    },
    /// Print what the local stack runs with, for comparison with a deployment:
    /// the variables each handler reads, the notification filter, and the
    /// event source mappings' settings (JSON).
    Contract,
    /// Serve the local stack on fixed ports until Ctrl-C, for any AWS SDK or
    /// CLI, with the pipeline running on it.
    Up {
        /// DynamoDB and DynamoDB Streams port.
        #[arg(long, default_value_t = 4567)]
        dynamodb_port: u16,
        /// S3 port.
        #[arg(long, default_value_t = 4568)]
        s3_port: u16,
        /// SQS port.
        #[arg(long, default_value_t = 4569)]
        sqs_port: u16,
    },
    /// Write a synthetic `orders` CSV.
    Generate {
        /// Output file.
        #[arg(short, long)]
        out: PathBuf,
        /// Number of lines after the header.
        #[arg(long, conflicts_with = "size_mb")]
        lines: Option<u64>,
        /// Target size in MB (10^6 bytes).
        #[arg(long)]
        size_mb: Option<u64>,
        /// Make one line in N bad (0: none).
        #[arg(long, default_value_t = 0)]
        bad_every: u64,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Subcommand)]
enum BenchWhat {
    /// Ingest a generated file (writes every event), then re-upload it.
    Ingest {
        /// Lines in the file.
        #[arg(long, default_value_t = 100_000)]
        lines: u64,
        /// Conditional puts in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Ingest a directory of CSVs, then project the stream with the feed on.
    Project {
        /// The CSVs.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Stream batch size.
        #[arg(long, default_value_t = 1000)]
        batch_size: i32,
    },
    /// Stream a generated file from S3 through parse, validate and item building, writing nothing.
    Read {
        /// Size in MB.
        #[arg(long, default_value_t = 1000)]
        size_mb: u64,
    },
}

/// Done, but something needs attention.
const ATTENTION: i32 = 3;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PIPELINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn progress() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

fn run() -> Result<i32> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    let args = cli.target;
    match cli.command {
        Command::Run {
            paths,
            json,
            local_handlers,
            ingest_role,
            projector_role,
            timeout,
            record_calls,
        } => {
            let opts = pipeline::run::RunOptions {
                paths,
                local_handlers,
                ingest_role,
                projector_role,
                progress: progress(),
                timeout: timeout.map(std::time::Duration::from_secs),
                forever: false,
                record_calls,
            };
            let summary = rt.block_on(async {
                let target = Target::open(&args).await?;
                let s = pipeline::run::run(&target, &opts).await;
                target.close().await;
                s
            })?;
            if json {
                print_json(&summary)?;
            } else {
                print_run(&summary);
            }
            let failed = summary.files.iter().filter(|f| f.status.as_str() == "failed").count();
            if failed > 0 || summary.ingest_dead_letters > 0 || summary.stream_failures > 0 {
                eprintln!(
                    "attention: {failed} failed file(s) (reasons above), {} message(s) in the ingest dead-letter queue, {} stream record(s) given up on",
                    summary.ingest_dead_letters, summary.stream_failures
                );
                return Ok(ATTENTION);
            }
            Ok(0)
        }
        Command::Upload { paths, json } => {
            let keys = rt.block_on(async {
                let target = Target::open(&args).await?;
                let keys = pipeline::run::upload(&target, &paths, progress()).await;
                target.close().await;
                keys
            })?;
            if json {
                print_json(&keys)?;
            } else {
                for k in &keys {
                    println!("uploaded {k}");
                }
                println!("{} file(s) uploaded; `pipeline status` follows them.", keys.len());
            }
            Ok(0)
        }
        Command::Status { file, json } => {
            let rows = with_target(&rt, &args, async |t| pipeline::ops::status(t, file.as_deref()).await)?;
            if json {
                print_json(&rows)?;
            } else {
                print_status(&rows);
            }
            let failed = rows
                .iter()
                .any(|r| r.file.as_ref().is_some_and(|f| f.status.as_str() == "failed"));
            Ok(if failed { ATTENTION } else { 0 })
        }
        Command::Rejects { file, json } => {
            let (summary, rejects) = with_target(&rt, &args, async |t| pipeline::ops::rejects(t, &file).await)?;
            if json {
                print_json(&serde_json::json!({ "file": summary, "rejects": rejects }))?;
            } else {
                println!("{}: {} lines, {} rejected", summary.key, summary.rows, summary.rejected);
                for r in &rejects {
                    println!(
                        "  line {:>6}  {:<14} {}\n               {}",
                        r.line,
                        r.column.as_deref().unwrap_or("-"),
                        r.reason,
                        r.raw.escape_debug()
                    );
                }
            }
            Ok(0)
        }
        Command::Aggregates { dataset, json } => {
            let rows = with_target(&rt, &args, async |t| {
                pipeline::ops::read_aggregates(
                    &t.clients.dynamodb,
                    &t.deployment.names.aggregates_table,
                    dataset.as_deref(),
                )
                .await
            })?;
            if json {
                print_json(&rows)?;
            } else {
                print_aggregates(&rows, usize::MAX);
            }
            Ok(0)
        }
        Command::Feed { follow, max, json } => {
            let shown = with_target(&rt, &args, async |t| {
                pipeline::ops::feed(t, follow, max, |m| {
                    if json {
                        println!("{m}");
                    } else {
                        print_feed_message(m);
                    }
                })
                .await
            })?;
            if !json {
                eprintln!("{shown} message(s) shown and deleted from the feed queue.");
            }
            Ok(0)
        }
        Command::Rebuild { json } => {
            let r = with_target(&rt, &args, async |t| pipeline::ops::rebuild(t).await)?;
            if json {
                print_json(&r)?;
            } else {
                println!(
                    "rebuilt {} groups from {} events; the aggregates table has {} groups.",
                    r.groups, r.events, r.live_groups
                );
                for d in &r.differences {
                    println!(
                        "  {}.{} {:?} {}: events say {}, table has {}",
                        d.dataset,
                        d.aggregate,
                        d.group,
                        d.measure.as_deref().unwrap_or("(group)"),
                        d.expected.as_deref().unwrap_or("nothing"),
                        d.live.as_deref().unwrap_or("nothing")
                    );
                }
                if r.differences.is_empty() {
                    println!("no differences.");
                } else {
                    println!("{} difference(s).", r.differences.len());
                }
            }
            Ok(if r.differences.is_empty() { 0 } else { ATTENTION })
        }
        Command::Contract => {
            let s = pipeline::settings::Settings::get();
            print_json(&serde_json::json!({
                "ingest": {
                    "env": ingest::config::ENV_VARS,
                    "mapping": {
                        "batch_size": s.ingest.batch_size,
                        "maximum_batching_window_in_seconds": s.ingest.batching_window_seconds,
                        "maximum_concurrency": s.ingest.maximum_concurrency,
                        "function_response_types": ["ReportBatchItemFailures"],
                    },
                },
                "projector": {
                    "env": projector::ENV_VARS,
                    "mapping": {
                        "batch_size": s.projector.batch_size,
                        "maximum_batching_window_in_seconds": s.projector.batching_window_seconds,
                        "bisect_batch_on_function_error": s.projector.bisect_batch_on_function_error,
                        "maximum_retry_attempts": s.projector.maximum_retry_attempts,
                        "maximum_record_age_in_seconds": s.projector.maximum_record_age_seconds,
                        "parallelization_factor": s.projector.parallelization_factor,
                        "function_response_types": ["ReportBatchItemFailures"],
                        "filters": s.projector.filters,
                    },
                },
                "notification": {
                    "prefix": s.upload_prefix,
                    "suffix": s.upload_suffix,
                },
            }))?;
            Ok(0)
        }
        Command::Up {
            dynamodb_port,
            s3_port,
            sqs_port,
        } => {
            rt.block_on(up(
                args.state,
                Ports {
                    dynamodb: dynamodb_port,
                    s3: s3_port,
                    sqs: sqs_port,
                },
            ))?;
            Ok(0)
        }
        Command::Bench {
            what,
            json,
            dir,
            external,
        } => {
            let _ = std::fs::remove_dir_all(&dir);
            let target = if external {
                pipeline::bench::Target::External
            } else {
                pipeline::bench::Target::InProcess
            };
            let out = rt.block_on(async {
                match what {
                    BenchWhat::Ingest { lines, concurrency } => {
                        serde_json::to_value(pipeline::bench::ingest(&dir, lines, concurrency, target).await?)
                    }
                    BenchWhat::Project { data, batch_size } => {
                        serde_json::to_value(pipeline::bench::project(&data, batch_size).await?)
                    }
                    BenchWhat::Read { size_mb } => {
                        serde_json::to_value(pipeline::bench::read(&dir, size_mb, target).await?)
                    }
                }
                .map_err(anyhow::Error::from)
            });
            let _ = std::fs::remove_dir_all(&dir);
            let out = out?;
            if json {
                println!("{out}");
            } else if let Some(map) = out.as_object() {
                for (k, v) in map {
                    println!("{k:>30}: {v}");
                }
            }
            Ok(0)
        }
        Command::Generate {
            out,
            lines,
            size_mb,
            bad_every,
            seed,
        } => {
            if lines.is_none() && size_mb.is_none() {
                anyhow::bail!("say how much to generate: --lines N or --size-mb N");
            }
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let file = std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let spec = pipeline::generate::Spec {
                lines,
                bytes: size_mb.map(|m| m * 1_000_000),
                bad_every,
                seed,
            };
            let stats = pipeline::generate::orders(&mut w, spec)?;
            std::io::Write::flush(&mut w)?;
            println!(
                "wrote {}: {} lines ({} bad), {} bytes",
                out.display(),
                stats.lines,
                stats.bad,
                stats.bytes
            );
            Ok(0)
        }
    }
}

/// Open the target, run `f` on it, close it.
fn with_target<T>(
    rt: &tokio::runtime::Runtime,
    args: &TargetArgs,
    f: impl AsyncFnOnce(&Target) -> Result<T>,
) -> Result<T> {
    rt.block_on(async {
        let target = Target::open(args).await?;
        let out = f(&target).await;
        target.close().await;
        out
    })
}

/// One file as a table row; with the work columns (`written`, `present`) for `run`.
fn file_row(f: &pipeline::run::FileSummary, work: bool) -> String {
    let work = if work {
        format!(" {:>7} {:>7}", f.written, f.already_present)
    } else {
        String::new()
    };
    format!(
        "{:<46} {:<9} {:<9} {:>7} {:>8} {:>8}{work}  {}",
        f.key,
        format!("{:?}", f.outcome).to_lowercase(),
        f.status.as_str(),
        f.rows,
        f.accepted,
        f.rejected,
        f.reason.as_deref().unwrap_or("")
    )
}

fn print_status(rows: &[pipeline::ops::StatusRow]) {
    println!(
        "{:<46} {:<9} {:<9} {:>7} {:>8} {:>8}  reason",
        "key", "upload", "status", "lines", "accepted", "rejected"
    );
    for r in rows {
        match &r.file {
            Some(f) => println!("{}", file_row(f, false)),
            None => println!("{:<46} {:<9} {:<9}", r.key, "-", "waiting"),
        }
    }
}

fn print_feed_message(m: &serde_json::Value) {
    let s = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("");
    match s("type") {
        "aggregate.changed" => println!(
            "aggregate.changed  {}.{} {}  {}  (v{})",
            s("dataset"),
            s("aggregate"),
            m.get("group").map(|g| g.to_string()).unwrap_or_default(),
            m.get("values").map(|g| g.to_string()).unwrap_or_default(),
            m.get("version").map(|g| g.to_string()).unwrap_or_default(),
        ),
        "file.completed" => println!(
            "file.completed     {} {} {}: {} lines, {} accepted, {} rejected",
            s("dataset"),
            m.get("keys").map(|g| g.to_string()).unwrap_or_default(),
            s("status"),
            m.get("rows").map(|g| g.to_string()).unwrap_or_default(),
            m.get("accepted").map(|g| g.to_string()).unwrap_or_default(),
            m.get("rejected").map(|g| g.to_string()).unwrap_or_default(),
        ),
        _ => println!("{m}"),
    }
}

fn print_aggregates(aggregates: &[pipeline::ops::AggregateRow], limit: usize) {
    let mut by_aggregate: std::collections::BTreeMap<(&str, &str), Vec<&pipeline::ops::AggregateRow>> =
        std::collections::BTreeMap::new();
    for a in aggregates {
        by_aggregate.entry((&a.dataset, &a.aggregate)).or_default().push(a);
    }
    for ((dataset, aggregate), rows) in by_aggregate {
        println!("{dataset}.{aggregate}: {} groups", rows.len());
        for r in rows.iter().take(limit) {
            let measures: Vec<String> = r.measures.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let group = r.group.join(" | ").escape_debug().to_string();
            println!("  {group:<40} {}  (v{})", measures.join(" "), r.version);
        }
        if rows.len() > limit {
            println!(
                "  ... {} more (`pipeline aggregates` or --json shows all)",
                rows.len() - limit
            );
        }
    }
}

fn print_run(s: &pipeline::run::RunSummary) {
    println!(
        "{:<46} {:<9} {:<9} {:>7} {:>8} {:>8} {:>7} {:>7}  reason",
        "key", "upload", "status", "lines", "accepted", "rejected", "written", "present"
    );
    for f in &s.files {
        println!("{}", file_row(f, true));
    }
    let (rows, acc, rej, wr, ap) = s.files.iter().fold((0, 0, 0, 0, 0), |a, f| {
        (
            a.0 + f.rows,
            a.1 + f.accepted,
            a.2 + f.rejected,
            a.3 + f.written,
            a.4 + f.already_present,
        )
    });
    println!(
        "{:<46} {:<9} {:<9} {rows:>7} {acc:>8} {rej:>8} {wr:>7} {ap:>7}",
        "total", "", ""
    );
    println!(
        "\n{} files, {} notifications handled; the ingest made {} DynamoDB and {} S3 requests.",
        s.files.len(),
        s.ingest_messages,
        s.dynamodb_requests,
        s.s3_requests,
    );
    println!(
        "projector: {} stream records read, {} events folded, {} aggregate changes, {} feed messages sent.",
        s.stream_records, s.events_projected, s.aggregates_changed, s.feed_messages
    );
    if s.ingest_dead_letters > 0 || s.stream_failures > 0 {
        println!(
            "dead letters: {} in the ingest DLQ, {} stream records on the on-failure queue.",
            s.ingest_dead_letters, s.stream_failures
        );
    }
    println!();
    print_aggregates(&s.aggregates, 8);
    let rate = rows as f64 / s.seconds.max(1e-9);
    println!("\n{rows} lines in {:.1} s ({rate:.0} lines/s end to end).", s.seconds);
}

async fn up(state: PathBuf, ports: Ports) -> Result<()> {
    use pipeline::stack::{LocalStack, State, ACCESS_KEY, REGION, SECRET_KEY};
    let mut stack = LocalStack::start(State::Dir(state.clone()), ports).await?;
    stack.save_sqs_every(std::time::Duration::from_secs(30));
    let target = Target::on_stack(stack, &state).await?;
    let stack = target.stack.as_ref().expect("embedded");
    let up = pipeline::target::UpFile {
        dynamodb: stack.dynamodb_endpoint.clone(),
        s3: stack.s3_endpoint.clone(),
        sqs: stack.sqs_endpoint.clone(),
        pid: std::process::id(),
    };
    let up_file = pipeline::target::up_file(&state);
    std::fs::write(&up_file, serde_json::to_vec_pretty(&up)?)?;
    let d = &target.deployment;
    println!("local stack up, state in {}", state.display());
    println!("  DynamoDB + Streams  {}", up.dynamodb);
    println!("  S3                  {}", up.s3);
    println!("  SQS                 {}", up.sqs);
    println!(
        "  upload to s3://{}/{}<dataset>/<file>.csv (path-style addressing)",
        d.names.bucket, d.names.upload_prefix
    );
    println!("  feed queue {}", d.feed_queue_url);
    println!("\nThe ingest and projector run here, on the queue and the stream. For any AWS SDK or CLI:\n");
    println!("export AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY} AWS_REGION={REGION}");
    println!(
        "export AWS_ENDPOINT_URL_DYNAMODB={0} AWS_ENDPOINT_URL_DYNAMODB_STREAMS={0} AWS_ENDPOINT_URL_S3={1} AWS_ENDPOINT_URL_SQS={2}",
        up.dynamodb, up.s3, up.sqs
    );
    println!("\nOther `pipeline` commands in this directory use this stack. Ctrl-C stops it.");
    let served = tokio::select! {
        r = pipeline::run::serve(&target) => r,
        r = tokio::signal::ctrl_c() => r.map_err(anyhow::Error::from),
    };
    let _ = std::fs::remove_file(&up_file);
    target.close().await;
    served
}
