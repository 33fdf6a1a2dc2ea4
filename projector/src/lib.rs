//! The projector: the events table's stream folded into aggregates.
//!
//! # Layout
//!
//! * [`config`]: the [`Config`] read from the environment, and [`ENV_VARS`].
//! * [`record`]: stream records to events and manifests, or a clear refusal.
//! * [`fold`]: accepted rows to per-group measure deltas, exact and order-free.
//! * [`project`]: a batch into the aggregates table, exactly once (see its docs
//!   for the mechanism, its cost, and its pure steps).
//! * [`feed`]: aggregate changes and completed files as SQS messages with
//!   deterministic ids, sent in batches of ten.
//! * [`handler`]: a Lambda stream batch: project, announce, report the first
//!   record not done.
//! * [`error`]: what stops a batch, with the retry class of each error.
//! * [`retry`]: the one backoff schedule (exponential, full jitter, capped,
//!   bounded) every retry loop uses.
//!
//! The item layouts and keys of the aggregates table are `schema`'s
//! ([`schema::aggregates`], [`schema::keys`]).
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod feed;
pub mod fold;
pub mod handler;
pub mod project;
pub mod record;
pub mod retry;

pub use config::{Config, ConfigError, ENV_VARS};
pub use error::{ProjectError, RetryClass};
pub use project::BatchError;
