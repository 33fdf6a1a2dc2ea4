//! The projector: the events table's stream folded into aggregates.
//!
//! # Layout
//!
//! * [`record`]: stream records to events and manifests, or a clear refusal.
//! * [`fold`]: accepted rows to per-group measure deltas, exact and order-free.
//! * [`project`]: a batch into the aggregates table, exactly once (see its docs
//!   for the mechanism and its cost).
//! * [`feed`]: aggregate changes and completed files as SQS messages with
//!   deterministic ids, sent in batches of ten.
//! * [`handler`]: a Lambda stream batch: project, announce, report the first
//!   record not done.
#![deny(missing_docs)]

pub mod feed;
pub mod fold;
pub mod handler;
pub mod project;
pub mod record;

/// The environment variables the projector Lambda reads (besides those
/// Lambda itself sets), for the deployment check: the aggregates table, the
/// feed queue, and the log filter.
pub const ENV_VARS: &[&str] = &["AGGREGATES_TABLE", "FEED_QUEUE_URL", "RUST_LOG"];
