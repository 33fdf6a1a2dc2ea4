//! `pipeline`: the operator CLI.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use pipeline::stack::Ports;

#[derive(Parser)]
#[command(name = "pipeline", version, about = "Operate the CSV pipeline, locally or on AWS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline on the embedded local stack: upload, ingest, summarise.
    Run {
        /// Files or directories of CSVs (keys are paths relative to each directory).
        #[arg(default_value = "data")]
        paths: Vec<PathBuf>,
        /// Where the local stack keeps its state between runs.
        #[arg(long, default_value = ".pipeline")]
        state: PathBuf,
        /// Print JSON instead of a table.
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
    /// Serve the local stack on fixed ports until Ctrl-C, for any AWS SDK or CLI.
    Up {
        /// Where the stack keeps its state.
        #[arg(long, default_value = ".pipeline")]
        state: PathBuf,
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

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { paths, state, json } => {
            let rt = tokio::runtime::Runtime::new()?;
            let summary = rt.block_on(pipeline::local::run(&state, &paths))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print_run(&summary);
            }
            if !summary.failed_messages.is_empty() {
                anyhow::bail!(
                    "{} message(s) failed: {:?}",
                    summary.failed_messages.len(),
                    summary.failed_messages
                );
            }
            Ok(())
        }
        Command::Up {
            state,
            dynamodb_port,
            s3_port,
            sqs_port,
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(up(
                state,
                Ports {
                    dynamodb: dynamodb_port,
                    s3: s3_port,
                    sqs: sqs_port,
                },
            ))
        }
        Command::Bench {
            what,
            json,
            dir,
            external,
        } => {
            let rt = tokio::runtime::Runtime::new()?;
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
            Ok(())
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
            Ok(())
        }
    }
}

fn print_run(s: &pipeline::local::RunSummary) {
    println!(
        "{:<42} {:<9} {:<9} {:>7} {:>8} {:>8} {:>7}  reason",
        "key", "upload", "status", "lines", "accepted", "rejected", "written"
    );
    for f in &s.files {
        println!(
            "{:<42} {:<9} {:<9} {:>7} {:>8} {:>8} {:>7}  {}",
            f.key,
            format!("{:?}", f.outcome).to_lowercase(),
            f.status.as_str(),
            f.rows,
            f.accepted,
            f.rejected,
            f.written,
            f.reason.as_deref().unwrap_or("")
        );
    }
    let (rows, acc, rej, wr) = s.files.iter().fold((0, 0, 0, 0), |a, f| {
        (a.0 + f.rows, a.1 + f.accepted, a.2 + f.rejected, a.3 + f.written)
    });
    println!(
        "{:<42} {:<9} {:<9} {rows:>7} {acc:>8} {rej:>8} {wr:>7}",
        "total", "", ""
    );
    println!(
        "\n{} files; ingest made {} DynamoDB and {} S3 requests; {} events written by this run.",
        s.files.len(),
        s.dynamodb_requests,
        s.s3_requests,
        wr
    );
    println!(
        "projector: {} stream records read, {} events folded, {} aggregate changes, {} feed messages sent.\n",
        s.stream_records, s.events_projected, s.aggregates_changed, s.feed_messages
    );
    let mut by_aggregate: std::collections::BTreeMap<(&str, &str), Vec<&pipeline::local::AggregateRow>> =
        std::collections::BTreeMap::new();
    for a in &s.aggregates {
        by_aggregate.entry((&a.dataset, &a.aggregate)).or_default().push(a);
    }
    for ((dataset, aggregate), rows) in by_aggregate {
        println!("{dataset}.{aggregate}: {} groups", rows.len());
        for r in rows.iter().take(8) {
            let measures: Vec<String> = r.measures.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let group = r.group.join(" | ").escape_debug().to_string();
            println!("  {group:<40} {}  (v{})", measures.join(" "), r.version);
        }
        if rows.len() > 8 {
            println!("  ... {} more (--json shows all)", rows.len() - 8);
        }
    }
}

async fn up(state: PathBuf, ports: Ports) -> Result<()> {
    use pipeline::stack::{LocalStack, State, ACCESS_KEY, REGION, SECRET_KEY};
    let stack = LocalStack::start(State::Dir(state.clone()), ports).await?;
    let names = pipeline::resources::Names::default();
    pipeline::resources::ensure_events_table(&stack.dynamodb(), &names.events_table).await?;
    pipeline::resources::ensure_bucket(&stack.s3(), &names.bucket).await?;
    println!("local stack up, state in {}", state.display());
    println!("  DynamoDB + Streams  {}", stack.dynamodb_endpoint);
    println!("  S3                  {}", stack.s3_endpoint);
    println!("  SQS                 {}", stack.sqs_endpoint);
    println!("  bucket {}  events table {}", names.bucket, names.events_table);
    println!("\nFor any AWS SDK or CLI in another shell:\n");
    println!("export AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY} AWS_REGION={REGION}");
    println!(
        "export AWS_ENDPOINT_URL_DYNAMODB={0} AWS_ENDPOINT_URL_DYNAMODB_STREAMS={0} AWS_ENDPOINT_URL_S3={1} AWS_ENDPOINT_URL_SQS={2}",
        stack.dynamodb_endpoint, stack.s3_endpoint, stack.sqs_endpoint
    );
    println!("\nCtrl-C stops it.");
    tokio::signal::ctrl_c().await?;
    stack.stop().await;
    Ok(())
}
