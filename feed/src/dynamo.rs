//! DynamoDB at the edges: a read model table written only if newer, and the
//! snapshot of the aggregates table a late consumer starts from.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::scan::ScanError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use schema::{AggregateItem, AggregatesKind};

use crate::model::{Applied, GroupKey, GroupState};

/// A DynamoDB call failed, or an item did not have the expected layout.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `PutItem` failed for a reason other than the version condition.
    #[error("PutItem on {table}")]
    Put {
        /// The table.
        table: String,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<PutItemError>>,
    },
    /// `Scan` failed.
    #[error("Scan of {table}")]
    Scan {
        /// The table.
        table: String,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<ScanError>>,
    },
    /// An item that does not read as a group.
    #[error("item {pk:?} of {table}: {reason}")]
    Layout {
        /// The table.
        table: String,
        /// The item's key.
        pk: String,
        /// What is wrong.
        reason: String,
    },
}

/// A read model in its own DynamoDB table (`pk` S): one item per group,
/// written only when its version is newer than the item's.
///
/// A duplicate or stale message costs one failed conditional put: on AWS
/// that consumes the write units of the item's size but changes nothing.
/// [`crate::model::newest_per_group`] spares even that within a batch.
#[derive(Debug, Clone)]
pub struct DynamoReadModel {
    ddb: Client,
    table: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn map(m: &BTreeMap<String, String>) -> AttributeValue {
    AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), s(v))).collect())
}

impl DynamoReadModel {
    /// The read model in `table`.
    pub fn new(ddb: Client, table: impl Into<String>) -> Self {
        DynamoReadModel {
            ddb,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Write `g` unless the table holds its version or a later one.
    pub async fn apply(&self, g: &GroupState) -> Result<Applied, StoreError> {
        let item = HashMap::from([
            ("pk".to_owned(), s(&g.key.id())),
            ("dataset".to_owned(), s(&g.key.dataset)),
            ("aggregate".to_owned(), s(&g.key.aggregate)),
            ("group".to_owned(), map(&g.key.group)),
            ("values".to_owned(), map(&g.values)),
            ("version".to_owned(), AttributeValue::N(g.version.to_string())),
            ("changed_at".to_owned(), s(&g.changed_at)),
        ]);
        let r = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #v < :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", AttributeValue::N(g.version.to_string()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(Applied::Written),
            Err(e)
                if e.as_service_error()
                    .is_some_and(PutItemError::is_conditional_check_failed_exception) =>
            {
                Ok(Applied::Stale)
            }
            Err(e) => Err(StoreError::Put {
                table: self.table.clone(),
                source: Box::new(e),
            }),
        }
    }

    /// Every group the table holds (a consistent scan).
    pub async fn groups(&self) -> Result<Vec<GroupState>, StoreError> {
        let items = scan(&self.ddb, &self.table, None).await?;
        items.into_iter().map(|i| read_group(&self.table, i)).collect()
    }
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
