//! `pipeline feed`: read the feed as a consumer: show each message, then
//! delete it; or, with `--from-snapshot`, start as a late consumer does.

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

/// What a late consumer did: the snapshot it started from, the messages it
/// applied on top, and its read model against the aggregates table.
#[derive(Debug, serde::Serialize)]
struct Late {
    snapshot_groups: usize,
    received: u64,
    applied: u64,
    already_held: u64,
    not_groups: u64,
    poison: u64,
    groups: usize,
    equals_aggregates: bool,
}

/// `--from-snapshot`: snapshot the aggregates, then follow the feed queue
/// applying only newer versions (the consumer kit's [`feed::Consumer`]).
pub(super) fn from_snapshot(rt: &Runtime, args: &TargetArgs, follow: bool, json: bool) -> Result<i32> {
    let late = with_target(rt, args, async |t| {
        let ddb = &t.clients.dynamodb;
        let table = &t.deployment.names.aggregates_table;
        // The feed queue already receives every change: whatever the
        // snapshot misses arrives after it with a higher version.
        let mut model: feed::ReadModel = feed::snapshot(ddb, table).await?.into_iter().collect();
        let snapshot_groups = model.len();
        let (mut applied, mut already_held, mut not_groups) = (0, 0, 0);
        let options = feed::Options {
            wait: std::time::Duration::from_secs(if follow { 20 } else { 1 }),
            stop_when_empty: !follow,
            ..feed::Options::default()
        };
        let stats = feed::Consumer::new(t.clients.sqs.clone(), &t.deployment.feed_queue_url, options)
            .run(
                async |d: feed::Delivery| {
                    match feed::GroupState::of_message(&d.message) {
                        Some(g) => match model.apply(g) {
                            feed::Applied::Written => applied += 1,
                            feed::Applied::Stale => already_held += 1,
                        },
                        None => not_groups += 1,
                    }
                    Ok::<(), std::convert::Infallible>(())
                },
                async {
                    let _ = tokio::signal::ctrl_c().await;
                },
            )
            .await?;
        let now: feed::ReadModel = feed::snapshot(ddb, table).await?.into_iter().collect();
        anyhow::Ok(Late {
            snapshot_groups,
            received: stats.received,
            applied,
            already_held,
            not_groups,
            poison: stats.poison,
            groups: model.len(),
            equals_aggregates: model == now,
        })
    })?;
    if json {
        render::print_json(&serde_json::to_value(&late)?)?;
    } else {
        println!(
            "snapshot: {} groups; feed: {} messages received, {} applied, {} already held, {} not group changes, {} poison (left for the dead-letter queue)",
            late.snapshot_groups, late.received, late.applied, late.already_held, late.not_groups, late.poison
        );
        println!(
            "read model: {} groups, {} the aggregates table",
            late.groups,
            if late.equals_aggregates {
                "equal to"
            } else {
                "NOT equal to"
            }
        );
    }
    Ok(if late.equals_aggregates { 0 } else { super::ATTENTION })
}
