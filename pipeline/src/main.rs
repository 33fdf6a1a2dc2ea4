//! `pipeline`: the operator CLI.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pipeline", version, about = "Operate the CSV pipeline, locally or on AWS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
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
