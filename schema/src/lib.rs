//! Everything the parts of the pipeline share: dataset definitions, row
//! validation, the keys and item layouts of both tables (events, aggregates).
//!
//! # Layout
//!
//! * [`dataset`]: definitions (TOML under `schema/datasets/`), their checks,
//!   and the [`Registry`] that routes an object key to its dataset.
//! * [`value`]: column types and the parsing of text into typed values.
//! * [`row`]: a header mapped onto a dataset, and per-line validation into
//!   accepted fields or a [`Rejection`] with column and reason.
//! * [`keys`]: file identity and the partition/sort keys of every item of
//!   both tables: the only place a key string is built.
//! * [`items`]: the events table's layouts (events, manifests, uploads) as
//!   serde types.
//! * [`aggregates`]: the aggregates table's layouts (groups, applied pages)
//!   with their encode and decode.
//! * [`feed`]: the change feed's messages and their JSON Schema (`schema/feed.schema.json`).
//! * [`error`]: what can go wrong with a definition, a header or a stored item.
#![deny(missing_docs)]
#![warn(clippy::all)]

pub mod aggregates;
pub mod dataset;
pub mod error;
pub mod feed;
pub mod items;
pub mod keys;
pub mod row;
pub mod value;

pub use aggregates::{AggregateItem, AggregatesKind, AppliedPage};
pub use dataset::{Dataset, Registry};
pub use error::{DefinitionError, HeaderError, ItemError};
pub use items::{EventItem, EventType, FileStatus, Manifest, Upload, UploadOutcome};
pub use row::{Fields, Limits, Rejection, RowValidator};
pub use value::{ColumnType, Value};
