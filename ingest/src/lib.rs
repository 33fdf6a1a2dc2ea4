//! The ingest: S3 notifications in, one immutable event per CSV line out.
//!
//! # Layout
//!
//! * [`handler`]: an SQS batch of S3 notifications and chunk tasks to a partial batch response.
//! * [`notification`]: message bodies to [`ObjectRef`]s (decoded keys, test events, other event types).
//! * [`ingest`]: one object: identify by content, claim the manifest, stream, write, checkpoint, finish.
//! * [`decode`]: gzip and zstd objects decompressed; text that is not UTF-8 refused with a reason.
//! * `chunked`: big files planned into chunks that run side by side, completed exactly once.
//! * [`scan`]: record boundaries found at memory speed, where a big file is cut into chunks.
//! * [`reader`]: bytes to numbered, validated lines, memory bounded by the line limit.
//! * [`object`]: the S3 calls; [`store`]: the DynamoDB calls.
//! * [`config`]: the environment; [`error`]: what fails, with context.
//!
//! The Lambda binary (`src/main.rs`) only builds clients and calls [`handler::handle_batch`];
//! the local stack and the tests call the same functions.
#![deny(missing_docs)]

mod chunked;
pub mod config;
pub mod decode;
pub mod error;
pub mod handler;
pub mod ingest;
pub mod notification;
pub mod object;
pub mod reader;
pub mod scan;
pub mod store;

pub use config::Config;
pub use error::IngestError;
pub use ingest::{Ingester, Report};
pub use notification::ObjectRef;
