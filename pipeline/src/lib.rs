//! The operator's side of the pipeline: the embedded local stack, the
//! resources it creates, and the `pipeline` CLI built on them.
//!
//! # Layout
//!
//! * [`stack`]: DynamoDB (with Streams), S3 and SQS emulators in-process on 127.0.0.1.
//! * [`resources`]: the tables, bucket and queues, created as the deployment has them.
//! * [`streams`]: the events table's stream through the DynamoDB Streams API, as Lambda events.
//! * [`generate`]: synthetic `orders` CSVs of any size, good and bad lines.
//! * [`upload`]: uploads with a whole-object SHA-256, the file's identity.
//! * [`settings`]: `terraform/settings.json`, the one source of names and settings.
//! * [`clients`], [`target`]: where a command acts (local stack, `pipeline up`, AWS).
//! * [`notify`]: S3 object-created notifications for the S3 emulator.
//! * [`pollers`]: the event source mappings, with Lambda's semantics.
//! * [`run`]: `pipeline run`, upload to summary; `pipeline up`'s pollers.
//! * [`ops`]: `status`, `rejects`, `aggregates`, `feed`, `rebuild`.
//! * [`metrics`]: request counting and call recording (SDK interceptors), peak memory.
//! * [`runtime_api`]: a Lambda Runtime API, to run the real Lambda binaries in tests.
//! * [`bench`]: end-to-end measurements on the local stack.
#![deny(missing_docs)]

pub mod bench;
pub mod clients;
pub mod generate;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod pollers;
pub mod resources;
pub mod run;
pub mod runtime_api;
pub mod settings;
pub mod stack;
pub mod streams;
pub mod target;
pub mod upload;
