//! `pipeline rebuild`: recompute every aggregate from the events table alone
//! and compare it with the live aggregates table.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use projector::fold::{Deltas, Folder, GroupKey, FILE_STATS};
use schema::items::{EventItem, EventType};
use schema::Registry;
use serde::Serialize;

use crate::queries::{read_aggregates, scan, AggregateRow};
use crate::target::Target;

/// One difference between the live aggregates and a rebuild from the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Dataset.
    pub dataset: String,
    /// Aggregate.
    pub aggregate: String,
    /// Group-by values.
    pub group: Vec<String>,
    /// Measure (`None`: the whole group is missing on one side).
    pub measure: Option<String>,
    /// What the events say.
    pub expected: Option<String>,
    /// What the aggregates table holds.
    pub live: Option<String>,
}

/// What `rebuild` found.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuild {
    /// Events read from the events table.
    pub events: u64,
    /// Groups recomputed.
    pub groups: u64,
    /// Groups in the aggregates table.
    pub live_groups: u64,
    /// Every difference.
    pub differences: Vec<Difference>,
}

/// Measures of `file_stats` that record arrival times on the stream, which
/// the events table does not keep: a rebuild cannot recompute them.
const ARRIVAL_MEASURES: [&str; 2] = ["first_seen", "last_seen"];

/// Recompute every aggregate from the events table alone (a full scan) and
/// compare it with the live aggregates table.
pub async fn rebuild(target: &Target) -> Result<Rebuild> {
    let names = &target.deployment.names;
    let registry = Registry::builtin();
    let mut folders: HashMap<String, Folder> = HashMap::new();
    let mut deltas = Deltas::new();
    let mut events = 0u64;
    scan(
        &target.clients.dynamodb,
        &names.events_table,
        ("kind", "event", "events"),
        |item| {
            let e: EventItem = serde_dynamo::from_item(item)?;
            events += 1;
            let folder = match folders.get(&e.dataset) {
                Some(f) => f,
                None => {
                    let ds = registry
                        .get(&e.dataset)
                        .with_context(|| format!("event {}/{} names unknown dataset {:?}", e.pk, e.sk, e.dataset))?;
                    folders.entry(e.dataset.clone()).or_insert_with(|| Folder::new(ds))
                }
            };
            let accepted = e.event_type == EventType::Accepted;
            folder.file_stats(&e.file_id, accepted, 0, &mut deltas);
            if accepted {
                let fields = e.fields.unwrap_or_default();
                folder
                    .apply(&fields, &mut deltas)
                    .map_err(|err| anyhow::anyhow!("event {}/{}: {err}", e.pk, e.sk))?;
            }
            Ok(())
        },
    )
    .await?;
    let live = read_aggregates(&target.clients.dynamodb, &names.aggregates_table, None).await?;
    Ok(Rebuild {
        events,
        groups: deltas.len() as u64,
        live_groups: live.len() as u64,
        differences: compare(&folders, &deltas, &live),
    })
}

/// Differences between recomputed deltas and live rows (arrival-time measures excepted).
pub fn compare(folders: &HashMap<String, Folder>, deltas: &Deltas, live: &[AggregateRow]) -> Vec<Difference> {
    let mut live_by: BTreeMap<GroupKey, &AggregateRow> = live
        .iter()
        .map(|r| {
            (
                GroupKey {
                    dataset: r.dataset.clone(),
                    aggregate: r.aggregate.clone(),
                    values: r.group.clone(),
                },
                r,
            )
        })
        .collect();
    let mut out = Vec::new();
    let diff = |k: &GroupKey, measure: Option<String>, expected: Option<String>, live: Option<String>| Difference {
        dataset: k.dataset.clone(),
        aggregate: k.aggregate.clone(),
        group: k.values.clone(),
        measure,
        expected,
        live,
    };
    let mut keys: Vec<&GroupKey> = deltas.keys().collect();
    keys.sort();
    for key in keys {
        let accs = &deltas[key];
        let Some(row) = live_by.remove(key) else {
            out.push(diff(key, None, Some("group".into()), None));
            continue;
        };
        let names = folders
            .get(&key.dataset)
            .and_then(|f| f.measures(&key.aggregate))
            .unwrap_or_default();
        for ((name, _), acc) in names.iter().zip(accs) {
            if key.aggregate == FILE_STATS && ARRIVAL_MEASURES.contains(&name.as_str()) {
                continue;
            }
            let expected = acc.text();
            let got = row.measures.get(name);
            if got != Some(&expected) {
                out.push(diff(key, Some(name.clone()), Some(expected), got.cloned()));
            }
        }
    }
    for (key, _) in live_by {
        out.push(diff(&key, None, None, Some("group".into())));
    }
    out
}
