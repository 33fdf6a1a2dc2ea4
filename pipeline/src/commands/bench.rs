//! `pipeline bench`: end-to-end measurements on the local stack.

use std::path::Path;

use anyhow::Result;
use tokio::runtime::Runtime;

use crate::cli::BenchWhat;

pub(super) fn exec(rt: &Runtime, what: BenchWhat, json: bool, dir: &Path, external: bool) -> Result<i32> {
    let _ = std::fs::remove_dir_all(dir);
    let target = if external {
        crate::bench::Target::External
    } else {
        crate::bench::Target::InProcess
    };
    let out = rt.block_on(async {
        match what {
            BenchWhat::Ingest {
                lines,
                concurrency,
                chunk_mib,
                workers,
            } => {
                let chunking = chunk_mib.map(|mib| crate::bench::Chunking {
                    chunk_bytes: mib << 20,
                    workers: workers
                        .unwrap_or(localstack::settings::Settings::get().ingest.maximum_concurrency as usize),
                });
                serde_json::to_value(crate::bench::ingest(dir, lines, concurrency, chunking, target).await?)
            }
            BenchWhat::Scan { size_mb } => serde_json::to_value(crate::bench::scan(dir, size_mb)?),
            BenchWhat::Project {
                data,
                shape,
                lines,
                batch_size,
            } => {
                let input = match shape {
                    Some(shape) => crate::bench::ProjectInput::Generated {
                        dir: dir.to_path_buf(),
                        shape: shape.into(),
                        lines,
                    },
                    None => crate::bench::ProjectInput::Data(data),
                };
                serde_json::to_value(crate::bench::project(input, batch_size).await?)
            }
            BenchWhat::Consumer { lines, shape } => {
                serde_json::to_value(crate::bench::consumer(dir, lines, shape.into()).await?)
            }
            BenchWhat::Queue { messages } => serde_json::to_value(crate::bench::queue(dir, messages).await?),
            BenchWhat::Read { size_mb } => serde_json::to_value(crate::bench::read(dir, size_mb, target).await?),
        }
        .map_err(anyhow::Error::from)
    });
    let _ = std::fs::remove_dir_all(dir);
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
