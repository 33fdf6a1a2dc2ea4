//! `pipeline aggregates [DATASET]`: the aggregates table.

use anyhow::Result;
use tokio::runtime::Runtime;

use super::with_target;
use crate::render;
use crate::target::TargetArgs;

pub(super) fn exec(rt: &Runtime, args: &TargetArgs, dataset: Option<&str>, json: bool) -> Result<i32> {
    let rows = with_target(rt, args, async |t| {
        crate::queries::read_aggregates(&t.clients.dynamodb, &t.deployment.names.aggregates_table, dataset).await
    })?;
    if json {
        render::print_json(&rows)?;
    } else {
        render::print_aggregates(&rows, usize::MAX);
    }
    Ok(0)
}
