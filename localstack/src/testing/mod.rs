//! Test support, behind the `testing` feature: AWS-shaped events, faults
//! and observations injected through SDK interceptors, the repository's data
//! files, and an independent fold of CSV files to compare aggregates with.

mod data;
mod events;
mod faults;
mod oracle;

pub use data::{data, orders, repo};
pub use events::{batch, notification, put_notification, sqs_record, version_of, S3_PUT_VERSIONED};
pub use faults::{
    fail_event_puts, fail_transactions, Cancelled, FailAfter, FailSends, LoseReplies, Pause, S3Read, S3Reads, Throttle,
    Trigger,
};
pub use oracle::{oracle, oracle_of, Folded};
