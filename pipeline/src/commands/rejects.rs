//! `pipeline rejects FILE`: a file's rejected lines, with column and reason.

use anyhow::Result;
use tokio::runtime::Runtime;

use super::with_target;
use crate::render;
use crate::target::TargetArgs;

pub(super) fn exec(rt: &Runtime, args: &TargetArgs, file: &str, json: bool) -> Result<i32> {
    let (summary, rejects) = with_target(rt, args, async |t| crate::queries::rejects(t, file).await)?;
    if json {
        render::print_json(&serde_json::json!({ "file": summary, "rejects": rejects }))?;
    } else {
        render::print_rejects(&summary, &rejects);
    }
    Ok(0)
}
