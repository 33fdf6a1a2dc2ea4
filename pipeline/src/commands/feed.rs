//! `pipeline feed`: read the feed as a consumer: show each message, then delete it.

use anyhow::{Context, Result};
use tokio::runtime::Runtime;

use super::with_target;
use crate::render;
use crate::target::{Target, TargetArgs};

pub(super) fn exec(rt: &Runtime, args: &TargetArgs, follow: bool, max: Option<u64>, json: bool) -> Result<i32> {
    let shown = with_target(rt, args, async |t| {
        read(t, follow, max, |m| {
            if json {
                println!("{m}");
            } else {
                render::print_feed_message(m);
            }
        })
        .await
    })?;
    if !json {
        eprintln!("{shown} message(s) shown and deleted from the feed queue.");
    }
    Ok(0)
}

/// Receive feed messages, hand each to `show`, then delete it. Without
/// `follow`, stops at the first empty receive; with it, waits for more
/// until `max` messages (if given). Returns how many were shown.
async fn read(
    target: &Target,
    follow: bool,
    max: Option<u64>,
    mut show: impl FnMut(&serde_json::Value),
) -> Result<u64> {
    let sqs = &target.clients.sqs;
    let url = &target.deployment.feed_queue_url;
    let mut shown = 0;
    loop {
        let want = max.map(|m| m.saturating_sub(shown).min(10)).unwrap_or(10) as i32;
        if want == 0 {
            return Ok(shown);
        }
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(want)
            .wait_time_seconds(if follow { 10 } else { 1 })
            .send()
            .await
            .with_context(|| format!("receiving from the feed queue {url}"))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() && !follow {
            return Ok(shown);
        }
        for m in messages {
            let body = m.body().unwrap_or_default();
            let v = serde_json::from_str(body).unwrap_or_else(|_| serde_json::Value::String(body.to_owned()));
            show(&v);
            shown += 1;
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .context("deleting a feed message after showing it")?;
        }
    }
}
