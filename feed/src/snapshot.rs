//! Reading whole tables: the snapshot of the aggregates table a late
//! consumer starts from, and a read model table's groups (to compare).
//! Scans, which the reference consumer Lambda never makes: behind the
//! `consumer` feature with the SQS loop.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use schema::{AggregateItem, AggregatesKind};

use crate::dynamo::{DynamoReadModel, StoreError};
use crate::model::{GroupKey, GroupState};

impl DynamoReadModel {
    /// Every group the table holds (a consistent scan).
    pub async fn groups(&self) -> Result<Vec<GroupState>, StoreError> {
        let items = scan(&self.ddb, &self.table, None).await?;
        items.into_iter().map(|i| read_group(&self.table, i)).collect()
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

async fn scan(
    ddb: &Client,
    table: &str,
    kind: Option<AggregatesKind>,
) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
    let mut req = ddb.scan().table_name(table).consistent_read(true);
    if let Some(k) = kind {
        req = req
            .filter_expression("#kind = :kind")
            .expression_attribute_names("#kind", "kind")
            .expression_attribute_values(":kind", s(k.as_str()));
    }
    let mut pages = req.into_paginator().items().send();
    let mut out = Vec::new();
    while let Some(item) = pages.next().await {
        out.push(item.map_err(|e| StoreError::Scan {
            table: table.to_owned(),
            source: Box::new(e),
        })?);
    }
    Ok(out)
}

/// Every group of the aggregates table with its version: what a consumer
/// that starts late (or lost its state) holds before it follows the feed.
///
/// Not a point-in-time copy of the table, and it need not be: each group is
/// read with a strongly consistent read, and a group that changes after it
/// was read announces the change on the feed with a higher version. So a
/// consumer whose queue already received the feed when the snapshot began,
/// and that applies only newer versions, misses no change and applies none
/// twice.
pub async fn snapshot(ddb: &Client, aggregates_table: &str) -> Result<Vec<GroupState>, StoreError> {
    let items = scan(ddb, aggregates_table, Some(AggregatesKind::Aggregate)).await?;
    items
        .into_iter()
        .map(|item| {
            AggregateItem::from_item(item)
                .map(GroupState::of_item)
                .map_err(|e| StoreError::Layout {
                    table: aggregates_table.to_owned(),
                    pk: String::new(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

fn read_group(table: &str, item: HashMap<String, AttributeValue>) -> Result<GroupState, StoreError> {
    let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let bad = |reason: &str| StoreError::Layout {
        table: table.to_owned(),
        pk: pk.clone(),
        reason: reason.to_owned(),
    };
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| bad(name))
    };
    let strings = |name: &str| -> Result<BTreeMap<String, String>, StoreError> {
        let m = item.get(name).and_then(|v| v.as_m().ok()).ok_or_else(|| bad(name))?;
        m.iter()
            .map(|(k, v)| Ok((k.clone(), v.as_s().map_err(|_| bad(name))?.clone())))
            .collect()
    };
    Ok(GroupState {
        key: GroupKey {
            dataset: text("dataset")?,
            aggregate: text("aggregate")?,
            group: strings("group")?,
        },
        values: strings("values")?,
        version: item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("version"))?,
        changed_at: text("changed_at")?,
    })
}
