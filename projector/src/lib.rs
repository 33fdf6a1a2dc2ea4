//! The projector: the events table's stream folded into aggregates.
//!
//! # Layout
//!
//! * [`fold`]: accepted rows to per-group measure deltas, exact and order-free.
//!
//! Not built yet: the stream handler, the exactly-once store and the feed
//! (see the README, "What is not done").
#![deny(missing_docs)]

pub mod fold;
