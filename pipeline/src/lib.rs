//! The operator's side of the pipeline: the embedded local stack, the
//! resources it creates, and the `pipeline` CLI built on them.
//!
//! # Layout
//!
//! * [`stack`]: DynamoDB (with Streams) and S3 emulators in-process on 127.0.0.1.
//! * [`resources`]: the tables and bucket, created as the deployment has them.
//! * [`streams`]: the events table's stream through the DynamoDB Streams API, as Lambda events.
//! * [`generate`]: synthetic `orders` CSVs of any size, good and bad lines.
//! * [`upload`]: uploads with a whole-object SHA-256, the file's identity.
//! * [`local`]: `pipeline run`, the ingest end to end on the local stack.
//! * [`metrics`]: request counting (an SDK interceptor) and peak memory.
//! * [`bench`]: end-to-end measurements on the local stack.
#![deny(missing_docs)]

pub mod bench;
pub mod generate;
pub mod local;
pub mod metrics;
pub mod resources;
pub mod stack;
pub mod streams;
pub mod upload;
