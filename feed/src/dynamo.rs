//! A read model table in DynamoDB, written only if newer.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::scan::ScanError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use crate::model::{Applied, GroupState};

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
    pub(crate) ddb: Client,
    pub(crate) table: String,
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
}
