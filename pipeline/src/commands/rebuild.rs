//! `pipeline rebuild`: the aggregates recomputed from the events, compared with the live ones.

use anyhow::Result;
use tokio::runtime::Runtime;

use super::{with_target, ATTENTION};
use crate::render;
use crate::target::TargetArgs;

pub(super) fn exec(rt: &Runtime, args: &TargetArgs, json: bool) -> Result<i32> {
    let r = with_target(rt, args, async |t| crate::rebuild::rebuild(t).await)?;
    if json {
        render::print_json(&r)?;
    } else {
        render::print_rebuild(&r);
    }
    Ok(if r.differences.is_empty() { 0 } else { ATTENTION })
}
