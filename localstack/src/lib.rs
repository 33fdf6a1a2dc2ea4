//! The embedded local stack: AWS emulators in-process on 127.0.0.1, spoken
//! to over HTTP by the real AWS SDK clients, with the deployment's resources
//! and Lambda's event source mappings, so the pipeline's handlers run here as
//! they do on AWS. It depends on neither handler crate: `ingest` and
//! `projector` use it in their tests, the `pipeline` CLI to serve and run.
//!
//! # Layout
//!
//! * [`identity`]: the stack's region, account and credentials.
//! * [`stack`]: DynamoDB (with Streams), S3 and SQS emulators, started and stopped.
//! * [`notify`]: S3 object-created notifications, which the S3 emulator lacks.
//! * [`sqs`]: the SQS emulator, queues in SQLite (durable and bounded).
//! * [`clients`]: the one builder of SDK clients (local stack, `pipeline up`, AWS).
//! * [`settings`]: `terraform/settings.json`, the names and settings Terraform uses too.
//! * [`resources`]: the tables, bucket and queues, created as Terraform creates them.
//! * [`streams`]: a table's stream through the DynamoDB Streams API, as Lambda events.
//! * [`pollers`]: the SQS and stream event source mappings, with Lambda's semantics.
//! * [`queues`]: a queue's ARN and depth.
//! * [`runtime_api`]: Lambda's Runtime API, to run the real Lambda binaries.
//! * [`metrics`]: request counting and call recording (SDK interceptors), peak memory.
//! * [`upload`]: uploads with a whole-object SHA-256, the file's identity.
//! * [`generate`]: synthetic `orders` CSVs of any size, good and bad lines.
//! * `testing` (feature `testing`): AWS-shaped events, fault interceptors, an
//!   independent fold.
#![deny(missing_docs)]

pub mod clients;
pub mod generate;
pub mod identity;
pub mod metrics;
pub mod notify;
pub mod pollers;
pub mod queues;
pub mod resources;
pub mod runtime_api;
pub mod settings;
pub mod sns;
pub mod sqs;
pub mod stack;
pub mod streams;
pub mod upload;

#[cfg(feature = "testing")]
#[allow(missing_docs)]
pub mod testing;

pub use clients::{Clients, Endpoints};
pub use stack::{LocalStack, Ports, State};
