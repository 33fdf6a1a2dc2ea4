//! One module per command: each opens what it acts on, does its work through
//! `pump`, `queries` or `rebuild`, prints through `render`, and says its exit
//! code.

mod aggregates;
mod bench;
mod contract;
mod feed;
mod generate;
mod rebuild;
mod reingest;
mod rejects;
mod run;
mod status;
mod up;
mod upload;

use anyhow::Result;
use tokio::runtime::Runtime;

use crate::cli::{Cli, Command};
use crate::target::{Target, TargetArgs};

/// Done, but something needs attention (a failed file, a dead-lettered
/// message, a rebuild difference).
pub const ATTENTION: i32 = 3;

/// Run the command; the process's exit code.
pub fn dispatch(cli: Cli) -> Result<i32> {
    let rt = Runtime::new()?;
    let args = cli.target;
    match cli.command {
        Command::Run {
            paths,
            json,
            local_handlers,
            ingest_role,
            projector_role,
            consumer_role,
            timeout,
            record_calls,
            chunk_kib,
        } => {
            let opts = crate::pump::RunOptions {
                paths,
                local_handlers,
                ingest_role,
                projector_role,
                consumer_role,
                progress: progress(),
                timeout: timeout.map(std::time::Duration::from_secs),
                forever: false,
                record_calls,
                chunk_bytes: chunk_kib.map(|k| k << 10),
            };
            run::exec(&rt, &args, &opts, json)
        }
        Command::Upload { paths, json } => upload::exec(&rt, &args, &paths, json),
        Command::Status { file, json } => status::exec(&rt, &args, file.as_deref(), json),
        Command::Rejects { file, json } => rejects::exec(&rt, &args, &file, json),
        Command::Reingest { file, json } => reingest::exec(&rt, &args, &file, json),
        Command::Aggregates { dataset, json } => aggregates::exec(&rt, &args, dataset.as_deref(), json),
        Command::Feed {
            follow,
            max,
            json,
            from_snapshot: false,
        } => feed::exec(&rt, &args, follow, max, json),
        Command::Feed {
            follow,
            json,
            from_snapshot: true,
            ..
        } => feed::from_snapshot(&rt, &args, follow, json),
        Command::Rebuild { json } => rebuild::exec(&rt, &args, json),
        Command::Contract => contract::exec(),
        Command::Up {
            dynamodb_port,
            s3_port,
            sqs_port,
            sns_port,
        } => {
            let ports = localstack::Ports {
                dynamodb: dynamodb_port,
                s3: s3_port,
                sqs: sqs_port,
                sns: sns_port,
            };
            rt.block_on(up::serve(args.state, ports, args.consumer))?;
            Ok(0)
        }
        Command::Bench {
            what,
            json,
            dir,
            external,
        } => bench::exec(&rt, what, json, &dir, external),
        Command::Generate {
            out,
            lines,
            size_mb,
            bad_every,
            seed,
            shape,
        } => generate::exec(&out, lines, size_mb, bad_every, seed, shape.into()),
    }
}

/// Whether to draw progress (stderr is a terminal).
fn progress() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Open the target, run `f` on it, close it.
fn with_target<T>(rt: &Runtime, args: &TargetArgs, f: impl AsyncFnOnce(&Target) -> Result<T>) -> Result<T> {
    rt.block_on(async {
        let target = Target::open(args).await?;
        let out = f(&target).await;
        target.close().await;
        out
    })
}
