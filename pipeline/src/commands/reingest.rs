//! `pipeline reingest FILE`: a failed file reset and ingested again.

use anyhow::Result;
use tokio::runtime::Runtime;

use super::with_target;
use crate::render;
use crate::target::TargetArgs;

pub(super) fn exec(rt: &Runtime, args: &TargetArgs, file: &str, json: bool) -> Result<i32> {
    let r = with_target(rt, args, async |t| crate::reingest::reingest(t, file).await)?;
    if json {
        render::print_json(&r)?;
    } else {
        println!(
            "{}: file {} reset (it had failed: {}){}; its notification is on the ingest queue",
            r.key,
            r.file_id,
            r.previous_reason.as_deref().unwrap_or("no reason recorded"),
            if r.chunks_removed > 0 {
                format!(", {} chunk items removed", r.chunks_removed)
            } else {
                String::new()
            },
        );
        println!("follow it with: pipeline status {}", r.key);
    }
    Ok(0)
}
