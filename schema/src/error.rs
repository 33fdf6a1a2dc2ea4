//! Errors of the schema crate: definitions, headers, and stored items that do not read back.

use thiserror::Error;

/// A dataset definition that cannot be used.
#[derive(Debug, Error)]
pub enum DefinitionError {
    /// The file is not valid TOML or does not match the definition's shape.
    #[error("dataset definition {source_name}: {message}")]
    Parse {
        /// The file.
        source_name: String,
        /// The parser's message.
        message: String,
    },
    /// The definition parses but is inconsistent.
    #[error("dataset definition {source_name}: {reason}")]
    Invalid {
        /// The file.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The definitions directory could not be read.
    #[error("reading dataset definitions in {path}: {message}")]
    Io {
        /// The directory.
        path: String,
        /// The I/O error.
        message: String,
    },
}

/// A header line that its dataset cannot take: the file fails as a whole.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HeaderError {
    /// No header line at all, or a blank one.
    #[error("empty file: no header line")]
    Empty,
    /// More header fields than allowed.
    #[error("header has {found} columns, more than the limit of {max}")]
    TooManyColumns {
        /// Columns found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// A header field is blank.
    #[error("header column {position} has no name")]
    BlankName {
        /// 1-based position.
        position: usize,
    },
    /// A header name appears twice.
    #[error("header names column {name:?} twice")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// A header name the dataset does not declare; keeping it would drop data silently.
    #[error("unknown column {name:?}: dataset {dataset:?} declares {declared:?}")]
    UnknownColumn {
        /// The name.
        name: String,
        /// The dataset.
        dataset: String,
        /// What the dataset declares.
        declared: Vec<String>,
    },
    /// Required columns absent from the header.
    #[error("missing required column(s) {missing:?} of dataset {dataset:?}")]
    MissingColumns {
        /// The missing names.
        missing: Vec<String>,
        /// The dataset.
        dataset: String,
    },
    /// The header is not UTF-8.
    #[error("header is not valid UTF-8")]
    NotUtf8,
}

/// A stored item that does not read back as the layout expected: written by
/// something else, or damaged. Retrying reads the same bytes, so it fails the
/// same way until the item is mended.
#[derive(Debug, Error)]
pub enum ItemError {
    /// The attributes do not match the layout (one missing, or of another type).
    #[error("item {pk:?} does not decode as {layout}")]
    Decode {
        /// The item's partition key (empty if it has none).
        pk: String,
        /// The layout expected.
        layout: &'static str,
        /// What `serde_dynamo` found wrong.
        #[source]
        source: serde_dynamo::Error,
    },
    /// The item decodes, but its `kind` is another layout's.
    #[error("item {pk:?} is of kind {found:?}, not {layout}")]
    Kind {
        /// The item's partition key.
        pk: String,
        /// The layout expected.
        layout: &'static str,
        /// The kind it has.
        found: &'static str,
    },
}
