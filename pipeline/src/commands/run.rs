//! `pipeline run`: upload, follow to the end, summarise.

use anyhow::Result;
use tokio::runtime::Runtime;

use super::{with_target, ATTENTION};
use crate::pump::RunOptions;
use crate::render;
use crate::target::TargetArgs;

pub(super) fn exec(rt: &Runtime, args: &TargetArgs, opts: &RunOptions, json: bool) -> Result<i32> {
    let summary = with_target(rt, args, async |t| crate::pump::run(t, opts).await)?;
    if json {
        render::print_json(&summary)?;
    } else {
        render::print_run(&summary);
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
