//! `pipeline upload`: put CSVs under the upload prefix; the pipeline takes them from there.

use std::path::PathBuf;

use anyhow::Result;
use tokio::runtime::Runtime;

use super::{progress, with_target};
use crate::render;
use crate::target::TargetArgs;

pub(super) fn exec(rt: &Runtime, args: &TargetArgs, paths: &[PathBuf], json: bool) -> Result<i32> {
    let keys = with_target(rt, args, async |t| crate::pump::upload(t, paths, progress()).await)?;
    if json {
        render::print_json(&keys)?;
    } else {
        for k in &keys {
            println!("uploaded {k}");
        }
        println!("{} file(s) uploaded; `pipeline status` follows them.", keys.len());
    }
    Ok(0)
}
