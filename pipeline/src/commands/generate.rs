//! `pipeline generate`: a synthetic `orders` CSV.

use std::path::Path;

use anyhow::{Context, Result};

pub(super) fn exec(
    out: &Path,
    lines: Option<u64>,
    size_mb: Option<u64>,
    bad_every: u64,
    seed: u64,
    shape: localstack::generate::Shape,
) -> Result<i32> {
    if lines.is_none() && size_mb.is_none() {
        anyhow::bail!("say how much to generate: --lines N or --size-mb N");
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let spec = localstack::generate::Spec {
        shape,
        lines,
        bytes: size_mb.map(|m| m * 1_000_000),
        bad_every,
        seed,
    };
    let stats = localstack::generate::orders(&mut w, spec)?;
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
