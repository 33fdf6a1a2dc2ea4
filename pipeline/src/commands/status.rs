//! `pipeline status [FILE]`: every uploaded file's state, or one's.

use anyhow::Result;
use tokio::runtime::Runtime;

use super::{with_target, ATTENTION};
use crate::render;
use crate::target::TargetArgs;

pub(super) fn exec(rt: &Runtime, args: &TargetArgs, file: Option<&str>, json: bool) -> Result<i32> {
    let rows = with_target(rt, args, async |t| crate::queries::status(t, file).await)?;
    if json {
        render::print_json(&rows)?;
    } else {
        render::print_status(&rows);
    }
    let failed = rows
        .iter()
        .any(|r| r.file.as_ref().is_some_and(|f| f.status.as_str() == "failed"));
    Ok(if failed { ATTENTION } else { 0 })
}
