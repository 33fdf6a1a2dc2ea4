//! The consumer kit of the change feed.
//!
//! The feed is a standard SQS queue: messages come at least once and in any
//! order. This kit makes both harmless. Every `aggregate.changed` message
//! carries its group's whole state and a `version` that grows with each
//! change, so a consumer that keeps, per group, the state of the highest
//! version it has seen ([`ReadModel`], [`DynamoReadModel`]) ends equal to
//! the aggregates, whatever the duplicates and the order.
//!
//! * [`parse`]: a body into a typed [`FeedMessage`], or a [`MessageError`]
//!   naming why not (not JSON, an unknown type, a newer `schema_version`).
//!   Layouts 1 and 2 are read.
//! * [`Consumer`]: long polls, hands messages to your handler in order,
//!   deletes only those handled, extends the visibility of a slow batch, and
//!   stops gracefully. Poison messages are left on the queue, so its redrive
//!   policy dead-letters them after the receive limit.
//! * [`snapshot`]: every group of the aggregates table with its version, for
//!   a consumer that starts late: hold the snapshot, then follow the feed
//!   applying only newer versions; no change is missed or applied twice.
//! * [`handler`]: the reference consumer Lambda's batch (crate `consumer`),
//!   writing a read model table under a version condition.
//!
//! Feature `consumer` (default) brings the SQS loop and the table scans
//! ([`Consumer`], [`snapshot`]); without it the kit is the message types,
//! the read models and the Lambda batch, with no SQS SDK linked.
//!
//! A complete consumer that keeps the groups in memory:
//!
//! ```no_run
//! use feed::{Consumer, Delivery, GroupState, Options, ReadModel};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let aws = aws_config::load_from_env().await;
//! let url = std::env::var("FEED_QUEUE_URL")?;
//! let mut model = ReadModel::new();
//! let stats = Consumer::new(aws_sdk_sqs::Client::new(&aws), url, Options::default())
//!     .run(
//!         async |d: Delivery| {
//!             if let Some(group) = GroupState::of_message(&d.message) {
//!                 model.apply(group); // a duplicate or a late one changes nothing
//!             }
//!             Ok::<(), std::convert::Infallible>(())
//!         },
//!         async { tokio::signal::ctrl_c().await.ok(); },
//!     )
//!     .await?;
//! println!("{} handled, {} poison; {} groups", stats.handled, stats.poison, model.len());
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "consumer")]
pub mod consumer;
pub mod dynamo;
pub mod handler;
pub mod message;
pub mod model;
#[cfg(feature = "consumer")]
pub mod snapshot;

#[cfg(feature = "consumer")]
pub use consumer::{Consumer, ConsumerError, Delivery, Options, Stats};
pub use dynamo::{DynamoReadModel, StoreError};
pub use message::{parse, MessageError};
pub use model::{newest_per_group, Applied, GroupKey, GroupState, ReadModel};
pub use schema::feed::FeedMessage;
#[cfg(feature = "consumer")]
pub use snapshot::snapshot;
