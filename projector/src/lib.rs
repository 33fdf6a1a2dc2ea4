//! The projector: the events table's stream folded into aggregates.
//!
//! # Layout
//!
//! * [`record`]: stream records to events and manifests, or a clear refusal.
//! * [`fold`]: accepted rows to per-group measure deltas, exact and order-free.
//! * [`project`]: a batch into the aggregates table, exactly once (see its docs
//!   for the mechanism and its cost).
//!
//! Not built yet: the change feed to SQS and the Lambda binary (see the
//! README, "What is not done").
#![deny(missing_docs)]

pub mod fold;
pub mod project;
pub mod record;
