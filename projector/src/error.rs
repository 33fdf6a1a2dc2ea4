//! What can stop a batch, and whether trying again can help.
//!
//! SDK errors are kept whole as sources, so `{:#}` (anyhow) or [`chain`]
//! shows every cause down to the transport, and code can still ask the SDK
//! error what it was.

use std::error::Error;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use crate::fold::{FoldError, GroupKey};
use crate::record::DecodeError;

/// Whether trying the same input again can succeed.
///
/// Either way the batch reports its first record not done and Lambda retries
/// from there; the class says what an operator should expect of those retries
/// (and logs carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// It can: the service was busy, unreachable or slow, or writers kept
    /// conflicting. A retry of the batch usually goes through.
    Transient,
    /// It cannot: a record or a stored item the projector cannot read. Every
    /// retry fails the same way until Lambda's retries run out and the record
    /// goes to the on-failure destination, or the input (or the definition
    /// deployed) is mended.
    Permanent,
}

/// Why a record, or a transaction of records, could not be projected.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// A stream record does not read as an event or a manifest.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An event names a dataset this projector has no definition for.
    #[error("line {line} of file {file_id}: unknown dataset {dataset:?}")]
    UnknownDataset {
        /// The event's file.
        file_id: String,
        /// Its line.
        line: u64,
        /// The dataset it names.
        dataset: String,
    },
    /// An accepted event's fields do not fit its dataset's aggregates.
    #[error("line {line} of file {file_id}")]
    Fold {
        /// The event's file.
        file_id: String,
        /// Its line.
        line: u64,
        /// What does not fit (boxed: it is the largest variant).
        #[source]
        source: Box<FoldError>,
    },
    /// A group of an aggregate its dataset's definition does not have.
    #[error("unknown aggregate {0:?}")]
    UnknownAggregate(GroupKey),
    /// A stored item of the aggregates table does not read back.
    #[error(transparent)]
    Item(#[from] schema::ItemError),
    /// A stored group lacks a measure of its definition, or holds one that
    /// does not parse (the definition changed under stored groups).
    #[error("aggregate item {pk}: measure {measure}: {problem}")]
    Measure {
        /// The group's key.
        pk: String,
        /// The measure.
        measure: String,
        /// What is wrong.
        problem: String,
    },
    /// `BatchGetItem` failed (after the SDK's own retries).
    #[error("BatchGetItem")]
    BatchGet(#[source] Box<SdkError<BatchGetItemError>>),
    /// `BatchGetItem` kept leaving keys unprocessed (throttling).
    #[error("BatchGetItem left {keys} key(s) unprocessed after {attempts} attempts")]
    Unprocessed {
        /// Keys still unread.
        keys: usize,
        /// Requests made.
        attempts: u32,
    },
    /// `TransactWriteItems` failed for another reason than a conflict (after
    /// the SDK's own retries).
    #[error("TransactWriteItems")]
    Transact(#[source] Box<SdkError<TransactWriteItemsError>>),
    /// Concurrent writers changed the groups under every attempt.
    #[error("aggregates kept changing under the transaction ({attempts} attempts)")]
    Conflicts {
        /// Transactions tried.
        attempts: u32,
    },
}

impl ProjectError {
    /// Whether trying again can succeed.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            ProjectError::Decode(_)
            | ProjectError::UnknownDataset { .. }
            | ProjectError::Fold { .. }
            | ProjectError::UnknownAggregate(_)
            | ProjectError::Item(_)
            | ProjectError::Measure { .. } => RetryClass::Permanent,
            // The SDK has already retried what it classes as retryable; what
            // is left (throttling that outlasted it, a network outage, a
            // table not yet created) usually heals by the batch's next try.
            ProjectError::BatchGet(_)
            | ProjectError::Unprocessed { .. }
            | ProjectError::Transact(_)
            | ProjectError::Conflicts { .. } => RetryClass::Transient,
        }
    }
}

/// An error and each of its sources, separated by `": "` (what anyhow's
/// `{:#}` shows), for `tracing` fields and plain strings.
pub fn chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::BatchError;

    #[test]
    fn the_chain_shows_every_cause_and_the_class_follows_the_variant() {
        let fold = FoldError {
            aggregate: "units".into(),
            column: "quantity".into(),
            reason: "\"x\": invalid".into(),
        };
        let e = ProjectError::Fold {
            file_id: "f".into(),
            line: 3,
            source: Box::new(fold),
        };
        assert_eq!(
            chain(&e),
            "line 3 of file f: aggregate \"units\": column \"quantity\": \"x\": invalid"
        );
        assert_eq!(e.retry_class(), RetryClass::Permanent);
        let batch = BatchError {
            failed_at: 2,
            error: e,
            done: Box::default(),
        };
        assert_eq!(batch.to_string(), "record 2 of the batch");
        assert!(
            batch.message().starts_with("line 3 of file f: aggregate"),
            "{}",
            batch.message()
        );
        assert_eq!(chain(&batch), format!("record 2 of the batch: {}", batch.message()));
        assert_eq!(
            ProjectError::Conflicts { attempts: 9 }.retry_class(),
            RetryClass::Transient
        );
        let unknown = ProjectError::UnknownDataset {
            file_id: "f".into(),
            line: 1,
            dataset: "no_such_dataset".into(),
        };
        assert!(chain(&unknown).contains("unknown dataset \"no_such_dataset\""));
    }
}
