//! The command line, as clap parses it. Each command's fields are
//! documented here; `commands` runs them.
#![allow(missing_docs)] // clap's field docs are the help text; variants are documented.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::target::TargetArgs;

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Run and operate the CSV pipeline: on the embedded local stack by default, on AWS with --aws",
    after_help = "Exit codes: 0 done; 1 error; 2 bad usage; 3 done, but something needs attention \
                  (a failed file, a dead-lettered message, a rebuild difference)."
)]
/// The command line.
pub struct Cli {
    /// Where to act.
    #[command(flatten)]
    pub target: TargetArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
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
        /// Role to assume for the reference consumer's AWS calls.
        #[arg(long)]
        consumer_role: Option<String>,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Write each handler's identity and distinct AWS calls (service,
        /// operation, resources) to this JSON file, for the IAM audit.
        #[arg(long)]
        record_calls: Option<PathBuf>,
        /// With the handlers in this process: plan plain files larger than
        /// this many KiB into chunks of this size, instead of the deployment's
        /// CHUNK_ABOVE_BYTES and CHUNK_BYTES (try chunking on small files).
        #[arg(long)]
        chunk_kib: Option<u64>,
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
    /// Ingest a failed file again under the current dataset definitions,
    /// without a new upload (refused for a file complete or being ingested).
    Reingest {
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
        /// Start as a late consumer: hold a snapshot of the aggregates table
        /// (each group with its version), then apply only feed messages
        /// newer than what is held; report the read model against the table.
        #[arg(long)]
        from_snapshot: bool,
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
        /// SNS port.
        #[arg(long, default_value_t = 4570)]
        sns_port: u16,
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
        /// How the lines spread over time: `spread` (random times over a
        /// quarter) or `ordered` (one day's orders in time order, a daily export).
        #[arg(long, value_enum, default_value_t = ShapeArg::Spread)]
        shape: ShapeArg,
    },
}

/// `--shape`: how generated lines spread over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ShapeArg {
    /// Random times over a quarter: about one aggregate change per line.
    Spread,
    /// One day in time order: few aggregate changes per line.
    Ordered,
}

impl From<ShapeArg> for localstack::generate::Shape {
    fn from(s: ShapeArg) -> Self {
        match s {
            ShapeArg::Spread => localstack::generate::Shape::Spread,
            ShapeArg::Ordered => localstack::generate::Shape::Ordered,
        }
    }
}

/// What `bench` measures.
#[derive(Subcommand)]
pub enum BenchWhat {
    /// Ingest a generated file (writes every event), then re-upload it.
    Ingest {
        /// Lines in the file.
        #[arg(long, default_value_t = 100_000)]
        lines: u64,
        /// Conditional puts in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Plan the file into chunks of about this many MiB and run them
        /// through the ingest queue (default: one run reads it through).
        #[arg(long)]
        chunk_mib: Option<u64>,
        /// Invocations polling the ingest queue at once, with --chunk-mib
        /// (default: the mapping's maximum concurrency).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Scan a generated file for chunk boundaries: GB/s on one core, peak RSS.
    Scan {
        /// Size in MB.
        #[arg(long, default_value_t = 1000)]
        size_mb: u64,
    },
    /// Ingest a directory of CSVs (or a generated file of one shape), then
    /// project the stream with the feed on; count requests and the write and
    /// read units DynamoDB reports, per event.
    Project {
        /// The CSVs.
        #[arg(long, default_value = "data", conflicts_with = "shape")]
        data: PathBuf,
        /// Generate the file instead, with lines of this shape.
        #[arg(long, value_enum)]
        shape: Option<ShapeArg>,
        /// Lines of the generated file.
        #[arg(long, default_value_t = 20_000)]
        lines: u64,
        /// Stream batch size.
        #[arg(long, default_value_t = 1000)]
        batch_size: i32,
    },
    /// Fill the feed queue of a file-backed local stack with unread
    /// messages: peak memory, the store's size, and every message still there
    /// after a restart.
    Queue {
        /// Messages.
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
    },
    /// Project a generated file with the reference consumer subscribed, then
    /// apply its queue as the consumer's mapping would: messages per second,
    /// read model writes per message; then every message again.
    Consumer {
        /// Lines of the generated file.
        #[arg(long, default_value_t = 20_000)]
        lines: u64,
        /// Their shape.
        #[arg(long, value_enum, default_value = "spread")]
        shape: ShapeArg,
    },
    /// Stream a generated file from S3 through parse, validate and item building, writing nothing.
    Read {
        /// Size in MB.
        #[arg(long, default_value_t = 1000)]
        size_mb: u64,
    },
}
