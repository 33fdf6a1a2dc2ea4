//! Everything the parts of the pipeline share: dataset definitions, row
//! validation, the keys and item layouts of the events table.
//!
//! # Layout
//!
//! * [`dataset`]: definitions (TOML under `schema/datasets/`), their checks,
//!   and the [`Registry`] that routes an object key to its dataset.
//! * [`value`]: column types and the parsing of text into typed values.
//! * [`row`]: a header mapped onto a dataset, and per-line validation into
//!   accepted fields or a [`Rejection`] with column and reason.
//! * [`keys`]: file identity and the partition/sort keys of every item.
//! * [`items`]: the item layouts (events, manifests, uploads) as serde types.
//! * [`feed`]: the change feed's messages and their JSON Schema (`schema/feed.schema.json`).
//! * [`error`]: what can go wrong with a definition or a header.
#![deny(missing_docs)]
#![warn(clippy::all)]

pub mod dataset;
pub mod error;
pub mod feed;
pub mod items;
pub mod keys;
pub mod row;
pub mod value;

pub use dataset::{Dataset, Registry};
pub use error::{DefinitionError, HeaderError};
pub use items::{EventItem, EventType, FileStatus, Manifest, Upload, UploadOutcome};
pub use row::{Fields, Limits, Rejection, RowValidator};
pub use value::{ColumnType, Value};
